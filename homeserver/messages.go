package homeserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"unicode/utf8"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// Send stores a message durably, gives it the next sequence number of its
// conversation and puts one inbox entry per recipient device: the
// recipient's devices (or every member's, in a group) and the sender's
// other devices. It returns only after the commit, so "accepted" is never
// said of a message that could be lost. A repeated client id returns the
// first send's result and stores nothing.
func (s *Server) Send(ctx context.Context, c Caller, req wire.SendRequest) (wire.SendResult, error) {
	if err := checkSend(req); err != nil {
		return wire.SendResult{}, err
	}
	if IsGroupID(req.To) {
		return s.sendGroup(ctx, c, req)
	}
	if req.Shared != nil {
		return wire.SendResult{}, invalid("shared", "a shared ciphertext is for groups only")
	}
	to, local, err := s.user("to", req.To)
	if err != nil {
		return wire.SendResult{}, err
	}
	if !local {
		return s.sendDirectRemote(ctx, c, req, to)
	}
	convID := DirectConversationID(c.UserID, to)
	// The common path costs two device queries: an account's existence is
	// only asked when it has no device with keys, and the conversation is
	// only created when sequencing finds none (sequence's create).
	return s.store1(ctx, c, req, convID, func(tx storage.Tx) error {
		want := deviceSet{}
		for _, u := range []string{to, c.UserID} {
			devs, err := tx.KeyedDevices(u)
			if err != nil {
				return err
			}
			if len(devs) == 0 && u == to {
				if _, err := tx.Account(to); notFound(err) {
					return refuse(wire.CodeUnknownUser, "%s does not exist", to)
				} else if err != nil {
					return err
				}
			}
			for _, d := range devs {
				want[deviceAddr{User: u, Device: d}] = struct{}{}
			}
		}
		delete(want, deviceAddr{User: c.UserID, Device: c.DeviceID})
		return checkCoverage(want, req)
	}, func(tx storage.Tx) error {
		return s.ensureDirect(tx, convID, s.opts.Domain, c.UserID, to)
	})
}

type sequencedKey struct{}

// WithSequenced returns a context for Send that calls f as soon as the
// send's place among the caller's sends is fixed: for a message sequenced
// here, once its Write is queued behind the caller's earlier ones, before
// the commit. For any other send (one forwarded to a remote hub, or
// refused before it is stored) f is not called; the caller treats Send's
// return as that moment. A socket uses it to read a device's next frame
// while this send waits for its commit: the device's messages keep the
// order it sent them in, and one device's sends share commits.
func WithSequenced(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, sequencedKey{}, f)
}

// withoutSequenced is ctx for a send whose Write may be retried after
// another step (its place is fixed only when Send returns).
func withoutSequenced(ctx context.Context) context.Context {
	if ctx.Value(sequencedKey{}) == nil {
		return ctx
	}
	return context.WithValue(ctx, sequencedKey{}, (func())(nil))
}

// store1 is the part of a send common to every conversation: inside one
// Write it answers a retried client id, runs check (authorization, device
// coverage, creating the conversation), then sequences the message.
func (s *Server) store1(ctx context.Context, c Caller, req wire.SendRequest, convID string, check, create func(storage.Tx) error) (wire.SendResult, error) {
	// Everything that does not need the database is prepared here, outside
	// the writer: JSON and base64 of the ciphertexts cost more than the SQL.
	p := s.prepare(outgoing{conv: convID, sender: c.UserID, senderDevice: c.DeviceID, clientID: req.ClientID,
		envelopes: req.Envelopes, shared: req.Shared, sentAt: s.now(), create: create, answer: true})
	var res wire.SendResult
	var dests []string
	wctx := ctx
	if f, _ := ctx.Value(sequencedKey{}).(func()); f != nil {
		wctx = storage.WithQueued(ctx, f)
	}
	// A retried client id is caught by the unique key of the answer's
	// inbox entry (and a group message's record) rather than looked up
	// before every send: the retry's transaction fails with
	// errSeenClientID (and is rolled back alone), and the first send's
	// result is read after it.
	err := s.store.Write(wctx, func(tx storage.Tx) error {
		dests = nil
		if err := check(tx); err != nil {
			// A retry of a message already stored is answered as it was,
			// even if the check would refuse it now (its device list changed).
			if prev, perr := priorSend(tx, c.UserID, c.DeviceID, req.ClientID); perr == nil {
				res, err = retried(prev, convID, req.ClientID)
			}
			return err
		}
		seq, d, err := s.sequence(tx, p)
		if conflict(err) {
			return errSeenClientID
		}
		dests = d
		res = wire.SendResult{ClientID: req.ClientID, Conversation: convID, Seq: seq, SentAt: p.sentAt, Status: wire.SendSent}
		return err
	})
	if errors.Is(err, errSeenClientID) {
		var prev storage.Send
		err = s.store.Read(ctx, func(tx storage.Tx) (err error) {
			prev, err = priorSend(tx, c.UserID, c.DeviceID, req.ClientID)
			return err
		})
		if err == nil {
			res, err = retried(prev, convID, req.ClientID)
		}
	}
	if err != nil {
		return wire.SendResult{}, internal(ctx, err)
	}
	s.wakeOutbox(dests)
	return res, nil
}

