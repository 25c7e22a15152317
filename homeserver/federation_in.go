package homeserver

import (
	"context"
	"slices"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// ReceiveTransaction applies a transaction that another homeserver
// (origin, already authenticated by its signature) sent us. A repeated
// transaction id changes nothing. Each item is checked before anything of
// it is written: an item origin had no right to send (a user of another
// domain, a conversation it is not the hub of) is refused alone and
// reported; a storage failure fails the whole transaction, which the
// origin then retries.
func (s *Server) ReceiveTransaction(ctx context.Context, origin, txnID string, items []wire.FedItem) (wire.TransactionResult, error) {
	if s.fed == nil {
		return wire.TransactionResult{}, refuse(wire.CodeUnsupported, "federation is not enabled")
	}
	if s.fed.Allowed != nil && !s.fed.Allowed(origin) {
		return wire.TransactionResult{}, refuse(wire.CodeForbidden, "federation with %s is not allowed here", origin)
	}
	// A forward is checked against its sender's other devices: make sure
	// their list is cached before taking the writer (it may need the
	// network).
	for _, it := range items {
		if it.Kind == wire.FedForward && DomainOf(it.Sender) == origin {
			if _, err := s.remoteDevices(ctx, it.Sender); err != nil {
				s.log.WarnContext(ctx, "device list for a forward", "user", it.Sender, "err", err)
			}
		}
	}
	var res wire.TransactionResult
	var dests, refetch []string
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		res, dests, refetch = wire.TransactionResult{}, nil, nil
		fresh, err := tx.RecordInboundTxn(origin, txnID, s.now())
		if err != nil || !fresh {
			return err
		}
		in := &inbound{s: s, tx: tx, origin: origin}
		for i, it := range items {
			err := in.apply(it)
			if e, ok := AsError(err); ok && e.Code != wire.CodeInternal {
				res.Refused = append(res.Refused, wire.RefusedItem{Index: i, Code: e.Code, Error: e.Message})
				continue
			} else if err != nil {
				return err
			}
		}
		dests, refetch = in.dests, in.refetch
		return nil
	})
	if err != nil {
		return wire.TransactionResult{}, internal(ctx, err)
	}
	s.wakeOutbox(dests)
	for _, u := range refetch {
		if _, err := s.fetchRemoteDevices(ctx, u); err != nil {
			s.log.WarnContext(ctx, "re-fetching a device list after a gap", "user", u, "err", err)
		}
	}
	if len(res.Refused) > 0 {
		s.log.WarnContext(ctx, "refused federation items", "origin", origin, "txn", txnID, "refused", res.Refused)
	}
	return res, nil
}

// inbound applies one transaction's items inside its Write.
type inbound struct {
	s       *Server
	tx      storage.Tx
	origin  string
	dests   []string
	refetch []string
}

// answer queues result for the origin server, in the same commit.
func (in *inbound) answer(result wire.FedItem) error {
	in.dests = append(in.dests, in.origin)
	return in.s.enqueue(in.tx, in.origin, result)
}

func (in *inbound) apply(it wire.FedItem) error {
	switch it.Kind {
	case wire.FedMessage:
		return in.message(it)
	case wire.FedForward:
		return in.forward(it)
	case wire.FedForwardResult:
		return in.forwardResult(it)
	case wire.FedReceipt:
		return in.receipt(it)
	case wire.FedDeviceList:
		return in.deviceList(it)
	case wire.FedGroupEvent:
		return in.groupEvent(it)
	}
	return refuse(wire.CodeUnsupported, "unknown item kind %q", it.Kind)
}

// forbidden is the refusal of an item the origin may not send.
func forbidden(format string, args ...any) *Error {
	return refuse(wire.CodeForbidden, format, args...)
}

// originUser validates a user id the origin speaks for: it must be one of
// the origin's own users.
func (in *inbound) originUser(field, u string) (string, error) {
	id, err := in.validUser(field, u)
	if err == nil && DomainOf(id) != in.origin {
		return "", forbidden("%s cannot speak for %s", in.origin, id)
	}
	return id, err
}

func (in *inbound) validUser(field, u string) (string, error) {
	id, _, _, ok := ParseUserID(u)
	if !ok || id != u {
		return "", invalid(field, "%q is not a user id", u)
	}
	return id, nil
}

