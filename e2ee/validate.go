package e2ee

import (
	"fmt"

	"go.mau.fi/libsignal/ecc"

	"github.com/parleychat/parley/wire"
)

const (
	publicKeyLen = 33 // ecc.DjbType ‖ X25519 point
	signatureLen = 64 // XEdDSA
)

// CheckPublicKey reports whether key is a serialized Curve25519 public key
// as libsignal writes it. libsignal itself does not check: it silently
// truncates or zero-pads whatever it is given, so every key that enters a
// bundle or a store passes through here first.
func CheckPublicKey(key []byte) error {
	if len(key) != publicKeyLen {
		return fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(key), publicKeyLen)
	}
	if key[0] != ecc.DjbType {
		return fmt.Errorf("%w: type byte %#02x, want %#02x", ErrBadKey, key[0], ecc.DjbType)
	}
	return nil
}

// VerifySignedPreKey checks that spk carries a well-formed public key signed
// by identityKey. The homeserver calls it on every upload so that a sender
// never receives a bundle its own ProcessBundle would refuse.
func VerifySignedPreKey(identityKey []byte, spk wire.SignedPreKey) error {
	if err := CheckPublicKey(identityKey); err != nil {
		return fmt.Errorf("identity key: %w", err)
	}
	if err := CheckPublicKey(spk.PublicKey); err != nil {
		return fmt.Errorf("signed prekey %d: %w", spk.ID, err)
	}
	if len(spk.Signature) != signatureLen {
		return fmt.Errorf("%w: signed prekey %d: %d-byte signature, want %d",
			ErrBadSignature, spk.ID, len(spk.Signature), signatureLen)
	}
	if !ecc.VerifySignature(publicKey(identityKey), spk.PublicKey, [signatureLen]byte(spk.Signature)) {
		return fmt.Errorf("%w: signed prekey %d", ErrBadSignature, spk.ID)
	}
	return nil
}

// publicKey converts a key that passed CheckPublicKey.
func publicKey(key []byte) *ecc.DjbECPublicKey {
	return ecc.NewDjbECPublicKey([32]byte(key[1:]))
}