// errSeenClientID: a send's client id is already stored (a retry).
var errSeenClientID = errors.New("homeserver: client id already stored")

// priorSend finds the first send of a device's client id: a local
// device's by the answer waiting in its inbox, a remote sender's direct
// message in sends, a group message (or a direct message stored before
// either existed) by its message record. ErrNotFound if there is none.
func priorSend(tx storage.Tx, user string, device uint32, clientID string) (storage.Send, error) {
	if e, err := tx.SentAnswer(user, device, clientID); err == nil {
		var ev wire.Event
		if err := json.Unmarshal(e.Payload, &ev); err != nil || ev.SentAt == nil {
			return storage.Send{}, fmt.Errorf("homeserver: the answer to %q is unreadable: %v", clientID, err)
		}
		return storage.Send{UserID: user, DeviceID: device, ClientID: clientID, Conversation: e.Conversation,
			Seq: e.Seq, SentAt: *ev.SentAt, ExpiresAt: e.ExpiresAt}, nil
	} else if !notFound(err) {
		return storage.Send{}, err
	}
	if prev, err := tx.SendByClientID(user, device, clientID); !notFound(err) {
		return prev, err
	}
	m, err := tx.MessageByClientID(user, device, clientID)
	return storage.Send{UserID: user, DeviceID: device, ClientID: clientID, Conversation: m.Conversation,
		Seq: m.Seq, SentAt: m.SentAt, ExpiresAt: m.ExpiresAt}, err
}

// retried answers a retried send as its first send was answered, or
// refuses a client id reused for another conversation.
func retried(prev storage.Send, convID, clientID string) (wire.SendResult, error) {
	if prev.Conversation != convID {
		return wire.SendResult{}, refuse(wire.CodeClientIDReused, "client_id %q was used for another conversation", clientID)
	}
	return wire.SendResult{ClientID: clientID, Conversation: convID, Seq: prev.Seq, SentAt: prev.SentAt, Status: wire.SendSent,
		Repeated: true}, nil
}

// outgoing is one message to sequence, from a local device or forwarded
// by a participant server to us as the hub.
type outgoing struct {
	conv         string
	sender       string
	senderDevice uint32
	clientID     string
	envelopes    []wire.Envelope
	shared       *wire.Shared
	sentAt       time.Time
	// create makes the conversation's record when sequencing finds none
	// (nil: it must exist).
	create func(storage.Tx) error
	// answer: the sender is a local device, which gets the answer (the
	// message's seq) as an EntrySent entry in its inbox; the entry also
	// recognises a retry of the client id while the device has not
	// acknowledged it.
	answer bool
}

// prepared is an outgoing message with its events encoded (without seq).
type prepared struct {
	outgoing
	expires  time.Time
	payloads [][]byte // one per envelope
	sharedEv []byte   // for the shared ciphertext's devices (the body is joined on read)
	sentEv   []byte   // the answer, for the sending device (with answer)
}

func (s *Server) prepare(o outgoing) prepared {
	o.sentAt = o.sentAt.UTC().Truncate(time.Millisecond) // what storage keeps, so a retry answers the same
	p := prepared{outgoing: o, expires: o.sentAt.Add(s.opts.Retention)}
	group := ""
	if IsGroupID(o.conv) {
		group = o.conv
	}
	ev := wire.Event{Type: wire.EventMessage, Conversation: o.conv, Group: group, From: o.sender,
		FromDevice: o.senderDevice, SentAt: &p.sentAt}
	p.payloads = make([][]byte, len(o.envelopes))
	for i, e := range o.envelopes {
		ev.CiphertextType, ev.Body = e.Type, e.Body
		p.payloads[i] = mustEvent(ev)
	}
	if o.shared != nil {
		ev.CiphertextType, ev.Body = o.shared.Type, nil
		p.sharedEv = mustEvent(ev)
	}
	if o.answer {
		p.sentEv = mustEvent(wire.Event{Type: wire.EventSent, ClientID: o.clientID, Conversation: o.conv, SentAt: &p.sentAt})
	}
	return p
}