// message stores a message the hub sequenced for our users' devices.
func (in *inbound) message(it wire.FedItem) error {
	s, tx := in.s, in.tx
	sender, err := in.validUser("sender", it.Sender)
	if err != nil {
		return err
	}
	if it.Seq == 0 || it.SentAt == nil {
		return invalid("seq", "a message needs seq and sent_at")
	}
	if IsGroupID(it.Conversation) {
		return in.groupMessage(it)
	}
	if it.Shared != nil {
		return invalid("shared", "a shared ciphertext is for groups only")
	}
	// The conversation's other member: the local user the ciphertexts are
	// for, or, when the sender is ours (its send came back sequenced), the
	// member recorded when we forwarded it.
	var other string
	if s.isLocal(sender) {
		members, err := tx.Members(it.Conversation)
		if err != nil && !notFound(err) {
			return err
		}
		for _, m := range members {
			if m != sender {
				other = m
			}
		}
	} else {
		for _, e := range it.Envelopes {
			if e.User != sender {
				other = e.User
			}
		}
	}
	if other == "" || it.Conversation != DirectConversationID(sender, other) {
		return forbidden("message for an unknown conversation")
	}
	if hubOf(DomainOf(sender), DomainOf(other)) != in.origin || DomainOf(sender) == DomainOf(other) {
		return forbidden("%s is not the hub of this conversation", in.origin)
	}
	for _, e := range it.Envelopes {
		if !s.isLocal(e.User) || (e.User != sender && e.User != other) {
			return forbidden("a ciphertext for %s, who is not in this conversation here", e.User)
		}
	}
	if err := checkSend(wire.SendRequest{ClientID: it.ClientID, Envelopes: it.Envelopes}); err != nil {
		return err
	}
	// Checks done; now write.
	if err := s.ensureDirect(tx, it.Conversation, in.origin, sender, other); err != nil {
		return err
	}
	if err := tx.RaiseLastSeq(it.Conversation, it.Seq); err != nil {
		return err
	}
	return in.store(it, sender)
}

// store records a sequenced message from the hub and gives each local
// device listed its entry (a device removed meanwhile is skipped). A
// message seen before (same conversation and seq) is a retry: nothing.
func (in *inbound) store(it wire.FedItem, sender string) error {
	s, tx := in.s, in.tx
	p := s.prepare(outgoing{conv: it.Conversation, sender: sender, senderDevice: it.SenderDevice, clientID: it.ClientID,
		envelopes: it.Envelopes, shared: it.Shared, sentAt: *it.SentAt})
	// Recorded as the hub recorded it.
	msgID, sharedPayload, err := record(tx, p, it.Seq)
	if conflict(err) {
		return nil
	} else if err != nil {
		return err
	}
	var entries []storage.InboxEntry
	keyed := map[string][]uint32{} // each user's devices, asked once per message
	add := func(user string, device uint32, payload, shared []byte) error {
		devs, ok := keyed[user]
		if !ok {
			var err error
			if devs, err = tx.KeyedDevices(user); err != nil {
				return err
			}
			keyed[user] = devs
		}
		if !slices.Contains(devs, device) {
			return nil
		}
		entries = append(entries, storage.InboxEntry{UserID: user, DeviceID: device, Kind: storage.EntryMessage,
			Conversation: it.Conversation, Seq: it.Seq, MessageID: msgID, Sender: sender, ExpiresAt: p.expires,
			Payload: payload, SharedBody: shared})
		return nil
	}
	for i, e := range it.Envelopes {
		if err := add(e.User, e.Device, withSeq(p.payloads[i], it.Seq), nil); err != nil {
			return err
		}
	}
	if it.Shared != nil {
		for _, d := range it.Shared.Devices {
			if err := add(d.User, d.Device, sharedPayload, it.Shared.Body); err != nil {
				return err
			}
		}
	}
	return tx.InsertInbox(entries)
}

