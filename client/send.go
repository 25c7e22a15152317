package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// Retry limits of a send.
const (
	// maxStaleRetries: how often a send refused with stale_devices is
	// re-encrypted for the corrected device lists and sent again.
	maxStaleRetries = 3
	// maxTransientRetries: how often the same request is sent again after
	// a network error or a server fault (internal, unavailable,
	// rate_limited, HTTP 5xx).
	maxTransientRetries = 3
)

// MaxContentBytes is the largest encoded Content Send accepts: a Signal
// ciphertext adds its header, MAC and padding to the block size (a prekey
// message also the keys that start the session), which must still fit in
// wire.MaxEnvelopeBytes.
const MaxContentBytes = wire.MaxEnvelopeBytes - 1024

// ErrTooLong: the message does not fit in one envelope.
var ErrTooLong = errors.New("client: message too long")

// target is one device a message is encrypted to, with the identity key
// the server lists for it (nil when unknown).
type target struct {
	addr e2ee.Address
	key  []byte
}

// NewClientID returns a random client message id (32 hex digits).
func NewClientID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// SendText sends text to user (a user id; see QualifyUser for bare
// names) in their direct conversation, or to a group ("g-…"). See Send.
func (a *Account) SendText(ctx context.Context, to, text string) (wire.SendResult, error) {
	return a.Send(ctx, to, TextContent(text))
}

// Send encrypts c to every device (with keys) of user to and to this
// account's other devices, and sends it with a random client id, which
// stays the same on every retry, so the server stores it at most once.
// Sessions are started from claimed bundles for devices without one; a
// device whose identity key changed is re-keyed, trusted anew and reported
// as a WarnIdentityChanged warning. A stale_devices refusal drops the
// sessions of the extra devices, claims bundles for the missing ones and
// retries, at most 3 times; network errors and server faults are retried
// with the same ciphertexts. It returns once the server has the message
// durably and sequenced. To a group id ("g-…") it sends with SendGroup.
func (a *Account) Send(ctx context.Context, to string, c Content) (wire.SendResult, error) {
	if IsGroupID(to) {
		return a.SendGroup(ctx, to, c)
	}
	plaintext, err := c.Marshal()
	if err != nil {
		return wire.SendResult{}, err
	}
	if len(plaintext) > MaxContentBytes {
		return wire.SendResult{}, fmt.Errorf("%w: %d bytes of content, at most %d", ErrTooLong, len(plaintext), MaxContentBytes)
	}
	if err := a.uploadNewIdentity(ctx); err != nil {
		return wire.SendResult{}, err
	}
	to = a.QualifyUser(to)
	req := wire.SendRequest{ClientID: NewClientID(), To: to}
	targets, canonical, err := a.targets(ctx, to)
	if err != nil {
		return wire.SendResult{}, err
	}
	req.To = canonical
	for attempt := 0; ; attempt++ {
		if targets, err = a.ensureSessions(ctx, targets); err != nil {
			return wire.SendResult{}, err
		}
		if req.Envelopes, err = a.encrypt(ctx, targets, plaintext); err != nil {
			return wire.SendResult{}, err
		}
		res, err := a.post(ctx, req)
		var werr *wire.Error
		if err == nil || !errors.As(err, &werr) || werr.Code != wire.CodeStaleDevices || attempt >= maxStaleRetries {
			return res, err
		}
		if targets, err = a.fixStale(ctx, to, werr); err != nil {
			return wire.SendResult{}, err
		}
	}
}