// sequence gives p the conversation's next seq, records it, and routes
// its ciphertexts: local devices get inbox entries, each other homeserver
// one queued message item with its devices' ciphertexts (a shared one
// once). It returns the destinations to wake.
func (s *Server) sequence(tx storage.Tx, p prepared) (uint64, []string, error) {
	seq, err := tx.NextSeq(p.conv)
	if notFound(err) && p.create != nil {
		if err := p.create(tx); err != nil {
			return 0, nil, err
		}
		seq, err = tx.NextSeq(p.conv)
	}
	if err != nil {
		return 0, nil, err
	}
	if p.answer && !IsGroupID(p.conv) && p.sentAt.Before(s.legacySends) {
		// A retry of a send made before the upgrade to answer entries.
		if _, err := tx.SendByClientID(p.sender, p.senderDevice, p.clientID); err == nil {
			return 0, nil, fmt.Errorf("homeserver: %w: client id recorded before the upgrade", storage.ErrConflict)
		} else if !notFound(err) {
			return 0, nil, err
		}
	}
	msgID, sharedPayload, err := record(tx, p, seq)
	if err != nil {
		return 0, nil, err
	}
	entry := storage.InboxEntry{Kind: storage.EntryMessage, Conversation: p.conv, Seq: seq, MessageID: msgID,
		Sender: p.sender, ExpiresAt: p.expires}
	entries := make([]storage.InboxEntry, 0, 1+len(p.envelopes)+deviceCount(p.shared))
	if p.answer {
		entries = append(entries, storage.InboxEntry{UserID: p.sender, DeviceID: p.senderDevice, Kind: storage.EntrySent,
			Conversation: p.conv, Seq: seq, ClientID: p.clientID, ExpiresAt: p.expires, Payload: withSeq(p.sentEv, seq)})
	}
	remote := map[string]*wire.FedItem{}
	var dests []string
	remoteItem := func(user string) *wire.FedItem {
		d := DomainOf(user)
		it := remote[d]
		if it == nil {
			sentAt := p.sentAt
			it = &wire.FedItem{Kind: wire.FedMessage, Conversation: p.conv, Seq: seq, Sender: p.sender,
				SenderDevice: p.senderDevice, ClientID: p.clientID, SentAt: &sentAt}
			if IsGroupID(p.conv) {
				it.Group = p.conv
			}
			remote[d] = it
			dests = append(dests, d)
		}
		return it
	}
	for i, e := range p.envelopes {
		if !s.isLocal(e.User) {
			it := remoteItem(e.User)
			it.Envelopes = append(it.Envelopes, e)
			continue
		}
		entry.UserID, entry.DeviceID, entry.Payload = e.User, e.Device, withSeq(p.payloads[i], seq)
		entries = append(entries, entry)
	}
	if p.shared != nil {
		payload := sharedPayload
		entry.SharedBody = p.shared.Body
		for _, d := range p.shared.Devices {
			if !s.isLocal(d.User) {
				it := remoteItem(d.User)
				if it.Shared == nil {
					it.Shared = &wire.Shared{Type: p.shared.Type, Body: p.shared.Body}
				}
				it.Shared.Devices = append(it.Shared.Devices, d)
				continue
			}
			entry.UserID, entry.DeviceID, entry.Payload = d.User, d.Device, payload
			entries = append(entries, entry)
		}
	}
	if err := tx.InsertInbox(entries); err != nil {
		return 0, nil, err
	}
	for _, d := range dests {
		if err := s.enqueue(tx, d, *remote[d]); err != nil {
			return 0, nil, err
		}
	}
	return seq, dests, nil
}

