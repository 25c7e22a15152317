package e2ee

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/parleychat/parley/wire"
)

func TestIdentityChange(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	connect(alice, bob)
	exchange(t, alice, bob, "hi", wire.CiphertextPreKey)
	exchange(t, bob, alice, "hi", wire.CiphertextWhisper)
	oldKey, _ := bob.s.IdentityKey(ctx)
	if got, err := alice.s.TrustedIdentity(ctx, bob.addr); err != nil || !bytes.Equal(got, oldKey) {
		t.Fatalf("TrustedIdentity = %x, %v; want bob's key", got, err)
	}

	// Bob reinstalls: same address, new store, new identity key.
	newBob := newDevice(t, "bob@example.org", 1)
	newKey, _ := newBob.s.IdentityKey(ctx)
	b := newBob.bundle(newBob.upload(true, 1), true)
	if err := alice.s.ProcessBundle(ctx, b); !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("ProcessBundle with a new identity: %v, want ErrIdentityChanged", err)
	}
	// Nothing changed: the old key is trusted, the old session works.
	if got, _ := alice.s.TrustedIdentity(ctx, bob.addr); !bytes.Equal(got, oldKey) {
		t.Fatal("trusted key changed")
	}
	exchange(t, alice, bob, "old session", wire.CiphertextWhisper)

	// A prekey message from the new key is refused as well.
	connect(newBob, alice)
	m := newBob.encrypt(alice, "it's me, really")
	if _, err := alice.decrypt(newBob, m); !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("prekey message with a new identity: %v, want ErrIdentityChanged", err)
	}

	// The user compares safety numbers and accepts the new key.
	if err := alice.s.ReplaceIdentity(ctx, bob.addr, newKey); err != nil {
		t.Fatal(err)
	}
	if ok, _ := alice.s.HasSession(ctx, bob.addr); ok {
		t.Fatal("ReplaceIdentity kept the old session")
	}
	if got, _ := alice.s.TrustedIdentity(ctx, bob.addr); !bytes.Equal(got, newKey) {
		t.Fatal("ReplaceIdentity did not save the key")
	}
	alice.mustDecrypt(newBob, m, "it's me, really") // the refused message, retried
	alice.process(b)
	exchange(t, alice, newBob, "welcome back", wire.CiphertextPreKey)
	exchange(t, newBob, alice, "thanks", wire.CiphertextWhisper)

	// Now the old key is the stranger.
	if err := alice.s.ProcessBundle(ctx, bob.bundle(bob.upload(true, 1), true)); !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("old identity after replacement: %v, want ErrIdentityChanged", err)
	}

	if err := alice.s.ReplaceIdentity(ctx, bob.addr, []byte{5, 1, 2}); !errors.Is(err, ErrBadKey) {
		t.Fatalf("ReplaceIdentity with a bad key: %v, want ErrBadKey", err)
	}
}

// Trust is per device: another device of the same user has its own key.
func TestIdentityPerDevice(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob1 := newDevice(t, "bob@example.org", 1)
	bob2 := newDevice(t, "bob@example.org", 2)
	connect(alice, bob1)
	connect(alice, bob2)
	exchange(t, alice, bob1, "to 1", wire.CiphertextPreKey)
	exchange(t, alice, bob2, "to 2", wire.CiphertextPreKey)
	k1, _ := alice.s.TrustedIdentity(ctx, bob1.addr)
	k2, _ := alice.s.TrustedIdentity(ctx, bob2.addr)
	if k1 == nil || k2 == nil || bytes.Equal(k1, k2) {
		t.Fatal("devices share a trusted key")
	}
	if k, err := alice.s.TrustedIdentity(ctx, Address{"bob@example.org", 3}); k != nil || err != nil {
		t.Fatalf("TrustedIdentity of an unknown device = %x, %v; want nil, nil", k, err)
	}
}