// targets lists the devices a message to user must be encrypted to: every
// device of user with keys and every other device of this account, this
// device excluded. It also returns the user id as the server spells it.
func (a *Account) targets(ctx context.Context, user string) ([]target, string, error) {
	theirs, err := a.api.UserDevices(ctx, user)
	if err != nil {
		return nil, "", err
	}
	if theirs.User != "" {
		user = theirs.User
	}
	mine := theirs
	if user != a.file.UserID {
		if mine, err = a.api.UserDevices(ctx, a.file.UserID); err != nil {
			return nil, "", err
		}
	}
	var ts []target
	add := func(u string, d wire.DeviceKeys) {
		addr := e2ee.Address{User: u, Device: d.DeviceID}
		if addr == a.self() || hasTarget(ts, addr) {
			return
		}
		ts = append(ts, target{addr: addr, key: d.IdentityKey})
	}
	for _, d := range theirs.Devices {
		add(user, d)
	}
	for _, d := range mine.Devices {
		add(a.file.UserID, d)
	}
	return ts, user, nil
}

// fixStale applies a stale_devices refusal: sessions with the Extra devices
// are dropped, and the targets are listed afresh, plus the Missing devices
// in case the lists changed again in between.
func (a *Account) fixStale(ctx context.Context, to string, werr *wire.Error) ([]target, error) {
	if err := a.dropStaleSessions(ctx, werr); err != nil {
		return nil, err
	}
	ts, _, err := a.targets(ctx, to)
	if err != nil {
		return nil, err
	}
	return a.correctTargets(ts, werr), nil
}

// dropStaleSessions deletes the sessions with the devices a stale_devices
// refusal says no longer exist.
func (a *Account) dropStaleSessions(ctx context.Context, werr *wire.Error) error {
	for _, d := range werr.Extra {
		if err := a.store.DeleteSession(ctx, e2ee.Address{User: d.User, Device: d.Device}); err != nil {
			return err
		}
	}
	return nil
}

// correctTargets adds to ts the devices a stale_devices refusal says are
// missing and removes those it says are extra.
func (a *Account) correctTargets(ts []target, werr *wire.Error) []target {
	for _, d := range werr.Missing {
		addr := e2ee.Address{User: d.User, Device: d.Device}
		if addr != a.self() && !hasTarget(ts, addr) {
			ts = append(ts, target{addr: addr})
		}
	}
	return slices.DeleteFunc(ts, func(t target) bool {
		return slices.ContainsFunc(werr.Extra, func(d wire.DeviceAddress) bool {
			return d.User == t.addr.User && d.Device == t.addr.Device
		})
	})
}

func hasTarget(ts []target, addr e2ee.Address) bool {
	return slices.ContainsFunc(ts, func(t target) bool { return t.addr == addr })
}

// ensureSessions starts a session, from a claimed bundle, with every
// target that has none, and re-keys targets whose identity key (as the
// server lists it) is not the trusted one. Targets the server has no
// bundle for any more are dropped: the send then tells whether they still
// exist.
func (a *Account) ensureSessions(ctx context.Context, ts []target) ([]target, error) {
	need := map[string][]uint32{}
	var users []string
	for _, t := range ts {
		has, err := a.store.HasSession(ctx, t.addr)
		if err != nil {
			return nil, err
		}
		if has && t.key != nil {
			trusted, err := a.store.TrustedIdentity(ctx, t.addr)
			if err != nil {
				return nil, err
			}
			if trusted != nil && !bytes.Equal(trusted, t.key) {
				// The device has new keys: its old session is useless.
				// ProcessBundle below trusts the new key and warns.
				if err := a.store.DeleteSession(ctx, t.addr); err != nil {
					return nil, err
				}
				has = false
			}
		}
		if !has {
			if _, ok := need[t.addr.User]; !ok {
				users = append(users, t.addr.User)
			}
			need[t.addr.User] = append(need[t.addr.User], t.addr.Device)
		}
	}
	gone := map[e2ee.Address]bool{}
	for _, user := range users {
		devs := need[user]
		resp, err := a.api.ClaimKeys(ctx, wire.ClaimRequest{User: user, Devices: devs})
		if err != nil {
			return nil, err
		}
		got := map[uint32]bool{}
		for _, b := range resp.Bundles {
			if b.User != user || !slices.Contains(devs, b.DeviceID) || got[b.DeviceID] {
				continue // not what we asked for
			}
			got[b.DeviceID] = true
			if err := a.processBundle(ctx, b); err != nil {
				return nil, err
			}
		}
		for _, d := range devs {
			if !got[d] {
				gone[e2ee.Address{User: user, Device: d}] = true
			}
		}
	}
	return slices.DeleteFunc(ts, func(t target) bool { return gone[t.addr] }), nil
}

