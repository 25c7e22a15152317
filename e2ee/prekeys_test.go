package e2ee

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"go.mau.fi/libsignal/util/medium"

	"github.com/parleychat/parley/wire"
)

func preKeyIDs(up wire.KeyUpload) []uint32 {
	var ids []uint32
	for _, pk := range up.PreKeys {
		ids = append(ids, pk.ID)
	}
	return ids
}

func TestKeyUpload(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "alice@example.org", 1)

	full := d.upload(true, 3)
	key, _ := d.s.IdentityKey(ctx)
	reg, _ := d.s.RegistrationID(ctx)
	if !bytes.Equal(full.IdentityKey, key) || full.RegistrationID != reg || full.SignedPreKey == nil {
		t.Fatalf("full upload lacks identity fields: %+v", full)
	}
	if full.SignedPreKey.ID != 1 {
		t.Errorf("first signed prekey id %d, want 1", full.SignedPreKey.ID)
	}
	if err := VerifySignedPreKey(full.IdentityKey, *full.SignedPreKey); err != nil {
		t.Fatal(err)
	}
	for _, pk := range full.PreKeys {
		if err := CheckPublicKey(pk.PublicKey); err != nil {
			t.Fatal(err)
		}
	}
	if got := preKeyIDs(full); !equalIDs(got, 1, 2, 3) {
		t.Fatalf("first prekey ids %v, want 1 2 3", got)
	}

	// Replenishment carries only prekeys, continuing the ids.
	more := d.upload(false, 2)
	if more.IdentityKey != nil || more.RegistrationID != 0 || more.SignedPreKey != nil {
		t.Fatalf("replenishment carries identity fields: %+v", more)
	}
	if got := preKeyIDs(more); !equalIDs(got, 4, 5) {
		t.Fatalf("prekey ids %v, want 4 5", got)
	}
	if none := d.upload(false, 0); len(none.PreKeys) != 0 {
		t.Fatal("n=0 made prekeys")
	}
	d.reopen()
	if got := preKeyIDs(d.upload(false, 1)); !equalIDs(got, 6) {
		t.Fatalf("prekey id after reopen %v, want 6", got)
	}
	if n := d.count("prekeys"); n != 6 {
		t.Fatalf("%d prekeys stored, want 6", n)
	}

	for _, n := range []int{-1, wire.MaxPreKeysPerUpload + 1} {
		if _, err := d.s.KeyUpload(ctx, false, n); err == nil {
			t.Errorf("KeyUpload(n=%d) succeeded", n)
		}
	}
}

func equalIDs(got []uint32, want ...uint32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestPreKeyIDsWrap(t *testing.T) {
	for _, tt := range []struct{ id, next uint32 }{
		{0, 1},
		{1, 2},
		{medium.MaxValue - 2, medium.MaxValue - 1},
		{medium.MaxValue - 1, 1}, // never 0, never MaxValue
	} {
		if got := nextPreKeyID(tt.id); got != tt.next {
			t.Errorf("nextPreKeyID(%d) = %d, want %d", tt.id, got, tt.next)
		}
	}

	d := newDevice(t, "alice@example.org", 1)
	if _, err := d.s.db.Exec(`UPDATE local_identity SET last_prekey_id = ?`, medium.MaxValue-3); err != nil {
		t.Fatal(err)
	}
	got := preKeyIDs(d.upload(false, 4))
	if !equalIDs(got, medium.MaxValue-2, medium.MaxValue-1, 1, 2) {
		t.Fatalf("ids across the wrap %v", got)
	}
}

func TestOneTimePreKeyConsumed(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	up := bob.upload(true, 3)
	used := up.PreKeys[1]
	b := bob.bundle(up, false)
	b.PreKey = &used
	alice.process(b)

	has := func(id uint32) bool {
		var ok bool
		bob.signal(func(ps *signalStore) error {
			var err error
			ok, err = ps.ContainsPreKey(ctx, id)
			return err
		})
		return ok
	}
	m := alice.encrypt(bob, "hi")
	if !has(used.ID) {
		t.Fatal("prekey gone before the message arrived")
	}
	bob.mustDecrypt(alice, m, "hi")
	if has(used.ID) {
		t.Fatal("one-time prekey not consumed")
	}
	if !has(up.PreKeys[0].ID) || !has(up.PreKeys[2].ID) {
		t.Fatal("other prekeys consumed")
	}
	// A second prekey message of the same session needs no prekey.
	exchange(t, alice, bob, "again", wire.CiphertextPreKey)

	// Another sender claiming the consumed prekey (a server handing it out
	// twice) cannot start a session with it.
	carol := newDevice(t, "carol@example.org", 1)
	carol.process(b)
	if _, err := bob.decrypt(carol, carol.encrypt(bob, "me too")); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("reused one-time prekey: %v, want ErrInvalidMessage", err)
	}
}

func TestRotateSignedPreKey(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	carol := newDevice(t, "carol@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	oldBundle := bob.bundle(bob.upload(true, 2), false)

	spk, err := bob.s.RotateSignedPreKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := bob.s.IdentityKey(ctx)
	if spk.ID != 2 {
		t.Errorf("rotated id %d, want 2", spk.ID)
	}
	if err := VerifySignedPreKey(key, spk); err != nil {
		t.Fatal(err)
	}
	if up := bob.upload(true, 0); up.SignedPreKey.ID != spk.ID || !bytes.Equal(up.SignedPreKey.PublicKey, spk.PublicKey) {
		t.Fatal("full upload does not carry the rotated signed prekey")
	}

	// A sender that got the previous one before the rotation still gets
	// through.
	alice.process(oldBundle)
	exchange(t, alice, bob, "with the previous signed prekey", wire.CiphertextPreKey)

	// After a second rotation the first signed prekey is gone.
	if _, err := bob.s.RotateSignedPreKey(ctx); err != nil {
		t.Fatal(err)
	}
	if n := bob.count("signed_prekeys"); n != 2 {
		t.Fatalf("%d signed prekeys kept, want 2", n)
	}
	carol.process(oldBundle)
	if _, err := bob.decrypt(carol, carol.encrypt(bob, "too late")); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("message to a deleted signed prekey: %v, want ErrInvalidMessage", err)
	}
	bob.reopen()
	if up := bob.upload(true, 0); up.SignedPreKey.ID != 3 {
		t.Fatalf("signed prekey after reopen %d, want 3", up.SignedPreKey.ID)
	}
}
