package e2ee

import (
	"context"
	"testing"

	"github.com/parleychat/parley/wire"
)

// FuzzDecrypt feeds arbitrary bytes to Decrypt as both message types: it
// must fail, never panic or succeed. The seeds are real messages from the
// same sender to another device at bob's address (so they parse and get as
// far as the MAC check), a truncated one, one that panics libsignal's parser and near-empty ones.
func FuzzDecrypt(f *testing.F) {
	ctx := context.Background()
	alice := newDevice(f, "alice@example.org", 1)
	bob := newDevice(f, "bob@example.org", 1)       // the fuzzed store
	elsewhere := newDevice(f, "bob@example.org", 1) // the seeds' recipient

	alice.process(elsewhere.bundle(elsewhere.upload(true, 1), false))
	pre := alice.encrypt(elsewhere, "seed")
	elsewhere.mustDecrypt(alice, pre, "seed")
	exchange(f, elsewhere, alice, "reply", wire.CiphertextWhisper)
	whisper := alice.encrypt(elsewhere, "seed whisper")

	bobKey, _ := bob.s.IdentityKey(ctx)
	if err := alice.s.ReplaceIdentity(ctx, bob.addr, bobKey); err != nil {
		f.Fatal(err)
	}
	connect(alice, bob)
	exchange(f, alice, bob, "hi", wire.CiphertextPreKey)
	exchange(f, bob, alice, "hi", wire.CiphertextWhisper)

	f.Add(pre.body)
	f.Add(whisper.body)
	f.Add(pre.body[:len(pre.body)/2])
	f.Add(emptyBaseKey)
	f.Add([]byte{0x33})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, body []byte) {
		for _, typ := range []string{wire.CiphertextPreKey, wire.CiphertextWhisper} {
			pt, err := bob.s.Decrypt(ctx, alice.addr, typ, body)
			if err == nil {
				t.Fatalf("Decrypt(%s, %x) succeeded: %q", typ, body, pt)
			}
		}
	})
}
