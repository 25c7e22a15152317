package homeserver

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"unicode/utf8"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// Send stores a direct message durably, gives it the next sequence number
// of its conversation and puts one inbox entry per recipient device (the
// recipient's devices and the sender's other devices). It returns only after
// the commit, so "accepted" is never said of a message that could be lost.
// A repeated client id returns the first send's result and stores nothing.
func (s *Server) Send(ctx context.Context, c Caller, req wire.SendRequest) (wire.SendResult, error) {
	if err := checkSend(req); err != nil {
		return wire.SendResult{}, err
	}
	to, err := s.localUser("to", req.To)
	if err != nil {
		return wire.SendResult{}, err
	}
	convID := DirectConversationID(c.UserID, to)

	// Everything that does not need the database is prepared here, outside
	// the writer: JSON and base64 of the ciphertexts cost more than the SQL.
	sentAt := s.now().Truncate(time.Millisecond) // what storage keeps, so a retry answers the same
	expires := sentAt.Add(s.opts.Retention)
	payloads := make([][]byte, len(req.Envelopes))
	for i, e := range req.Envelopes {
		payloads[i] = mustJSON(wire.Event{Type: wire.EventMessage, Conversation: convID, From: c.UserID,
			FromDevice: c.DeviceID, CiphertextType: e.Type, Body: e.Body, SentAt: &sentAt})
	}

	var res wire.SendResult
	var woken []deviceAddr
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		woken = woken[:0]
		prev, err := tx.MessageByClientID(c.UserID, c.DeviceID, req.ClientID)
		if err == nil {
			if prev.Conversation != convID {
				return refuse(wire.CodeClientIDReused, "client_id %q was used for another conversation", req.ClientID)
			}
			res = wire.SendResult{ClientID: req.ClientID, Conversation: convID, Seq: prev.Seq, SentAt: prev.SentAt}
			return nil
		} else if !notFound(err) {
			return err
		}
		if _, err := tx.Account(to); notFound(err) {
			return refuse(wire.CodeUnknownUser, "%s does not exist", to)
		} else if err != nil {
			return err
		}
		if err := checkRecipients(tx, c, to, req.Envelopes); err != nil {
			return err
		}
		if _, err := tx.Conversation(convID); notFound(err) {
			members := []string{c.UserID, to}
			err = tx.InsertConversation(storage.Conversation{ID: convID, Kind: storage.KindDirect,
				Hub: s.opts.Domain, CreatedAt: sentAt}, members)
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		seq, err := tx.NextSeq(convID)
		if err != nil {
			return err
		}
		msgID, err := tx.InsertMessage(storage.Message{Conversation: convID, Seq: seq, Sender: c.UserID,
			SenderDevice: c.DeviceID, ClientID: req.ClientID, SentAt: sentAt, ExpiresAt: expires})
		if err != nil {
			return err
		}
		entries := make([]storage.InboxEntry, len(req.Envelopes))
		for i, e := range req.Envelopes {
			entries[i] = storage.InboxEntry{UserID: e.User, DeviceID: e.Device, Kind: storage.EntryMessage,
				Conversation: convID, Seq: seq, MessageID: msgID, ExpiresAt: expires, Payload: withSeq(payloads[i], seq)}
			woken = append(woken, deviceAddr{User: e.User, Device: e.Device})
		}
		res = wire.SendResult{ClientID: req.ClientID, Conversation: convID, Seq: seq, SentAt: sentAt}
		return tx.InsertInbox(entries)
	})
	if err != nil {
		return wire.SendResult{}, internal(ctx, err)
	}
	s.wake(woken)
	return res, nil
}

func checkSend(req wire.SendRequest) error {
	if req.ClientID == "" || len(req.ClientID) > wire.MaxClientIDLen || !printableASCII(req.ClientID) {
		return invalid("client_id", "client_id is 1-%d printable ASCII characters", wire.MaxClientIDLen)
	}
	if len(req.Envelopes) > wire.MaxEnvelopes {
		return invalid("envelopes", "at most %d envelopes per send", wire.MaxEnvelopes)
	}
	for i, e := range req.Envelopes {
		field := "envelopes[" + strconv.Itoa(i) + "]"
		switch e.Type {
		case wire.CiphertextPreKey, wire.CiphertextWhisper:
		default:
			return invalid(field+".type", "type must be %q or %q", wire.CiphertextPreKey, wire.CiphertextWhisper)
		}
		if len(e.Body) == 0 {
			return invalid(field+".body", "empty ciphertext")
		}
		if len(e.Body) > wire.MaxEnvelopeBytes {
			return &Error{Code: wire.CodeTooLarge, Field: field + ".body",
				Message: "a ciphertext is at most " + strconv.Itoa(wire.MaxEnvelopeBytes) + " bytes"}
		}
	}
	return nil
}

