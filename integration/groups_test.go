package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// groupSend is a group send with one opaque shared (sender-key) ciphertext
// for the given devices and opaque pairwise envelopes for the others.
func groupSend(clientID, group string, shared []wire.DeviceAddress, pairwise ...wire.DeviceAddress) wire.SendRequest {
	req := sendReq(clientID, group, pairwise...)
	if len(shared) > 0 {
		req.Shared = &wire.Shared{Type: wire.CiphertextSenderKey, Body: []byte("sender-key ciphertext " + clientID), Devices: shared}
	}
	return req
}

func (d *device) createGroup(name string, members ...string) wire.Group {
	d.srv.t.Helper()
	var g wire.Group
	d.srv.must("POST", "/v1/groups", d.token(), wire.CreateGroupRequest{GroupMeta: wire.GroupMeta{Name: name}, Members: members}, &g)
	return g
}

// timeline summarises a device's group inbox: "seq:action" for events,
// "seq:msg:from" for messages.
func timeline(evs []wire.Event, group string) string {
	var out []string
	for _, e := range evs {
		switch {
		case e.Type == wire.EventGroup && e.Group == group:
			out = append(out, fmt.Sprintf("%d:%s", e.Seq, e.Action))
		case e.Type == wire.EventMessage && e.Group == group:
			out = append(out, fmt.Sprintf("%d:msg:%s", e.Seq, strings.TrimSuffix(e.From, "@localhost")))
		}
	}
	return strings.Join(out, " ")
}

func TestGroupMembershipAndOrder(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	alice2 := s.login("alice", 5)
	bob := s.register("bob", 5)
	carol := s.register("carol", 5)

	g := alice.createGroup("team", "bob@localhost")
	if !strings.HasPrefix(g.ID, "g-") || len(g.Members) != 2 || g.Members[0].Role != wire.RoleOwner || g.Hub != "localhost" {
		t.Fatalf("created: %+v", g)
	}
	// A group message: the shared ciphertext for bob, the sender's other
	// device included.
	s.must("POST", "/v1/messages", alice.token(), groupSend("m1", g.ID, []wire.DeviceAddress{bob.addr(), alice2.addr()}), nil)
	// Carol is not a member: she can neither send nor read.
	s.refused(403, wire.CodeNotMember, "POST", "/v1/messages", carol.token(), groupSend("c1", g.ID, []wire.DeviceAddress{alice.addr()}))
	s.refused(403, wire.CodeNotMember, "GET", "/v1/groups/"+g.ID, carol.token(), nil)
	s.refused(403, wire.CodeNotMember, "GET", "/v1/groups/"+g.ID+"/devices", carol.token(), nil)

	s.must("POST", "/v1/groups/"+g.ID+"/members", alice.token(), wire.GroupUsersRequest{Users: []string{"carol@localhost"}}, nil)
	var devs wire.GroupDevices
	s.must("GET", "/v1/groups/"+g.ID+"/devices", bob.token(), nil, &devs)
	if len(devs.Devices) != 4 {
		t.Fatalf("group devices: %+v", devs)
	}
	// A stale device list is refused: bob forgot carol.
	_, _, e := bob.send("b1", g.ID, alice.addr(), alice2.addr())
	if e.Code != wire.CodeStaleDevices || fmt.Sprint(e.Missing) != fmt.Sprint([]wire.DeviceAddress{carol.addr()}) {
		t.Fatalf("stale group send: %+v", e)
	}
	// Mixed: pairwise for carol (a client without sender keys, or one
	// getting the sender key now), shared for the others.
	s.must("POST", "/v1/messages", bob.token(), groupSend("b1", g.ID, []wire.DeviceAddress{alice.addr(), alice2.addr()}, carol.addr()), nil)
	_, _, e = bob.send("b2", g.ID, alice.addr(), alice2.addr(), carol.addr(), carol.addr())
	if e.Code != wire.CodeInvalidParam {
		t.Fatalf("two ciphertexts for one device: %+v", e)
	}

	// Alice removes bob; bob gets the removal and nothing after it.
	s.must("DELETE", "/v1/groups/"+g.ID+"/members/bob@localhost", alice.token(), nil, nil)
	s.must("POST", "/v1/messages", alice.token(), groupSend("m2", g.ID, []wire.DeviceAddress{carol.addr(), alice2.addr()}), nil)
	_, _, e = alice.send("m3", g.ID, bob.addr(), carol.addr(), alice2.addr())
	if e.Code != wire.CodeStaleDevices || fmt.Sprint(e.Extra) != fmt.Sprint([]wire.DeviceAddress{bob.addr()}) {
		t.Fatalf("send to a removed member: %+v", e)
	}
	s.refused(403, wire.CodeNotMember, "POST", "/v1/messages", bob.token(), groupSend("b3", g.ID, []wire.DeviceAddress{alice.addr(), alice2.addr(), carol.addr()}))
	s.must("GET", "/v1/groups/"+g.ID+"/devices", carol.token(), nil, &devs)
	if devs.RemovalSeq != 5 || devs.Seq != 6 {
		t.Fatalf("seq %d removal_seq %d, want 6 and 5", devs.Seq, devs.RemovalSeq)
	}

	// Carol leaves; every device saw one order.
	s.must("DELETE", "/v1/groups/"+g.ID+"/members/carol@localhost", carol.token(), nil, nil)
	want := map[*device]string{
		alice:  "1:created 3:added 4:msg:bob 5:removed 7:left",
		alice2: "1:created 2:msg:alice 3:added 4:msg:bob 5:removed 6:msg:alice 7:left",
		bob:    "1:created 2:msg:alice 3:added 5:removed",
		carol:  "3:added 4:msg:bob 5:removed 6:msg:alice 7:left",
	}
	for d, w := range want {
		if got := timeline(d.inbox(), g.ID); got != w {
			t.Errorf("%s/%d sees %q, want %q", d.session.UserID, d.session.DeviceID, got, w)
		}
	}
	// The shared ciphertext is in the message for every device that got it.
	for _, ev := range alice2.inbox() {
		if ev.Type == wire.EventMessage && ev.Seq == 2 && (ev.CiphertextType != wire.CiphertextSenderKey ||
			string(ev.Body) != "sender-key ciphertext m1") {
			t.Fatalf("shared message: %+v", ev)
		}
	}
	var list wire.GroupList
	s.must("GET", "/v1/groups", carol.token(), nil, &list)
	if len(list.Groups) != 0 {
		t.Fatalf("carol still lists %+v", list)
	}
	s.must("GET", "/v1/groups", alice.token(), nil, &list)
	if len(list.Groups) != 1 || list.Groups[0].Role != wire.RoleOwner || list.Groups[0].Name != "team" {
		t.Fatalf("alice lists %+v", list)
	}
}

