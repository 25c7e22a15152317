package e2ee

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/medium"

	"github.com/parleychat/parley/wire"
)

// Prekeys live in their own columns (id, private key, public key, signature,
// timestamp) and records are rebuilt from them on every load. libsignal's
// own serialized PreKey/SignedPreKey records cannot be used: reloading one
// copies the 33-byte public key into a 32-byte array, so the reloaded key
// (and any bundle built from it) is wrong.

// nextPreKeyID follows id the way Signal's KeyHelper does: ids run from 1 to
// medium.MaxValue-1 and wrap. 0 means "no prekey" on the wire, and
// libsignal never deletes a prekey with id medium.MaxValue (it is Signal's
// "last resort" key), so neither is ever generated.
func nextPreKeyID(id uint32) uint32 {
	return id%(medium.MaxValue-1) + 1
}

// rebuildKeyPair derives the key pair from the stored private key and checks
// it against the stored public key, which catches a damaged row before it
// produces an undecryptable session.
func rebuildKeyPair(private, public []byte) (*ecc.ECKeyPair, error) {
	if len(private) != 32 || CheckPublicKey(public) != nil {
		return nil, errors.New("corrupt key pair")
	}
	kp := ecc.CreateKeyPair(private)
	if !bytes.Equal(kp.PublicKey().Serialize(), public) {
		return nil, errors.New("public key does not match private key")
	}
	return kp, nil
}

func insertPreKey(ctx context.Context, q querier, id uint32, kp *ecc.ECKeyPair) error {
	priv := kp.PrivateKey().Serialize()
	// REPLACE: after the ids wrap, an old unused prekey with the same id is
	// stale; the server has replaced it with the new upload too.
	_, err := q.ExecContext(ctx, `
		INSERT OR REPLACE INTO prekeys (id, private_key, public_key, created_at) VALUES (?, ?, ?, ?)`,
		id, priv[:], kp.PublicKey().Serialize(), now())
	return err
}

type signedPreKey struct {
	id        uint32
	keyPair   *ecc.ECKeyPair
	signature []byte
	timestamp int64 // Unix seconds, as libsignal's records hold it
}

func newSignedPreKey(idk *identity.KeyPair, id uint32) (signedPreKey, error) {
	kp, err := ecc.GenerateKeyPair()
	if err != nil {
		return signedPreKey{}, err
	}
	sig := ecc.CalculateSignature(idk.PrivateKey(), kp.PublicKey().Serialize())
	return signedPreKey{id: id, keyPair: kp, signature: sig[:], timestamp: now()}, nil
}

func (spk signedPreKey) wire() wire.SignedPreKey {
	return wire.SignedPreKey{
		ID:        spk.id,
		PublicKey: spk.keyPair.PublicKey().Serialize(),
		Signature: bytes.Clone(spk.signature),
	}
}

func (spk signedPreKey) record(ser *serialize.Serializer) (*record.SignedPreKey, error) {
	if len(spk.signature) != signatureLen {
		return nil, storeErr(fmt.Errorf("signed prekey %d: corrupt signature", spk.id))
	}
	return record.NewSignedPreKey(spk.id, spk.timestamp, spk.keyPair,
		[signatureLen]byte(spk.signature), ser.SignedPreKeyRecord), nil
}

func insertSignedPreKey(ctx context.Context, q querier, spk signedPreKey) error {
	priv := spk.keyPair.PrivateKey().Serialize()
	_, err := q.ExecContext(ctx, `
		INSERT OR REPLACE INTO signed_prekeys (id, private_key, public_key, signature, timestamp)
		VALUES (?, ?, ?, ?, ?)`,
		spk.id, priv[:], spk.keyPair.PublicKey().Serialize(), spk.signature, spk.timestamp)
	return err
}