// processBundle starts a session from b. A changed identity key is trusted
// (trust on first use, then on every change, as Signal does) and reported.
func (a *Account) processBundle(ctx context.Context, b wire.Bundle) error {
	err := a.store.ProcessBundle(ctx, b)
	if errors.Is(err, e2ee.ErrIdentityChanged) {
		addr := e2ee.Address{User: b.User, Device: b.DeviceID}
		if err := a.store.ReplaceIdentity(ctx, addr, b.IdentityKey); err != nil {
			return err
		}
		a.warnIdentityChanged(addr)
		err = a.store.ProcessBundle(ctx, b)
	}
	if err != nil {
		return fmt.Errorf("client: key bundle of %s device %d: %w", b.User, b.DeviceID, err)
	}
	return nil
}

func (a *Account) warnIdentityChanged(addr e2ee.Address) {
	a.warn(Warning{
		Kind:    WarnIdentityChanged,
		User:    addr.User,
		Device:  addr.Device,
		Message: fmt.Sprintf("safety number with %s changed (device %d has a new identity key)", addr.User, addr.Device),
	})
}

// encrypt makes one envelope per target. Every call ratchets the sessions
// forward, so a retry after stale_devices encrypts again rather than
// reusing envelopes the server refused.
func (a *Account) encrypt(ctx context.Context, ts []target, plaintext []byte) ([]wire.Envelope, error) {
	envs := make([]wire.Envelope, 0, len(ts))
	for _, t := range ts {
		typ, body, err := a.store.Encrypt(ctx, t.addr, plaintext)
		if err != nil {
			return nil, fmt.Errorf("client: encrypt to %s device %d: %w", t.addr.User, t.addr.Device, err)
		}
		envs = append(envs, wire.Envelope{User: t.addr.User, Device: t.addr.Device, Type: typ, Body: body})
	}
	return envs, nil
}

// sendInFlightFor is how long a recorded send counts as in flight (see
// e2ee.Store.BeginSend): far longer than post retries, so that only a
// record a dead process left behind outlives it.
const sendInFlightFor = 10 * time.Minute

// post sends req, retrying transient failures with the same request (and
// so the same client id and ciphertexts: the server keeps the first).
// While it may retry, the send is recorded in the store, so that a
// Receive, in this process or another, does not acknowledge its answer:
// the server recognises the retry only while the answer is unacknowledged.
func (a *Account) post(ctx context.Context, req wire.SendRequest) (_ wire.SendResult, err error) {
	if err := a.store.BeginSend(ctx, req.ClientID); err != nil {
		return wire.SendResult{}, fmt.Errorf("client: record send: %w", err)
	}
	defer func() {
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if eerr := a.store.EndSend(ectx, req.ClientID, sendInFlightFor); eerr != nil && err == nil {
			err = fmt.Errorf("client: record send: %w", eerr)
		}
	}()
	delay := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		res, err := a.api.SendMessage(ctx, req)
		if err == nil || attempt >= maxTransientRetries || !transient(err) || ctx.Err() != nil {
			return res, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return res, err
		}
		delay *= 2
	}
}

// transient reports whether a request that failed with err may succeed if
// sent again unchanged.
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var werr *wire.Error
	if errors.As(err, &werr) {
		switch werr.Code {
		case wire.CodeInternal, wire.CodeUnavailable, wire.CodeRateLimited:
			return true
		}
		return strings.HasPrefix(werr.Code, "http_5")
	}
	// net/http reports a connection the server closed mid-request as
	// io.EOF or io.ErrUnexpectedEOF rather than as a net.Error.
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
