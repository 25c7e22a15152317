package homeserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// Groups are ordered by their hub, the homeserver that created them (this
// one, until federation). Every membership and metadata change is an event
// in the group's own sequence, interleaved with its messages, so every
// device sees one order and knows exactly which messages were sent before
// and after a member left (and so when to rotate its sender key).

// IsGroupID reports whether s names a group rather than a user. User
// names never start with the prefix (ValidName), and user ids contain '@'.
func IsGroupID(s string) bool {
	return strings.HasPrefix(s, wire.GroupIDPrefix) && !strings.Contains(s, "@")
}

func newGroupID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return wire.GroupIDPrefix + hex.EncodeToString(b)
}

func checkMeta(m wire.GroupMeta) error {
	for _, f := range []struct {
		name, v string
		max     int
	}{{"name", m.Name, wire.MaxGroupNameLen}, {"description", m.Description, wire.MaxGroupDescriptionLen},
		{"avatar", m.Avatar, wire.MaxGroupAvatarLen}} {
		if len(f.v) > f.max {
			return &Error{Code: wire.CodeTooLarge, Field: f.name, Message: f.name + " is at most " + strconv.Itoa(f.max) + " bytes"}
		}
		if !utf8.ValidString(f.v) || strings.ContainsRune(f.v, 0) {
			return invalid(f.name, "%s must be UTF-8 without NUL", f.name)
		}
	}
	return nil
}

// groupUsers validates a list of user ids to add or invite. Users of
// other homeservers are checked with their server, whose answer (their
// device list) is cached: the hub needs it to check group sends.
func (s *Server) groupUsers(ctx context.Context, raw []string) ([]string, error) {
	if len(raw) > wire.MaxGroupUsersPerCall {
		return nil, invalid("users", "at most %d users per call", wire.MaxGroupUsersPerCall)
	}
	out := make([]string, 0, len(raw))
	for i, r := range raw {
		id, local, err := s.user("users["+strconv.Itoa(i)+"]", r)
		if err != nil {
			return nil, err
		}
		if !local {
			if _, err := s.remoteDevices(ctx, id); err != nil {
				return nil, err
			}
		}
		if slices.Contains(out, id) {
			return nil, invalid("users["+strconv.Itoa(i)+"]", "%s is listed twice", id)
		}
		out = append(out, id)
	}
	return out, nil
}

// groupState is what a group operation sees inside its transaction.
type groupState struct {
	group   storage.Group
	members []storage.GroupMember
	caller  storage.GroupMember // zero State if the caller is neither member nor invited
}

func (g *groupState) member(user string) (storage.GroupMember, bool) {
	for _, m := range g.members {
		if m.UserID == user {
			return m, true
		}
	}
	return storage.GroupMember{}, false
}

func isAdmin(m storage.GroupMember) bool {
	return m.State == storage.MemberJoined && (m.Role == wire.RoleOwner || m.Role == wire.RoleAdmin)
}

func (s *Server) loadGroup(tx storage.Tx, id string, caller string) (*groupState, error) {
	if !IsGroupID(id) {
		return nil, invalid("group", "%q is not a group id", id)
	}
	g, err := tx.Group(id)
	if notFound(err) {
		return nil, refuse(wire.CodeUnknownGroup, "no group %s", id)
	} else if err != nil {
		return nil, err
	}
	members, err := tx.GroupMembers(id)
	if err != nil {
		return nil, err
	}
	st := &groupState{group: g, members: members}
	st.caller, _ = st.member(caller)
	return st, nil
}

func requireJoined(st *groupState) error {
	if st.caller.State != storage.MemberJoined {
		return refuse(wire.CodeNotMember, "you are not a member of %s", st.group.ID)
	}
	return nil
}

func requireAdmin(st *groupState) error {
	if err := requireJoined(st); err != nil {
		return err
	}
	if !isAdmin(st.caller) {
		return refuse(wire.CodeForbidden, "only the group's owner and admins can do this")
	}
	return nil
}

