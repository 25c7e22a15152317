package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// Item types (Item.Type) besides the event types passed through.
const (
	ItemMessage      = wire.EventMessage    // a decrypted message
	ItemReceipt      = wire.EventReceipt    // delivered/read, for a message this user sent
	ItemDeviceList   = wire.EventDeviceList // User's device list changed (already handled)
	ItemExpired      = wire.EventExpired    // Conversation lost FromSeq..ToSeq unread
	ItemDecryptError = "decrypt_error"      // a message that could not be read; Err says why
	// What became of this device's sends: the seq each got (also kept for
	// a sender that lost the answer to a crash), or, for a send the
	// conversation's hub on another homeserver refused later, why.
	ItemSent      = wire.EventSent // ClientID got Seq in Conversation
	ItemSendError = "send_error"   // ClientID was refused: Code, Err
)

// Item is what Process makes of an event: a decrypted message, a receipt,
// a notice. Which fields are set depends on Type:
//
//   - message: ID, Conversation, Seq, From, FromDevice, Text, SentAt;
//     Group too in a group (Conversation is then the group id)
//   - decrypt_error: ID, Conversation, Seq, From, FromDevice, SentAt, Err;
//     Group too in a group
//   - receipt: ID, Conversation, Seq, Status, By, ByDevice; in a group
//     Group and Count instead of By and ByDevice
//   - group_event: ID, Conversation, Group, Seq, Action, Actor, User,
//     Role, Members, Meta (see ItemGroupEvent)
//   - device_list: ID, User
//   - expired: ID, Conversation, FromSeq, ToSeq
//
// An inbox event of a type this package does not know is passed through
// with its Type, ID, Conversation and Seq.
type Item struct {
	Type string
	ID   int64 // the inbox event's id

	Conversation string
	Seq          uint64

	From       string
	FromDevice uint32
	Text       string
	SentAt     time.Time

	Status   string
	By       string
	ByDevice uint32

	User string

	// group messages, receipts and events; Members and Meta as the
	// group_event carried them
	Group   string
	Action  string
	Actor   string
	Role    string
	Members []wire.Member
	Meta    *wire.GroupMeta
	Count   int // group receipt: how many devices (delivered) or members (read)

	FromSeq, ToSeq uint64

	Err error

	// sent, send_error
	ClientID string
	Code     string
}

// deviceProbe: how many device numbers past the highest one the server
// lists are checked for sessions to drop after a device_list event (the
// removed device may have had the highest number). The e2ee store cannot
// list a user's sessions, so this is a bounded probe.
const deviceProbe = 16

