package homeserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// Federation, from the domain's side. Clients only ever talk to their own
// homeserver; it asks other homeservers through Remote (queries that need
// an answer now) and tells them things through the durable outbox, which
// federation/'s sender drains in order, one stream per destination.
//
// A direct conversation between users of two domains has one hub: the
// domain that sorts first. The hub sequences; the other side forwards its
// users' sends to the hub (accepted = committed to the outbox) and gets
// the sequenced copy back, so both sides see one order.

// Remote asks other homeservers. federation.Client implements it.
type Remote interface {
	Devices(ctx context.Context, user string) (wire.RemoteDevices, error)
	Claim(ctx context.Context, user string, devices []uint32) ([]wire.Bundle, error)
	Profile(ctx context.Context, user string) (wire.Profile, error)
	// GroupDevices and GroupOp ask a group's hub, for member, for the
	// group's devices or to perform an operation.
	GroupDevices(ctx context.Context, hub, group, member string) (wire.GroupDevices, error)
	GroupOp(ctx context.Context, hub, group string, op wire.GroupOp) error
}

// Federation connects the domain to other homeservers.
type Federation struct {
	Remote Remote
	// Wake is called after a commit that queued items for destination.
	Wake func(destination string)
	// Allowed reports whether a domain may be federated with (policy).
	Allowed func(domain string) bool
}

// SetFederation enables federation; without it remote users are refused
// with "unsupported".
func (s *Server) SetFederation(f Federation) { s.fed = &f }

// DomainOf is the domain part of a (valid) user id.
func DomainOf(userID string) string {
	_, d, _ := strings.Cut(userID, "@")
	return d
}

// hubOf is the hub of a direct conversation between users of two domains.
func hubOf(a, b string) string { return min(a, b) }

func (s *Server) wakeOutbox(dests []string) {
	if s.fed == nil || s.fed.Wake == nil {
		return
	}
	for _, d := range dests {
		s.fed.Wake(d)
	}
}

// enqueue queues one item for a destination, in the caller's transaction.
func (s *Server) enqueue(tx storage.Tx, dest string, it wire.FedItem) error {
	now := s.now()
	return tx.EnqueueOutbox([]storage.OutboxItem{{Destination: dest, Payload: mustJSON(it), CreatedAt: now,
		ExpiresAt: now.Add(s.opts.Retention)}})
}

// user validates a user id a client named. A remote user needs federation
// and a domain the policy allows.
func (s *Server) user(field, raw string) (id string, local bool, err error) {
	id, _, domain, ok := ParseUserID(raw)
	if !ok {
		return "", false, invalid(field, "%q is not a user id (name@domain)", raw)
	}
	if domain == s.opts.Domain {
		return id, true, nil
	}
	if s.fed == nil {
		return "", false, refuse(wire.CodeUnsupported, "%s is on another homeserver; federation is not enabled", id)
	}
	if s.fed.Allowed != nil && !s.fed.Allowed(domain) {
		return "", false, refuse(wire.CodeForbidden, "federation with %s is not allowed here", domain)
	}
	return id, false, nil
}

// remoteError turns a failed remote query into a refusal for our client.
func remoteError(domain string, err error) error {
	var we *wire.Error
	if errors.As(err, &we) {
		switch we.Code {
		case wire.CodeUnknownUser, wire.CodeUnknownDevice, wire.CodeNotFound, wire.CodeForbidden:
			return &Error{Code: we.Code, Message: domain + ": " + we.Message}
		}
	}
	if _, ok := AsError(err); ok {
		return err
	}
	return &Error{Code: wire.CodeUnavailable, Message: domain + " could not be reached; try again later", Cause: err}
}

// remoteDevices returns a remote user's device list: from the cache, which
// device-list notices keep current, or fetched from the user's homeserver.
func (s *Server) remoteDevices(ctx context.Context, user string) (storage.RemoteList, error) {
	var l storage.RemoteList
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		l, err = tx.RemoteDeviceList(user)
		return err
	})
	if err == nil {
		return l, nil
	}
	if !notFound(err) {
		return l, internal(ctx, err)
	}
	return s.fetchRemoteDevices(ctx, user)
}