// loadSignedPreKey returns nil, nil for an unknown id.
func loadSignedPreKey(ctx context.Context, q querier, id uint32) (*signedPreKey, error) {
	var priv, pub, sig []byte
	spk := signedPreKey{id: id}
	err := q.QueryRowContext(ctx, `
		SELECT private_key, public_key, signature, timestamp FROM signed_prekeys WHERE id = ?`,
		id).Scan(&priv, &pub, &sig, &spk.timestamp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if spk.keyPair, err = rebuildKeyPair(priv, pub); err != nil {
		return nil, fmt.Errorf("signed prekey %d: %w", id, err)
	}
	spk.signature = sig
	return &spk, nil
}

func signedPreKeyIDs(ctx context.Context, q querier) ([]uint32, error) {
	rows, err := q.QueryContext(ctx, `SELECT id FROM signed_prekeys ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []uint32
	for rows.Next() {
		var id uint32
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// KeyUpload returns the body of PUT /v1/keys. With full it carries the
// identity key, registration id and current signed prekey. It always carries
// n new one-time prekeys (0 <= n <= wire.MaxPreKeysPerUpload), which are
// saved before it returns: an upload that fails can simply be repeated with
// new keys, while keys the server holds but the device lost would make
// sessions that can never be decrypted.
func (s *Store) KeyUpload(ctx context.Context, full bool, n int) (wire.KeyUpload, error) {
	if n < 0 || n > wire.MaxPreKeysPerUpload {
		return wire.KeyUpload{}, fmt.Errorf("e2ee: %d prekeys requested, want 0 to %d", n, wire.MaxPreKeysPerUpload)
	}
	var up wire.KeyUpload
	err := s.update(ctx, func(tx *sql.Tx) error {
		li, err := loadIdentity(ctx, tx)
		if err != nil {
			return err
		}
		if li == nil {
			return errNoIdentity
		}
		if full {
			spk, err := loadSignedPreKey(ctx, tx, li.signedPreKeyID)
			if err != nil {
				return storeErr(err)
			}
			if spk == nil {
				return storeErr(fmt.Errorf("current signed prekey %d missing", li.signedPreKeyID))
			}
			w := spk.wire()
			up.IdentityKey = li.public
			up.RegistrationID = li.registrationID
			up.SignedPreKey = &w
		}
		id := li.lastPreKeyID
		for range n {
			id = nextPreKeyID(id)
			kp, err := ecc.GenerateKeyPair()
			if err != nil {
				return err
			}
			if err := insertPreKey(ctx, tx, id, kp); err != nil {
				return storeErr(err)
			}
			up.PreKeys = append(up.PreKeys, wire.PreKey{ID: id, PublicKey: kp.PublicKey().Serialize()})
		}
		_, err = tx.ExecContext(ctx, `UPDATE local_identity SET last_prekey_id = ? WHERE id = 1`, id)
		return storeErr(err)
	})
	if err != nil {
		return wire.KeyUpload{}, err
	}
	return up, nil
}

// RotateSignedPreKey makes a new signed prekey current and returns it for
// upload. The previous one is kept because prekey messages built from the
// server's copy of it may still be in flight; older ones are deleted, so a
// message that waited through two rotations cannot be decrypted.
func (s *Store) RotateSignedPreKey(ctx context.Context) (wire.SignedPreKey, error) {
	var out wire.SignedPreKey
	err := s.withSignal(ctx, func(ps *signalStore) error {
		li, err := loadIdentity(ctx, ps.tx)
		if err != nil {
			return err
		}
		prev := li.signedPreKeyID
		spk, err := newSignedPreKey(ps.identity, nextPreKeyID(prev))
		if err != nil {
			return err
		}
		if err := insertSignedPreKey(ctx, ps.tx, spk); err != nil {
			return storeErr(err)
		}
		if _, err := ps.tx.ExecContext(ctx,
			`DELETE FROM signed_prekeys WHERE id NOT IN (?, ?)`, prev, spk.id); err != nil {
			return storeErr(err)
		}
		if _, err := ps.tx.ExecContext(ctx,
			`UPDATE local_identity SET signed_prekey_id = ? WHERE id = 1`, spk.id); err != nil {
			return storeErr(err)
		}
		out = spk.wire()
		return nil
	})
	return out, err
}