// forward sequences a send a participant server forwarded to us, the hub.
func (in *inbound) forward(it wire.FedItem) error {
	s, tx := in.s, in.tx
	sender, err := in.originUser("sender", it.Sender)
	if err != nil {
		return err
	}
	if IsGroupID(it.Conversation) {
		return in.groupForward(it, sender)
	}
	to, err := in.validUser("to", it.To)
	if err != nil {
		return err
	}
	if !s.isLocal(to) || it.Conversation != DirectConversationID(sender, to) || hubOf(in.origin, s.opts.Domain) != s.opts.Domain {
		return forbidden("we are not the hub of %s", it.Conversation)
	}
	req := wire.SendRequest{ClientID: it.ClientID, To: to, Envelopes: it.Envelopes}
	if err := checkSend(req); err != nil {
		return err
	}
	if it.SentAt == nil {
		return invalid("sent_at", "a forward needs sent_at")
	}
	result := wire.FedItem{Kind: wire.FedForwardResult, Conversation: it.Conversation, Sender: sender,
		SenderDevice: it.SenderDevice, ClientID: it.ClientID}
	if prev, err := priorSend(tx, sender, it.SenderDevice, it.ClientID); err == nil {
		result.Seq, result.SentAt = prev.Seq, &prev.SentAt // a retry: answer as before
		return in.answer(result)
	} else if !notFound(err) {
		return err
	}
	if _, err := tx.Account(to); notFound(err) {
		result.Error = &wire.Error{Code: wire.CodeUnknownUser, Message: to + " does not exist"}
		return in.answer(result)
	} else if err != nil {
		return err
	}
	want := deviceSet{}
	devs, err := tx.KeyedDevices(to)
	if err != nil {
		return err
	}
	for _, d := range devs {
		want[deviceAddr{User: to, Device: d}] = struct{}{}
	}
	if l, err := tx.RemoteDeviceList(sender); err == nil {
		for _, d := range l.Devices {
			if d.DeviceID != it.SenderDevice {
				want[deviceAddr{User: sender, Device: d.DeviceID}] = struct{}{}
			}
		}
	} else if notFound(err) {
		// Unknown here: the sender's server checked its own user's devices.
		for _, e := range it.Envelopes {
			if e.User == sender {
				want[deviceAddr{User: sender, Device: e.Device}] = struct{}{}
			}
		}
	} else {
		return err
	}
	if err := checkCoverage(want, req); err != nil {
		if e, ok := AsError(err); ok && e.Code == wire.CodeStaleDevices {
			result.Error = &wire.Error{Code: e.Code, Message: e.Message, Missing: e.Missing, Extra: e.Extra}
			return in.answer(result)
		}
		return err
	}
	if err := s.ensureDirect(tx, it.Conversation, s.opts.Domain, sender, to); err != nil {
		return err
	}
	p := s.prepare(outgoing{conv: it.Conversation, sender: sender, senderDevice: it.SenderDevice, clientID: it.ClientID,
		envelopes: it.Envelopes, sentAt: s.now()})
	seq, dests, err := s.sequence(tx, p)
	if err != nil {
		return err
	}
	in.dests = append(in.dests, dests...)
	result.Seq, result.SentAt = seq, &p.sentAt
	return in.answer(result)
}

// forwardResult tells our user's sending device what became of a send the
// hub sequenced (or refused): a durable "sent" or "error" event.
func (in *inbound) forwardResult(it wire.FedItem) error {
	s, tx := in.s, in.tx
	sender, err := in.validUser("sender", it.Sender)
	if err != nil {
		return err
	}
	if !s.isLocal(sender) {
		return forbidden("a result for %s, who is not ours", sender)
	}
	f, err := tx.Forward(sender, it.SenderDevice, it.ClientID)
	if notFound(err) {
		return forbidden("no send %q was forwarded", it.ClientID)
	} else if err != nil {
		return err
	}
	conv, err := tx.Conversation(f.Conversation)
	if err != nil {
		return err
	}
	if conv.Hub != in.origin {
		return forbidden("%s is not the hub of %s", in.origin, f.Conversation)
	}
	ev := wire.Event{Type: wire.EventSent, ClientID: it.ClientID, Conversation: f.Conversation, Seq: it.Seq, SentAt: it.SentAt}
	if it.Error != nil {
		ev = wire.Event{Type: wire.EventError, ClientID: it.ClientID, Conversation: f.Conversation, Code: it.Error.Code,
			Message: it.Error.Message, Missing: it.Error.Missing, Extra: it.Error.Extra}
	} else if it.Seq == 0 {
		return invalid("seq", "a result needs seq or error")
	} else if err := tx.RaiseLastSeq(f.Conversation, it.Seq); err != nil {
		return err
	}
	return tx.InsertInbox([]storage.InboxEntry{{UserID: sender, DeviceID: it.SenderDevice, Kind: ev.Type,
		Conversation: f.Conversation, Seq: it.Seq, ExpiresAt: s.now().Add(s.opts.Retention), Payload: mustEvent(ev)}})
}

// receipt passes a remote user's delivered/read receipt to our user.
func (in *inbound) receipt(it wire.FedItem) error {
	s, tx := in.s, in.tx
	by, err := in.originUser("by", it.By)
	if err != nil {
		return err
	}
	user, err := in.validUser("user", it.User)
	if err != nil {
		return err
	}
	if !s.isLocal(user) || (it.Status != wire.StatusDelivered && it.Status != wire.StatusRead) {
		return invalid("user", "a receipt is delivered or read, for a user of ours")
	}
	members, err := tx.Members(it.Conversation)
	if err != nil {
		return err
	}
	if !slices.Contains(members, by) || !slices.Contains(members, user) {
		return forbidden("%s and %s do not share %s", by, user, it.Conversation)
	}
	payload := mustEvent(wire.Event{Type: wire.EventReceipt, Status: it.Status, Conversation: it.Conversation,
		Seq: it.Seq, By: by, ByDevice: it.ByDevice})
	entries, err := s.receiptEntries(tx, user, it.Conversation, it.Seq, storage.EntryReceipt, payload)
	if err != nil {
		return err
	}
	return tx.InsertInbox(entries)
}

