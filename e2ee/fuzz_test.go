package e2ee

import (
	"context"
	"errors"
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

// FuzzGroupDecrypt feeds arbitrary bytes to GroupDecrypt: it must fail,
// never panic or succeed. bob holds alice's sender key, so the seeds get
// past parsing and the key lookup: messages bob has decrypted already (a
// valid signature, then ErrDuplicate), one alice signed around a ciphertext
// AES-CBC panics on, at an iteration bob has not reached (a failure changes
// nothing, so it stays there), and broken ones.
func FuzzGroupDecrypt(f *testing.F) {
	ctx := context.Background()
	alice := newDevice(f, "alice@example.org", 1)
	bob := newDevice(f, "bob@example.org", 1)
	distribute(f, group, 1, alice, bob)

	var seen [][]byte
	for _, text := range []string{"", "seed", "a longer seed message, more than one block"} {
		body := alice.groupEncrypt(group, text)
		bob.mustGroupDecrypt(group, alice, body, text)
		seen = append(seen, body)
	}
	signedGarbage := signedSenderKeyMessage(alice, group, 10, make([]byte, 17))
	if _, err := bob.s.GroupDecrypt(ctx, group, alice.addr, signedGarbage); !errors.Is(err, ErrInvalidMessage) {
		f.Fatalf("signed garbage: %v", err)
	}

	for _, body := range seen {
		f.Add(body)
	}
	f.Add(signedGarbage)
	f.Add(seen[1][:len(seen[1])-64])
	f.Add(seen[1][:len(seen[1])/2])
	f.Add(make([]byte, 65))
	f.Add([]byte{0x33})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, body []byte) {
		pt, err := bob.s.GroupDecrypt(ctx, group, alice.addr, body)
		if err == nil {
			t.Fatalf("GroupDecrypt(%x) succeeded: %q", body, pt)
		}
	})
}

// FuzzProcessSenderKeyDistribution: arbitrary bytes as a distribution
// message are accepted or fail with ErrInvalidMessage, never panic.
func FuzzProcessSenderKeyDistribution(f *testing.F) {
	ctx := context.Background()
	alice := newDevice(f, "alice@example.org", 1)
	bob := newDevice(f, "bob@example.org", 1)
	skdm, err := alice.s.SenderKeyDistribution(ctx, group, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(skdm)
	f.Add(skdm[:len(skdm)/2])
	f.Add([]byte{0x33})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, skdm []byte) {
		err := bob.s.ProcessSenderKeyDistribution(ctx, group, alice.addr, skdm)
		if err != nil && !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("ProcessSenderKeyDistribution(%x): %v", skdm, err)
		}
	})
}
