package homeserver

import (
	"context"
	"errors"
	"slices"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// Groups with members on several homeservers. The hub (the creator's
// server) keeps the authoritative state and sequence. A member server
// mirrors what the hub tells it with each group event (the whole member
// list and metadata), serves reads from that mirror, and hands every
// change and every send of its users to the hub: operations synchronously
// (GroupOp), sends through the durable queue (a forward, as for direct
// conversations).

// groupUser validates a user id named in a group operation; users of
// other homeservers are allowed when federation is on.
func (s *Server) groupUser(field, raw string) (string, error) {
	id, _, err := s.user(field, raw)
	return id, err
}

// remoteHub returns the hub of a group when it is another homeserver, ""
// when it is this one (or the group is unknown here: the local path then
// reports it).
func (s *Server) remoteHub(ctx context.Context, id string) (string, error) {
	if !IsGroupID(id) {
		return "", invalid("group", "%q is not a group id", id)
	}
	if s.fed == nil {
		return "", nil
	}
	var conv storage.Conversation
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		conv, err = tx.Conversation(id)
		return err
	})
	if notFound(err) {
		return "", nil
	}
	if err != nil {
		return "", internal(ctx, err)
	}
	if conv.Hub != s.opts.Domain {
		return conv.Hub, nil
	}
	return "", nil
}

// proxied hands a group operation of a local user to the group's hub
// (after remoteHub's err, which it returns first).
func (s *Server) proxied(ctx context.Context, hub, id string, err error, op wire.GroupOp) error {
	if err != nil {
		return err
	}
	if err := s.fed.Remote.GroupOp(ctx, hub, id, op); err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			return &Error{Code: we.Code, Message: we.Message, Field: we.Field}
		}
		return remoteError(hub, err)
	}
	return nil
}

// RemoteGroupOp performs, as the hub, an operation a member server asks
// for on behalf of one of its users.
func (s *Server) RemoteGroupOp(ctx context.Context, origin, id string, op wire.GroupOp) error {
	actor, _, _, ok := ParseUserID(op.Actor)
	if !ok || DomainOf(actor) != origin {
		return refuse(wire.CodeForbidden, "%s cannot act for %q", origin, op.Actor)
	}
	if hub, err := s.remoteHub(ctx, id); err != nil {
		return err
	} else if hub != "" {
		return refuse(wire.CodeForbidden, "this server is not the hub of %s", id)
	}
	c := Caller{UserID: actor}
	switch op.Op {
	case wire.OpAdd:
		return s.AddMembers(ctx, c, id, op.Users)
	case wire.OpInvite:
		return s.Invite(ctx, c, id, op.Users)
	case wire.OpJoin:
		return s.Accept(ctx, c, id)
	case wire.OpDecline:
		return s.Decline(ctx, c, id)
	case wire.OpRemove:
		return s.RemoveMember(ctx, c, id, op.User)
	case wire.OpRole:
		return s.SetRole(ctx, c, id, op.User, op.Role)
	case wire.OpOwner:
		return s.TransferOwner(ctx, c, id, op.User)
	case wire.OpMetadata:
		if op.Meta == nil {
			return invalid("meta", "metadata required")
		}
		return s.UpdateGroupMeta(ctx, c, id, *op.Meta)
	case wire.OpDelete:
		return s.DeleteGroup(ctx, c, id)
	}
	return invalid("op", "unknown group operation %q", op.Op)
}

// RemoteGroupDevices answers, as the hub, a member server's question for
// the devices its user must encrypt a group message to.
func (s *Server) RemoteGroupDevices(ctx context.Context, origin, id, member string) (wire.GroupDevices, error) {
	m, _, _, ok := ParseUserID(member)
	if !ok || DomainOf(m) != origin {
		return wire.GroupDevices{}, refuse(wire.CodeForbidden, "%s cannot ask for %q", origin, member)
	}
	if hub, err := s.remoteHub(ctx, id); err != nil {
		return wire.GroupDevices{}, err
	} else if hub != "" {
		return wire.GroupDevices{}, refuse(wire.CodeForbidden, "this server is not the hub of %s", id)
	}
	return s.GroupDevices(ctx, Caller{UserID: m}, id)
}

