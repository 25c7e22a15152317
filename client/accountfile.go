package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Files in an account's home directory.
const (
	AccountFileName = "account.json" // AccountFile, mode 0600
	SignalDBName    = "signal.db"    // the device's e2ee.Store (and its -wal, -shm, .lock)
)

// ErrNoAccount: the home directory holds no account.json.
var ErrNoAccount = errors.New("client: no account in this home directory")

// ErrAccountExists: Register or Login into a home directory that already
// holds an account (or a stray signal.db).
var ErrAccountExists = errors.New("client: home directory already holds an account")

// AccountFile is HOME/account.json: the device's server and credentials.
// The access token makes it secret: it is written with mode 0600.
type AccountFile struct {
	Server      string `json:"server"`
	UserID      string `json:"user_id"`
	DeviceID    uint32 `json:"device_id"`
	AccessToken string `json:"access_token"`
}

// LoadAccountFile reads HOME/account.json; ErrNoAccount if there is none.
func LoadAccountFile(home string) (AccountFile, error) {
	var f AccountFile
	b, err := os.ReadFile(filepath.Join(home, AccountFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("%w (%s)", ErrNoAccount, home)
	}
	if err != nil {
		return f, fmt.Errorf("client: read account: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("client: %s: %w", filepath.Join(home, AccountFileName), err)
	}
	if f.Server == "" || f.UserID == "" || f.DeviceID == 0 || f.AccessToken == "" {
		return f, fmt.Errorf("client: %s: incomplete account file", filepath.Join(home, AccountFileName))
	}
	return f, nil
}

// SaveAccountFile writes HOME/account.json atomically (a temporary file in
// HOME, synced, then renamed over it) with mode 0600, creating HOME with
// mode 0700 if needed. A crash leaves either the old file or the new one.
func SaveAccountFile(home string, f AccountFile) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("client: create home: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	tmp, err := os.CreateTemp(home, ".account-*.json") // mode 0600
	if err != nil {
		return fmt.Errorf("client: write account: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("client: write account: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("client: write account: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("client: write account: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("client: write account: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(home, AccountFileName)); err != nil {
		return fmt.Errorf("client: write account: %w", err)
	}
	done = true
	// Make the rename itself durable; not every system can sync a
	// directory, and the file is complete either way.
	if d, err := os.Open(home); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