// deviceList updates our copy of a remote user's devices and tells our
// users who share a conversation with them. A notice whose PrevPos is not
// the position we hold means we missed one: the list is applied (it is
// complete) and fetched afresh as well.
func (in *inbound) deviceList(it wire.FedItem) error {
	s, tx := in.s, in.tx
	user, err := in.originUser("user", it.User)
	if err != nil {
		return err
	}
	l, err := remoteList(user, it.StreamPos, it.Devices)
	if err != nil {
		return invalid("devices", "%v", err)
	}
	old, err := tx.RemoteDeviceList(user)
	switch {
	case err == nil && it.StreamPos <= old.StreamPos:
		return nil // old news
	case err == nil && it.PrevPos != old.StreamPos:
		in.refetch = append(in.refetch, user)
	case err != nil && !notFound(err):
		return err
	}
	l.FetchedAt = s.now()
	if err := tx.PutRemoteDeviceList(l); err != nil {
		return err
	}
	contacts, err := tx.Contacts(user)
	if err != nil {
		return err
	}
	payload := mustEvent(wire.Event{Type: wire.EventDeviceList, User: user})
	var entries []storage.InboxEntry
	for _, c := range contacts {
		if !s.isLocal(c) {
			continue
		}
		r, err := s.receiptEntries(tx, c, "", 0, storage.EntryDeviceList, payload)
		if err != nil {
			return err
		}
		entries = append(entries, r...)
	}
	return tx.InsertInbox(entries)
}

// groupForward sequences, as the hub, a group send a member server
// forwarded: the sender must be a member, and the ciphertexts must cover
// every member device but the sending one.
func (in *inbound) groupForward(it wire.FedItem, sender string) error {
	s, tx := in.s, in.tx
	if it.SentAt == nil {
		return invalid("sent_at", "a forward needs sent_at")
	}
	req := wire.SendRequest{ClientID: it.ClientID, To: it.Conversation, Envelopes: it.Envelopes, Shared: it.Shared}
	if err := checkSend(req); err != nil {
		return err
	}
	result := wire.FedItem{Kind: wire.FedForwardResult, Conversation: it.Conversation, Sender: sender,
		SenderDevice: it.SenderDevice, ClientID: it.ClientID}
	answer := func() error { return in.answer(result) }
	if prev, err := priorSend(tx, sender, it.SenderDevice, it.ClientID); err == nil {
		result.Seq, result.SentAt = prev.Seq, &prev.SentAt
		return answer()
	} else if !notFound(err) {
		return err
	}
	conv, err := tx.Conversation(it.Conversation)
	if notFound(err) || (err == nil && conv.Hub != s.opts.Domain) {
		result.Error = &wire.Error{Code: wire.CodeUnknownGroup, Message: "no group " + it.Conversation + " here"}
		return answer()
	} else if err != nil {
		return err
	}
	if m, err := tx.GroupMember(it.Conversation, sender); notFound(err) || (err == nil && m.State != storage.MemberJoined) {
		result.Error = &wire.Error{Code: wire.CodeNotMember, Message: sender + " is not a member of " + it.Conversation}
		return answer()
	} else if err != nil {
		return err
	}
	want, err := groupDeviceSet(tx, it.Conversation)
	if err != nil {
		return err
	}
	delete(want, deviceAddr{User: sender, Device: it.SenderDevice})
	if err := checkCoverage(want, req); err != nil {
		if e, ok := AsError(err); ok && e.Code == wire.CodeStaleDevices {
			result.Error = &wire.Error{Code: e.Code, Message: e.Message, Missing: e.Missing, Extra: e.Extra}
			return answer()
		}
		return err
	}
	p := s.prepare(outgoing{conv: it.Conversation, sender: sender, senderDevice: it.SenderDevice, clientID: it.ClientID,
		envelopes: it.Envelopes, shared: it.Shared, sentAt: s.now()})
	seq, dests, err := s.sequence(tx, p)
	if err != nil {
		return err
	}
	in.dests = append(in.dests, dests...)
	result.Seq, result.SentAt = seq, &p.sentAt
	return answer()
}