// groupEvent puts ev, with the next seq of the group, into the inbox of
// every local device of the group's joined members (as they are after the
// change) and of the extra users (a removed member, an invitee), and
// queues it for every other homeserver with such users, together with the
// whole member list, which those servers mirror. It returns the
// destinations to wake.
func (s *Server) groupEvent(tx storage.Tx, groupID string, ev wire.Event, extra ...string) ([]string, error) {
	seq, err := tx.NextSeq(groupID)
	if err != nil {
		return nil, err
	}
	ev.Type, ev.Conversation, ev.Group, ev.Seq = wire.EventGroup, groupID, groupID, seq
	payload := mustEvent(ev)
	members, err := tx.GroupMembers(groupID)
	if err != nil {
		return nil, err
	}
	var recipients []string
	for _, m := range members {
		if m.State == storage.MemberJoined {
			recipients = append(recipients, m.UserID)
		}
	}
	for _, u := range extra {
		if !slices.Contains(recipients, u) {
			recipients = append(recipients, u)
		}
	}
	expires := s.now().Add(s.opts.Retention)
	var entries []storage.InboxEntry
	remote := map[string][]string{}
	var dests []string
	for _, u := range recipients {
		if !s.isLocal(u) {
			d := DomainOf(u)
			if _, ok := remote[d]; !ok {
				dests = append(dests, d)
			}
			remote[d] = append(remote[d], u)
			continue
		}
		devs, err := tx.KeyedDevices(u)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			entries = append(entries, storage.InboxEntry{UserID: u, DeviceID: d, Kind: storage.EntryGroup,
				Conversation: groupID, Seq: seq, ExpiresAt: expires, Payload: payload})
		}
	}
	if err := tx.InsertInbox(entries); err != nil {
		return nil, err
	}
	if len(dests) > 0 {
		g, err := tx.Group(groupID)
		if err != nil {
			return nil, err
		}
		it := wire.FedItem{Kind: wire.FedGroupEvent, Conversation: groupID, Group: groupID, Seq: seq, Event: &ev,
			Meta: &wire.GroupMeta{Name: g.Name, Description: g.Description, Avatar: g.Avatar}}
		for _, m := range members {
			if m.State == storage.MemberJoined {
				it.Members = append(it.Members, wire.Member{User: m.UserID, Role: m.Role})
			} else {
				it.Invited = append(it.Invited, wire.Member{User: m.UserID, Role: m.Role})
			}
		}
		for _, d := range dests {
			it.Users = remote[d]
			if err := s.enqueue(tx, d, it); err != nil {
				return nil, err
			}
		}
	}
	return dests, nil
}

// userExists checks, inside a transaction, that a user to add exists: a
// local account, or a remote user whose server listed them (groupUsers
// fetched the list before).
func (s *Server) userExists(tx storage.Tx, u string) error {
	var err error
	if s.isLocal(u) {
		_, err = tx.Account(u)
	} else {
		_, err = tx.RemoteDeviceList(u)
	}
	if notFound(err) {
		return refuse(wire.CodeUnknownUser, "%s does not exist", u)
	}
	return err
}

// groupOp runs one group change in one Write: load, check and mutate in
// fn, which returns the event to sequence (or nil) and extra recipients.
func (s *Server) groupOp(ctx context.Context, c Caller, id string,
	fn func(tx storage.Tx, st *groupState) (*wire.Event, []string, error)) error {
	var dests []string
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		dests = nil
		st, err := s.loadGroup(tx, id, c.UserID)
		if err != nil {
			return err
		}
		ev, extra, err := fn(tx, st)
		if err != nil || ev == nil {
			return err
		}
		ev.Actor = c.UserID
		dests, err = s.groupEvent(tx, id, *ev, extra...)
		return err
	})
	if err != nil {
		return internal(ctx, err)
	}
	s.wakeOutbox(dests)
	return nil
}

