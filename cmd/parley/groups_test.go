package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/wire"
)

var groupIDRE = regexp.MustCompile(`^g-[0-9a-f]+\n$`)

// keysOf returns the sorted keys of a recv --json object.
func keysOf(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// usageFails runs a command that must be refused as a usage error (exit 2)
// before anything is sent.
func (u *user) usageFails(want string, args ...string) {
	u.t.Helper()
	code, out, errOut := u.run(args...)
	if code != 2 || out != "" || !strings.Contains(errOut, want) {
		u.t.Errorf("parley %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out, errOut, want)
	}
}

// TestCLIGroups drives the real binaries through a group's life: the
// output of every group command, group messages and events in recv
// (JSON and text), aggregated receipts and the errors.
func TestCLIGroups(t *testing.T) {
	hs := startHomeserver(t, t.TempDir())
	server := hs.url
	dir := t.TempDir()
	newUser := func(home, password string) *user {
		return &user{t: t, home: filepath.Join(dir, home), server: &server, password: password}
	}
	alice, laptop := newUser("alice", "alice secret"), newUser("alice-laptop", "alice secret")
	bob, carol, dave := newUser("bob", "bob secret"), newUser("carol", "carol secret"), newUser("dave", "dave secret")
	for _, u := range []*user{alice, bob, carol, dave} {
		u.ok("register", filepath.Base(u.home))
	}
	laptop.ok("login", "alice")

	out := alice.ok("group", "create", "Book", "club", "--member", "bob@localhost")
	if !groupIDRE.MatchString(out) {
		t.Fatalf("group create printed %q, want the group id alone", out)
	}
	g := strings.TrimSpace(out)
	if out := alice.ok("group", "list"); out != g+" owner Book club\n" {
		t.Fatalf("alice's group list: %q", out)
	}
	if out := bob.ok("group", "list"); out != g+" member Book club\n" {
		t.Fatalf("bob's group list: %q", out)
	}
	// Bare names are on the sender's domain.
	if out := alice.ok("group", "add", g, "carol"); out != "" {
		t.Fatalf("group add printed %q", out)
	}
	if out := bob.ok("group", "members", g); out != "alice@localhost owner\nbob@localhost member\ncarol@localhost member\n" {
		t.Fatalf("group members: %q", out)
	}

	if out := alice.ok("send", g, "Hello", "club"); out != "" {
		t.Fatalf("send to a group printed %q", out)
	}
	var res wire.SendResult
	if err := json.Unmarshal([]byte(alice.ok("send", "--json", g, "Second")), &res); err != nil || res.Conversation != g || res.Seq != 4 {
		t.Fatalf("send --json: %+v %v", res, err)
	}

	// Bob sees the group's events and messages in order, as JSON.
	objs := jsonLines(t, bob.ok("recv", "--json"))
	var summary []string
	for _, o := range objs {
		summary = append(summary, fmt.Sprintf("%v:%v:%v", o["type"], o["seq"], o["action"]))
	}
	if fmt.Sprint(summary) != "[group_event:1:created group_event:2:added message:3:<nil> message:4:<nil>]" {
		t.Fatalf("bob recv --json: %v", objs)
	}
	created, added, msg := objs[0], objs[1], objs[2]
	if want := []string{"action", "actor", "conversation", "group", "id", "members", "meta", "seq", "type"}; !slices.Equal(keysOf(created), want) {
		t.Fatalf("created event fields %v, want %v", keysOf(created), want)
	}
	if created["group"] != g || created["conversation"] != g || created["actor"] != "alice@localhost" ||
		fmt.Sprint(created["meta"]) != "map[name:Book club]" ||
		fmt.Sprint(created["members"]) != "[map[role:owner user:alice@localhost] map[role:member user:bob@localhost]]" {
		t.Fatalf("created event %v", created)
	}
	if fmt.Sprint(added["members"]) != "[map[role:member user:carol@localhost]]" || added["actor"] != "alice@localhost" {
		t.Fatalf("added event %v", added)
	}
	if want := []string{"conversation", "from", "from_device", "group", "id", "sent_at", "seq", "text", "type"}; !slices.Equal(keysOf(msg), want) {
		t.Fatalf("group message fields %v, want %v", keysOf(msg), want)
	}
	if msg["group"] != g || msg["conversation"] != g || msg["from"] != "alice@localhost" || msg["from_device"] != 1.0 ||
		msg["text"] != "Hello club" || objs[3]["text"] != "Second" {
		t.Fatalf("group messages %v", objs[2:])
	}
	if _, err := time.Parse(time.RFC3339, msg["sent_at"].(string)); err != nil {
		t.Fatal(err)
	}
	// The sender's other device gets them too.
	if got := ofType(jsonLines(t, laptop.ok("recv", "--json")), "message"); len(got) != 2 || got[0]["text"] != "Hello club" ||
		got[0]["group"] != g {
		t.Fatalf("alice's laptop got %v", got)
	}
	// Carol, as text.
	lns := lines(carol.ok("recv"))
	if len(lns) != 3 || lns[0] != "• "+g+"#2 alice@localhost added carol@localhost" ||
		!regexp.MustCompile(`^\[\d\d:\d\d:\d\d\] alice@localhost/1 in `+g+`: Hello club$`).MatchString(lns[1]) {
		t.Fatalf("carol recv: %q", lns)
	}

	// Alice gets one aggregated receipt of each kind.
	want := fmt.Sprintf(`{"type":"receipt","status":"delivered","conversation":"%s","group":"%[1]s","seq":4,"count":2}`+"\n"+
		`{"type":"receipt","status":"read","conversation":"%[1]s","group":"%[1]s","seq":4,"count":2}`, g)
	var receipts []string
	for _, l := range lines(alice.ok("recv", "--json")) {
		if strings.Contains(l, `"type":"receipt"`) {
			receipts = append(receipts, l)
		}
	}
	if strings.Join(receipts, "\n") != want {
		t.Fatalf("alice's receipts:\n%s\nwant\n%s", strings.Join(receipts, "\n"), want)
	}

	// Carol is removed: she is told, then gets nothing.
	if out := alice.ok("group", "remove", g, "carol@localhost"); out != "" {
		t.Fatalf("group remove printed %q", out)
	}
	alice.ok("send", g, "Without carol")
	removed := fmt.Sprintf(`{"type":"group_event","id":%%d,"conversation":"%s","group":"%[1]s","seq":5,"action":"removed","actor":"alice@localhost","user":"carol@localhost"}`, g)
	out = carol.ok("recv", "--json")
	objs = jsonLines(t, out)
	if len(objs) != 1 {
		t.Fatalf("carol after removal: %v", objs)
	}
	if want := fmt.Sprintf(removed, int64(objs[0]["id"].(float64))) + "\n"; out != want {
		t.Fatalf("removed event:\n%s\nwant\n%s", out, want)
	}
	if out := carol.ok("group", "list"); out != "" {
		t.Fatalf("carol still lists %q", out)
	}
	code, out, errOut := carol.run("send", g, "Let me in")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "parley: not_member: ") || len(lines(errOut)) != 1 {
		t.Fatalf("send after removal: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := ofType(jsonLines(t, bob.ok("recv", "--json")), "message"); len(got) != 1 || got[0]["text"] != "Without carol" {
		t.Fatalf("bob after carol's removal: %v", got)
	}

	// Invitations, roles, ownership.
	alice.ok("group", "invite", g, "dave")
	if out := dave.ok("group", "list"); out != g+" invited Book club\n" {
		t.Fatalf("dave's invitation: %q", out)
	}
	dave.ok("group", "join", g)
	alice.ok("group", "role", g, "dave", "admin")
	alice.ok("group", "owner", g, "dave@localhost")
	if out := alice.ok("group", "members", g); out != "alice@localhost admin\nbob@localhost member\ndave@localhost owner\n" {
		t.Fatalf("members after the changes: %q", out)
	}
	var grp wire.Group
	if err := json.Unmarshal([]byte(alice.ok("group", "members", "--json", g)), &grp); err != nil || grp.ID != g || len(grp.Members) != 3 {
		t.Fatalf("group members --json: %+v %v", grp, err)
	}
	alice.ok("group", "invite", g, "carol")
	carol.ok("group", "decline", g)

	// Bob leaves; dave (the owner now) deletes the group.
	if out := bob.ok("group", "leave", g); out != "" {
		t.Fatalf("group leave printed %q", out)
	}
	if out := bob.ok("group", "list"); out != "" {
		t.Fatalf("bob still lists %q", out)
	}
	dave.ok("send", g, "Goodbye")
	dave.ok("group", "delete", g)
	lns = lines(alice.ok("recv"))
	var tail []string
	for _, l := range lns {
		if strings.HasPrefix(l, "• ") || strings.HasPrefix(l, "[") {
			tail = append(tail, regexp.MustCompile(`^\[\d\d:\d\d:\d\d\] `).ReplaceAllString(l, "[T] "))
		}
	}
	wantTail := []string{
		"• " + g + "#5 alice@localhost removed carol@localhost",
		"• " + g + "#7 alice@localhost invited dave@localhost",
		"• " + g + "#8 dave@localhost joined",
		"• " + g + "#9 alice@localhost made dave@localhost admin",
		"• " + g + "#10 alice@localhost made dave@localhost the owner",
		"• " + g + "#11 alice@localhost invited carol@localhost",
		"• " + g + "#12 carol@localhost declined the invitation",
		"• " + g + "#13 bob@localhost left",
		"[T] dave@localhost/1 in " + g + ": Goodbye",
		"• " + g + "#15 dave@localhost deleted the group",
	}
	if !slices.Equal(tail, wantTail) {
		t.Fatalf("alice recv:\n%s\nwant\n%s", strings.Join(tail, "\n"), strings.Join(wantTail, "\n"))
	}
	code, _, errOut = alice.run("group", "members", g)
	if code != 1 || !strings.HasPrefix(errOut, "parley: unknown_group: ") {
		t.Fatalf("members of a deleted group: exit %d, stderr %q", code, errOut)
	}

	// Usage errors: exit 2, nothing sent.
	alice.usageFails("usage: parley group add GROUP USER...", "group", "add", g)
	alice.usageFails(`unknown group command "frob"`, "group", "frob")
	alice.usageFails("usage: parley group SUBCOMMAND", "group")
	alice.usageFails(`"bob@localhost" is not a group id`, "group", "members", "bob@localhost")
	alice.usageFails(`role must be "admin" or "member"`, "group", "role", g, "bob", "owner")
	alice.usageFails("group add does not take --member", "group", "add", g, "bob", "--member", "carol")
	alice.usageFails("group leave does not take --json", "group", "leave", g, "--json")
}

// The JSON and text forms of group items, without a server.
func TestGroupItemOutput(t *testing.T) {
	sent := time.Date(2025, 3, 4, 15, 4, 5, 0, time.UTC)
	const g = "g-0123"
	tests := []struct {
		item       client.Item
		json, text string
	}{
		{
			client.Item{Type: client.ItemMessage, ID: 7, Conversation: g, Group: g, Seq: 3, From: "alice@dom", FromDevice: 2,
				Text: "hi", SentAt: sent},
			`{"type":"message","id":7,"conversation":"g-0123","group":"g-0123","seq":3,"from":"alice@dom","from_device":2,"text":"hi","sent_at":"2025-03-04T15:04:05Z"}`,
			"alice@dom/2 in g-0123: hi",
		},
		{
			client.Item{Type: client.ItemReceipt, ID: 8, Conversation: g, Group: g, Seq: 3, Status: wire.StatusDelivered, Count: 1},
			`{"type":"receipt","status":"delivered","conversation":"g-0123","group":"g-0123","seq":3,"count":1}`,
			"✓ delivered g-0123#3 to 1 device",
		},
		{
			client.Item{Type: client.ItemReceipt, ID: 9, Conversation: g, Group: g, Seq: 3, Status: wire.StatusRead, Count: 4},
			`{"type":"receipt","status":"read","conversation":"g-0123","group":"g-0123","seq":3,"count":4}`,
			"✓ read g-0123#3 by 4 members",
		},
		{
			client.Item{Type: client.ItemGroupEvent, ID: 10, Conversation: g, Group: g, Seq: 1, Action: wire.GroupCreated,
				Actor: "alice@dom", Members: []wire.Member{{User: "alice@dom", Role: wire.RoleOwner}}, Meta: &wire.GroupMeta{Name: "team\x1b"}},
			`{"type":"group_event","id":10,"conversation":"g-0123","group":"g-0123","seq":1,"action":"created","actor":"alice@dom","members":[{"user":"alice@dom","role":"owner"}],"meta":{"name":"team\u001b"}}`,
			"• g-0123#1 alice@dom created the group \"team\uFFFD\" (members: alice@dom)",
		},
		{
			client.Item{Type: client.ItemGroupEvent, ID: 11, Conversation: g, Group: g, Seq: 2, Action: wire.GroupRole,
				Actor: "alice@dom", User: "bob@dom", Role: wire.RoleAdmin},
			`{"type":"group_event","id":11,"conversation":"g-0123","group":"g-0123","seq":2,"action":"role","actor":"alice@dom","user":"bob@dom","role":"admin"}`,
			"• g-0123#2 alice@dom made bob@dom admin",
		},
		{
			client.Item{Type: client.ItemGroupEvent, ID: 12, Conversation: g, Group: g, Seq: 3, Action: "renamed_planet"},
			`{"type":"group_event","id":12,"conversation":"g-0123","group":"g-0123","seq":3,"action":"renamed_planet"}`,
			"• g-0123#3 renamed_planet",
		},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := (&printer{w: &buf, json: true}).print(tt.item); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != tt.json+"\n" {
			t.Errorf("json:\n got %s want %s", got, tt.json)
		}
		text := textItem(tt.item)
		if tt.item.Type == client.ItemMessage {
			text = text[strings.Index(text, "] ")+2:]
		}
		if text != tt.text {
			t.Errorf("text: got %q, want %q", text, tt.text)
		}
	}
}
