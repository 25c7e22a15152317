package e2ee

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/parleychat/parley/wire"
)

func TestConversation(t *testing.T) {
	for _, withPreKey := range []bool{true, false} {
		t.Run(fmt.Sprintf("prekey=%v", withPreKey), func(t *testing.T) {
			alice := newDevice(t, "alice@example.org", 1)
			bob := newDevice(t, "bob@example.org", 1)
			alice.process(bob.bundle(bob.upload(true, 3), withPreKey))

			if ok, err := alice.s.HasSession(context.Background(), bob.addr); err != nil || !ok {
				t.Fatalf("alice HasSession(bob) = %v, %v", ok, err)
			}
			// Until bob answers, every message can start his side.
			exchange(t, alice, bob, "hello bob", wire.CiphertextPreKey)
			exchange(t, alice, bob, "are you there?", wire.CiphertextPreKey)
			exchange(t, bob, alice, "hi alice", wire.CiphertextWhisper)
			exchange(t, alice, bob, "good", wire.CiphertextWhisper)

			// Long ping-pong, with runs in one direction (same chain) and
			// turns (a DH ratchet step each).
			for i := range 60 {
				from, to := alice, bob
				if i%3 == 2 {
					from, to = bob, alice
				}
				exchange(t, from, to, fmt.Sprintf("message %d", i), wire.CiphertextWhisper)
			}
			// Large and empty plaintexts.
			big := string(bytes.Repeat([]byte("x"), 32<<10))
			exchange(t, bob, alice, big, wire.CiphertextWhisper)
			exchange(t, alice, bob, "", wire.CiphertextWhisper)
		})
	}
}

// Regression: libsignal's own PreKey/SignedPreKey records lose their public
// key when reloaded, so a bundle built from reloaded records failed with
// "invalid signature on device key". Build one from records loaded after a
// restart, as the client does when it re-uploads keys.
func TestBundleFromReloadedRecords(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	first := bob.upload(true, 2)
	bob.reopen()

	var b wire.Bundle
	bob.signal(func(ps *signalStore) error {
		spk, err := ps.LoadSignedPreKey(ctx, first.SignedPreKey.ID)
		if err != nil {
			return err
		}
		pk, err := ps.LoadPreKey(ctx, first.PreKeys[1].ID)
		if err != nil {
			return err
		}
		sig := spk.Signature()
		b = wire.Bundle{
			User:           bob.addr.User,
			DeviceID:       bob.addr.Device,
			RegistrationID: ps.GetLocalRegistrationID(),
			IdentityKey:    ps.GetIdentityKeyPair().PublicKey().Serialize(),
			SignedPreKey: wire.SignedPreKey{
				ID:        spk.ID(),
				PublicKey: spk.KeyPair().PublicKey().Serialize(),
				Signature: sig[:],
			},
			PreKey: &wire.PreKey{ID: pk.ID().Value, PublicKey: pk.KeyPair().PublicKey().Serialize()},
		}
		return nil
	})
	if !bytes.Equal(b.SignedPreKey.PublicKey, first.SignedPreKey.PublicKey) ||
		!bytes.Equal(b.PreKey.PublicKey, first.PreKeys[1].PublicKey) {
		t.Fatal("reloaded public keys differ from the uploaded ones")
	}
	if err := VerifySignedPreKey(b.IdentityKey, b.SignedPreKey); err != nil {
		t.Fatal(err)
	}
	// A full upload after the restart also comes from reloaded columns.
	again := bob.upload(true, 0)
	if err := VerifySignedPreKey(again.IdentityKey, *again.SignedPreKey); err != nil {
		t.Fatal(err)
	}

	alice.process(b)
	exchange(t, alice, bob, "after restart", wire.CiphertextPreKey)
	exchange(t, bob, alice, "still fine", wire.CiphertextWhisper)
}