// CreateGroup makes a group with the caller as owner and the listed users
// as members at once.
func (s *Server) CreateGroup(ctx context.Context, c Caller, req wire.CreateGroupRequest) (wire.Group, error) {
	if err := checkMeta(req.GroupMeta); err != nil {
		return wire.Group{}, err
	}
	users, err := s.groupUsers(ctx, req.Members)
	if err != nil {
		return wire.Group{}, err
	}
	users = slices.DeleteFunc(users, func(u string) bool { return u == c.UserID })
	if len(users)+1 > s.opts.MaxGroupMembers {
		return wire.Group{}, refuse(wire.CodeGroupFull, "a group holds at most %d members", s.opts.MaxGroupMembers)
	}
	id := newGroupID()
	var dests []string
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		for _, u := range users {
			if err := s.userExists(tx, u); err != nil {
				return err
			}
		}
		now := s.now()
		all := append([]string{c.UserID}, users...)
		if err := tx.InsertConversation(storage.Conversation{ID: id, Kind: storage.KindGroup, Hub: s.opts.Domain,
			CreatedAt: now}, all); err != nil {
			return err
		}
		if err := tx.InsertGroup(storage.Group{ID: id, Name: req.Name, Description: req.Description,
			Avatar: req.Avatar, Creator: c.UserID, CreatedAt: now}); err != nil {
			return err
		}
		members := make([]wire.Member, 0, len(all))
		for i, u := range all {
			role := wire.RoleMember
			if i == 0 {
				role = wire.RoleOwner
			}
			if err := tx.PutGroupMember(storage.GroupMember{GroupID: id, UserID: u, Role: role,
				State: storage.MemberJoined, SinceSeq: 1}); err != nil {
				return err
			}
			members = append(members, wire.Member{User: u, Role: role})
		}
		meta := req.GroupMeta
		dests, err = s.groupEvent(tx, id, wire.Event{Action: wire.GroupCreated, Actor: c.UserID, Meta: &meta, Members: members})
		return err
	})
	if err != nil {
		return wire.Group{}, internal(ctx, err)
	}
	s.wakeOutbox(dests)
	s.log.InfoContext(ctx, "group created", "group", id, "owner", c.UserID, "members", len(users)+1)
	return s.GetGroup(ctx, c, id)
}

// GetGroup describes a group to one of its members (or invitees).
func (s *Server) GetGroup(ctx context.Context, c Caller, id string) (wire.Group, error) {
	var out wire.Group
	err := s.store.Read(ctx, func(tx storage.Tx) error {
		st, err := s.loadGroup(tx, id, c.UserID)
		if err != nil {
			return err
		}
		if st.caller.State == "" {
			return refuse(wire.CodeNotMember, "you are not a member of %s", id)
		}
		conv, err := tx.Conversation(id)
		if err != nil {
			return err
		}
		g := st.group
		out = wire.Group{ID: id, GroupMeta: wire.GroupMeta{Name: g.Name, Description: g.Description, Avatar: g.Avatar},
			Hub: conv.Hub, CreatedAt: g.CreatedAt, Seq: conv.LastSeq, RemovalSeq: g.RemovalSeq, Members: []wire.Member{}}
		for _, m := range st.members {
			if m.State == storage.MemberJoined {
				out.Members = append(out.Members, wire.Member{User: m.UserID, Role: m.Role})
			} else {
				out.Invited = append(out.Invited, wire.Member{User: m.UserID, Role: m.Role})
			}
		}
		return nil
	})
	return out, internal(ctx, err)
}

// ListGroups lists the caller's groups and pending invitations.
func (s *Server) ListGroups(ctx context.Context, c Caller) (wire.GroupList, error) {
	out := wire.GroupList{Groups: []wire.GroupSummary{}}
	err := s.store.Read(ctx, func(tx storage.Tx) error {
		gs, err := tx.UserGroups(c.UserID)
		for _, g := range gs {
			sum := wire.GroupSummary{ID: g.GroupID, Name: g.Name, Role: g.Role}
			if g.State == storage.MemberJoined {
				out.Groups = append(out.Groups, sum)
			} else {
				out.Invites = append(out.Invites, sum)
			}
		}
		return err
	})
	return out, internal(ctx, err)
}

