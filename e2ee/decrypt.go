package e2ee

import (
	"context"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/libsignal/state/record"

	"github.com/parleychat/parley/wire"
)

// Decrypt decrypts a message from a device. A wire.CiphertextPreKey message
// starts (or restarts) the session and consumes the one-time prekey it used;
// a wire.CiphertextWhisper message needs a session (ErrNoSession). Messages
// may arrive out of order; one decrypted before fails with ErrDuplicate.
// Any failure leaves the state as it was. Errors wrap the package sentinels.
func (s *Store) Decrypt(ctx context.Context, from Address, typ string, body []byte) ([]byte, error) {
	var plaintext []byte
	err := s.withSignal(ctx, func(ps *signalStore) error {
		var err error
		plaintext, err = decrypt(ctx, ps, from, typ, body)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("e2ee: decrypt from %s device %d: %w", from.User, from.Device, err)
	}
	return plaintext, nil
}

// decrypt runs inside Decrypt's transaction. body comes from the network, so
// a panic in libsignal's parsing or processing (it indexes into slices it has
// not length-checked) is turned into ErrInvalidMessage: the transaction is
// rolled back, so nothing it half-changed survives.
//
// It does what libsignal's Cipher.Decrypt and Cipher.DecryptMessage do,
// except for trying the session states (see decryptWithRecord).
func decrypt(ctx context.Context, ps *signalStore, from Address, typ string, body []byte) (plaintext []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			plaintext, err = nil, fmt.Errorf("%w: malformed", ErrInvalidMessage)
		}
	}()
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidMessage)
	}
	addr := from.signal()
	builder := session.NewBuilderFromSignal(ps, addr, ps.ser)
	cipher := session.NewCipher(builder, addr)

	var (
		msg        *protocol.SignalMessage
		rec        *record.Session
		usedPreKey uint32 // one-time prekey to delete once decrypted; 0 for none
	)
	switch typ {
	case wire.CiphertextPreKey:
		pm, err := protocol.NewPreKeySignalMessageFromBytes(body, ps.ser.PreKeySignalMessage, ps.ser.SignalMessage)
		if err != nil {
			return nil, mapError(err, ErrInvalidMessage)
		}
		if rec, err = ps.LoadSession(ctx, addr); err != nil {
			return nil, err
		}
		// Checks the sender's identity key, then adds a session state built
		// from the message to rec, unless one with its base key exists.
		id, err := builder.Process(ctx, rec, pm)
		if err != nil {
			return nil, mapError(err, ErrInvalidMessage)
		}
		if !id.IsEmpty {
			usedPreKey = id.Value
		}
		msg = pm.WhisperMessage()
	case wire.CiphertextWhisper:
		if msg, err = protocol.NewSignalMessageFromBytes(body, ps.ser.SignalMessage); err != nil {
			return nil, mapError(err, ErrInvalidMessage)
		}
		if rec, err = ps.LoadSession(ctx, addr); err != nil {
			return nil, err
		}
		if rec.IsFresh() {
			return nil, fmt.Errorf("%w with %s device %d", ErrNoSession, from.User, from.Device)
		}
	default:
		return nil, fmt.Errorf("%w: unsupported ciphertext type %q", ErrInvalidMessage, typ)
	}

	rec, plaintext, err = decryptWithRecord(ctx, cipher, ps, rec, msg)
	if err != nil {
		return nil, mapError(err, ErrInvalidMessage)
	}
	// As libsignal's cipher does: the state that decrypted must belong to
	// a trusted identity (a whisper message may have been decrypted by an
	// archived state agreed with a key since replaced).
	remote := rec.SessionState().RemoteIdentityKey()
	trusted, err := ps.IsTrustedIdentity(ctx, addr, remote)
	if err != nil {
		return nil, err
	}
	if !trusted {
		return nil, fmt.Errorf("%w for %s device %d", ErrIdentityChanged, from.User, from.Device)
	}
	if err := ps.SaveIdentity(ctx, addr, remote); err != nil {
		return nil, err
	}
	if err := ps.StoreSession(ctx, addr, rec); err != nil {
		return nil, err
	}
	if usedPreKey != 0 {
		if err := ps.RemovePreKey(ctx, usedPreKey); err != nil {
			return nil, err
		}
	}
	return plaintext, nil
}

// maxArchivedStates is libsignal's limit on previous session states.
const maxArchivedStates = 40

// decryptWithRecord decrypts msg with the current state of rec or, failing
// that, with one of its archived states, which it then makes current (the
// peer has gone back to it). It returns the record to store.
//
// libsignal's Cipher.DecryptWithRecord does the same, but tries every state
// in place: a failed attempt has already advanced that state's ratchet
// (root key, chains) before the MAC check fails, and those changes are kept
// when another state succeeds, which breaks the session for the peer's next
// messages. (It also duplicates a state when promoting one.) Here every
// attempt runs on a copy of the record decoded afresh, so only the state
// that succeeds changes.
func decryptWithRecord(ctx context.Context, cipher *session.Cipher, ps *signalStore,
	rec *record.Session, msg *protocol.SignalMessage) (*record.Session, []byte, error) {

	snapshot := ps.ser.Session.Serialize(rec.Structure())
	for i := 0; i <= len(rec.PreviousSessionStates()); i++ {
		attempt, err := record.NewSessionFromBytes(snapshot, ps.ser.Session, ps.ser.State)
		if err != nil {
			return nil, nil, storeErr(err)
		}
		state := attempt.SessionState()
		if i > 0 {
			state = attempt.PreviousSessionStates()[i-1]
		}
		plaintext, _, err := cipher.DecryptWithState(ctx, state, msg)
		if errors.Is(err, signalerror.ErrOldCounter) {
			return nil, nil, err
		}
		if err != nil {
			continue
		}
		if i == 0 {
			return attempt, plaintext, nil
		}
		promoted, err := promote(ps, attempt, i-1)
		if err != nil {
			return nil, nil, storeErr(err)
		}
		return promoted, plaintext, nil
	}
	return nil, nil, signalerror.ErrNoValidSessions
}

// promote returns rec with archived state i made current and the current
// state archived first.
func promote(ps *signalStore, rec *record.Session, i int) (*record.Session, error) {
	st := rec.Structure()
	prev := make([]*record.StateStructure, 0, len(st.PreviousStates))
	prev = append(prev, st.SessionState)
	prev = append(prev, st.PreviousStates[:i]...)
	prev = append(prev, st.PreviousStates[i+1:]...)
	if len(prev) > maxArchivedStates {
		prev = prev[:maxArchivedStates]
	}
	return record.NewSessionFromStructure(&record.SessionStructure{
		SessionState:   st.PreviousStates[i],
		PreviousStates: prev,
	}, ps.ser.Session, ps.ser.State)
}