func TestGroupRolesAndBadInput(t *testing.T) {
	s := startServer(t, "", func(c *setup.Config) { c.MaxGroupMembers = 4 })
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	carol := s.register("carol", 5)
	s.register("dave", 5)
	s.register("erin", 5)
	g := alice.createGroup("club", "bob@localhost")
	path := "/v1/groups/" + g.ID

	// Members do not manage the group.
	s.refused(403, wire.CodeForbidden, "POST", path+"/members", bob.token(), wire.GroupUsersRequest{Users: []string{"carol@localhost"}})
	s.refused(403, wire.CodeForbidden, "PUT", path+"/members/bob@localhost/role", bob.token(), wire.RoleRequest{Role: wire.RoleAdmin})
	s.refused(403, wire.CodeForbidden, "DELETE", path+"/members/alice@localhost", bob.token(), nil)
	s.refused(403, wire.CodeForbidden, "PUT", path, bob.token(), wire.GroupMeta{Name: "mine"})
	s.refused(403, wire.CodeForbidden, "DELETE", path, bob.token(), nil)
	s.refused(403, wire.CodeForbidden, "POST", path+"/owner", bob.token(), wire.OwnerRequest{User: "bob@localhost"})
	// Bad additions change nothing.
	s.refused(404, wire.CodeUnknownUser, "POST", path+"/members", alice.token(), wire.GroupUsersRequest{Users: []string{"carol@localhost", "zed@localhost"}})
	s.refused(409, wire.CodeAlreadyMember, "POST", path+"/members", alice.token(), wire.GroupUsersRequest{Users: []string{"bob@localhost"}})
	s.refused(400, wire.CodeInvalidParam, "POST", path+"/members", alice.token(), wire.GroupUsersRequest{Users: []string{"carol@localhost", "CAROL@localhost"}})
	s.refused(409, wire.CodeGroupFull, "POST", path+"/members", alice.token(), wire.GroupUsersRequest{Users: []string{"carol@localhost", "dave@localhost", "erin@localhost"}})
	s.refused(413, wire.CodeTooLarge, "PUT", path, alice.token(), wire.GroupMeta{Name: strings.Repeat("n", wire.MaxGroupNameLen+1)})
	s.refused(400, wire.CodeInvalidParam, "PUT", path+"/members/bob@localhost/role", alice.token(), wire.RoleRequest{Role: wire.RoleOwner})
	s.refused(404, wire.CodeUnknownGroup, "GET", "/v1/groups/g-00", alice.token(), nil)
	s.refused(400, wire.CodeInvalidParam, "GET", "/v1/groups/alice@localhost", alice.token(), nil)
	var got wire.Group
	s.must("GET", path, alice.token(), nil, &got)
	if len(got.Members) != 2 {
		t.Fatalf("a refused change left members behind: %+v", got.Members)
	}

	// The owner cannot leave; after a transfer it can.
	s.refused(409, wire.CodeLastOwner, "DELETE", path+"/members/alice@localhost", alice.token(), nil)
	s.must("PUT", path+"/members/bob@localhost/role", alice.token(), wire.RoleRequest{Role: wire.RoleAdmin}, nil)
	s.must("POST", path+"/members", bob.token(), wire.GroupUsersRequest{Users: []string{"carol@localhost"}}, nil) // admins add
	s.refused(409, wire.CodeLastOwner, "PUT", path+"/members/alice@localhost/role", bob.token(), wire.RoleRequest{Role: wire.RoleMember})
	s.must("POST", path+"/owner", alice.token(), wire.OwnerRequest{User: "bob@localhost"}, nil)
	s.must("DELETE", path+"/members/alice@localhost", alice.token(), nil, nil)
	s.must("GET", path, bob.token(), nil, &got)
	if fmt.Sprint(got.Members) != "[{bob@localhost owner} {carol@localhost member}]" {
		t.Fatalf("after transfer and leave: %+v", got.Members)
	}

	// Invitations: invited users are not members until they accept.
	s.must("POST", path+"/invites", bob.token(), wire.GroupUsersRequest{Users: []string{"dave@localhost"}}, nil)
	dave := &device{srv: s}
	s.must("POST", "/v1/login", "", wire.LoginRequest{User: "dave", Password: "correct horse"}, &dave.session)
	s.refused(403, wire.CodeNotMember, "GET", path+"/devices", dave.token(), nil)
	s.refused(409, wire.CodeAlreadyMember, "POST", path+"/join", carol.token(), nil)
	erin := &device{srv: s}
	s.must("POST", "/v1/login", "", wire.LoginRequest{User: "erin", Password: "correct horse"}, &erin.session)
	s.refused(403, wire.CodeNotInvited, "POST", path+"/join", erin.token(), nil)
	s.must("POST", path+"/join", dave.token(), nil, nil)
	s.refused(409, wire.CodeAlreadyMember, "POST", path+"/join", dave.token(), nil)
	s.must("POST", path+"/invites", bob.token(), wire.GroupUsersRequest{Users: []string{"erin@localhost"}}, nil)
	s.must("POST", path+"/decline", erin.token(), nil, nil)
	s.must("GET", path, bob.token(), nil, &got)
	if len(got.Members) != 3 || len(got.Invited) != 0 {
		t.Fatalf("after join and decline: %+v", got)
	}
	if tl := timeline(carol.inbox(), g.ID); tl != "3:added 4:owner 5:left 6:invited 7:joined 8:invited 9:declined" {
		t.Fatalf("carol's timeline: %s", tl)
	}
	// Deleting ends the group.
	s.must("DELETE", path, bob.token(), nil, nil)
	s.refused(404, wire.CodeUnknownGroup, "POST", "/v1/messages", carol.token(), groupSend("x", g.ID, []wire.DeviceAddress{bob.addr()}))
	if tl := timeline(carol.inbox(), g.ID); !strings.HasSuffix(tl, "10:deleted") {
		t.Fatalf("carol's timeline after delete: %s", tl)
	}
}