// AddMembers (admins) makes users members at once; Invite (admins) asks
// them, and they Accept or Decline.
func (s *Server) AddMembers(ctx context.Context, c Caller, id string, raw []string) error {
	return s.addUsers(ctx, c, id, raw, storage.MemberJoined)
}

func (s *Server) Invite(ctx context.Context, c Caller, id string, raw []string) error {
	return s.addUsers(ctx, c, id, raw, storage.MemberInvited)
}

func (s *Server) addUsers(ctx context.Context, c Caller, id string, raw []string, state string) error {
	if hub, err := s.remoteHub(ctx, id); err != nil || hub != "" {
		op := wire.OpAdd
		if state == storage.MemberInvited {
			op = wire.OpInvite
		}
		return s.proxied(ctx, hub, id, err, wire.GroupOp{Op: op, Actor: c.UserID, Users: raw})
	}
	users, err := s.groupUsers(ctx, raw)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return invalid("users", "no users given")
	}
	return s.groupOp(ctx, c, id, func(tx storage.Tx, st *groupState) (*wire.Event, []string, error) {
		if err := requireAdmin(st); err != nil {
			return nil, nil, err
		}
		if len(st.members)+len(users) > s.opts.MaxGroupMembers {
			return nil, nil, refuse(wire.CodeGroupFull, "a group holds at most %d members (it has %d)",
				s.opts.MaxGroupMembers, len(st.members))
		}
		conv, err := tx.Conversation(id)
		if err != nil {
			return nil, nil, err
		}
		var added []wire.Member
		for _, u := range users {
			if m, ok := st.member(u); ok {
				if m.State == storage.MemberJoined || state == storage.MemberInvited {
					return nil, nil, refuse(wire.CodeAlreadyMember, "%s is already %s", u, m.State)
				}
				// Adding an invitee makes them a member; that is fine.
			}
			if err := s.userExists(tx, u); err != nil {
				return nil, nil, err
			}
			if err := tx.PutGroupMember(storage.GroupMember{GroupID: id, UserID: u, Role: wire.RoleMember,
				State: state, SinceSeq: conv.LastSeq + 1}); err != nil {
				return nil, nil, err
			}
			if state == storage.MemberJoined {
				if err := tx.AddConversationMember(id, u); err != nil {
					return nil, nil, err
				}
			}
			added = append(added, wire.Member{User: u, Role: wire.RoleMember})
		}
		if state == storage.MemberInvited {
			return &wire.Event{Action: wire.GroupInvited, Members: added}, users, nil
		}
		return &wire.Event{Action: wire.GroupAdded, Members: added}, nil, nil
	})
}

// Accept and Decline answer the caller's invitation.
func (s *Server) Accept(ctx context.Context, c Caller, id string) error {
	return s.answerInvite(ctx, c, id, true)
}

func (s *Server) Decline(ctx context.Context, c Caller, id string) error {
	return s.answerInvite(ctx, c, id, false)
}

func (s *Server) answerInvite(ctx context.Context, c Caller, id string, accept bool) error {
	if hub, err := s.remoteHub(ctx, id); err != nil || hub != "" {
		op := wire.OpDecline
		if accept {
			op = wire.OpJoin
		}
		return s.proxied(ctx, hub, id, err, wire.GroupOp{Op: op, Actor: c.UserID})
	}
	return s.groupOp(ctx, c, id, func(tx storage.Tx, st *groupState) (*wire.Event, []string, error) {
		if st.caller.State != storage.MemberInvited {
			if st.caller.State == storage.MemberJoined {
				return nil, nil, refuse(wire.CodeAlreadyMember, "you are a member of %s already", id)
			}
			return nil, nil, refuse(wire.CodeNotInvited, "you have no invitation to %s", id)
		}
		if !accept {
			if err := tx.DeleteGroupMember(id, c.UserID); err != nil {
				return nil, nil, err
			}
			return &wire.Event{Action: wire.GroupDeclined, User: c.UserID}, []string{c.UserID}, nil
		}
		conv, err := tx.Conversation(id)
		if err != nil {
			return nil, nil, err
		}
		m := st.caller
		m.State, m.SinceSeq = storage.MemberJoined, conv.LastSeq+1
		if err := tx.PutGroupMember(m); err != nil {
			return nil, nil, err
		}
		if err := tx.AddConversationMember(id, c.UserID); err != nil {
			return nil, nil, err
		}
		return &wire.Event{Action: wire.GroupJoined, User: c.UserID, Role: m.Role}, nil, nil
	})
}

