package setup

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	cfg, err := Load(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Domain != "localhost" || cfg.Listen != "127.0.0.1:8080" || cfg.Data != "./data" ||
		time.Duration(cfg.Retention) != 30*24*time.Hour {
		t.Fatalf("defaults: %+v", cfg)
	}
}

// Flag beats environment beats file beats default.
func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "parley.yaml")
	os.WriteFile(file, []byte("domain: file.example\nlisten: 127.0.0.1:1111\nretention: 2d\ndata: /from/file\n"), 0o600)
	cfg, err := Load([]string{"--config", file, "--listen", "127.0.0.1:3333"},
		env(map[string]string{"PARLEY_LISTEN": "127.0.0.1:2222", "PARLEY_DOMAIN": "env.example"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:3333" || cfg.Domain != "env.example" || cfg.Data != "/from/file" ||
		time.Duration(cfg.Retention) != 48*time.Hour {
		t.Fatalf("precedence: %+v", cfg)
	}
	cfg, err = Load(nil, env(map[string]string{"PARLEY_CONFIG": file}), io.Discard)
	if err != nil || cfg.Domain != "file.example" {
		t.Fatalf("PARLEY_CONFIG: %+v %v", cfg, err)
	}
}

// Bad settings are refused at once, each naming its key.
func TestBadConfigNamesTheKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(file, []byte("domian: x\nretention: soon\n"), 0o600)
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		keys []string
	}{
		{"bad listen flag", []string{"--listen", "nowhere"}, nil, []string{"config listen"}},
		{"bad domain env", nil, map[string]string{"PARLEY_DOMAIN": "not a domain"}, []string{"config domain"}},
		{"bad duration env", nil, map[string]string{"PARLEY_RETENTION": "forever"}, []string{"config retention"}},
		{"misspelt and bad file keys", []string{"--config", file}, nil, []string{"config domian", "config retention"}},
		{"several at once", []string{"--log-level", "loud", "--data", " "}, nil, []string{"config log_level", "config data"}},
		{"tls half", []string{"--client-tls-cert", "c.pem"}, nil, []string{"config client_tls_cert"}},
		{"missing file", []string{"--config", "/nonexistent.yaml"}, nil, []string{"config file"}},
		{"stray argument", []string{"serve"}, nil, []string{"unexpected argument"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(c.args, env(c.env), io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, k := range c.keys {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("error %q does not name %q", err, k)
				}
			}
		})
	}
}

func TestKeysAreDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(readme), "`"+k+"`") {
			t.Errorf("config key %s is not in README.md", k)
		}
	}
}
