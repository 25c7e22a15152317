package e2ee

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/groups/ratchet"
	groupsrecord "go.mau.fi/libsignal/groups/state/record"
	groupsstore "go.mau.fi/libsignal/groups/state/store"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/serialize"
)

// Group messages use Signal sender keys. Each device has one sender key per
// group (in own_sender_keys, with the epoch it was made for) and sends its
// distribution message to every member device over their pairwise sessions
// (recorded in sender_key_recipients); a group message is then one
// ciphertext for all of them. The sender keys of the other members are in
// sender_keys, under (group, sender address).

// maxSenderKeyStates is libsignal's limit on the keys a record keeps per
// sender: the current one and those it replaced, so that messages sent
// before a rotation still decrypt when they arrive late.
const maxSenderKeyStates = 5

var errEmptyGroup = errors.New("e2ee: empty group id")

// ownName is the libsignal name of this device's sender key for group.
// ownSenderKeys ignores its sender (the Store does not know its own
// address); the name only has to exist.
func ownName(group string) *protocol.SenderKeyName {
	return protocol.NewSenderKeyName(group, protocol.NewSignalAddress("", 0))
}

// ownSenderKeys is the libsignal sender key store of this device's own keys,
// bound to one transaction like signalStore. Keeping them apart from the
// received ones means no address a peer claims can name (and so overwrite
// or be mistaken for) this device's key.
type ownSenderKeys struct {
	tx    *sql.Tx
	ser   *serialize.Serializer
	epoch uint64 // stamped on a key when it is first stored
}

var _ groupsstore.SenderKey = (*ownSenderKeys)(nil)

func (o *ownSenderKeys) LoadSenderKey(ctx context.Context, name *protocol.SenderKeyName) (*groupsrecord.SenderKey, error) {
	var blob []byte
	err := o.tx.QueryRowContext(ctx, `SELECT record FROM own_sender_keys WHERE group_id = ?`,
		name.GroupID()).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		return groupsrecord.NewSenderKey(o.ser.SenderKeyRecord, o.ser.SenderKeyState), nil
	}
	if err != nil {
		return nil, storeErr(err)
	}
	r, err := groupsrecord.NewSenderKeyFromBytes(blob, o.ser.SenderKeyRecord, o.ser.SenderKeyState)
	if err != nil {
		return nil, storeErr(fmt.Errorf("own sender key %s: %w", name.GroupID(), err))
	}
	return r, nil
}

// StoreSenderKey keeps the epoch of an existing key: only a new key (after
// RotateSenderKey deleted the old row) gets o.epoch.
func (o *ownSenderKeys) StoreSenderKey(ctx context.Context, name *protocol.SenderKeyName, r *groupsrecord.SenderKey) error {
	t := now()
	_, err := o.tx.ExecContext(ctx, `
		INSERT INTO own_sender_keys (group_id, epoch, record, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (group_id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at`,
		name.GroupID(), int64(o.epoch), r.Serialize(), t, t)
	return storeErr(err)
}

// SenderKeyDistribution returns the SenderKeyDistributionMessage (serialized)
// of this device's current sender key for group, creating the key first if
// there is none; a new key is stamped with epoch (the group's removal
// sequence number the caller based it on). An existing key is returned
// whatever epoch says, until RotateSenderKey: compare SenderKeyEpoch to
// decide to rotate.
//
// The message carries the key at its current iteration, so a device given
// it cannot decrypt the messages sent before. Send it to each member device
// over the pairwise session only (it is the key itself), then MarkDistributed.
func (s *Store) SenderKeyDistribution(ctx context.Context, group string, epoch uint64) ([]byte, error) {
	if group == "" {
		return nil, errEmptyGroup
	}
	var skdm []byte
	err := s.withSignal(ctx, func(ps *signalStore) error {
		own := &ownSenderKeys{tx: ps.tx, ser: ps.ser, epoch: epoch}
		m, err := groups.NewGroupSessionBuilder(own, ps.ser).Create(ctx, ownName(group))
		if err != nil {
			return mapError(err, nil)
		}
		skdm = m.Serialize()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("e2ee: sender key for group %q: %w", group, err)
	}
	return skdm, nil
}

// SenderKeyEpoch returns the epoch of this device's current sender key for
// group; ok is false if it has none.
func (s *Store) SenderKeyEpoch(ctx context.Context, group string) (epoch uint64, ok bool, err error) {
	var e int64
	err = s.db.QueryRowContext(ctx, `SELECT epoch FROM own_sender_keys WHERE group_id = ?`, group).Scan(&e)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, storeErr(err)
	}
	return uint64(e), true, nil
}

// RotateSenderKey discards this device's sender key for group, so that the
// next SenderKeyDistribution makes a new one, and forgets to whom the old one
// was distributed. Call it when a member leaves or is removed: they keep the
// old key but cannot read messages under the new one. The sender keys of
// other members are untouched. Rotating without a key does nothing.
func (s *Store) RotateSenderKey(ctx context.Context, group string) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM own_sender_keys WHERE group_id = ?`, group); err != nil {
			return storeErr(err)
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM sender_key_recipients WHERE group_id = ?`, group)
		return storeErr(err)
	})
}