// RemoveMember removes a member (admins: members and admins; the owner:
// anyone but itself) or, when user is the caller, leaves the group. The
// owner cannot leave or be removed: ownership moves first. The removed
// member gets the event and nothing sent after it; the group's removal
// sequence number moves, telling senders to rotate their sender keys.
func (s *Server) RemoveMember(ctx context.Context, c Caller, id, rawUser string) error {
	if hub, err := s.remoteHub(ctx, id); err != nil || hub != "" {
		return s.proxied(ctx, hub, id, err, wire.GroupOp{Op: wire.OpRemove, Actor: c.UserID, User: rawUser})
	}
	user, err := s.groupUser("user", rawUser)
	if err != nil {
		return err
	}
	return s.groupOp(ctx, c, id, func(tx storage.Tx, st *groupState) (*wire.Event, []string, error) {
		if err := requireJoined(st); err != nil {
			return nil, nil, err
		}
		action := wire.GroupLeft
		if user != c.UserID {
			action = wire.GroupRemoved
			if !isAdmin(st.caller) {
				return nil, nil, refuse(wire.CodeForbidden, "only the group's owner and admins remove members")
			}
		}
		target, ok := st.member(user)
		if !ok {
			return nil, nil, refuse(wire.CodeNotMember, "%s is not a member of %s", user, id)
		}
		if target.Role == wire.RoleOwner {
			return nil, nil, refuse(wire.CodeLastOwner, "the owner cannot leave or be removed; transfer ownership first")
		}
		if action == wire.GroupRemoved && target.Role == wire.RoleAdmin && st.caller.Role != wire.RoleOwner {
			return nil, nil, refuse(wire.CodeForbidden, "only the owner removes an admin")
		}
		if err := tx.DeleteGroupMember(id, user); err != nil {
			return nil, nil, err
		}
		if err := tx.RemoveConversationMember(id, user); err != nil {
			return nil, nil, err
		}
		if target.State == storage.MemberJoined {
			conv, err := tx.Conversation(id)
			if err != nil {
				return nil, nil, err
			}
			g := st.group
			g.RemovalSeq = conv.LastSeq + 1 // the seq the event below takes
			if err := tx.UpdateGroup(g); err != nil {
				return nil, nil, err
			}
		}
		return &wire.Event{Action: action, User: user}, []string{user}, nil
	})
}

// SetRole (owner and admins) makes a member an admin or an admin a member.
// Only the owner changes another admin's role; ownership moves only by
// TransferOwner.
func (s *Server) SetRole(ctx context.Context, c Caller, id, rawUser, role string) error {
	if hub, err := s.remoteHub(ctx, id); err != nil || hub != "" {
		return s.proxied(ctx, hub, id, err, wire.GroupOp{Op: wire.OpRole, Actor: c.UserID, User: rawUser, Role: role})
	}
	user, err := s.groupUser("user", rawUser)
	if err != nil {
		return err
	}
	if role != wire.RoleAdmin && role != wire.RoleMember {
		return invalid("role", "role must be %q or %q (ownership is transferred instead)", wire.RoleAdmin, wire.RoleMember)
	}
	return s.groupOp(ctx, c, id, func(tx storage.Tx, st *groupState) (*wire.Event, []string, error) {
		if err := requireAdmin(st); err != nil {
			return nil, nil, err
		}
		target, ok := st.member(user)
		if !ok || target.State != storage.MemberJoined {
			return nil, nil, refuse(wire.CodeNotMember, "%s is not a member of %s", user, id)
		}
		if target.Role == wire.RoleOwner {
			return nil, nil, refuse(wire.CodeLastOwner, "the owner's role changes only by transferring ownership")
		}
		if target.Role == wire.RoleAdmin && st.caller.Role != wire.RoleOwner && user != c.UserID {
			return nil, nil, refuse(wire.CodeForbidden, "only the owner changes another admin's role")
		}
		if target.Role == role {
			return nil, nil, nil // nothing changes, nothing to announce
		}
		target.Role = role
		if err := tx.PutGroupMember(target); err != nil {
			return nil, nil, err
		}
		return &wire.Event{Action: wire.GroupRole, User: user, Role: role}, nil, nil
	})
}

