package e2ee

import (
	"context"
	"database/sql"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/util/optional"

	"github.com/parleychat/parley/wire"
)

// ProcessBundle starts a session with the bundle's device, replacing any
// existing one (whose state is archived, so messages still in flight from it
// decrypt). The keys and signature are checked first (ErrBadKey,
// ErrBadSignature). The first identity key seen for an address is trusted;
// a bundle with another one fails with ErrIdentityChanged and changes
// nothing, until ReplaceIdentity accepts the new key.
func (s *Store) ProcessBundle(ctx context.Context, b wire.Bundle) error {
	if err := VerifySignedPreKey(b.IdentityKey, b.SignedPreKey); err != nil {
		return fmt.Errorf("bundle of %s device %d: %w", b.User, b.DeviceID, err)
	}
	preKeyID := optional.NewEmptyUint32()
	// An untyped nil, not a nil *DjbECPublicKey: libsignal tests the
	// interface against nil to decide whether there is a one-time prekey.
	var preKeyPublic ecc.ECPublicKeyable
	if b.PreKey != nil {
		if b.PreKey.ID == 0 {
			return fmt.Errorf("bundle of %s device %d: %w: one-time prekey id 0", b.User, b.DeviceID, ErrBadKey)
		}
		if err := CheckPublicKey(b.PreKey.PublicKey); err != nil {
			return fmt.Errorf("bundle of %s device %d: prekey %d: %w", b.User, b.DeviceID, b.PreKey.ID, err)
		}
		preKeyID = optional.NewOptionalUint32(b.PreKey.ID)
		preKeyPublic = publicKey(b.PreKey.PublicKey)
	}
	bundle := prekey.NewBundle(b.RegistrationID, b.DeviceID, preKeyID, b.SignedPreKey.ID,
		preKeyPublic, publicKey(b.SignedPreKey.PublicKey), [signatureLen]byte(b.SignedPreKey.Signature),
		identity.NewKey(publicKey(b.IdentityKey)))

	a := Address{User: b.User, Device: b.DeviceID}
	return s.withSignal(ctx, func(ps *signalStore) error {
		// Checked here rather than left to libsignal so that the error says
		// what happened and is returned before anything is written.
		if err := checkTrusted(ctx, ps.tx, a, b.IdentityKey); err != nil {
			return err
		}
		builder := session.NewBuilderFromSignal(ps, a.signal(), s.ser)
		if err := builder.ProcessBundle(ctx, bundle); err != nil {
			return fmt.Errorf("bundle of %s device %d: %w", b.User, b.DeviceID, mapError(err, nil))
		}
		return nil
	})
}

// HasSession reports whether the device has a session with a, so that
// Encrypt needs no bundle.
func (s *Store) HasSession(ctx context.Context, a Address) (bool, error) {
	return exists(ctx, s.db, `SELECT 1 FROM sessions WHERE address = ?`, a.signal().String())
}

// DeleteSession forgets the session with a (not its trusted identity key).
// Deleting a missing session is not an error.
func (s *Store) DeleteSession(ctx context.Context, a Address) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE address = ?`, a.signal().String())
		return storeErr(err)
	})
}

// Encrypt encrypts plaintext for a. The type is wire.CiphertextPreKey until
// a has answered (each such message carries what a needs to start its side
// of the session), then wire.CiphertextWhisper.
func (s *Store) Encrypt(ctx context.Context, to Address, plaintext []byte) (typ string, body []byte, err error) {
	addr := to.signal()
	err = s.withSignal(ctx, func(ps *signalStore) error {
		ok, err := ps.ContainsSession(ctx, addr)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w with %s device %d", ErrNoSession, to.User, to.Device)
		}
		cipher := session.NewCipher(session.NewBuilderFromSignal(ps, addr, s.ser), addr)
		msg, err := cipher.Encrypt(ctx, plaintext)
		if err != nil {
			return fmt.Errorf("encrypt for %s device %d: %w", to.User, to.Device, mapError(err, nil))
		}
		switch msg.Type() {
		case protocol.PREKEY_TYPE:
			typ = wire.CiphertextPreKey
		case protocol.WHISPER_TYPE:
			typ = wire.CiphertextWhisper
		default:
			return fmt.Errorf("e2ee: libsignal produced message type %d", msg.Type())
		}
		body = msg.Serialize()
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	return typ, body, nil
}