// Process handles one event from the server. ok reports whether it yields
// an Item to show. A nil error means the event is done with: an inbox
// event (ID > 0) may then be acknowledged whether ok or not, and should be.
// A non-nil error (the context ended, the local store failed, the server
// could not be asked) means it is not done: do not acknowledge it; it
// comes again.
//
//   - message: decrypted into a message Item. A replay (the store already
//     decrypted it, e.g. it was delivered again after a reconnect) yields
//     nothing. A message that cannot be decrypted yields a decrypt_error
//     Item and is still done with: acknowledging it keeps one poisoned
//     message from blocking the inbox forever; the sender's session is
//     repaired by its next prekey message. If the sender's identity key
//     changed and the server lists the new key, the new key is trusted
//     (WarnIdentityChanged) and decryption retried.
//   - device_list: sessions with devices of User that no longer exist, or
//     whose identity key changed, are dropped; passed through.
//   - message with a sender-key ciphertext (groups): decrypted with the
//     sender's sender key; a pairwise message carrying a sender key
//     ("skdm") stores it before its text is shown.
//   - group_event: a group_event Item; removed, left and deleted retire
//     this device's sender key for the group.
//   - receipt, expired: passed through.
//   - prekeys_low: noted; the next Receive batch (or MaintainKeys)
//     uploads more one-time prekeys. Yields nothing.
//   - caught_up, accepted, sent, error: yield nothing.
func (a *Account) Process(ctx context.Context, ev wire.Event) (item Item, ok bool, err error) {
	switch ev.Type {
	case wire.EventMessage:
		return a.processMessage(ctx, ev)
	case wire.EventReceipt:
		return Item{Type: ItemReceipt, ID: ev.ID, Conversation: ev.Conversation, Seq: ev.Seq,
			Status: ev.Status, By: ev.By, ByDevice: ev.ByDevice, Group: ev.Group, Count: ev.Count}, true, nil
	case wire.EventGroup:
		return a.processGroupEvent(ctx, ev)
	case wire.EventDeviceList:
		if err := a.syncDeviceList(ctx, ev.User); err != nil {
			return Item{}, false, err
		}
		return Item{Type: ItemDeviceList, ID: ev.ID, User: ev.User}, true, nil
	case wire.EventExpired:
		return Item{Type: ItemExpired, ID: ev.ID, Conversation: ev.Conversation,
			FromSeq: ev.FromSeq, ToSeq: ev.ToSeq}, true, nil
	case wire.EventPreKeysLow:
		a.mu.Lock()
		a.preKeysLow = ev.Count
		a.mu.Unlock()
		return Item{}, false, nil
	case wire.EventSent, wire.EventError:
		if ev.ID == 0 {
			return Item{}, false, nil // live answers to socket sends
		}
		if ev.Type == wire.EventSent {
			return Item{Type: ItemSent, ID: ev.ID, Conversation: ev.Conversation, Seq: ev.Seq, ClientID: ev.ClientID}, true, nil
		}
		return Item{Type: ItemSendError, ID: ev.ID, Conversation: ev.Conversation, ClientID: ev.ClientID, Code: ev.Code,
			Err: &wire.Error{Code: ev.Code, Message: ev.Message, Missing: ev.Missing, Extra: ev.Extra}}, true, nil
	case wire.EventCaughtUp, wire.EventAccepted:
		return Item{}, false, nil
	}
	if ev.ID > 0 {
		return Item{Type: ev.Type, ID: ev.ID, Conversation: ev.Conversation, Seq: ev.Seq}, true, nil
	}
	return Item{}, false, nil
}

func (a *Account) processMessage(ctx context.Context, ev wire.Event) (Item, bool, error) {
	item := Item{Type: ItemMessage, ID: ev.ID, Conversation: ev.Conversation, Seq: ev.Seq,
		From: ev.From, FromDevice: ev.FromDevice, Group: ev.Group}
	if ev.SentAt != nil {
		item.SentAt = *ev.SentAt
	}
	fail := func(err error) (Item, bool, error) {
		item.Type, item.Err = ItemDecryptError, err
		return item, true, nil
	}
	if ev.CiphertextType == wire.CiphertextSenderKey {
		return a.processSenderKeyMessage(ctx, ev, item)
	}
	if ev.CiphertextType != wire.CiphertextPreKey && ev.CiphertextType != wire.CiphertextWhisper {
		return fail(fmt.Errorf("unsupported ciphertext type %q", ev.CiphertextType))
	}
	if ev.From == "" || ev.FromDevice == 0 {
		return fail(errors.New("message without sender"))
	}
	from := e2ee.Address{User: ev.From, Device: ev.FromDevice}
	pt, err := a.store.Decrypt(ctx, from, ev.CiphertextType, ev.Body)
	if errors.Is(err, e2ee.ErrIdentityChanged) {
		changed, rerr := a.adoptServerIdentity(ctx, from)
		if rerr != nil {
			return Item{}, false, rerr
		}
		if changed {
			pt, err = a.store.Decrypt(ctx, from, ev.CiphertextType, ev.Body)
		}
	}
	switch {
	case err == nil:
	case errors.Is(err, e2ee.ErrDuplicate):
		return Item{}, false, nil
	case undecryptable(err):
		return fail(err)
	default:
		// The store failed (or ctx ended), not the message: leave the event
		// pending so that it is decrypted on the next try.
		return Item{}, false, err
	}
	if ev.CiphertextType == wire.CiphertextPreKey {
		// It may have used up one of this device's one-time prekeys.
		a.mu.Lock()
		a.preKeysUsed = true
		a.mu.Unlock()
	}
	c, err := ParseContent(pt)
	if err != nil {
		return fail(err)
	}
	if err := a.acceptGroupContent(ctx, ev, from, c); err != nil {
		return fail(err)
	}
	item.Text = c.Text
	return item, true, nil
}