// record keeps what must outlive a sequenced message's inbox entries. A
// group message is recorded whole (its shared ciphertext and event, its
// delivered count and sender, for receipts); a direct one only by its
// client id, since its inbox entries name the sender: by the answer's
// entry when the sender is ours (nothing here), in sends otherwise. It
// returns the message record's id (0 for none) and the shared event with
// its seq. ErrConflict: the client id (or group seq) is recorded already.
func record(tx storage.Tx, p prepared, seq uint64) (int64, []byte, error) {
	switch {
	case IsGroupID(p.conv):
		m := storage.Message{Conversation: p.conv, Seq: seq, Sender: p.sender, SenderDevice: p.senderDevice,
			ClientID: p.clientID, SentAt: p.sentAt, ExpiresAt: p.expires}
		var shared []byte
		if p.shared != nil {
			shared = withSeq(p.sharedEv, seq)
			m.Body, m.BodyType, m.Event = p.shared.Body, p.shared.Type, shared
		}
		id, err := tx.InsertMessage(m)
		return id, shared, err
	case !p.answer:
		return 0, nil, tx.InsertSend(storage.Send{UserID: p.sender, DeviceID: p.senderDevice, ClientID: p.clientID,
			Conversation: p.conv, Seq: seq, SentAt: p.sentAt, ExpiresAt: p.expires})
	}
	return 0, nil, nil
}

func deviceCount(sh *wire.Shared) int {
	if sh == nil {
		return 0
	}
	return len(sh.Devices)
}

func checkSend(req wire.SendRequest) error {
	if req.ClientID == "" || len(req.ClientID) > wire.MaxClientIDLen || !printableASCII(req.ClientID) {
		return invalid("client_id", "client_id is 1-%d printable ASCII characters", wire.MaxClientIDLen)
	}
	if len(req.Envelopes)+deviceCount(req.Shared) > wire.MaxEnvelopes {
		return invalid("envelopes", "at most %d recipient devices per send", wire.MaxEnvelopes)
	}
	for i, e := range req.Envelopes {
		field := "envelopes[" + strconv.Itoa(i) + "]"
		switch e.Type {
		case wire.CiphertextPreKey, wire.CiphertextWhisper:
		default:
			return invalid(field+".type", "type must be %q or %q", wire.CiphertextPreKey, wire.CiphertextWhisper)
		}
		if err := checkBody(field+".body", e.Body); err != nil {
			return err
		}
	}
	if sh := req.Shared; sh != nil {
		if sh.Type != wire.CiphertextSenderKey {
			return invalid("shared.type", "type must be %q", wire.CiphertextSenderKey)
		}
		if err := checkBody("shared.body", sh.Body); err != nil {
			return err
		}
	}
	return nil
}

func checkBody(field string, b []byte) error {
	if len(b) == 0 {
		return invalid(field, "empty ciphertext")
	}
	if len(b) > wire.MaxEnvelopeBytes {
		return &Error{Code: wire.CodeTooLarge, Field: field,
			Message: "a ciphertext is at most " + strconv.Itoa(wire.MaxEnvelopeBytes) + " bytes"}
	}
	return nil
}

// checkCoverage requires the envelopes and the shared ciphertext's devices
// to cover exactly the wanted devices, once each. A stale list is refused
// with what to add and remove, as Signal does, so the client fetches
// bundles and retries instead of a device silently missing messages.
func checkCoverage(want deviceSet, req wire.SendRequest) error {
	got := deviceSet{}
	var extra []deviceAddr
	add := func(field string, a deviceAddr) error {
		if _, dup := got[a]; dup {
			return invalid(field, "two ciphertexts for %s device %d", a.User, a.Device)
		}
		got[a] = struct{}{}
		if _, ok := want[a]; !ok {
			extra = append(extra, a)
		}
		return nil
	}
	for i, e := range req.Envelopes {
		if err := add("envelopes["+strconv.Itoa(i)+"]", deviceAddr{User: e.User, Device: e.Device}); err != nil {
			return err
		}
	}
	if req.Shared != nil {
		for i, d := range req.Shared.Devices {
			if err := add("shared.devices["+strconv.Itoa(i)+"]", d); err != nil {
				return err
			}
		}
	}
	var missing []deviceAddr
	for a := range want {
		if _, ok := got[a]; !ok {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return nil
	}
	sortAddrs(missing)
	sortAddrs(extra)
	return &Error{Code: wire.CodeStaleDevices, Message: "the ciphertexts do not match the current device lists",
		Missing: missing, Extra: extra}
}

func sortAddrs(a []deviceAddr) {
	slices.SortFunc(a, func(x, y deviceAddr) int {
		if x.User != y.User {
			if x.User < y.User {
				return -1
			}
			return 1
		}
		return int(x.Device) - int(y.Device)
	})
}

// InboxEvent is one pending inbox entry. It is encoded only when written
// (JSON), by whoever writes it: a socket's own goroutine, not the commit
// path that hands out new entries.
type InboxEvent struct {
	ID      int64
	payload []byte // the event without its id (and without a shared body)
	shared  []byte // a group message's shared ciphertext, stored once
}

func inboxEvent(e storage.InboxEntry) InboxEvent {
	return InboxEvent{ID: e.ID, payload: e.Payload, shared: e.SharedBody}
}

// JSON encodes the event as the device receives it.
func (e InboxEvent) JSON() []byte {
	js := e.payload
	if len(js) < 2 {
		// A member's row of a group message whose record is gone: the
		// event is lost, but the id still has to be acknowledged.
		js = []byte("{}")
	}
	if e.shared != nil {
		js = withBody(js, e.shared)
	}
	return withField(js, "id", e.ID)
}

// Inbox returns up to limit pending events of the caller's device after id
// `after`, in order, and whether more are pending.
func (s *Server) Inbox(ctx context.Context, c Caller, after int64, limit int) ([]InboxEvent, bool, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var entries []storage.InboxEntry
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		entries, err = tx.InboxEvents(c.UserID, c.DeviceID, after, limit+1)
		return err
	})
	if err != nil {
		return nil, false, internal(ctx, err)
	}
	more := len(entries) > limit
	if more {
		entries = entries[:limit]
	}
	out := make([]InboxEvent, len(entries))
	for i, e := range entries {
		out[i] = inboxEvent(e)
	}
	return out, more, nil
}