func TestPersistence(t *testing.T) {
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	up := bob.upload(true, 1)
	bob.reopen() // bob restarts before the bundle is used
	alice.process(bob.bundle(up, true))
	alice.reopen() // alice restarts with a session bob does not know yet

	exchange(t, alice, bob, "1", wire.CiphertextPreKey)
	alice.reopen()
	bob.reopen()
	exchange(t, alice, bob, "2", wire.CiphertextPreKey)
	exchange(t, bob, alice, "3", wire.CiphertextWhisper)
	for i := range 10 {
		alice.reopen()
		bob.reopen()
		exchange(t, alice, bob, fmt.Sprint("a", i), wire.CiphertextWhisper)
		exchange(t, bob, alice, fmt.Sprint("b", i), wire.CiphertextWhisper)
	}
	// Skipped message keys survive a restart too.
	late := alice.encrypt(bob, "late")
	exchange(t, alice, bob, "on time", wire.CiphertextWhisper)
	bob.reopen()
	bob.mustDecrypt(alice, late, "late")
}

func TestOutOfOrder(t *testing.T) {
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	connect(alice, bob)

	deliver := func(from, to *device, wantType string) {
		t.Helper()
		var ms []message
		for i := range 5 {
			ms = append(ms, from.encrypt(to, fmt.Sprint("msg ", i+1)))
			if ms[i].typ != wantType {
				t.Fatalf("type %q, want %q", ms[i].typ, wantType)
			}
		}
		for _, i := range []int{5, 3, 1, 2, 4} {
			to.mustDecrypt(from, ms[i-1], fmt.Sprint("msg ", i))
		}
	}
	deliver(alice, bob, wire.CiphertextPreKey) // bob's session starts with message 5
	deliver(bob, alice, wire.CiphertextWhisper)
	deliver(alice, bob, wire.CiphertextWhisper)

	// Across a ratchet step: an old chain's message after the new chain's.
	old := alice.encrypt(bob, "old chain")
	exchange(t, bob, alice, "turn", wire.CiphertextWhisper)
	exchange(t, alice, bob, "new chain", wire.CiphertextWhisper)
	bob.mustDecrypt(alice, old, "old chain")
}

func TestDuplicate(t *testing.T) {
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	connect(alice, bob)

	first := alice.encrypt(bob, "first") // prekey message
	bob.mustDecrypt(alice, first, "first")
	if _, err := bob.decrypt(alice, first); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("prekey message again: %v, want ErrDuplicate", err)
	}
	bob.mustDecrypt(alice, alice.encrypt(bob, "second"), "second")

	exchange(t, bob, alice, "reply", wire.CiphertextWhisper)
	m := alice.encrypt(bob, "whisper")
	bob.mustDecrypt(alice, m, "whisper")
	for range 2 {
		if _, err := bob.decrypt(alice, m); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("whisper message again: %v, want ErrDuplicate", err)
		}
	}
	exchange(t, alice, bob, "next", wire.CiphertextWhisper)
	exchange(t, bob, alice, "and back", wire.CiphertextWhisper)
}

