package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// Group tests: real homeservers (setup.Start on loopback, data in a
// temporary directory), real Signal sessions and sender keys.

// groupServer is a homeserver that can be restarted on the same data.
type groupServer struct {
	t    *testing.T
	dir  string
	node *setup.Node
	url  string
	logs *lockedBuffer
}

func startGroupServer(t *testing.T) *groupServer {
	t.Helper()
	s := &groupServer{t: t, dir: t.TempDir(), logs: &lockedBuffer{}}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("homeserver log:\n%s", s.logs.String())
		}
	})
	return s
}

func (s *groupServer) start() {
	s.t.Helper()
	cfg := setup.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Data = s.dir
	log := slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	node, err := setup.Start(context.Background(), cfg, log, setup.Extra{Password: cheapPasswords})
	if err != nil {
		s.t.Fatal(err)
	}
	s.node, s.url = node, node.URL()
}

func (s *groupServer) stop() {
	if s.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.node.Close(ctx); err != nil {
		s.t.Errorf("closing the homeserver: %v", err)
	}
	s.node = nil
}

// gctx is a test's context with a deadline.
func gctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// member is one device of a group test, reopened when the server moves.
type member struct {
	t    *testing.T
	srv  *groupServer
	name string
	acct *Account
	warn *warnings
}

// join registers name (or, with login, adds a device to it).
func (s *groupServer) join(name string, login bool, opts ...AccountOption) *member {
	s.t.Helper()
	m := &member{t: s.t, srv: s, name: name, warn: &warnings{}}
	create := Register
	if login {
		create = Login
	}
	opts = append(opts, WithWarnings(m.warn.add))
	a, err := create(gctx(s.t), s.t.TempDir(), s.url, name, "correct horse", "test", opts...)
	if err != nil {
		s.t.Fatalf("create %s: %v", name, err)
	}
	m.acct = a
	s.t.Cleanup(func() { m.acct.Close() })
	return m
}

// reopen opens the device's home again against the server's current URL.
func (m *member) reopen() {
	m.t.Helper()
	m.acct.Close()
	a, err := Open(m.acct.Home(), WithServer(m.srv.url), WithWarnings(m.warn.add))
	if err != nil {
		m.t.Fatal(err)
	}
	m.acct = a
}

func (m *member) id() string { return m.acct.UserID() }

func (m *member) String() string { return fmt.Sprintf("%s/%d", m.acct.UserID(), m.acct.DeviceID()) }

// recv receives until caught_up, acknowledging and marking read.
func (m *member) recv() []Item {
	m.t.Helper()
	var items []Item
	err := m.acct.Receive(gctx(m.t), ReceiveOptions{MarkRead: true}, func(it Item) error {
		items = append(items, it)
		return nil
	})
	if err != nil {
		m.t.Fatalf("receive for %s: %v", m, err)
	}
	return items
}

// raw returns the device's pending inbox events without processing them.
func (m *member) raw() []wire.Event {
	m.t.Helper()
	page, err := m.acct.API().Inbox(gctx(m.t), 0, 1000)
	if err != nil {
		m.t.Fatal(err)
	}
	return page.Events
}

func (m *member) send(group, text string) wire.SendResult {
	m.t.Helper()
	res, err := m.acct.SendText(gctx(m.t), group, text)
	if err != nil {
		m.t.Fatalf("%s sends %q to %s: %v", m, text, group, err)
	}
	return res
}

// timeline summarises the items of one group: "seq:action[:user]" for
// events, "seq:from:text" for messages, "seq:error" for messages that did
// not decrypt.
func timeline(items []Item, group string) string {
	var out []string
	for _, it := range items {
		if it.Group != group {
			continue
		}
		name := func(u string) string { return strings.TrimSuffix(u, "@localhost") }
		switch it.Type {
		case ItemGroupEvent:
			s := fmt.Sprintf("%d:%s", it.Seq, it.Action)
			if it.User != "" {
				s += ":" + name(it.User)
			}
			out = append(out, s)
		case ItemMessage:
			out = append(out, fmt.Sprintf("%d:%s:%s", it.Seq, name(it.From), it.Text))
		case ItemDecryptError:
			out = append(out, fmt.Sprintf("%d:error", it.Seq))
		}
	}
	return strings.Join(out, " ")
}