// groupEventIn applies, on a member server, a group event the hub sent:
// the mirror takes the hub's member list and metadata, and the local users
// it names get the event.
func (in *inbound) groupEvent(it wire.FedItem) error {
	s, tx := in.s, in.tx
	ev := it.Event
	if !IsGroupID(it.Conversation) || ev == nil || ev.Group != it.Conversation || ev.Seq != it.Seq || it.Seq == 0 {
		return invalid("event", "a group event needs its group, seq and event")
	}
	for _, u := range it.Users {
		if !s.isLocal(u) {
			return forbidden("a group event for %s, who is not ours", u)
		}
	}
	conv, err := tx.Conversation(it.Conversation)
	switch {
	case err == nil && conv.Hub != in.origin:
		return forbidden("%s is not the hub of %s", in.origin, it.Conversation)
	case err == nil && conv.Hub == s.opts.Domain:
		return forbidden("we are the hub of %s", it.Conversation)
	case notFound(err):
		if DomainOf(ev.Actor) != in.origin && ev.Action == wire.GroupCreated {
			return forbidden("%s cannot create groups for %s", in.origin, ev.Actor)
		}
		if err := tx.InsertConversation(storage.Conversation{ID: it.Conversation, Kind: storage.KindGroup,
			Hub: in.origin, CreatedAt: s.now()}, nil); err != nil {
			return err
		}
		meta := wire.GroupMeta{}
		if it.Meta != nil {
			meta = *it.Meta
		}
		if err := tx.InsertGroup(storage.Group{ID: it.Conversation, Name: meta.Name, Description: meta.Description,
			Avatar: meta.Avatar, Creator: ev.Actor, CreatedAt: s.now()}); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	// Checks done; write.
	if err := tx.RaiseLastSeq(it.Conversation, it.Seq); err != nil {
		return err
	}
	payload := mustEvent(*ev)
	var entries []storage.InboxEntry
	for _, u := range it.Users {
		r, err := s.receiptEntries(tx, u, it.Conversation, it.Seq, storage.EntryGroup, payload)
		if err != nil {
			return err
		}
		entries = append(entries, r...)
	}
	if err := tx.InsertInbox(entries); err != nil {
		return err
	}
	if ev.Action == wire.GroupDeleted {
		return tx.DeleteGroup(it.Conversation)
	}
	return in.mirror(it)
}

// mirror replaces the local copy of a remote group's members and metadata.
func (in *inbound) mirror(it wire.FedItem) error {
	tx, id := in.tx, it.Conversation
	g, err := tx.Group(id)
	if err != nil {
		return err
	}
	if it.Meta != nil {
		g.Name, g.Description, g.Avatar = it.Meta.Name, it.Meta.Description, it.Meta.Avatar
	}
	if it.Event.Action == wire.GroupRemoved || it.Event.Action == wire.GroupLeft {
		g.RemovalSeq = it.Seq
	}
	if err := tx.UpdateGroup(g); err != nil {
		return err
	}
	old, err := tx.GroupMembers(id)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, list := range []struct {
		ms    []wire.Member
		state string
	}{{it.Members, storage.MemberJoined}, {it.Invited, storage.MemberInvited}} {
		for _, m := range list.ms {
			if _, _, _, ok := ParseUserID(m.User); !ok {
				return invalid("members", "%q is not a user id", m.User)
			}
			keep[m.User] = true
			if err := tx.PutGroupMember(storage.GroupMember{GroupID: id, UserID: m.User, Role: m.Role,
				State: list.state, SinceSeq: it.Seq}); err != nil {
				return err
			}
			if list.state == storage.MemberJoined {
				if err := tx.AddConversationMember(id, m.User); err != nil {
					return err
				}
			}
		}
	}
	for _, m := range old {
		if !keep[m.UserID] {
			if err := tx.DeleteGroupMember(id, m.UserID); err != nil {
				return err
			}
		}
	}
	members, err := tx.Members(id)
	if err != nil {
		return err
	}
	for _, u := range members {
		if !keep[u] || !slices.ContainsFunc(it.Members, func(m wire.Member) bool { return m.User == u }) {
			if err := tx.RemoveConversationMember(id, u); err != nil {
				return err
			}
		}
	}
	return nil
}

// groupMessage stores, on a member server, a group message the hub
// sequenced, for the local member devices it lists.
func (in *inbound) groupMessage(it wire.FedItem) error {
	s, tx := in.s, in.tx
	conv, err := tx.Conversation(it.Conversation)
	if notFound(err) || (err == nil && conv.Kind != storage.KindGroup) {
		return forbidden("no group %s here", it.Conversation)
	} else if err != nil {
		return err
	}
	if conv.Hub != in.origin || conv.Hub == s.opts.Domain {
		return forbidden("%s is not the hub of %s", in.origin, it.Conversation)
	}
	members, err := tx.Members(it.Conversation)
	if err != nil {
		return err
	}
	var devices []wire.DeviceAddress
	for _, e := range it.Envelopes {
		devices = append(devices, wire.DeviceAddress{User: e.User, Device: e.Device})
	}
	if it.Shared != nil {
		if it.Shared.Type != wire.CiphertextSenderKey || len(it.Shared.Body) == 0 || len(it.Shared.Body) > wire.MaxEnvelopeBytes {
			return invalid("shared", "a shared ciphertext is one senderkey body")
		}
		devices = append(devices, it.Shared.Devices...)
	}
	for _, d := range devices {
		if !s.isLocal(d.User) || !slices.Contains(members, d.User) {
			return forbidden("a ciphertext for %s, who is not a member here", d.User)
		}
	}
	if err := checkSend(wire.SendRequest{ClientID: it.ClientID, Envelopes: it.Envelopes}); err != nil {
		return err
	}
	if err := tx.RaiseLastSeq(it.Conversation, it.Seq); err != nil {
		return err
	}
	return in.store(it, it.Sender)
}