// Group messages and their shared ciphertext survive a restart; receipts
// come back aggregated.
func TestGroupRestartAndAggregatedReceipts(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	var others []*device
	var shared []wire.DeviceAddress
	var names []string
	for i := range 5 {
		d := s.register(fmt.Sprint("m", i), 5)
		others = append(others, d)
		shared = append(shared, d.addr())
		names = append(names, d.session.UserID)
	}
	g := alice.createGroup("big", names...)
	for i := range 3 {
		s.must("POST", "/v1/messages", alice.token(), groupSend(fmt.Sprint("g", i), g.ID, shared), nil)
	}
	s = s.restart()
	alice.srv = s
	for _, d := range others {
		d.srv = s
		var msgs []wire.Event
		for _, ev := range d.inbox() {
			if ev.Type == wire.EventMessage {
				msgs = append(msgs, ev)
			}
		}
		if len(msgs) != 3 || string(msgs[2].Body) != "sender-key ciphertext g2" || msgs[2].Seq != 4 {
			t.Fatalf("after restart %s has %+v", d.session.UserID, msgs)
		}
		d.ack(msgs...)
		s.must("POST", "/v1/read", d.token(), wire.ReadRequest{Conversation: g.ID, Seq: 4}, nil)
	}
	var receipts []wire.Event
	for _, ev := range alice.inbox() {
		if ev.Type == wire.EventReceipt {
			receipts = append(receipts, ev)
		}
	}
	// 15 acknowledgements and 5 read markers became one pending summary of
	// each kind.
	if len(receipts) != 2 {
		t.Fatalf("alice has %d receipts, want 2 summaries: %+v", len(receipts), receipts)
	}
	for _, r := range receipts {
		switch r.Status {
		case wire.StatusDelivered:
			if r.Count != 5 || r.Seq != 4 || r.Group != g.ID {
				t.Errorf("delivered summary %+v", r)
			}
		case wire.StatusRead:
			if r.Count != 5 || r.Seq != 4 {
				t.Errorf("read summary %+v", r)
			}
		}
	}
}

