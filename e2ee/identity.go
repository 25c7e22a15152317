package e2ee

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/util/keyhelper"
)

// localIdentity is the device's own row. libsignal's identity.KeyPair has no
// serializer, so the two halves are stored and the pair rebuilt.
type localIdentity struct {
	public, private []byte
	registrationID  uint32
	lastPreKeyID    uint32 // last one-time prekey id handed out; 0 before the first
	signedPreKeyID  uint32 // current signed prekey
}

func (li *localIdentity) keyPair() *identity.KeyPair {
	return identity.NewKeyPair(
		identity.NewKey(publicKey(li.public)),
		ecc.NewDjbECPrivateKey([32]byte(li.private)),
	)
}

// loadIdentity returns nil, nil if the device has no identity yet.
func loadIdentity(ctx context.Context, q querier) (*localIdentity, error) {
	var li localIdentity
	err := q.QueryRowContext(ctx, `
		SELECT public_key, private_key, registration_id, last_prekey_id, signed_prekey_id
		FROM local_identity WHERE id = 1`).Scan(
		&li.public, &li.private, &li.registrationID, &li.lastPreKeyID, &li.signedPreKeyID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	if CheckPublicKey(li.public) != nil || len(li.private) != 32 {
		return nil, storeErr(errors.New("corrupt local identity"))
	}
	return &li, nil
}

// HasIdentity reports whether CreateIdentity has run for this device.
func (s *Store) HasIdentity(ctx context.Context) (bool, error) {
	li, err := loadIdentity(ctx, s.db)
	return li != nil, err
}

// registrationIDMask keeps registration ids at the 14 bits Signal's other
// libraries (and the TypeScript client) generate.
const registrationIDMask = 0x3FFF

// CreateIdentity generates the identity key pair, a registration id and
// signed prekey 1. It fails if the device already has an identity: replacing
// it silently would break every session and every contact's trust.
func (s *Store) CreateIdentity(ctx context.Context) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		li, err := loadIdentity(ctx, tx)
		if err != nil {
			return err
		}
		if li != nil {
			return errors.New("e2ee: device already has an identity")
		}
		kp, err := keyhelper.GenerateIdentityKeyPair()
		if err != nil {
			return err
		}
		var regID uint32
		for regID == 0 {
			regID = keyhelper.GenerateRegistrationID() & registrationIDMask
		}
		priv := kp.PrivateKey().Serialize()
		const firstSignedPreKeyID = 1
		_, err = tx.ExecContext(ctx, `
			INSERT INTO local_identity
				(id, public_key, private_key, registration_id, last_prekey_id, signed_prekey_id, created_at)
			VALUES (1, ?, ?, ?, 0, ?, ?)`,
			kp.PublicKey().Serialize(), priv[:], regID, firstSignedPreKeyID, now())
		if err != nil {
			return storeErr(err)
		}
		spk, err := newSignedPreKey(kp, firstSignedPreKeyID)
		if err != nil {
			return err
		}
		return storeErr(insertSignedPreKey(ctx, tx, spk))
	})
}

// IdentityKey returns the device's 33-byte public identity key.
func (s *Store) IdentityKey(ctx context.Context) ([]byte, error) {
	li, err := loadIdentity(ctx, s.db)
	if err != nil {
		return nil, err
	}
	if li == nil {
		return nil, errNoIdentity
	}
	return li.public, nil
}

// RegistrationID returns the device's registration id (14 bits, never 0).
func (s *Store) RegistrationID(ctx context.Context) (uint32, error) {
	li, err := loadIdentity(ctx, s.db)
	if err != nil {
		return 0, err
	}
	if li == nil {
		return 0, errNoIdentity
	}
	return li.registrationID, nil
}

// TrustedIdentity returns the identity key saved for a, or nil, nil if none
// is: the next bundle or prekey message from a will be trusted on first use.
func (s *Store) TrustedIdentity(ctx context.Context, a Address) ([]byte, error) {
	return trustedIdentity(ctx, s.db, a.signal().String())
}

// ReplaceIdentity trusts key for a from now on: the user accepted a changed
// safety number, or a's device was re-keyed. The session with a is deleted
// because it was agreed with the old key; the next ProcessBundle (or a prekey
// message from a) starts a new one.
func (s *Store) ReplaceIdentity(ctx context.Context, a Address, key []byte) error {
	if err := CheckPublicKey(key); err != nil {
		return err
	}
	addr := a.signal()
	return s.update(ctx, func(tx *sql.Tx) error {
		if err := saveTrustedIdentity(ctx, tx, addr, key); err != nil {
			return storeErr(err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE address = ?`, addr.String())
		return storeErr(err)
	})
}

func trustedIdentity(ctx context.Context, q querier, address string) ([]byte, error) {
	var key []byte
	err := q.QueryRowContext(ctx,
		`SELECT identity_key FROM trusted_identities WHERE address = ?`, address).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	return key, nil
}

func saveTrustedIdentity(ctx context.Context, q querier, addr *protocol.SignalAddress, key []byte) error {
	_, err := q.ExecContext(ctx, `
		INSERT INTO trusted_identities (address, name, device, identity_key, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (address) DO UPDATE SET identity_key = excluded.identity_key, updated_at = excluded.updated_at
		WHERE identity_key != excluded.identity_key`,
		addr.String(), addr.Name(), addr.DeviceID(), key, now())
	return err
}

// checkTrusted returns ErrIdentityChanged if a has a saved identity key other
// than key.
func checkTrusted(ctx context.Context, q querier, a Address, key []byte) error {
	saved, err := trustedIdentity(ctx, q, a.signal().String())
	if err != nil {
		return err
	}
	if saved != nil && !bytes.Equal(saved, key) {
		return fmt.Errorf("%w for %s device %d", ErrIdentityChanged, a.User, a.Device)
	}
	return nil
}
