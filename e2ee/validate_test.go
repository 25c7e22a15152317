package e2ee

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/parleychat/parley/wire"
)

func TestCheckPublicKey(t *testing.T) {
	d := newDevice(t, "alice@example.org", 1)
	good, _ := d.s.IdentityKey(context.Background())
	wrongPrefix := bytes.Clone(good)
	wrongPrefix[0] = 0x04
	for name, tt := range map[string]struct {
		key  []byte
		want error
	}{
		"good":         {good, nil},
		"nil":          {nil, ErrBadKey},
		"32 bytes":     {good[1:], ErrBadKey},
		"34 bytes":     {append(bytes.Clone(good), 0), ErrBadKey},
		"wrong prefix": {wrongPrefix, ErrBadKey},
	} {
		if err := CheckPublicKey(tt.key); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", name, err, tt.want)
		}
	}
}

func TestVerifySignedPreKey(t *testing.T) {
	d := newDevice(t, "alice@example.org", 1)
	up := d.upload(true, 0)
	idk, spk := up.IdentityKey, *up.SignedPreKey
	other, _ := newDevice(t, "mallory@example.org", 1).s.IdentityKey(context.Background())

	with := func(f func(k []byte, s *wire.SignedPreKey)) ([]byte, wire.SignedPreKey) {
		k := bytes.Clone(idk)
		s := wire.SignedPreKey{ID: spk.ID, PublicKey: bytes.Clone(spk.PublicKey), Signature: bytes.Clone(spk.Signature)}
		f(k, &s)
		return k, s
	}
	tests := []struct {
		name string
		f    func(k []byte, s *wire.SignedPreKey)
		want error
	}{
		{"good", func(k []byte, s *wire.SignedPreKey) {}, nil},
		{"flipped signature bit", func(k []byte, s *wire.SignedPreKey) { s.Signature[10] ^= 0x01 }, ErrBadSignature},
		{"flipped high signature bit", func(k []byte, s *wire.SignedPreKey) { s.Signature[63] ^= 0x80 }, ErrBadSignature},
		{"flipped key bit", func(k []byte, s *wire.SignedPreKey) { s.PublicKey[5] ^= 0x01 }, ErrBadSignature},
		{"short signature", func(k []byte, s *wire.SignedPreKey) { s.Signature = s.Signature[:63] }, ErrBadSignature},
		{"no signature", func(k []byte, s *wire.SignedPreKey) { s.Signature = nil }, ErrBadSignature},
		{"other identity", func(k []byte, s *wire.SignedPreKey) { copy(k, other) }, ErrBadSignature},
		{"identity wrong length", func(k []byte, s *wire.SignedPreKey) {}, ErrBadKey},
		{"identity wrong prefix", func(k []byte, s *wire.SignedPreKey) { k[0] = 0x06 }, ErrBadKey},
		{"prekey wrong length", func(k []byte, s *wire.SignedPreKey) { s.PublicKey = s.PublicKey[1:] }, ErrBadKey},
		{"prekey wrong prefix", func(k []byte, s *wire.SignedPreKey) { s.PublicKey[0] = 0 }, ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, s := with(tt.f)
			if tt.name == "identity wrong length" {
				k = k[:32]
			}
			err := VerifySignedPreKey(k, s)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("%v, want %v", err, tt.want)
			}
		})
	}
}

// ProcessBundle refuses what the server should have refused.
func TestProcessBundleChecks(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	good := bob.bundle(bob.upload(true, 1), true)

	tests := []struct {
		name string
		f    func(b *wire.Bundle)
		want error
	}{
		{"forged signature", func(b *wire.Bundle) { b.SignedPreKey.Signature[0] ^= 1 }, ErrBadSignature},
		{"bad identity key", func(b *wire.Bundle) { b.IdentityKey = b.IdentityKey[:20] }, ErrBadKey},
		{"bad prekey", func(b *wire.Bundle) { b.PreKey.PublicKey = []byte{5} }, ErrBadKey},
		{"prekey id 0", func(b *wire.Bundle) { b.PreKey.ID = 0 }, ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := good
			b.IdentityKey = bytes.Clone(good.IdentityKey)
			b.SignedPreKey.Signature = bytes.Clone(good.SignedPreKey.Signature)
			pk := *good.PreKey
			b.PreKey = &pk
			tt.f(&b)
			if err := alice.s.ProcessBundle(ctx, b); !errors.Is(err, tt.want) {
				t.Fatalf("%v, want %v", err, tt.want)
			}
			if ok, _ := alice.s.HasSession(ctx, bob.addr); ok {
				t.Fatal("a refused bundle made a session")
			}
			if key, _ := alice.s.TrustedIdentity(ctx, bob.addr); key != nil {
				t.Fatal("a refused bundle saved an identity")
			}
		})
	}
	alice.process(good)
}
