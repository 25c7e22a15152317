package e2ee

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	groupsrecord "go.mau.fi/libsignal/groups/state/record"
	groupsstore "go.mau.fi/libsignal/groups/state/store"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/state/store"
)

// signalStore is the store libsignal's builders and ciphers call back into,
// bound to one transaction of Store.update: it lives for one operation, and
// everything libsignal reads and writes through it commits or rolls back
// together.
//
// Contracts libsignal relies on without checking them:
//   - every Load returns a fresh record (it is rebuilt from the database on
//     each call), because the cipher mutates a loaded session before it
//     verifies the MAC; a shared record would keep a failed attempt's changes.
//   - LoadSession and LoadSenderKey return an empty record, never nil.
//   - records are keyed by SignalAddress.String(), never by pointer.
type signalStore struct {
	tx       *sql.Tx
	ser      *serialize.Serializer
	identity *identity.KeyPair
	regID    uint32
}

var (
	_ store.SignalProtocol  = (*signalStore)(nil)
	_ groupsstore.SenderKey = (*signalStore)(nil)
)

// storageError marks a failure of the database (or of a record in it) as
// opposed to a failure of the message being processed, so that Decrypt does
// not report a full disk as a tampered message.
type storageError struct{ err error }

func (e *storageError) Error() string { return "e2ee: store: " + e.err.Error() }
func (e *storageError) Unwrap() error { return e.err }

func storeErr(err error) error {
	if err == nil {
		return nil
	}
	return &storageError{err}
}

var errNoIdentity = errors.New("e2ee: device has no identity (call CreateIdentity)")

// signalStore loads the local identity, which libsignal asks for through
// methods that can return neither an error nor a context.
func (s *Store) signalStore(ctx context.Context, tx *sql.Tx) (*signalStore, error) {
	id, err := loadIdentity(ctx, tx)
	if err != nil {
		return nil, err
	}
	if id == nil {
		return nil, errNoIdentity
	}
	return &signalStore{tx: tx, ser: s.ser, identity: id.keyPair(), regID: id.registrationID}, nil
}

// --- store.IdentityKey

func (ps *signalStore) GetIdentityKeyPair() *identity.KeyPair { return ps.identity }

func (ps *signalStore) GetLocalRegistrationID() uint32 { return ps.regID }

func (ps *signalStore) SaveIdentity(ctx context.Context, address *protocol.SignalAddress, key *identity.Key) error {
	return storeErr(saveTrustedIdentity(ctx, ps.tx, address, key.Serialize()))
}

// IsTrustedIdentity is trust on first use: an address without a saved key
// trusts whatever it is shown. Parley checks ProcessBundle's key itself
// (to report ErrIdentityChanged before touching anything); this is the
// check libsignal makes on prekey messages and before each encryption.
func (ps *signalStore) IsTrustedIdentity(ctx context.Context, address *protocol.SignalAddress, key *identity.Key) (bool, error) {
	saved, err := trustedIdentity(ctx, ps.tx, address.String())
	if err != nil {
		return false, storeErr(err)
	}
	return saved == nil || bytes.Equal(saved, key.Serialize()), nil
}

// --- store.PreKey

// LoadPreKey returns nil, nil for an unknown id; libsignal turns that into
// ErrNoOneTimeKeyFound.
func (ps *signalStore) LoadPreKey(ctx context.Context, id uint32) (*record.PreKey, error) {
	var priv, pub []byte
	err := ps.tx.QueryRowContext(ctx,
		`SELECT private_key, public_key FROM prekeys WHERE id = ?`, id).Scan(&priv, &pub)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	kp, err := rebuildKeyPair(priv, pub)
	if err != nil {
		return nil, storeErr(fmt.Errorf("prekey %d: %w", id, err))
	}
	return record.NewPreKey(id, kp, ps.ser.PreKeyRecord), nil
}

func (ps *signalStore) StorePreKey(ctx context.Context, id uint32, r *record.PreKey) error {
	return storeErr(insertPreKey(ctx, ps.tx, id, r.KeyPair()))
}

func (ps *signalStore) ContainsPreKey(ctx context.Context, id uint32) (bool, error) {
	return exists(ctx, ps.tx, `SELECT 1 FROM prekeys WHERE id = ?`, id)
}

func (ps *signalStore) RemovePreKey(ctx context.Context, id uint32) error {
	_, err := ps.tx.ExecContext(ctx, `DELETE FROM prekeys WHERE id = ?`, id)
	return storeErr(err)
}

// --- store.SignedPreKey

// LoadSignedPreKey returns nil, nil for an unknown id; libsignal turns that
// into ErrNoSignedPreKey.
func (ps *signalStore) LoadSignedPreKey(ctx context.Context, id uint32) (*record.SignedPreKey, error) {
	spk, err := loadSignedPreKey(ctx, ps.tx, id)
	if err != nil || spk == nil {
		return nil, storeErr(err)
	}
	return spk.record(ps.ser)
}

