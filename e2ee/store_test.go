package e2ee

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/parleychat/parley/wire"
)

// device is one test device: a real Store in a real SQLite file.
type device struct {
	t    testing.TB
	path string
	addr Address
	s    *Store
}

func newDevice(t testing.TB, user string, id uint32) *device {
	t.Helper()
	d := &device{
		t:    t,
		path: filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.db", user, id)),
		addr: Address{User: user, Device: id},
	}
	d.open()
	if err := d.s.CreateIdentity(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *device) open() {
	d.t.Helper()
	s, err := OpenStore(d.path)
	if err != nil {
		d.t.Fatal(err)
	}
	d.s = s
	d.t.Cleanup(func() { s.Close() })
}

func (d *device) reopen() {
	d.t.Helper()
	if err := d.s.Close(); err != nil {
		d.t.Fatal(err)
	}
	d.open()
}

// upload is what the device sends on PUT /v1/keys.
func (d *device) upload(full bool, n int) wire.KeyUpload {
	d.t.Helper()
	up, err := d.s.KeyUpload(context.Background(), full, n)
	if err != nil {
		d.t.Fatal(err)
	}
	return up
}

// bundle builds what the server would hand out for d from its full upload:
// the keys as uploaded and, with withPreKey, the first one-time prekey.
func (d *device) bundle(up wire.KeyUpload, withPreKey bool) wire.Bundle {
	d.t.Helper()
	if up.SignedPreKey == nil {
		d.t.Fatal("bundle from an upload without signed prekey")
	}
	b := wire.Bundle{
		User:           d.addr.User,
		DeviceID:       d.addr.Device,
		RegistrationID: up.RegistrationID,
		IdentityKey:    up.IdentityKey,
		SignedPreKey:   *up.SignedPreKey,
	}
	if withPreKey {
		b.PreKey = &up.PreKeys[0]
	}
	return b
}

func (d *device) process(b wire.Bundle) {
	d.t.Helper()
	if err := d.s.ProcessBundle(context.Background(), b); err != nil {
		d.t.Fatal(err)
	}
}

type message struct {
	typ  string
	body []byte
}

func (d *device) encrypt(to *device, text string) message {
	d.t.Helper()
	typ, body, err := d.s.Encrypt(context.Background(), to.addr, []byte(text))
	if err != nil {
		d.t.Fatal(err)
	}
	return message{typ, body}
}

func (d *device) decrypt(from *device, m message) (string, error) {
	pt, err := d.s.Decrypt(context.Background(), from.addr, m.typ, m.body)
	return string(pt), err
}

func (d *device) mustDecrypt(from *device, m message, want string) {
	d.t.Helper()
	got, err := d.decrypt(from, m)
	if err != nil {
		d.t.Fatalf("%s decrypting %s message from %s: %v", d.addr.User, m.typ, from.addr.User, err)
	}
	if got != want {
		d.t.Fatalf("%s decrypted %q, want %q", d.addr.User, got, want)
	}
}

// connect starts a session from a to b through b's bundle.
func connect(a, b *device) {
	a.t.Helper()
	a.process(b.bundle(b.upload(true, 1), true))
}

// exchange sends text from one device to the other, checking the type.
func exchange(t testing.TB, from, to *device, text, wantType string) {
	t.Helper()
	m := from.encrypt(to, text)
	if m.typ != wantType {
		t.Fatalf("%s → %s: type %q, want %q", from.addr.User, to.addr.User, m.typ, wantType)
	}
	to.mustDecrypt(from, m, text)
}

func (d *device) count(table string) int {
	d.t.Helper()
	var n int
	if err := d.s.db.QueryRow(`SELECT count(*) FROM ` + table).Scan(&n); err != nil {
		d.t.Fatal(err)
	}
	return n
}

// signal runs fn with the libsignal store over one transaction.
func (d *device) signal(fn func(ps *signalStore) error) {
	d.t.Helper()
	if err := d.s.withSignal(context.Background(), fn); err != nil {
		d.t.Fatal(err)
	}
}

func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dev.db")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{path, path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}

	if ok, err := s.HasIdentity(ctx); err != nil || ok {
		t.Fatalf("HasIdentity before CreateIdentity = %v, %v", ok, err)
	}
	// Everything that needs the identity says so instead of failing oddly.
	if _, err := s.KeyUpload(ctx, true, 1); !errors.Is(err, errNoIdentity) {
		t.Errorf("KeyUpload without identity: %v", err)
	}
	if _, err := s.IdentityKey(ctx); !errors.Is(err, errNoIdentity) {
		t.Errorf("IdentityKey without identity: %v", err)
	}
	if _, _, err := s.Encrypt(ctx, Address{"bob@example.org", 1}, nil); !errors.Is(err, errNoIdentity) {
		t.Errorf("Encrypt without identity: %v", err)
	}

	if err := s.CreateIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateIdentity(ctx); err == nil {
		t.Fatal("second CreateIdentity succeeded")
	}
	key, err := s.IdentityKey(ctx)
	if err != nil || CheckPublicKey(key) != nil {
		t.Fatalf("IdentityKey = %x, %v", key, err)
	}
	reg, err := s.RegistrationID(ctx)
	if err != nil || reg == 0 || reg > registrationIDMask {
		t.Fatalf("RegistrationID = %d, %v", reg, err)
	}

	// The identity survives a restart unchanged.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key2, _ := s.IdentityKey(ctx)
	reg2, _ := s.RegistrationID(ctx)
	if string(key2) != string(key) || reg2 != reg {
		t.Fatal("identity changed across reopen")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.CreateIdentity(ctx); !errors.Is(err, errClosed) {
		t.Fatalf("update after Close: %v", err)
	}

	if _, err := OpenStore("bad?path"); err == nil {
		t.Error("OpenStore accepted a path with '?'")
	}
}

// LoadSession and LoadSenderKey must never return nil: libsignal would
// dereference it.
func TestEmptyRecords(t *testing.T) {
	d := newDevice(t, "alice@example.org", 1)
	d.signal(func(ps *signalStore) error {
		ctx := context.Background()
		sess, err := ps.LoadSession(ctx, Address{"nobody@example.org", 7}.signal())
		if err != nil || sess == nil || !sess.IsFresh() {
			t.Errorf("LoadSession of unknown address = %v, %v; want a fresh record", sess, err)
		}
		sk, err := ps.LoadSenderKey(ctx, senderKeyName("g", Address{"nobody@example.org", 7}))
		if err != nil || sk == nil || !sk.IsEmpty() {
			t.Errorf("LoadSenderKey of unknown name = %v, %v; want an empty record", sk, err)
		}
		pk, err := ps.LoadPreKey(ctx, 12345)
		if pk != nil || err != nil {
			t.Errorf("LoadPreKey of unknown id = %v, %v; want nil, nil", pk, err)
		}
		return nil
	})
}