// undecryptable reports whether a Decrypt error is the message's fault
// (it will fail again however often it is tried) rather than the store's.
func undecryptable(err error) bool {
	for _, e := range []error{e2ee.ErrInvalidMessage, e2ee.ErrNoSession, e2ee.ErrIdentityChanged,
		e2ee.ErrBadKey, e2ee.ErrBadSignature} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// adoptServerIdentity trusts the identity key the server lists for addr if
// it differs from the trusted one (dropping the session), and reports
// whether it did.
func (a *Account) adoptServerIdentity(ctx context.Context, addr e2ee.Address) (bool, error) {
	ud, err := a.api.UserDevices(ctx, addr.User)
	if err != nil {
		if IsCode(err, wire.CodeUnknownUser) {
			return false, nil
		}
		return false, err
	}
	for _, d := range ud.Devices {
		if d.DeviceID != addr.Device {
			continue
		}
		trusted, err := a.store.TrustedIdentity(ctx, addr)
		if err != nil || bytes.Equal(trusted, d.IdentityKey) {
			return false, err
		}
		if err := a.store.ReplaceIdentity(ctx, addr, d.IdentityKey); err != nil {
			return false, err
		}
		a.warnIdentityChanged(addr)
		return true, nil
	}
	return false, nil
}

// syncDeviceList drops sessions with devices of user that no longer exist
// or whose identity key is no longer the trusted one (the next send claims
// a new bundle and trusts the new key, with a warning). Failing to fetch
// the list is only a warning: stale sessions are harmless, since every
// send fetches the lists afresh, and an unreachable user must not block
// this device's inbox.
func (a *Account) syncDeviceList(ctx context.Context, user string) error {
	if user == "" {
		return nil
	}
	ud, err := a.api.UserDevices(ctx, user)
	if err != nil && !IsCode(err, wire.CodeUnknownUser) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.warn(Warning{Kind: WarnDeviceList, User: user,
			Message: fmt.Sprintf("could not refresh the device list of %s: %v", user, err)})
		return nil
	}
	keys := map[uint32][]byte{}
	var highest uint32
	for _, d := range ud.Devices {
		keys[d.DeviceID] = d.IdentityKey
		highest = max(highest, d.DeviceID)
	}
	for dev := uint32(1); dev <= highest+deviceProbe; dev++ {
		addr := e2ee.Address{User: user, Device: dev}
		if addr == a.self() {
			continue
		}
		key, exists := keys[dev]
		if exists {
			trusted, err := a.store.TrustedIdentity(ctx, addr)
			if err != nil {
				return err
			}
			if trusted == nil || bytes.Equal(trusted, key) {
				continue
			}
		}
		has, err := a.store.HasSession(ctx, addr)
		if err != nil {
			return err
		}
		if has {
			if err := a.store.DeleteSession(ctx, addr); err != nil {
				return err
			}
		}
	}
	return nil
}

// MaintainKeys uploads more one-time prekeys if a prekeys_low event, or
// the decryption of prekey messages, since the last check says the server
// may hold fewer than wire.PreKeyLowThreshold. Receive calls it; callers
// that use Process directly should call it after each batch of events.
func (a *Account) MaintainKeys(ctx context.Context) error { return a.maintainKeys(ctx) }

// ReceiveOptions configures Receive.
type ReceiveOptions struct {
	// Until: after caught_up, keep receiving live events until this time.
	// Zero: return at caught_up. Pending events are always received in
	// full first (unless ctx ends).
	Until time.Time
	// MarkRead sends read markers for the messages handed to fn: one per
	// conversation, up to its highest seq, at caught_up and then after
	// each burst of live events. Copies of this user's own messages (sent
	// from its other devices) are not marked: nobody reads them.
	MarkRead bool
}

