package setup

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfigFile: any file content is refused with an error or yields a
// configuration that passed Validate; it never panics.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte("domain: example.org\nlisten: 127.0.0.1:8080\nretention: 30d\n"))
	f.Add([]byte("retention: [1, 2]\n"))
	f.Add([]byte("max_group_members: 99999999999999999999\n"))
	f.Add([]byte("{{{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load([]string{"--config", path}, func(string) string { return "" }, io.Discard)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Load accepted a config that Validate refuses: %v", verr)
			}
		}
	})
}
