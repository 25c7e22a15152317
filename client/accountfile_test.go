package client

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAccountFileRoundTrip(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home") // created by Save
	want := AccountFile{Server: "http://127.0.0.1:8080", UserID: "alice@localhost", DeviceID: 3, AccessToken: "secret"}
	if err := SaveAccountFile(home, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadAccountFile(home)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}

	st, err := os.Stat(filepath.Join(home, AccountFileName))
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Fatalf("account.json mode %o, want 600", m)
	}
	if st, _ := os.Stat(home); st.Mode().Perm() != 0o700 {
		t.Fatalf("home mode %o, want 700", st.Mode().Perm())
	}

	// The field names are the documented ones.
	raw, _ := os.ReadFile(filepath.Join(home, AccountFileName))
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"server", "user_id", "device_id", "access_token"} {
		if _, ok := m[k]; !ok {
			t.Errorf("account.json lacks %q: %s", k, raw)
		}
	}
	if len(m) != 4 {
		t.Errorf("account.json has %d fields: %s", len(m), raw)
	}

	// Overwriting replaces it, stays 0600 and leaves no temporary file.
	want.AccessToken = "other"
	if err := SaveAccountFile(home, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadAccountFile(home); got != want {
		t.Fatalf("after overwrite got %+v", got)
	}
	entries, _ := os.ReadDir(home)
	if len(entries) != 1 {
		t.Fatalf("home holds %d entries, want only account.json", len(entries))
	}
	if st, _ := os.Stat(filepath.Join(home, AccountFileName)); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after overwrite %o", st.Mode().Perm())
	}
}

func TestLoadAccountFileErrors(t *testing.T) {
	home := t.TempDir()
	if _, err := LoadAccountFile(home); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("missing file: %v, want ErrNoAccount", err)
	}
	os.WriteFile(filepath.Join(home, AccountFileName), []byte(`{"server":"http://x"}`), 0o600)
	if _, err := LoadAccountFile(home); err == nil || errors.Is(err, ErrNoAccount) {
		t.Fatalf("incomplete file: %v", err)
	}
	os.WriteFile(filepath.Join(home, AccountFileName), []byte(`{`), 0o600)
	if _, err := LoadAccountFile(home); err == nil {
		t.Fatal("broken JSON accepted")
	}
}