// ackBatch: pending events are acknowledged at least every ackBatch events,
// so that a long backlog is not all delivered again after a crash.
const ackBatch = 100

// Receive connects, processes every event with Process and hands the items
// to fn in order. An inbox event is acknowledged (POST /v1/inbox/ack) only
// after fn returned nil for its item, so what fn did not handle comes
// again. At caught_up it checks the device's keys on the server
// (EnsureKeys); later it replenishes prekeys when they run low. Failures
// of key upkeep are reported as WarnKeys warnings, not errors.
//
// It returns nil at caught_up (or, with Until, when that time has come),
// ctx's error when ctx ends first (after acknowledging what fn handled),
// fn's error, or the connection's error if it breaks.
func (a *Account) Receive(ctx context.Context, opts ReceiveOptions, fn func(Item) error) (err error) {
	if err := a.uploadNewIdentity(ctx); err != nil {
		return err
	}
	conn, err := a.api.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()

	var (
		acks      []int64
		reads     = map[string]uint64{}
		readOrder []string
		caughtUp  bool
		until     <-chan time.Time
	)
	flush := func(ctx context.Context, withReads bool) error {
		if err := a.api.Ack(ctx, acks); err != nil {
			return err
		}
		acks = acks[:0]
		if withReads {
			for _, conv := range readOrder {
				if err := a.api.MarkRead(ctx, conv, reads[conv]); err != nil && !readMarkerGone(conv, err) {
					return err
				}
			}
			clear(reads)
			readOrder = readOrder[:0]
		}
		return nil
	}
	// Whatever ends the loop, acknowledge what fn handled, even when ctx
	// has ended: that is the cheapest way not to show it twice.
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if ferr := flush(fctx, true); ferr != nil && err == nil {
			err = ferr
		}
	}()
	keys := func(check func(context.Context) error) {
		if kerr := check(ctx); kerr != nil && ctx.Err() == nil {
			a.warn(Warning{Kind: WarnKeys, Message: "could not upload this device's keys: " + kerr.Error()})
		}
	}

	for {
		var ev wire.Event
		var open bool
		select {
		case ev, open = <-conn.Events():
			if !open {
				if cerr := conn.Err(); cerr != nil {
					return cerr
				}
				return errors.New("client: websocket closed")
			}
		case <-until:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		if ev.Type == wire.EventCaughtUp {
			caughtUp = true
			if err := flush(ctx, true); err != nil {
				return err
			}
			keys(a.EnsureKeys)
			if opts.Until.IsZero() || !time.Now().Before(opts.Until) {
				return nil
			}
			t := time.NewTimer(time.Until(opts.Until))
			defer t.Stop()
			until = t.C
			continue
		}
		item, ok, err := a.Process(ctx, ev)
		if err != nil {
			return err
		}
		if ok && item.Type == ItemSent {
			// The answer to a send still being retried (by Send, here or
			// in another process) stays unacknowledged: it is what makes
			// the server recognise the retry. It comes again on the next
			// connection.
			inFlight, err := a.store.SendInFlight(ctx, item.ClientID, sendInFlightFor)
			if err != nil {
				return err
			}
			if inFlight {
				ok, ev.ID = false, 0
			}
		}
		if ok {
			if err := fn(item); err != nil {
				return err
			}
			if opts.MarkRead && item.Type == ItemMessage && item.Conversation != "" && item.From != a.file.UserID {
				if _, seen := reads[item.Conversation]; !seen {
					readOrder = append(readOrder, item.Conversation)
				}
				reads[item.Conversation] = max(reads[item.Conversation], item.Seq)
			}
		}
		if ev.ID > 0 {
			acks = append(acks, ev.ID)
		}
		switch {
		case caughtUp && len(conn.Events()) == 0:
			// End of a burst of live events.
			if err := flush(ctx, true); err != nil {
				return err
			}
			keys(a.maintainKeys)
		case len(acks) >= ackBatch:
			if err := flush(ctx, caughtUp); err != nil {
				return err
			}
		}
	}
}