// MarkDistributed records that the current sender key for group reached
// devs (over their pairwise sessions). Marking a device again does nothing.
// It fails with ErrNoSenderKey if there is no current key.
//
// It cannot tell which key the caller distributed: a caller that let a
// RotateSenderKey and a new SenderKeyDistribution run between its own
// SenderKeyDistribution and MarkDistributed would mark the new key. Order
// these per group.
func (s *Store) MarkDistributed(ctx context.Context, group string, devs []Address) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		ok, err := exists(ctx, tx, `SELECT 1 FROM own_sender_keys WHERE group_id = ?`, group)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("e2ee: mark sender key of group %q distributed: %w: this device has none", group, ErrNoSenderKey)
		}
		for _, d := range devs {
			if _, err := tx.ExecContext(ctx,
				`INSERT OR IGNORE INTO sender_key_recipients (group_id, name, device) VALUES (?, ?, ?)`,
				group, d.User, d.Device); err != nil {
				return storeErr(err)
			}
		}
		return nil
	})
}

// Undistributed returns the devices of devs, in their order, that have not
// got the current sender key for group: all of them if there is no key.
func (s *Store) Undistributed(ctx context.Context, group string, devs []Address) ([]Address, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, device FROM sender_key_recipients WHERE group_id = ?`, group)
	if err != nil {
		return nil, storeErr(err)
	}
	defer rows.Close()
	have := map[Address]bool{}
	for rows.Next() {
		var a Address
		if err := rows.Scan(&a.User, &a.Device); err != nil {
			return nil, storeErr(err)
		}
		have[a] = true
	}
	if err := rows.Err(); err != nil {
		return nil, storeErr(err)
	}
	out := make([]Address, 0, len(devs))
	for _, d := range devs {
		if !have[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

// GroupEncrypt encrypts plaintext with this device's current sender key for
// group and returns the signed SenderKeyMessage, the same bytes for every
// member. Without a key it fails with ErrNoSenderKey: call
// SenderKeyDistribution first.
func (s *Store) GroupEncrypt(ctx context.Context, group string, plaintext []byte) ([]byte, error) {
	if group == "" {
		return nil, errEmptyGroup
	}
	var body []byte
	err := s.withSignal(ctx, func(ps *signalStore) error {
		own := &ownSenderKeys{tx: ps.tx, ser: ps.ser}
		name := ownName(group)
		rec, err := own.LoadSenderKey(ctx, name)
		if err != nil {
			return err
		}
		if rec.IsEmpty() {
			return fmt.Errorf("%w: this device has none (call SenderKeyDistribution first)", ErrNoSenderKey)
		}
		cipher := groups.NewGroupCipher(groups.NewGroupSessionBuilder(own, ps.ser), name, own)
		// libsignal pads by appending to the slice it is given, which would
		// write into the caller's array past len(plaintext); the full slice
		// expression makes that append copy.
		m, err := cipher.Encrypt(ctx, plaintext[:len(plaintext):len(plaintext)])
		if err != nil {
			return mapError(err, nil)
		}
		// Serialize would leave out the signature, and receivers could not
		// even parse it.
		body = m.SignedSerialize()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("e2ee: group encrypt for group %q: %w", group, err)
	}
	return body, nil
}

// ProcessSenderKeyDistribution stores the sender key of from for group from
// its distribution message, which must have come over the pairwise session
// with from (that is what authenticates it). The new key becomes current;
// the ones it replaced are kept, up to libsignal's limit, for messages still
// in flight. A message for a key already held (same key id and signing key)
// changes nothing: taking its chain key would rewind the key, and the
// messages decrypted since would decrypt again. Errors: ErrInvalidMessage
// for a malformed message.
func (s *Store) ProcessSenderKeyDistribution(ctx context.Context, group string, from Address, skdm []byte) error {
	if group == "" {
		return errEmptyGroup
	}
	err := s.withSignal(ctx, func(ps *signalStore) error {
		return processSenderKeyDistribution(ctx, ps, group, from, skdm)
	})
	if err != nil {
		return fmt.Errorf("e2ee: sender key of %s device %d for group %q: %w", from.User, from.Device, group, err)
	}
	return nil
}

// processSenderKeyDistribution runs inside ProcessSenderKeyDistribution's
// transaction. skdm comes from the network: libsignal's parser indexes
// into it unchecked, so a panic becomes ErrInvalidMessage (and a rollback).
func processSenderKeyDistribution(ctx context.Context, ps *signalStore, group string, from Address, skdm []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: malformed sender key distribution", ErrInvalidMessage)
		}
	}()
	if len(skdm) == 0 {
		return fmt.Errorf("%w: empty sender key distribution", ErrInvalidMessage)
	}
	st, err := ps.ser.SenderKeyDistributionMessage.Deserialize(skdm)
	if err != nil {
		return mapError(err, ErrInvalidMessage)
	}
	// libsignal would accept version 2 (which has no sender keys), a short
	// or empty signing key (zero-padding it) and any chain key length.
	if st.Version != protocol.CurrentVersion {
		return fmt.Errorf("%w: version %d", ErrInvalidMessage, st.Version)
	}
	if err := CheckPublicKey(st.SigningKey); err != nil {
		return fmt.Errorf("%w: signing key: %w", ErrInvalidMessage, err)
	}
	if len(st.ChainKey) != 32 {
		return fmt.Errorf("%w: chain key of %d bytes", ErrInvalidMessage, len(st.ChainKey))
	}
	m, err := protocol.NewSenderKeyDistributionMessageFromStruct(st, ps.ser.SenderKeyDistributionMessage)
	if err != nil {
		return mapError(err, ErrInvalidMessage)
	}

	name := protocol.NewSenderKeyName(group, from.signal())
	rec, err := ps.LoadSenderKey(ctx, name)
	if err != nil {
		return err
	}
	// What libsignal's SessionBuilder.Process does (add the key in front),
	// except that it would add a held key again with the message's older
	// chain, and keep a different key that reuses the id behind it.
	var current *groupsrecord.SenderKeyStateStructure
	others := make([]*groupsrecord.SenderKeyStateStructure, 0, maxSenderKeyStates)
	for _, state := range rec.Structure().SenderKeyStates {
		switch {
		case state.KeyID != m.ID():
			others = append(others, state)
		case current == nil && bytes.Equal(state.SigningKeyPublic, st.SigningKey):
			current = state
		}
	}
	if current == nil {
		current = &groupsrecord.SenderKeyStateStructure{
			Keys:             []*ratchet.SenderMessageKeyStructure{},
			KeyID:            m.ID(),
			SenderChainKey:   &ratchet.SenderChainKeyStructure{Iteration: m.Iteration(), ChainKey: m.ChainKey()},
			SigningKeyPublic: st.SigningKey,
		}
	}
	states := append([]*groupsrecord.SenderKeyStateStructure{current}, others...)
	if len(states) > maxSenderKeyStates {
		states = states[:maxSenderKeyStates]
	}
	merged, err := groupsrecord.NewSenderKeyFromStruct(&groupsrecord.SenderKeyStructure{SenderKeyStates: states},
		ps.ser.SenderKeyRecord, ps.ser.SenderKeyState)
	if err != nil {
		return storeErr(err)
	}
	return ps.StoreSenderKey(ctx, name, merged)
}

// GroupDecrypt decrypts a sender-key message from `from` in group. Messages
// may arrive out of order. Errors: ErrNoSenderKey (no key from that sender,
// or not the key the message uses: it may decrypt once the distribution
// message arrives), ErrDuplicate (decrypted before, or older than the key
// held), ErrInvalidMessage (tampered, forged, malformed). A failure changes
// nothing.
func (s *Store) GroupDecrypt(ctx context.Context, group string, from Address, body []byte) ([]byte, error) {
	if group == "" {
		return nil, errEmptyGroup
	}
	var plaintext []byte
	err := s.withSignal(ctx, func(ps *signalStore) error {
		var err error
		plaintext, err = groupDecrypt(ctx, ps, group, from, body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("e2ee: group decrypt from %s device %d in group %q: %w", from.User, from.Device, group, err)
	}
	return plaintext, nil
}

// groupDecrypt runs inside GroupDecrypt's transaction and turns a panic in
// libsignal into ErrInvalidMessage, as decrypt does. Some are reachable only
// by a member with the sender's signing key (AES-CBC on a ciphertext that is
// not whole blocks), which must not crash the other members either.
func groupDecrypt(ctx context.Context, ps *signalStore, group string, from Address, body []byte) (plaintext []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			plaintext, err = nil, fmt.Errorf("%w: malformed", ErrInvalidMessage)
		}
	}()
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidMessage)
	}
	m, err := protocol.NewSenderKeyMessageFromBytes(body, ps.ser.SenderKeyMessage)
	if err != nil {
		return nil, mapError(err, ErrInvalidMessage)
	}
	// libsignal verifies the signature over its re-encoding of the fields it
	// parsed, so other encodings of a signed message (another low nibble in
	// the version byte, reordered or repeated protobuf fields) verify too.
	// Accepting only the signed bytes keeps a message's bytes unforgeable.
	if !bytes.Equal(m.SignedSerialize(), body) {
		return nil, fmt.Errorf("%w: not in canonical encoding", ErrInvalidMessage)
	}
	name := protocol.NewSenderKeyName(group, from.signal())
	cipher := groups.NewGroupCipher(groups.NewGroupSessionBuilder(ps, ps.ser), name, ps)
	plaintext, err = cipher.Decrypt(ctx, m)
	if err != nil {
		return nil, mapError(err, ErrInvalidMessage)
	}
	return plaintext, nil
}