// TransferOwner (owner) hands ownership to a member; the old owner
// becomes an admin.
func (s *Server) TransferOwner(ctx context.Context, c Caller, id, rawUser string) error {
	if hub, err := s.remoteHub(ctx, id); err != nil || hub != "" {
		return s.proxied(ctx, hub, id, err, wire.GroupOp{Op: wire.OpOwner, Actor: c.UserID, User: rawUser})
	}
	user, err := s.groupUser("user", rawUser)
	if err != nil {
		return err
	}
	return s.groupOp(ctx, c, id, func(tx storage.Tx, st *groupState) (*wire.Event, []string, error) {
		if err := requireJoined(st); err != nil {
			return nil, nil, err
		}
		if st.caller.Role != wire.RoleOwner {
			return nil, nil, refuse(wire.CodeForbidden, "only the owner transfers ownership")
		}
		target, ok := st.member(user)
		if !ok || target.State != storage.MemberJoined {
			return nil, nil, refuse(wire.CodeNotMember, "%s is not a member of %s", user, id)
		}
		if user == c.UserID {
			return nil, nil, nil
		}
		old := st.caller
		old.Role, target.Role = wire.RoleAdmin, wire.RoleOwner
		if err := tx.PutGroupMember(old); err != nil {
			return nil, nil, err
		}
		if err := tx.PutGroupMember(target); err != nil {
			return nil, nil, err
		}
		return &wire.Event{Action: wire.GroupOwner, User: user, Role: wire.RoleOwner}, nil, nil
	})
}

// UpdateGroupMeta (owner and admins) replaces the metadata.
func (s *Server) UpdateGroupMeta(ctx context.Context, c Caller, id string, meta wire.GroupMeta) error {
	if err := checkMeta(meta); err != nil {
		return err
	}
	if hub, err := s.remoteHub(ctx, id); err != nil || hub != "" {
		return s.proxied(ctx, hub, id, err, wire.GroupOp{Op: wire.OpMetadata, Actor: c.UserID, Meta: &meta})
	}
	return s.groupOp(ctx, c, id, func(tx storage.Tx, st *groupState) (*wire.Event, []string, error) {
		if err := requireAdmin(st); err != nil {
			return nil, nil, err
		}
		g := st.group
		g.Name, g.Description, g.Avatar = meta.Name, meta.Description, meta.Avatar
		if err := tx.UpdateGroup(g); err != nil {
			return nil, nil, err
		}
		return &wire.Event{Action: wire.GroupMetadata, Meta: &meta}, nil, nil
	})
}

// DeleteGroup (owner) ends the group: every member gets a "deleted" event
// (the last in its sequence); messages already queued stay deliverable.
func (s *Server) DeleteGroup(ctx context.Context, c Caller, id string) error {
	if hub, err := s.remoteHub(ctx, id); err != nil || hub != "" {
		return s.proxied(ctx, hub, id, err, wire.GroupOp{Op: wire.OpDelete, Actor: c.UserID})
	}
	var dests []string
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		st, err := s.loadGroup(tx, id, c.UserID)
		if err != nil {
			return err
		}
		if err := requireJoined(st); err != nil {
			return err
		}
		if st.caller.Role != wire.RoleOwner {
			return refuse(wire.CodeForbidden, "only the owner deletes the group")
		}
		var invited []string
		for _, m := range st.members {
			if m.State == storage.MemberInvited {
				invited = append(invited, m.UserID)
			}
		}
		dests, err = s.groupEvent(tx, id, wire.Event{Action: wire.GroupDeleted, Actor: c.UserID}, invited...)
		if err != nil {
			return err
		}
		return tx.DeleteGroup(id)
	})
	if err != nil {
		return internal(ctx, err)
	}
	s.wakeOutbox(dests)
	return nil
}