func TestInvalidMessages(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	carol := newDevice(t, "carol@example.org", 1)
	connect(alice, bob)
	exchange(t, alice, bob, "hi", wire.CiphertextPreKey)
	exchange(t, bob, alice, "hi", wire.CiphertextWhisper)

	w := alice.encrypt(bob, "after the answer") // whisper: bob answered
	tests := []struct {
		name string
		from *device
		m    message
		want error
	}{
		{"flipped ciphertext bit", alice, flip(w, len(w.body)-12), ErrInvalidMessage},
		{"flipped mac bit", alice, flip(w, len(w.body)-1), ErrInvalidMessage},
		{"truncated", alice, message{w.typ, w.body[:len(w.body)-9]}, ErrInvalidMessage},
		{"empty", alice, message{w.typ, nil}, ErrInvalidMessage},
		{"one byte", alice, message{w.typ, []byte{0x33}}, ErrInvalidMessage},
		{"garbage prekey", alice, message{wire.CiphertextPreKey, []byte("\x33garbage")}, ErrInvalidMessage},
		{"empty base key (panics in libsignal)", alice, message{wire.CiphertextPreKey, emptyBaseKey}, ErrInvalidMessage},
		{"whisper as prekey", alice, message{wire.CiphertextPreKey, w.body}, ErrInvalidMessage},
		{"unknown type", alice, message{"bogus", w.body}, ErrInvalidMessage},
		{"sender key type", alice, message{wire.CiphertextSenderKey, w.body}, ErrInvalidMessage},
		{"whisper from unknown address", carol, w, ErrNoSession},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := bob.decrypt(tt.from, tt.m)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decrypt = %q, %v; want %v", pt, err, tt.want)
			}
		})
	}
	// None of that changed bob's state.
	bob.mustDecrypt(alice, w, "after the answer")
	exchange(t, bob, alice, "still here", wire.CiphertextWhisper)

	// A tampered prekey message, before bob has any session with carol.
	connect(carol, bob)
	cm := carol.encrypt(bob, "from carol")
	if _, err := bob.decrypt(carol, flip(cm, len(cm.body)-12)); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("tampered prekey message: %v", err)
	}
	if ok, _ := bob.s.HasSession(ctx, carol.addr); ok {
		t.Fatal("a failed prekey message left a session behind")
	}
	bob.mustDecrypt(carol, cm, "from carol")

	if _, _, err := alice.s.Encrypt(ctx, carol.addr, []byte("x")); !errors.Is(err, ErrNoSession) {
		t.Fatalf("Encrypt without session: %v, want ErrNoSession", err)
	}
}

// emptyBaseKey is a prekey message whose base key field is present but
// empty: version byte 3, then protobuf fields 2 (base key, 0 bytes),
// 3 (identity key) and 4 (message). libsignal indexes byte 0 of it.
var emptyBaseKey = []byte{0x33, 0x12, 0x00, 0x1a, 0x01, 0x05, 0x22, 0x01, 0x33}

func flip(m message, i int) message {
	b := bytes.Clone(m.body)
	b[i] ^= 0x01
	return message{m.typ, b}
}

func TestDeleteSession(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	connect(alice, bob)
	exchange(t, alice, bob, "hi", wire.CiphertextPreKey)
	if err := alice.s.DeleteSession(ctx, bob.addr); err != nil {
		t.Fatal(err)
	}
	if ok, _ := alice.s.HasSession(ctx, bob.addr); ok {
		t.Fatal("session still there")
	}
	if err := alice.s.DeleteSession(ctx, bob.addr); err != nil {
		t.Fatalf("deleting a missing session: %v", err)
	}
	// The trusted key stays: a new bundle with it is accepted, and a new
	// session starts.
	if key, _ := alice.s.TrustedIdentity(ctx, bob.addr); key == nil {
		t.Fatal("DeleteSession forgot the identity key")
	}
	connect(alice, bob)
	exchange(t, alice, bob, "again", wire.CiphertextPreKey)
	exchange(t, bob, alice, "ok", wire.CiphertextWhisper)
}

// Replacing a session by a new bundle keeps the old state for messages in
// flight. Regression: libsignal's Cipher.DecryptWithRecord tries the current
// state in place before the archived one, so decrypting "in flight" used to
// leave the new session's ratchet advanced by the failed attempt, and bob's
// "answer" then failed with "no valid sessions".
func TestReplaceSession(t *testing.T) {
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	connect(alice, bob)
	exchange(t, alice, bob, "one", wire.CiphertextPreKey)
	exchange(t, bob, alice, "two", wire.CiphertextWhisper)
	inFlight := bob.encrypt(alice, "in flight")

	connect(alice, bob)
	exchange(t, alice, bob, "new session", wire.CiphertextPreKey)
	alice.mustDecrypt(bob, inFlight, "in flight")
	exchange(t, bob, alice, "answer", wire.CiphertextWhisper)
	exchange(t, alice, bob, "done", wire.CiphertextWhisper)
}