func (s *Server) fetchRemoteDevices(ctx context.Context, user string) (storage.RemoteList, error) {
	rd, err := s.fed.Remote.Devices(ctx, user)
	if err != nil {
		return storage.RemoteList{}, remoteError(DomainOf(user), err)
	}
	l, err := remoteList(user, rd.StreamPos, rd.Devices)
	if err != nil || rd.User != user {
		return storage.RemoteList{}, &Error{Code: wire.CodeUnavailable, Message: DomainOf(user) + " sent an invalid device list",
			Cause: fmt.Errorf("device list of %s (for %s): %v", user, rd.User, err)}
	}
	l.FetchedAt = s.now()
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		old, err := tx.RemoteDeviceList(user)
		if err == nil && old.StreamPos > l.StreamPos {
			return nil // a newer notice arrived meanwhile
		} else if err != nil && !notFound(err) {
			return err
		}
		return tx.PutRemoteDeviceList(l)
	})
	return l, internal(ctx, err)
}

// remoteList validates a device list from another homeserver.
func remoteList(user string, pos uint64, devs []wire.DeviceKeys) (storage.RemoteList, error) {
	l := storage.RemoteList{UserID: user, StreamPos: pos}
	for _, d := range devs {
		if d.DeviceID == 0 {
			return l, errors.New("device 0")
		}
		if err := e2ee.CheckPublicKey(d.IdentityKey); err != nil {
			return l, fmt.Errorf("device %d: %w", d.DeviceID, err)
		}
		l.Devices = append(l.Devices, storage.GroupDevice{UserID: user, DeviceID: d.DeviceID, IdentityKey: d.IdentityKey})
	}
	return l, nil
}

// sendDirectRemote sends to a user of another homeserver. If we are the
// conversation's hub we sequence it and queue the recipient's ciphertexts;
// otherwise we queue the whole send for the hub and answer "accepted".
func (s *Server) sendDirectRemote(ctx context.Context, c Caller, req wire.SendRequest, to string) (wire.SendResult, error) {
	// Its Write may be run again after fetching the device list.
	ctx = withoutSequenced(ctx)
	convID := DirectConversationID(c.UserID, to)
	hub := hubOf(s.opts.Domain, DomainOf(to))
	// The recipient's device list is read inside the send's own write
	// (one transaction instead of two); only when this server has never
	// had it is it fetched, outside, and the send run again.
	check := func(tx storage.Tx) error {
		theirs, err := tx.RemoteDeviceList(to)
		if notFound(err) {
			return errNoRemoteList
		} else if err != nil {
			return err
		}
		want := deviceSet{}
		for _, d := range theirs.Devices {
			want[deviceAddr{User: to, Device: d.DeviceID}] = struct{}{}
		}
		mine, err := tx.KeyedDevices(c.UserID)
		if err != nil {
			return err
		}
		for _, d := range mine {
			if d != c.DeviceID {
				want[deviceAddr{User: c.UserID, Device: d}] = struct{}{}
			}
		}
		if err := checkCoverage(want, req); err != nil {
			return err
		}
		return s.ensureDirect(tx, convID, hub, c.UserID, to)
	}
	send := func() (wire.SendResult, error) {
		if hub == s.opts.Domain {
			return s.store1(ctx, c, req, convID, check, nil)
		}
		return s.forwardSend(ctx, c, req, convID, hub, check)
	}
	res, err := send()
	if errors.Is(err, errNoRemoteList) {
		if _, err := s.fetchRemoteDevices(ctx, to); err != nil {
			return wire.SendResult{}, err
		}
		res, err = send()
	}
	if errors.Is(err, errNoRemoteList) {
		return wire.SendResult{}, &Error{Code: wire.CodeUnavailable, Message: DomainOf(to) + " sent no device list",
			Cause: err}
	}
	return res, err
}

// errNoRemoteList: a send's check found no device list for a remote user.
var errNoRemoteList = errors.New("homeserver: no device list for the remote user")

// forwardSend records a local send for a conversation whose hub is another
// homeserver and queues it there, after check; it answers "accepted". A
// retried client id answers the same and queues nothing.
func (s *Server) forwardSend(ctx context.Context, c Caller, req wire.SendRequest, convID, hub string, check func(storage.Tx) error) (wire.SendResult, error) {
	sentAt := s.now().Truncate(time.Millisecond)
	res := wire.SendResult{ClientID: req.ClientID, Conversation: convID, SentAt: sentAt, Status: wire.SendAccepted}
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		f, err := tx.Forward(c.UserID, c.DeviceID, req.ClientID)
		if err == nil {
			if f.Conversation != convID {
				return refuse(wire.CodeClientIDReused, "client_id %q was used for another conversation", req.ClientID)
			}
			res.SentAt = f.CreatedAt
			return nil
		} else if !notFound(err) {
			return err
		}
		if err := check(tx); err != nil {
			return err
		}
		if err := tx.InsertForward(storage.Forward{Sender: c.UserID, SenderDevice: c.DeviceID, ClientID: req.ClientID,
			Conversation: convID, CreatedAt: sentAt}); err != nil {
			return err
		}
		it := wire.FedItem{Kind: wire.FedForward, Conversation: convID, Sender: c.UserID, SenderDevice: c.DeviceID,
			ClientID: req.ClientID, To: req.To, Envelopes: req.Envelopes, Shared: req.Shared, SentAt: &sentAt}
		if IsGroupID(convID) {
			it.Group, it.To = convID, ""
		}
		return s.enqueue(tx, hub, it)
	})
	if err != nil {
		return wire.SendResult{}, internal(ctx, err)
	}
	s.wakeOutbox([]string{hub})
	return res, nil
}

