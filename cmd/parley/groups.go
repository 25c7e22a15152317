package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/wire"
)

// groupSpec says what one "parley group" subcommand takes. args counts
// the arguments after the subcommand; max < 0: no limit.
type groupSpec struct {
	min, max int
	usage    string
	json     bool // takes --json
}

var groupCommands = map[string]groupSpec{
	"create":  {1, -1, "group create NAME [--member USER]... [--json]", true},
	"list":    {0, 0, "group list [--json]", true},
	"members": {1, 1, "group members GROUP [--json]", true},
	"add":     {2, -1, "group add GROUP USER...", false},
	"invite":  {2, -1, "group invite GROUP USER...", false},
	"join":    {1, 1, "group join GROUP", false},
	"decline": {1, 1, "group decline GROUP", false},
	"remove":  {2, 2, "group remove GROUP USER", false},
	"leave":   {1, 1, "group leave GROUP", false},
	"role":    {3, 3, "group role GROUP USER admin|member", false},
	"owner":   {2, 2, "group owner GROUP USER", false},
	"delete":  {1, 1, "group delete GROUP", false},
}

// checkGroupArgs validates a "group" command line: its subcommand, their
// arguments and flags (parseArgs calls it; set holds the flags given).
func checkGroupArgs(inv *invocation, set map[string]bool) error {
	if len(inv.args) == 0 {
		return usagef("usage: parley group SUBCOMMAND (create, list, members, add, invite, join, decline, remove, leave, role, owner, delete)")
	}
	sub, args := inv.args[0], inv.args[1:]
	spec, ok := groupCommands[sub]
	if !ok {
		return usagef("unknown group command %q", sub)
	}
	if len(args) < spec.min || (spec.max >= 0 && len(args) > spec.max) {
		return usagef("usage: parley %s", spec.usage)
	}
	if set["member"] && sub != "create" {
		return usagef("group %s does not take --member", sub)
	}
	if set["json"] && !spec.json {
		return usagef("group %s does not take --json", sub)
	}
	if spec.min > 0 && sub != "create" && !client.IsGroupID(args[0]) {
		return usagef("%q is not a group id (they start with %q)", args[0], wire.GroupIDPrefix)
	}
	if sub == "role" && args[2] != wire.RoleAdmin && args[2] != wire.RoleMember {
		return usagef("role must be %q or %q (use group owner to transfer ownership)", wire.RoleAdmin, wire.RoleMember)
	}
	return nil
}

// group runs "parley group SUBCOMMAND ...". Output (stdout):
//
//	create   the new group's id alone on a line
//	list     one line per group: GROUP_ID ROLE NAME, then one per
//	         invitation: GROUP_ID invited NAME
//	members  one line per member: USER_ID ROLE
//
// The other subcommands print nothing. With --json, create and members
// print the group object, list the group list (as the server has them).
func (c *cli) group(ctx context.Context) error {
	acct, err := c.open()
	if err != nil {
		return err
	}
	defer acct.Close()
	api := acct.API()
	sub, args := c.inv.args[0], c.inv.args[1:]
	users := func(names []string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = acct.QualifyUser(n)
		}
		return out
	}
	switch sub {
	case "create":
		g, err := api.CreateGroup(ctx, wire.CreateGroupRequest{
			GroupMeta: wire.GroupMeta{Name: strings.Join(args, " ")},
			Members:   users(c.inv.members),
		})
		if err != nil {
			return err
		}
		if c.inv.json {
			return writeJSON(c.env.stdout, g)
		}
		_, err = fmt.Fprintln(c.env.stdout, g.ID)
		return err
	case "list":
		l, err := api.Groups(ctx)
		if err != nil {
			return err
		}
		if c.inv.json {
			return writeJSON(c.env.stdout, l)
		}
		for _, g := range l.Groups {
			if _, err := fmt.Fprintln(c.env.stdout, groupLine(g.ID, g.Role, g.Name)); err != nil {
				return err
			}
		}
		for _, g := range l.Invites {
			if _, err := fmt.Fprintln(c.env.stdout, groupLine(g.ID, "invited", g.Name)); err != nil {
				return err
			}
		}
		return nil
	case "members":
		g, err := api.Group(ctx, args[0])
		if err != nil {
			return err
		}
		if c.inv.json {
			return writeJSON(c.env.stdout, g)
		}
		for _, m := range g.Members {
			if _, err := fmt.Fprintf(c.env.stdout, "%s %s\n", clean(m.User), clean(m.Role)); err != nil {
				return err
			}
		}
		return nil
	case "add":
		_, err := api.AddMembers(ctx, args[0], users(args[1:]))
		return err
	case "invite":
		return api.Invite(ctx, args[0], users(args[1:]))
	case "join":
		return api.AcceptInvite(ctx, args[0])
	case "decline":
		return api.DeclineInvite(ctx, args[0])
	case "remove":
		return api.RemoveMember(ctx, args[0], acct.QualifyUser(args[1]))
	case "leave":
		return acct.LeaveGroup(ctx, args[0])
	case "role":
		return api.SetRole(ctx, args[0], acct.QualifyUser(args[1]), args[2])
	case "owner":
		return api.TransferOwner(ctx, args[0], acct.QualifyUser(args[1]))
	case "delete":
		return api.DeleteGroup(ctx, args[0])
	}
	return usagef("unknown group command %q", sub)
}