// A sender-key group message goes over the socket as well as over REST.
func TestGroupSendOverSocket(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 25)
	bob := s.register("bob", 25)
	g := alice.createGroup("socket", "bob@localhost")
	as := alice.online()
	req := groupSend("ws1", g.ID, []wire.DeviceAddress{bob.addr()})
	as.sendFrame(wire.ClientFrame{Type: wire.FrameSend, ClientID: req.ClientID, To: req.To, Shared: req.Shared})
	if ev := as.next(); ev.Type != wire.EventSent || ev.ID == 0 || ev.ClientID != "ws1" || ev.Conversation != g.ID {
		t.Fatalf("socket group send: %+v", ev)
	}
	for _, ev := range bob.inbox() {
		if ev.Type == wire.EventMessage && string(ev.Body) == "sender-key ciphertext ws1" && ev.CiphertextType == wire.CiphertextSenderKey {
			return
		}
	}
	t.Fatal("bob did not get the shared ciphertext sent over the socket")
}

// A delivered summary is not turned back by an acknowledgement of an
// older message arriving after one of a newer message: the sender keeps
// the summary of the newest.
func TestGroupSummaryKeepsTheNewestMessage(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	m0, m1 := s.register("m0", 5), s.register("m1", 5)
	g := alice.createGroup("order", m0.session.UserID, m1.session.UserID)
	shared := []wire.DeviceAddress{m0.addr(), m1.addr()}
	for i := range 2 {
		s.must("POST", "/v1/messages", alice.token(), groupSend(fmt.Sprint("o", i), g.ID, shared), nil)
	}
	messagesOf := func(d *device) []wire.Event {
		var out []wire.Event
		for _, ev := range d.inbox() {
			if ev.Type == wire.EventMessage {
				out = append(out, ev)
			}
		}
		if len(out) != 2 {
			t.Fatalf("%s has %d messages, want 2", d.session.UserID, len(out))
		}
		return out
	}
	newest := messagesOf(m0)[1]
	m0.ack(newest)            // the newer message first
	m1.ack(messagesOf(m1)[0]) // then another member's acknowledgement of the older one
	var summaries []wire.Event
	for _, ev := range alice.inbox() {
		if ev.Type == wire.EventReceipt && ev.Status == wire.StatusDelivered {
			summaries = append(summaries, ev)
		}
	}
	if len(summaries) != 1 || summaries[0].Seq != newest.Seq || summaries[0].Count != 1 {
		t.Fatalf("alice's delivered summaries %+v, want one for seq %d", summaries, newest.Seq)
	}
}