// GroupDevices lists every device with keys of every member: the devices a
// group message is encrypted to.
func (s *Server) GroupDevices(ctx context.Context, c Caller, id string) (wire.GroupDevices, error) {
	if hub, err := s.remoteHub(ctx, id); err != nil {
		return wire.GroupDevices{}, err
	} else if hub != "" {
		d, err := s.fed.Remote.GroupDevices(ctx, hub, id, c.UserID)
		if err != nil {
			var we *wire.Error
			if errors.As(err, &we) {
				return wire.GroupDevices{}, &Error{Code: we.Code, Message: we.Message}
			}
			return wire.GroupDevices{}, remoteError(hub, err)
		}
		return d, nil
	}
	var out wire.GroupDevices
	err := s.store.Read(ctx, func(tx storage.Tx) error {
		st, err := s.loadGroup(tx, id, c.UserID)
		if err != nil {
			return err
		}
		if err := requireJoined(st); err != nil {
			return err
		}
		conv, err := tx.Conversation(id)
		if err != nil {
			return err
		}
		devs, err := tx.GroupDevices(id)
		out = wire.GroupDevices{Group: id, Seq: conv.LastSeq, RemovalSeq: st.group.RemovalSeq,
			Devices: make([]wire.GroupDevice, 0, len(devs))}
		for _, d := range devs {
			out.Devices = append(out.Devices, wire.GroupDevice{User: d.UserID, DeviceID: d.DeviceID, IdentityKey: d.IdentityKey})
		}
		return err
	})
	return out, internal(ctx, err)
}

// sendGroup sequences a group message: only joined members send, and the
// ciphertexts must cover every member device but the sending one.
func (s *Server) sendGroup(ctx context.Context, c Caller, req wire.SendRequest) (wire.SendResult, error) {
	if hub, err := s.remoteHub(ctx, req.To); err != nil {
		return wire.SendResult{}, err
	} else if hub != "" {
		// A member server checks membership in its mirror; the hub checks
		// everything again, devices included, and answers with a sent or
		// error event.
		return s.forwardSend(ctx, c, req, req.To, hub, func(tx storage.Tx) error {
			if m, err := tx.GroupMember(req.To, c.UserID); notFound(err) || (err == nil && m.State != storage.MemberJoined) {
				return refuse(wire.CodeNotMember, "you are not a member of %s", req.To)
			} else {
				return err
			}
		})
	}
	return s.store1(ctx, c, req, req.To, func(tx storage.Tx) error {
		m, err := tx.GroupMember(req.To, c.UserID)
		if notFound(err) || (err == nil && m.State != storage.MemberJoined) {
			if _, gerr := tx.Group(req.To); notFound(gerr) {
				return refuse(wire.CodeUnknownGroup, "no group %s", req.To)
			} else if gerr != nil {
				return gerr
			}
			return refuse(wire.CodeNotMember, "you are not a member of %s", req.To)
		} else if err != nil {
			return err
		}
		want, err := groupDeviceSet(tx, req.To)
		if err != nil {
			return err
		}
		delete(want, deviceAddr{User: c.UserID, Device: c.DeviceID})
		return checkCoverage(want, req)
	}, nil)
}

// groupDeviceSet is the set of every device with keys of every joined
// member of a group: the devices a send to it must cover.
func groupDeviceSet(tx storage.Tx, groupID string) (deviceSet, error) {
	devs, err := tx.GroupDeviceIDs(groupID)
	if err != nil {
		return nil, err
	}
	want := make(deviceSet, len(devs))
	for _, d := range devs {
		want[deviceAddr{User: d.UserID, Device: d.DeviceID}] = struct{}{}
	}
	return want, nil
}