// groupLine is one line of group list: id, role and name (without
// trailing space when the group has no name).
func groupLine(id, role, name string) string {
	line := clean(id) + " " + clean(role)
	if name != "" {
		line += " " + clean(name)
	}
	return line
}

// The recv --json objects of group receipts and group events (group
// messages use jsonMessage, whose "group" only they have). Empty fields
// of an event are left out.
type (
	jsonGroupReceipt struct {
		Type         string `json:"type"`   // "receipt"
		Status       string `json:"status"` // "delivered" or "read"
		Conversation string `json:"conversation"`
		Group        string `json:"group"`
		Seq          uint64 `json:"seq"`
		Count        int    `json:"count"` // devices (delivered) or members (read) that reached Seq
	}
	jsonGroupEvent struct {
		Type         string          `json:"type"` // "group_event"
		ID           int64           `json:"id"`
		Conversation string          `json:"conversation"`
		Group        string          `json:"group"`
		Seq          uint64          `json:"seq"`
		Action       string          `json:"action"`
		Actor        string          `json:"actor,omitempty"`
		User         string          `json:"user,omitempty"`
		Role         string          `json:"role,omitempty"`
		Members      []wire.Member   `json:"members,omitempty"`
		Meta         *wire.GroupMeta `json:"meta,omitempty"`
	}
)

func jsonGroupEventOf(it client.Item) jsonGroupEvent {
	return jsonGroupEvent{Type: it.Type, ID: it.ID, Conversation: it.Conversation, Group: it.Group, Seq: it.Seq,
		Action: it.Action, Actor: it.Actor, User: it.User, Role: it.Role, Members: it.Members, Meta: it.Meta}
}

// groupText is the readable line of a group message, receipt or event
// (ok false for anything else, which textItem formats as usual).
func groupText(it client.Item) (line string, ok bool) {
	if it.Group == "" {
		return "", false
	}
	switch it.Type {
	case client.ItemMessage:
		return fmt.Sprintf("[%s] %s/%d in %s: %s", clock(it.SentAt), clean(it.From), it.FromDevice, clean(it.Group),
			strings.ReplaceAll(cleanText(it.Text), "\n", "\n    ")), true
	case client.ItemReceipt:
		if it.Status == wire.StatusRead {
			return fmt.Sprintf("✓ read %s#%d by %d %s", clean(it.Group), it.Seq, it.Count, plural(it.Count, "member")), true
		}
		return fmt.Sprintf("✓ %s %s#%d to %d %s", clean(it.Status), clean(it.Group), it.Seq, it.Count, plural(it.Count, "device")), true
	case client.ItemGroupEvent:
		return fmt.Sprintf("• %s#%d %s", clean(it.Group), it.Seq, describeGroupEvent(it)), true
	}
	return "", false
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// describeGroupEvent says what happened, e.g. "alice@example.org added
// bob@example.org".
func describeGroupEvent(it client.Item) string {
	actor, user := clean(it.Actor), clean(it.User)
	members := make([]string, len(it.Members))
	for i, m := range it.Members {
		members[i] = clean(m.User)
	}
	list := strings.Join(members, ", ")
	switch it.Action {
	case wire.GroupCreated:
		name := ""
		if it.Meta != nil && it.Meta.Name != "" {
			name = " " + quoteName(it.Meta.Name)
		}
		if list != "" {
			list = " (members: " + list + ")"
		}
		return fmt.Sprintf("%s created the group%s%s", actor, name, list)
	case wire.GroupAdded:
		return fmt.Sprintf("%s added %s", actor, list)
	case wire.GroupInvited:
		return fmt.Sprintf("%s invited %s", actor, list)
	case wire.GroupJoined:
		return fmt.Sprintf("%s joined", user)
	case wire.GroupDeclined:
		return fmt.Sprintf("%s declined the invitation", user)
	case wire.GroupRemoved:
		return fmt.Sprintf("%s removed %s", actor, user)
	case wire.GroupLeft:
		return fmt.Sprintf("%s left", user)
	case wire.GroupRole:
		return fmt.Sprintf("%s made %s %s", actor, user, clean(it.Role))
	case wire.GroupOwner:
		return fmt.Sprintf("%s made %s the owner", actor, user)
	case wire.GroupMetadata:
		name := ""
		if it.Meta != nil {
			name = " (name " + quoteName(it.Meta.Name) + ")"
		}
		return fmt.Sprintf("%s changed the group's details%s", actor, name)
	case wire.GroupDeleted:
		return fmt.Sprintf("%s deleted the group", actor)
	}
	return clean(it.Action)
}

// quoteName quotes a name from the network for one line.
func quoteName(s string) string { return `"` + clean(s) + `"` }