// ciphertextTypes lists the ciphertext types of the group's pending
// messages, in order.
func ciphertextTypes(evs []wire.Event, group string) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == wire.EventMessage && ev.Group == group {
			out = append(out, ev.CiphertextType)
		}
	}
	return out
}

// lastSenderKeyMessage returns the last sender-key message from user in
// group among evs.
func lastSenderKeyMessage(t *testing.T, evs []wire.Event, group, from string) wire.Event {
	t.Helper()
	for i := len(evs) - 1; i >= 0; i-- {
		if ev := evs[i]; ev.Type == wire.EventMessage && ev.Group == group && ev.From == from &&
			ev.CiphertextType == wire.CiphertextSenderKey {
			return ev
		}
	}
	t.Fatalf("no sender-key message of %s from %s in %+v", group, from, evs)
	return wire.Event{}
}

// cannotRead checks that st cannot decrypt a sender-key message.
func cannotRead(t *testing.T, who string, st *e2ee.Store, ev wire.Event) {
	t.Helper()
	pt, err := st.GroupDecrypt(gctx(t), ev.Group, e2ee.Address{User: ev.From, Device: ev.FromDevice}, ev.Body)
	if err == nil {
		t.Fatalf("%s decrypted a message sent after it left: %q", who, pt)
	}
	if !errors.Is(err, e2ee.ErrNoSenderKey) && !errors.Is(err, e2ee.ErrInvalidMessage) {
		t.Fatalf("%s: GroupDecrypt error %v, want no sender key or invalid message", who, err)
	}
}