// ensureDirect creates the record of a direct conversation if missing.
func (s *Server) ensureDirect(tx storage.Tx, convID, hub, a, b string) error {
	if _, err := tx.Conversation(convID); !notFound(err) {
		return err
	}
	return tx.InsertConversation(storage.Conversation{ID: convID, Kind: storage.KindDirect, Hub: hub,
		CreatedAt: s.now()}, []string{a, b})
}

// OutboxEntry is one queued item for a destination.
type OutboxEntry struct {
	ID   int64
	Item json.RawMessage
}

// Outbox returns up to limit queued items for dest after id, in order.
func (s *Server) Outbox(ctx context.Context, dest string, after int64, limit int) ([]OutboxEntry, error) {
	var items []storage.OutboxItem
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		items, err = tx.Outbox(dest, after, limit)
		return err
	})
	out := make([]OutboxEntry, len(items))
	for i, it := range items {
		out[i] = OutboxEntry{ID: it.ID, Item: it.Payload}
	}
	return out, internal(ctx, err)
}

// OutboxDone drops dest's items up to and including id: delivered.
func (s *Server) OutboxDone(ctx context.Context, dest string, upTo int64) error {
	return internal(ctx, s.store.Write(ctx, func(tx storage.Tx) error { return tx.DeleteOutbox(dest, upTo) }))
}

// OutboxDestinations lists destinations with queued items.
func (s *Server) OutboxDestinations(ctx context.Context) ([]string, error) {
	var ds []string
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		ds, err = tx.OutboxDestinations()
		return err
	})
	return ds, internal(ctx, err)
}

// RemoteDeviceList answers another homeserver's query for a local user's
// devices.
func (s *Server) RemoteDeviceList(ctx context.Context, rawUser string) (wire.RemoteDevices, error) {
	id, local, err := s.user("user", rawUser)
	if err != nil {
		return wire.RemoteDevices{}, err
	}
	if !local {
		return wire.RemoteDevices{}, refuse(wire.CodeForbidden, "%s is not a user of this server", id)
	}
	out := wire.RemoteDevices{User: id, Devices: []wire.DeviceKeys{}}
	err = s.store.Read(ctx, func(tx storage.Tx) error {
		pos, err := tx.DeviceStream(id)
		if notFound(err) {
			return refuse(wire.CodeUnknownUser, "%s does not exist", id)
		} else if err != nil {
			return err
		}
		out.StreamPos = pos
		devs, err := devicesWithKeys(tx, id)
		for _, d := range devs {
			out.Devices = append(out.Devices, wire.DeviceKeys{DeviceID: d.DeviceID, IdentityKey: d.IdentityKey})
		}
		return err
	})
	return out, internal(ctx, err)
}

// announceRemote queues a device-list notice for every other homeserver
// with users sharing a conversation with userID, inside the Write that
// changed the list.
func (s *Server) announceRemote(tx storage.Tx, userID string, contacts []string) ([]string, error) {
	var dests []string
	for _, c := range contacts {
		if d := DomainOf(c); d != s.opts.Domain && !slices.Contains(dests, d) {
			dests = append(dests, d)
		}
	}
	if len(dests) == 0 {
		return nil, nil
	}
	prev, next, err := tx.BumpDeviceStream(userID)
	if err != nil {
		return nil, err
	}
	devs, err := devicesWithKeys(tx, userID)
	if err != nil {
		return nil, err
	}
	it := wire.FedItem{Kind: wire.FedDeviceList, User: userID, StreamPos: next, PrevPos: prev, Devices: []wire.DeviceKeys{}}
	for _, d := range devs {
		it.Devices = append(it.Devices, wire.DeviceKeys{DeviceID: d.DeviceID, IdentityKey: d.IdentityKey})
	}
	for _, d := range dests {
		if err := s.enqueue(tx, d, it); err != nil {
			return nil, err
		}
	}
	return dests, nil
}