// checkRecipients requires the envelopes to cover exactly the devices with
// keys of the recipient and the sender's other devices, once each. A stale
// list is refused with what to add and remove, as Signal does, so the
// client fetches bundles and retries instead of a device silently missing
// messages.
func checkRecipients(tx storage.Tx, c Caller, to string, envs []wire.Envelope) error {
	want := deviceSet{}
	for _, u := range []string{to, c.UserID} {
		devs, err := tx.KeyedDevices(u)
		if err != nil {
			return err
		}
		for _, d := range devs {
			if u == c.UserID && d == c.DeviceID {
				continue
			}
			want[deviceAddr{User: u, Device: d}] = struct{}{}
		}
	}
	got := deviceSet{}
	var extra []deviceAddr
	for i, e := range envs {
		a := deviceAddr{User: e.User, Device: e.Device}
		if _, dup := got[a]; dup {
			return invalid("envelopes["+strconv.Itoa(i)+"]", "two envelopes for %s device %d", e.User, e.Device)
		}
		got[a] = struct{}{}
		if _, ok := want[a]; !ok {
			extra = append(extra, a)
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
	return &Error{Code: wire.CodeStaleDevices, Message: "the envelopes do not match the current device lists",
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

// InboxEvent is one pending inbox entry, encoded as the device receives it.
type InboxEvent struct {
	ID   int64
	JSON []byte
}

// Inbox returns up to limit pending events of the caller's device after id
// `after`, in order, and whether more are pending.
func (s *Server) Inbox(ctx context.Context, c Caller, after int64, limit int) ([]InboxEvent, bool, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var entries []storage.InboxEntry
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		entries, err = tx.Inbox(c.UserID, c.DeviceID, after, limit+1)
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
		out[i] = InboxEvent{ID: e.ID, JSON: withField(e.Payload, "id", e.ID)}
	}
	return out, more, nil
}

// MaxAckIDs bounds one acknowledgement.
const MaxAckIDs = 1000

// Ack deletes acknowledged entries from the caller's inbox and, for each
// message another user sent, queues a "delivered" receipt for the sender's
// devices, in the same commit.
func (s *Server) Ack(ctx context.Context, c Caller, ids []int64) error {
	if len(ids) > MaxAckIDs {
		return invalid("ids", "at most %d ids per acknowledgement", MaxAckIDs)
	}
	if len(ids) == 0 {
		return nil
	}
	var woken []deviceAddr
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		woken = woken[:0]
		deleted, err := tx.DeleteInbox(c.UserID, c.DeviceID, ids)
		if err != nil {
			return err
		}
		slices.SortFunc(deleted, func(a, b storage.InboxEntry) int { return cmpInt64(a.ID, b.ID) })
		var receipts []storage.InboxEntry
		for _, e := range deleted {
			if e.Kind != storage.EntryMessage || e.MessageID == 0 {
				continue
			}
			m, err := tx.Message(e.MessageID)
			if notFound(err) {
				continue // expired meanwhile: nobody to tell
			} else if err != nil {
				return err
			}
			if m.Sender == c.UserID {
				continue // a copy of our own message on another device
			}
			payload := mustJSON(wire.Event{Type: wire.EventReceipt, Status: wire.StatusDelivered,
				Conversation: m.Conversation, Seq: m.Seq, By: c.UserID, ByDevice: c.DeviceID})
			r, w, err := s.receiptEntries(tx, m.Sender, m.Conversation, m.Seq, payload)
			if err != nil {
				return err
			}
			receipts = append(receipts, r...)
			woken = append(woken, w...)
		}
		return tx.InsertInbox(receipts)
	})
	if err != nil {
		return internal(ctx, err)
	}
	s.wake(woken)
	return nil
}

// MarkRead records that the caller read a conversation up to seq and tells
// the other members' devices with a "read" receipt, once per advance.
func (s *Server) MarkRead(ctx context.Context, c Caller, req wire.ReadRequest) error {
	if req.Conversation == "" || len(req.Conversation) > 128 {
		return invalid("conversation", "conversation id required")
	}
	if req.Seq == 0 {
		return invalid("seq", "seq must be at least 1")
	}
	var woken []deviceAddr
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		woken = woken[:0]
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
		advanced, err := tx.AdvanceReadMarker(c.UserID, conv.ID, req.Seq)
		if err != nil || !advanced {
			return err
		}
		payload := mustJSON(wire.Event{Type: wire.EventReceipt, Status: wire.StatusRead,
			Conversation: conv.ID, Seq: req.Seq, By: c.UserID})
		var receipts []storage.InboxEntry
		for _, m := range members {
			if m == c.UserID {
				continue
			}
			r, w, err := s.receiptEntries(tx, m, conv.ID, req.Seq, payload)
			if err != nil {
				return err
			}
			receipts = append(receipts, r...)
			woken = append(woken, w...)
		}
		return tx.InsertInbox(receipts)
	})
	if err != nil {
		return internal(ctx, err)
	}
	s.wake(woken)
	return nil
}

// receiptEntries builds one receipt entry for every device of user.
func (s *Server) receiptEntries(tx storage.Tx, user, conv string, seq uint64, payload []byte) ([]storage.InboxEntry, []deviceAddr, error) {
	devs, err := tx.KeyedDevices(user)
	if err != nil {
		return nil, nil, err
	}
	expires := s.now().Add(s.opts.Retention)
	entries := make([]storage.InboxEntry, 0, len(devs))
	woken := make([]deviceAddr, 0, len(devs))
	for _, d := range devs {
		entries = append(entries, storage.InboxEntry{UserID: user, DeviceID: d, Kind: storage.EntryReceipt,
			Conversation: conv, Seq: seq, ExpiresAt: expires, Payload: payload})
		woken = append(woken, deviceAddr{User: user, Device: d})
	}
	return entries, woken, nil
}

// withSeq puts "seq":N into an encoded event.
func withSeq(payload []byte, seq uint64) []byte {
	return withField(payload, "seq", int64(seq))
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("homeserver: encoding an event: " + err.Error())
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

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