// inboxAdded is the storage listener: it hands each committed entry to the
// notifier, in commit order, so connected devices get new events without
// reading them back.
func (s *Server) inboxAdded(added []storage.InboxEntry) {
	for _, e := range added {
		s.notify.InboxAdded(e.UserID, e.DeviceID, inboxEvent(e))
	}
}

// MarkRead records that the caller read a conversation up to seq. In a
// direct conversation the other member's devices get a "read" receipt. In
// a group, each member who sent messages in the newly read range gets one
// aggregated receipt per device: up to which of its messages, and how many
// members have read that far. A 1,024-member group thus never sends 1,023
// receipts one by one to a sender's devices: an unread summary is replaced
// by the newer one.
func (s *Server) MarkRead(ctx context.Context, c Caller, req wire.ReadRequest) error {
	if req.Conversation == "" || len(req.Conversation) > 128 {
		return invalid("conversation", "conversation id required")
	}
	if req.Seq == 0 {
		return invalid("seq", "seq must be at least 1")
	}
	var dests []string
	err := s.store.WriteLowPriority(ctx, func(tx storage.Tx) error {
		dests = nil
		conv, err := tx.Conversation(req.Conversation)
		if notFound(err) {
			return refuse(wire.CodeNotFound, "no conversation %q", req.Conversation)
		} else if err != nil {
			return err
		}
		members, err := tx.Members(conv.ID)
		if err != nil {
			return err
		}
		if !slices.Contains(members, c.UserID) {
			// Same answer as for a missing conversation: do not confirm it exists.
			return refuse(wire.CodeNotFound, "no conversation %q", req.Conversation)
		}
		if req.Seq > conv.LastSeq {
			return invalid("seq", "conversation has no seq %d yet (last is %d)", req.Seq, conv.LastSeq)
		}
		prev, advanced, err := tx.AdvanceReadMarker(c.UserID, conv.ID, req.Seq)
		if err != nil || !advanced {
			return err
		}
		var receipts []storage.InboxEntry
		if conv.Kind == storage.KindGroup {
			senders, err := tx.SendersBetween(conv.ID, prev, req.Seq, c.UserID)
			if err != nil {
				return err
			}
			// One summary per sender and commit, counted after every read
			// marker in the commit has moved.
			for _, sd := range senders {
				tx.Finally("read "+conv.ID+" "+sd.Sender, func(tx storage.Tx) error {
					n, err := tx.CountReadersAtLeast(conv.ID, sd.Seq, sd.Sender)
					if err != nil {
						return err
					}
					payload := mustEvent(wire.Event{Type: wire.EventReceipt, Status: wire.StatusRead,
						Conversation: conv.ID, Group: conv.ID, Seq: sd.Seq, Count: n})
					return s.replaceSummary(tx, sd.Sender, conv.ID, sd.Seq, storage.EntryReadSummary, payload)
				})
			}
			return nil
		}
		payload := mustEvent(wire.Event{Type: wire.EventReceipt, Status: wire.StatusRead,
			Conversation: conv.ID, Seq: req.Seq, By: c.UserID})
		for _, m := range members {
			if m == c.UserID {
				continue
			}
			if !s.isLocal(m) {
				d := DomainOf(m)
				dests = append(dests, d)
				if err := s.enqueue(tx, d, wire.FedItem{Kind: wire.FedReceipt, Status: wire.StatusRead,
					Conversation: conv.ID, Seq: req.Seq, By: c.UserID, User: m}); err != nil {
					return err
				}
				continue
			}
			r, err := s.receiptEntries(tx, m, conv.ID, req.Seq, storage.EntryReceipt, payload)
			if err != nil {
				return err
			}
			receipts = append(receipts, r...)
		}
		return tx.InsertInbox(receipts)
	})
	if err != nil {
		return internal(ctx, err)
	}
	s.wakeOutbox(dests)
	return nil
}