func (ps *signalStore) LoadSignedPreKeys(ctx context.Context) ([]*record.SignedPreKey, error) {
	ids, err := signedPreKeyIDs(ctx, ps.tx)
	if err != nil {
		return nil, storeErr(err)
	}
	out := make([]*record.SignedPreKey, 0, len(ids))
	for _, id := range ids {
		r, err := ps.LoadSignedPreKey(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (ps *signalStore) StoreSignedPreKey(ctx context.Context, id uint32, r *record.SignedPreKey) error {
	sig := r.Signature()
	return storeErr(insertSignedPreKey(ctx, ps.tx, signedPreKey{
		id:        id,
		keyPair:   r.KeyPair(),
		signature: sig[:],
		timestamp: r.Timestamp(),
	}))
}

func (ps *signalStore) ContainsSignedPreKey(ctx context.Context, id uint32) (bool, error) {
	return exists(ctx, ps.tx, `SELECT 1 FROM signed_prekeys WHERE id = ?`, id)
}

func (ps *signalStore) RemoveSignedPreKey(ctx context.Context, id uint32) error {
	_, err := ps.tx.ExecContext(ctx, `DELETE FROM signed_prekeys WHERE id = ?`, id)
	return storeErr(err)
}

// --- store.Session

func (ps *signalStore) LoadSession(ctx context.Context, address *protocol.SignalAddress) (*record.Session, error) {
	var blob []byte
	err := ps.tx.QueryRowContext(ctx,
		`SELECT record FROM sessions WHERE address = ?`, address.String()).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		return record.NewSession(ps.ser.Session, ps.ser.State), nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	r, err := record.NewSessionFromBytes(blob, ps.ser.Session, ps.ser.State)
	if err != nil {
		return nil, storeErr(fmt.Errorf("session %s: %w", address, err))
	}
	return r, nil
}

// GetSubDeviceSessions returns the devices of name with a session (all of
// them: Parley has no primary device to leave out).
func (ps *signalStore) GetSubDeviceSessions(ctx context.Context, name string) ([]uint32, error) {
	rows, err := ps.tx.QueryContext(ctx, `SELECT device FROM sessions WHERE name = ? ORDER BY device`, name)
	if err != nil {
		return nil, storeErr(err)
	}
	defer rows.Close()
	var devices []uint32
	for rows.Next() {
		var d uint32
		if err := rows.Scan(&d); err != nil {
			return nil, storeErr(err)
		}
		devices = append(devices, d)
	}
	return devices, storeErr(rows.Err())
}

func (ps *signalStore) StoreSession(ctx context.Context, address *protocol.SignalAddress, r *record.Session) error {
	_, err := ps.tx.ExecContext(ctx, `
		INSERT INTO sessions (address, name, device, record, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (address) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
		address.String(), address.Name(), address.DeviceID(), r.Serialize(), now())
	return storeErr(err)
}

func (ps *signalStore) ContainsSession(ctx context.Context, address *protocol.SignalAddress) (bool, error) {
	return exists(ctx, ps.tx, `SELECT 1 FROM sessions WHERE address = ?`, address.String())
}

func (ps *signalStore) DeleteSession(ctx context.Context, address *protocol.SignalAddress) error {
	_, err := ps.tx.ExecContext(ctx, `DELETE FROM sessions WHERE address = ?`, address.String())
	return storeErr(err)
}

func (ps *signalStore) DeleteAllSessions(ctx context.Context) error {
	_, err := ps.tx.ExecContext(ctx, `DELETE FROM sessions`)
	return storeErr(err)
}

// --- groups store.SenderKey (used by the group cipher)

func (ps *signalStore) StoreSenderKey(ctx context.Context, name *protocol.SenderKeyName, r *groupsrecord.SenderKey) error {
	_, err := ps.tx.ExecContext(ctx, `
		INSERT INTO sender_keys (group_id, sender, record, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (group_id, sender) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
		name.GroupID(), name.Sender().String(), r.Serialize(), now())
	return storeErr(err)
}

func (ps *signalStore) LoadSenderKey(ctx context.Context, name *protocol.SenderKeyName) (*groupsrecord.SenderKey, error) {
	var blob []byte
	err := ps.tx.QueryRowContext(ctx, `SELECT record FROM sender_keys WHERE group_id = ? AND sender = ?`,
		name.GroupID(), name.Sender().String()).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		return groupsrecord.NewSenderKey(ps.ser.SenderKeyRecord, ps.ser.SenderKeyState), nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	r, err := groupsrecord.NewSenderKeyFromBytes(blob, ps.ser.SenderKeyRecord, ps.ser.SenderKeyState)
	if err != nil {
		return nil, storeErr(fmt.Errorf("sender key %s/%s: %w", name.GroupID(), name.Sender(), err))
	}
	return r, nil
}

func exists(ctx context.Context, q querier, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, storeErr(err)
}