func TestGroupMessagingLifecycle(t *testing.T) {
	s := startGroupServer(t)
	alice := s.join("alice", false)
	alice2 := s.join("alice", true)
	bob := s.join("bob", false)
	bob2 := s.join("bob", true)
	carol := s.join("carol", false)
	dave := s.join("dave", false)
	ctx := gctx(t)

	g, err := alice.acct.API().CreateGroup(ctx, wire.CreateGroupRequest{GroupMeta: wire.GroupMeta{Name: "team"},
		Members: []string{"bob@localhost", "carol@localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	if !IsGroupID(g.ID) || len(g.Members) != 3 || g.Members[0] != (wire.Member{User: "alice@localhost", Role: wire.RoleOwner}) {
		t.Fatalf("created %+v", g)
	}
	gid := g.ID

	// The first message gives every device alice's sender key pairwise,
	// the second is one sender-key ciphertext; bob answers likewise.
	alice.send(gid, "one")
	alice.send(gid, "two")
	if got := ciphertextTypes(bob.raw(), gid); len(got) != 2 || got[0] == wire.CiphertextSenderKey || got[1] != wire.CiphertextSenderKey {
		t.Fatalf("bob's ciphertexts %v: want the key pairwise, then a sender-key message", got)
	}
	bob.send(gid, "three")
	bob2.send(gid, "four")
	bob.send(gid, "five")

	// Every device, the senders' other devices included, reads the same
	// sequence.
	want := "1:created 2:alice:one 3:alice:two 4:bob:three 5:bob:four 6:bob:five"
	for _, m := range []*member{alice2, bob, bob2, carol, alice} {
		items := m.recv()
		got := timeline(items, gid)
		// A device does not get its own messages.
		exp := want
		for _, own := range []struct {
			m    *member
			seqs []string
		}{{alice, []string{"2:alice:one", "3:alice:two"}}, {bob, []string{"4:bob:three", "6:bob:five"}}, {bob2, []string{"5:bob:four"}}} {
			if own.m == m {
				for _, s := range own.seqs {
					exp = strings.Replace(exp, " "+s, "", 1)
				}
			}
		}
		if got != exp {
			t.Fatalf("%s reads %q, want %q", m, got, exp)
		}
		for _, it := range items {
			if it.Type == ItemMessage && (it.Conversation != gid || it.Group != gid || it.SentAt.IsZero()) {
				t.Fatalf("%s: group message item %+v", m, it)
			}
			if it.Type == ItemGroupEvent && it.Action == wire.GroupCreated &&
				(it.Actor != "alice@localhost" || it.Meta == nil || it.Meta.Name != "team" || len(it.Members) != 3 || it.Conversation != gid) {
				t.Fatalf("%s: created event %+v", m, it)
			}
		}
		if w := m.warn.all(); len(w) != 0 {
			t.Fatalf("%s warned %v", m, w)
		}
	}
	// Read markers and acknowledgements came back to the senders as
	// aggregated receipts.
	var receipts []Item
	for _, it := range alice2.recv() {
		if it.Type == ItemReceipt {
			receipts = append(receipts, it)
		}
	}
	if len(receipts) == 0 {
		t.Fatal("alice got no group receipt")
	}
	for _, r := range receipts {
		if r.Group != gid || r.Conversation != gid || r.Count < 1 || r.By != "" || r.Seq != 3 {
			t.Fatalf("group receipt %+v", r)
		}
	}

	// Alice removes carol: carol learns it and gets nothing after it.
	if err := alice.acct.API().RemoveMember(ctx, gid, "carol@localhost"); err != nil {
		t.Fatal(err)
	}
	if got := timeline(carol.recv(), gid); got != "7:removed:carol" {
		t.Fatalf("carol after removal: %q", got)
	}
	alice.send(gid, "without carol")
	alice.send(gid, "still without carol")
	// bob2 has not seen the removal, but its key predates it: the send
	// makes a new one (removal_seq), given pairwise to everyone.
	if ep, ok, err := bob2.acct.Store().SenderKeyEpoch(ctx, gid); err != nil || !ok || ep != 0 {
		t.Fatalf("bob2's key epoch before: %d %v %v", ep, ok, err)
	}
	bob2.send(gid, "bob2 after removal")
	if ep, ok, err := bob2.acct.Store().SenderKeyEpoch(ctx, gid); err != nil || !ok || ep != 7 {
		t.Fatalf("bob2's key epoch after the removal: %d %v %v, want 7", ep, ok, err)
	}
	bob2.send(gid, "bob2 again")
	if evs := carol.raw(); len(evs) != 0 {
		t.Fatalf("carol got events after her removal: %+v", evs)
	}
	bobRaw := bob.raw()
	if got := ciphertextTypes(bobRaw, gid); len(got) != 4 || got[0] == wire.CiphertextSenderKey || got[1] != wire.CiphertextSenderKey ||
		got[2] == wire.CiphertextSenderKey || got[3] != wire.CiphertextSenderKey {
		t.Fatalf("bob's ciphertexts after the removal %v: want new keys pairwise, then sender-key messages", got)
	}
	// Should carol obtain a later ciphertext, her store cannot read it.
	cannotRead(t, "carol", carol.acct.Store(), lastSenderKeyMessage(t, bobRaw, gid, "alice@localhost"))
	cannotRead(t, "carol", carol.acct.Store(), lastSenderKeyMessage(t, alice2.raw(), gid, "bob@localhost"))
	want = "7:removed:carol 8:alice:without carol 9:alice:still without carol 10:bob:bob2 after removal 11:bob:bob2 again"
	if got := timeline(bob.recv(), gid); got != want {
		t.Fatalf("bob after the removal: %q, want %q", got, want)
	}

	// Bob leaves (from his first device): both his devices get the
	// departure and nothing after it.
	if err := bob.acct.LeaveGroup(ctx, gid); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := bob.acct.Store().SenderKeyEpoch(ctx, gid); ok {
		t.Fatal("bob kept his sender key after leaving")
	}
	alice.send(gid, "bob left")
	alice.send(gid, "bob left, again")
	if got := timeline(bob.recv(), gid); got != "12:left:bob" {
		t.Fatalf("bob after leaving: %q", got)
	}
	if got := timeline(bob2.recv(), gid); !strings.HasSuffix(got, "9:alice:still without carol 12:left:bob") {
		t.Fatalf("bob2 after leaving: %q", got)
	}
	cannotRead(t, "bob", bob.acct.Store(), lastSenderKeyMessage(t, alice2.raw(), gid, "alice@localhost"))
	cannotRead(t, "bob2", bob2.acct.Store(), lastSenderKeyMessage(t, alice2.raw(), gid, "alice@localhost"))
	if _, err := bob2.acct.SendText(ctx, gid, "let me back"); !IsCode(err, wire.CodeNotMember) {
		t.Fatalf("send after leaving: %v, want not_member", err)
	}

	// Dave joins later: the next message brings him alice's key pairwise,
	// and he reads it and what follows, not what came before.
	if _, err := alice.acct.API().AddMembers(ctx, gid, []string{"dave@localhost"}); err != nil {
		t.Fatal(err)
	}
	alice.send(gid, "welcome dave")
	alice.send(gid, "and again")
	if got := ciphertextTypes(dave.raw(), gid); len(got) != 2 || got[0] == wire.CiphertextSenderKey || got[1] != wire.CiphertextSenderKey {
		t.Fatalf("dave's ciphertexts %v", got)
	}
	if got := timeline(dave.recv(), gid); got != "15:added 16:alice:welcome dave 17:alice:and again" {
		t.Fatalf("dave reads %q", got)
	}
	want = "7:removed:carol 8:alice:without carol 9:alice:still without carol 10:bob:bob2 after removal 11:bob:bob2 again " +
		"12:left:bob 13:alice:bob left 14:alice:bob left, again 15:added 16:alice:welcome dave 17:alice:and again"
	if got := timeline(alice2.recv(), gid); got != want {
		t.Fatalf("alice2 reads %q, want %q", got, want)
	}
	// Dave answers; alice's devices read him.
	dave.send(gid, "thanks")
	for _, m := range []*member{alice, alice2} {
		if got := timeline(m.recv(), gid); !strings.HasSuffix(got, "18:dave:thanks") {
			t.Fatalf("%s reads %q", m, got)
		}
	}

	list, err := alice.acct.API().Groups(ctx)
	if err != nil || len(list.Groups) != 1 || list.Groups[0] != (wire.GroupSummary{ID: gid, Name: "team", Role: wire.RoleOwner}) {
		t.Fatalf("alice's groups %+v %v", list, err)
	}
	if list, err := bob.acct.API().Groups(ctx); err != nil || len(list.Groups) != 0 {
		t.Fatalf("bob's groups after leaving %+v %v", list, err)
	}
}

// Group messages wait on the server across a restart, and their sender
// keys work afterwards.
func TestGroupMessagesSurviveRestart(t *testing.T) {
	s := startGroupServer(t)
	alice := s.join("alice", false)
	bob := s.join("bob", false)
	carol := s.join("carol", false)
	carol2 := s.join("carol", true)
	ctx := gctx(t)
	g, err := alice.acct.API().CreateGroup(ctx, wire.CreateGroupRequest{Members: []string{"bob@localhost", "carol@localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		alice.send(g.ID, fmt.Sprint("before restart ", i))
	}
	bob.send(g.ID, "bob too")

	s.stop()
	s.start()
	for _, m := range []*member{alice, bob, carol, carol2} {
		m.reopen()
	}
	want := "1:created 2:alice:before restart 0 3:alice:before restart 1 4:alice:before restart 2 5:bob:bob too"
	for _, m := range []*member{carol, carol2} {
		if got := timeline(m.recv(), g.ID); got != want {
			t.Fatalf("%s after the restart reads %q, want %q", m, got, want)
		}
	}
	alice.send(g.ID, "after restart")
	carol.send(g.ID, "carol after restart")
	if got := timeline(bob.recv(), g.ID); got != "1:created 2:alice:before restart 0 3:alice:before restart 1 "+
		"4:alice:before restart 2 6:alice:after restart 7:carol:carol after restart" {
		t.Fatalf("bob reads %q", got)
	}
	if got := timeline(carol2.recv(), g.ID); got != "6:alice:after restart 7:carol:carol after restart" {
		t.Fatalf("carol2 reads %q", got)
	}
}

// groupDevicesHook runs fn once, after the first answer to a group device
// listing reached the client and before the client sends.
type groupDevicesHook struct {
	once sync.Once
	fn   func()
}

func (h *groupDevicesHook) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/devices") &&
		strings.Contains(req.URL.Path, "/v1/groups/") {
		h.once.Do(h.fn)
	}
	return resp, err
}

// A device list that changes between listing and sending is refused as
// stale; the send lists again and retries with the same client id, and the
// new device gets the sender key pairwise.
func TestGroupSendRetriesStaleDevices(t *testing.T) {
	s := startGroupServer(t)
	var bob3 *member
	hook := &groupDevicesHook{}
	alice := s.join("alice", false, WithAPIOptions(WithHTTPClient(&http.Client{Transport: hook, Timeout: 30 * time.Second})))
	bob := s.join("bob", false)
	ctx := gctx(t)
	g, err := alice.acct.API().CreateGroup(ctx, wire.CreateGroupRequest{Members: []string{"bob@localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	hook.fn = func() { bob3 = s.join("bob", true) }
	res := alice.send(g.ID, "hello all of you")
	if res.Seq != 2 || res.Conversation != g.ID {
		t.Fatalf("send result %+v", res)
	}
	for _, m := range []*member{bob, bob3} {
		if got := timeline(m.recv(), g.ID); !strings.HasSuffix(got, "2:alice:hello all of you") {
			t.Fatalf("%s reads %q", m, got)
		}
	}
	alice.send(g.ID, "now with one ciphertext")
	if got := ciphertextTypes(bob3.raw(), g.ID); len(got) != 1 || got[0] != wire.CiphertextSenderKey {
		t.Fatalf("bob3's second message: %v", got)
	}
	if got := timeline(bob3.recv(), g.ID); got != "3:alice:now with one ciphertext" {
		t.Fatalf("bob3 reads %q", got)
	}
}

// Membership operations, invitations and their events; read markers of a
// group this account has left do not fail Receive.
func TestGroupMembershipOperations(t *testing.T) {
	s := startGroupServer(t)
	alice := s.join("alice", false)
	bob := s.join("bob", false)
	carol := s.join("carol", false)
	ctx := gctx(t)
	api := alice.acct.API()
	g, err := api.CreateGroup(ctx, wire.CreateGroupRequest{GroupMeta: wire.GroupMeta{Name: "club"}, Members: []string{"bob@localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	gid := g.ID
	if err := api.Invite(ctx, gid, []string{"carol@localhost"}); err != nil {
		t.Fatal(err)
	}
	list, err := carol.acct.API().Groups(ctx)
	if err != nil || len(list.Groups) != 0 || len(list.Invites) != 1 || list.Invites[0].ID != gid {
		t.Fatalf("carol's invitations %+v %v", list, err)
	}
	if err := carol.acct.API().AcceptInvite(ctx, gid); err != nil {
		t.Fatal(err)
	}
	if err := api.SetRole(ctx, gid, "bob@localhost", wire.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := api.UpdateGroup(ctx, gid, wire.GroupMeta{Name: "club 2", Description: "renamed"}); err != nil {
		t.Fatal(err)
	}
	if err := api.TransferOwner(ctx, gid, "bob@localhost"); err != nil {
		t.Fatal(err)
	}
	got, err := carol.acct.API().Group(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "club 2" || fmt.Sprint(got.Members) != "[{alice@localhost admin} {bob@localhost owner} {carol@localhost member}]" {
		t.Fatalf("group %+v", got)
	}
	devs, err := carol.acct.API().GroupDevices(ctx, gid)
	if err != nil || len(devs.Devices) != 3 || devs.Group != gid {
		t.Fatalf("group devices %+v %v", devs, err)
	}
	if err := alice.acct.API().DeclineInvite(ctx, gid); !IsCode(err, wire.CodeAlreadyMember) {
		t.Fatalf("declining as a member: %v", err)
	}
	// A group of one device takes messages too (nobody to encrypt to).
	alone, err := carol.acct.API().CreateGroup(ctx, wire.CreateGroupRequest{GroupMeta: wire.GroupMeta{Name: "notes"}})
	if err != nil {
		t.Fatal(err)
	}
	if res := carol.send(alone.ID, "note to self"); res.Seq != 2 {
		t.Fatalf("send to a group of one: %+v", res)
	}

	// Carol reads a message, but before her read marker goes out the
	// group is deleted: Receive does not fail over it.
	alice.send(gid, "last words")
	if err := bob.acct.API().DeleteGroup(ctx, gid); err != nil {
		t.Fatal(err)
	}
	items := carol.recv()
	if tl := timeline(items, gid); tl != "2:invited 3:joined:carol 4:role:bob 5:metadata 6:owner:bob 7:alice:last words 8:deleted" {
		t.Fatalf("carol reads %q", tl)
	}
	for _, it := range items {
		switch it.Action {
		case wire.GroupRole:
			if it.Role != wire.RoleAdmin || it.Actor != "alice@localhost" {
				t.Fatalf("role event %+v", it)
			}
		case wire.GroupMetadata:
			if it.Meta == nil || it.Meta.Name != "club 2" || it.Meta.Description != "renamed" {
				t.Fatalf("metadata event %+v", it)
			}
		case wire.GroupInvited:
			if len(it.Members) != 1 || it.Members[0].User != "carol@localhost" {
				t.Fatalf("invited event %+v", it)
			}
		}
	}
	if _, err := api.Group(ctx, gid); !IsCode(err, wire.CodeUnknownGroup) {
		t.Fatalf("deleted group: %v", err)
	}
}

func TestIsGroupID(t *testing.T) {
	for s, want := range map[string]bool{"g-0123abcd": true, "g-x@localhost": false, "bob": false, "bob@localhost": false, "": false} {
		if IsGroupID(s) != want {
			t.Errorf("IsGroupID(%q) = %v", s, !want)
		}
	}
	a := &Account{file: AccountFile{UserID: "alice@localhost"}}
	if got := a.QualifyUser("g-0123"); got != "g-0123" {
		t.Errorf("QualifyUser(g-0123) = %q", got)
	}
	if got := a.QualifyUser("g-x@localhost"); got != "g-x@localhost" {
		t.Errorf("QualifyUser(g-x@localhost) = %q", got)
	}
}

// Group messages that cannot be read become decrypt_error items and do
// not block the inbox; a message naming another conversation than the
// one it came in is refused.
func TestGroupUnreadableMessages(t *testing.T) {
	s := startGroupServer(t)
	alice := s.join("alice", false)
	bob := s.join("bob", false)
	ctx := gctx(t)
	g, err := alice.acct.API().CreateGroup(ctx, wire.CreateGroupRequest{Members: []string{"bob@localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	// Alice's store believes bob has her key: he gets the sender-key
	// ciphertext without ever having had the key. (Without a session
	// with him she would give it to him anyway.)
	alice.send("bob@localhost", "a session first")
	bob.recv()
	st := alice.acct.Store()
	if _, err := st.SenderKeyDistribution(ctx, g.ID, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkDistributed(ctx, g.ID, []e2ee.Address{{User: "bob@localhost", Device: 1}}); err != nil {
		t.Fatal(err)
	}
	alice.send(g.ID, "you cannot read this")
	items := bob.recv()
	if got := timeline(items, g.ID); got != "2:error" {
		t.Fatalf("bob reads %q", got)
	}
	for _, it := range items {
		if it.Type == ItemDecryptError && (!errors.Is(it.Err, e2ee.ErrNoSenderKey) || it.Group != g.ID || it.From != "alice@localhost") {
			t.Fatalf("decrypt error %+v", it)
		}
	}
	if evs := bob.raw(); len(evs) != 0 {
		t.Fatalf("unreadable message still pending: %+v", evs)
	}

	// A direct message whose content names a group is not shown as one.
	if _, err := alice.acct.Send(ctx, "bob@localhost", Content{Text: "smuggled", Group: g.ID}); err != nil {
		t.Fatal(err)
	}
	items = bob.recv()
	if len(items) != 1 || items[0].Type != ItemDecryptError || !strings.Contains(items[0].Err.Error(), "delivered as a direct message") {
		t.Fatalf("bob got %+v", items)
	}
	// Plain direct messages are unchanged: {"v":1,"text":…}.
	if b, _ := TextContent("hi").Marshal(); string(b) != `{"v":1,"text":"hi"}` {
		t.Fatalf("text content %s", b)
	}
}