// replaceSummary replaces any pending summary of the same kind for the
// user's devices by a new one. It runs in a Finally function: once per
// commit, however many acknowledgements or read markers in it changed
// the count.
func (s *Server) replaceSummary(tx storage.Tx, user, conv string, seq uint64, kind string, payload []byte) error {
	devs, err := tx.KeyedDevices(user)
	if err != nil {
		return err
	}
	// A device that still has a summary of a later message keeps it: an
	// acknowledgement or read marker of an older message, arriving after,
	// must not turn it back.
	fresh := devs[:0:0]
	for _, d := range devs {
		newer, err := tx.ReplaceSummary(user, d, kind, conv, seq)
		if err != nil {
			return err
		}
		if !newer {
			fresh = append(fresh, d)
		}
	}
	return tx.InsertInbox(s.deviceEntries(user, fresh, conv, seq, kind, payload))
}

// receiptEntries builds one entry of payload (a receipt, a group event, a
// device-list notice) for every device of user.
func (s *Server) receiptEntries(tx storage.Tx, user, conv string, seq uint64, kind string, payload []byte) ([]storage.InboxEntry, error) {
	devs, err := tx.KeyedDevices(user)
	if err != nil {
		return nil, err
	}
	return s.deviceEntries(user, devs, conv, seq, kind, payload), nil
}

// deviceEntries builds one entry of payload for each of user's devs.
func (s *Server) deviceEntries(user string, devs []uint32, conv string, seq uint64, kind string, payload []byte) []storage.InboxEntry {
	expires := s.now().Add(s.opts.Retention)
	entries := make([]storage.InboxEntry, 0, len(devs))
	for _, d := range devs {
		entries = append(entries, storage.InboxEntry{UserID: user, DeviceID: d, Kind: kind,
			Conversation: conv, Seq: seq, ExpiresAt: expires, Payload: payload})
	}
	return entries
}

// withSeq puts "seq":N into an encoded event.
func withSeq(payload []byte, seq uint64) []byte {
	return withField(payload, "seq", int64(seq))
}

// withBody puts "body":"BASE64" into an encoded event.
func withBody(obj, body []byte) []byte {
	n := base64.StdEncoding.EncodedLen(len(body))
	out := make([]byte, 0, len(obj)+n+10)
	out = append(out, `{"body":"`...)
	out = base64.StdEncoding.AppendEncode(out, body)
	out = append(out, '"')
	if len(obj) > 2 {
		out = append(out, ',')
	}
	return append(out, obj[1:]...)
}

func withField(obj []byte, name string, v int64) []byte {
	out := make([]byte, 0, len(obj)+len(name)+24)
	out = append(out, '{', '"')
	out = append(out, name...)
	out = append(out, '"', ':')
	out = strconv.AppendInt(out, v, 10)
	if len(obj) > 2 {
		out = append(out, ',')
	}
	return append(out, obj[1:]...)
}

// mustEvent encodes an event the server builds itself (without
// reflection: wire.EncodeEvent).
func mustEvent(ev wire.Event) []byte {
	b, err := wire.EncodeEvent(&ev)
	if err != nil {
		panic("homeserver: encoding an event: " + err.Error())
	}
	return b
}

// mustJSON encodes another value the server builds itself.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("homeserver: encoding " + fmt.Sprintf("%T", v) + ": " + err.Error())
	}
	return b
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return utf8.ValidString(s)
}
