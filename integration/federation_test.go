package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// byType keeps the events of one type.
func byType(evs []wire.Event, typ string) []wire.Event {
	var out []wire.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitInbox polls a device's inbox until cond holds for it.
func waitInbox(t *testing.T, d *device, what string, cond func([]wire.Event) bool) []wire.Event {
	t.Helper()
	var evs []wire.Event
	eventually(t, what, func() bool {
		evs = d.inbox()
		return cond(evs)
	})
	return evs
}

func countMessages(n int) func([]wire.Event) bool {
	return func(evs []wire.Event) bool { return len(byType(evs, wire.EventMessage)) >= n }
}

// Direct messages between two homeservers found through DNS SRV: the hub
// (a.test sorts first) sequences both directions, both sides see one
// order, receipts cross back, and the sender's own other device gets its
// copy through the hub.
func TestFederatedDirectMessages(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil)
	b := startFederated(t, zone, "b.test", "", nil)
	alice := a.register("alice", 20)
	alice2 := a.login("alice", 20)
	bob := b.register("bob", 20)
	bob2 := b.login("bob", 20)

	// Remote device lists and profiles go through the user's own server.
	var ud wire.UserDevices
	a.must("GET", "/v1/users/bob@b.test/devices", alice.token(), nil, &ud)
	if len(ud.Devices) != 2 {
		t.Fatalf("bob's devices as a.test sees them: %+v", ud)
	}
	var prof wire.Profile
	b.must("PUT", "/v1/profile", bob.token(), wire.Profile{DisplayName: "Bob B."}, nil)
	a.must("GET", "/v1/profile/bob@b.test", alice.token(), nil, &prof)
	if prof.DisplayName != "Bob B." {
		t.Fatalf("remote profile: %+v", prof)
	}
	a.refused(404, wire.CodeUnknownUser, "GET", "/v1/users/nobody@b.test/devices", alice.token(), nil)

	// alice -> bob: a.test is the hub and sequences at once.
	var res wire.SendResult
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("a1", "bob@b.test", "hello bob", bob, bob2, alice2), &res)
	if res.Status != wire.SendSent || res.Seq != 1 {
		t.Fatalf("send from the hub side: %+v", res)
	}
	// bob -> alice: b.test forwards to the hub and answers "accepted".
	res = wire.SendResult{}
	b.must("POST", "/v1/messages", bob.token(), bob.encryptFor("b1", "alice@a.test", "hi alice", alice, alice2, bob2), &res)
	if res.Status != wire.SendAccepted || res.Seq != 0 || res.Conversation != directID("alice@a.test", "bob@b.test") {
		t.Fatalf("send from the other side: %+v", res)
	}
	sent := byType(waitInbox(t, bob, "bob's sent event", func(evs []wire.Event) bool {
		return len(byType(evs, wire.EventSent)) == 1
	}), wire.EventSent)[0]
	if sent.ClientID != "b1" || sent.Seq != 2 {
		t.Fatalf("sent event: %+v", sent)
	}

	// Everyone sees the same two messages in the same order.
	want := map[*device][]string{
		alice:  {"2:bob@b.test:hi alice"},
		alice2: {"1:alice@a.test:hello bob", "2:bob@b.test:hi alice"},
		bob:    {"1:alice@a.test:hello bob"},
		bob2:   {"1:alice@a.test:hello bob", "2:bob@b.test:hi alice"},
	}
	for d, w := range want {
		msgs := byType(waitInbox(t, d, d.session.UserID+" messages", countMessages(len(w))), wire.EventMessage)
		var got []string
		for _, m := range msgs {
			got = append(got, fmt.Sprintf("%d:%s:%s", m.Seq, m.From, d.decrypt(m)))
		}
		if strings.Join(got, "|") != strings.Join(w, "|") {
			t.Errorf("%s/%d sees %v, want %v", d.session.UserID, d.session.DeviceID, got, w)
		}
		d.ack(msgs...)
	}
	// bob's acknowledgement of seq 1 reaches alice as a delivered receipt,
	// his read marker as a read receipt.
	b.must("POST", "/v1/read", bob.token(), wire.ReadRequest{Conversation: res.Conversation, Seq: 1}, nil)
	waitInbox(t, alice, "receipts from bob", func(evs []wire.Event) bool {
		var delivered, read bool
		for _, r := range byType(evs, wire.EventReceipt) {
			delivered = delivered || (r.Status == wire.StatusDelivered && r.By == "bob@b.test" && r.Seq == 1)
			read = read || (r.Status == wire.StatusRead && r.By == "bob@b.test" && r.Seq == 1)
		}
		return delivered && read
	})

	// Both directions at once, many messages: one order on both sides.
	var wg sync.WaitGroup
	for _, side := range []struct {
		d       *device
		to      string
		targets []*device
	}{{alice, "bob@b.test", []*device{bob, bob2, alice2}}, {bob, "alice@a.test", []*device{alice, alice2, bob2}}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				req := side.d.encryptFor(fmt.Sprintf("%s-%d", side.d.session.UserID, i), side.to, fmt.Sprint(i), side.targets...)
				side.d.srv.must("POST", "/v1/messages", side.d.token(), req, nil)
			}
		}()
	}
	wg.Wait()
	orders := map[string]string{}
	for _, d := range []*device{alice2, bob2} {
		msgs := byType(waitInbox(t, d, "ten more messages", countMessages(10)), wire.EventMessage)
		var seq []string
		for _, m := range msgs {
			seq = append(seq, fmt.Sprintf("%d:%s:%s", m.Seq, m.From, d.decrypt(m)))
		}
		orders[d.session.UserID] = strings.Join(seq, " ")
	}
	if orders["alice@a.test"] != orders["bob@b.test"] {
		t.Fatalf("the two sides disagree on the order:\n a.test: %s\n b.test: %s", orders["alice@a.test"], orders["bob@b.test"])
	}
}

// A destination that is down gets everything queued for it, in order and
// exactly once, when it is back; a request from it cuts our backoff short.
func TestFederationOutage(t *testing.T) {
	zone := testdns.Start(t)
	// a.test backs off for a long time: only the "it is up" reset can
	// bring the queue moving again within the test.
	a := startFederated(t, zone, "a.test", "", []func(*setup.Extra){func(e *setup.Extra) {
		e.Sender = federation.SenderOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour}
	}})
	b := startFederated(t, zone, "b.test", "", nil)
	alice := a.register("alice", 20)
	bob := b.register("bob", 20)
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("first", "bob@b.test", "before the outage", bob), nil)
	waitInbox(t, bob, "the first message", countMessages(1))

	b.stop()
	for i := range 10 {
		a.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprint("out-", i), "bob@b.test", fmt.Sprint("queued ", i), bob), nil)
	}
	eventually(t, "a.test to back off from b.test", func() bool {
		for _, st := range a.node.FederationStatus() {
			if st.Destination == "b.test" && st.Failing {
				return true
			}
		}
		return false
	})
	b.restart()
	bob.srv = b.server
	// b.test speaks to a.test (bob claims alice's keys through it): a.test
	// knows b.test is up and retries at once, an hour early.
	var cr wire.ClaimResponse
	if st, e := b.call("POST", "/v1/keys/claim", bob.token(), wire.ClaimRequest{User: "alice@a.test"}, &cr); st != 200 {
		t.Logf("a.test log:\n%s", a.logs.String())
		t.Logf("b.test log:\n%s", b.logs.String())
		t.Fatalf("claim: %d %+v", st, e)
	}
	msgs := byType(waitInbox(t, bob, "the queued messages", countMessages(11)), wire.EventMessage)
	if len(msgs) != 11 {
		t.Fatalf("bob has %d messages, want 11 (exactly once)", len(msgs))
	}
	for i, m := range msgs {
		want := "before the outage"
		if i > 0 {
			want = fmt.Sprint("queued ", i-1)
		}
		if m.Seq != uint64(i+1) || bob.decrypt(m) != want {
			t.Fatalf("message %d: seq %d %q", i, m.Seq, want)
		}
	}
}

// Forged requests are refused: a wrong key, a valid server speaking for
// another domain's user, a replay, and a denied domain.
func TestFederationForgery(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil)
	b := startFederated(t, zone, "b.test", "", nil, func(c *setup.Config) { c.FederationDeny = []string{"d.test"} })
	c := startFederated(t, zone, "c.test", "", nil)
	d := startFederated(t, zone, "d.test", "", nil)
	alice := a.register("alice", 20)
	bob := b.register("bob", 20)
	mallory := c.register("mallory", 20)
	dave := d.register("dave", 20)

	// A client that reaches b.test's listener for URLs naming b.test, so
	// requests are signed exactly as a server would sign them.
	toB := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, b.addr)
	}}}
	post := func(origin string, key *federation.SigningKey, txnID string, items []wire.FedItem) (int, wire.Error) {
		body, _ := json.Marshal(wire.Transaction{Origin: origin, Destination: "b.test", Items: items})
		req, err := federation.NewSignedRequest(context.Background(), "PUT",
			"http://b.test"+wire.FederationPrefix+"/send/"+txnID, body, origin, "b.test", key, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := toB.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e wire.Error
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	forward := func(sender, clientID string) wire.FedItem {
		now := time.Now()
		return wire.FedItem{Kind: wire.FedForward, Conversation: directID(sender, "bob@b.test"), Sender: sender,
			SenderDevice: 1, ClientID: clientID, To: "bob@b.test", SentAt: &now,
			Envelopes: []wire.Envelope{{User: "bob@b.test", Device: 1, Type: wire.CiphertextWhisper, Body: []byte("forged")}}}
	}

	// A key that is not a.test's.
	stranger, err := federation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if status, e := post("a.test", stranger, "t1", []wire.FedItem{forward("alice@a.test", "x1")}); status != 401 || e.Code != wire.CodeUnauthenticated {
		t.Fatalf("wrong key: %d %+v", status, e)
	}
	// c.test's real key, speaking for a.test's alice: the item is refused.
	cKey, err := federation.LoadOrCreateKey(c.cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	var res wire.TransactionResult
	body, _ := json.Marshal(wire.Transaction{Origin: "c.test", Destination: "b.test", Items: []wire.FedItem{forward("alice@a.test", "x2")}})
	req, _ := federation.NewSignedRequest(context.Background(), "PUT", "http://b.test"+wire.FederationPrefix+"/send/t2",
		body, "c.test", "b.test", cKey, time.Now())
	resp, err := toB.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(res.Refused) != 1 || res.Refused[0].Code != wire.CodeForbidden {
		t.Fatalf("c.test speaking for alice@a.test: %d %+v", resp.StatusCode, res)
	}
	// The same signed request again: a replay.
	req2, _ := http.NewRequest("PUT", req.URL.String(), strings.NewReader(string(body)))
	req2.Header = req.Header.Clone()
	resp, err = toB.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 409 {
		t.Fatalf("replayed request: %d", resp.StatusCode)
	}
	if n := len(byType(bob.inbox(), wire.EventMessage)); n != 0 {
		t.Fatalf("bob got %d forged messages", n)
	}

	// d.test is denied by b.test: dave cannot reach bob, in either direction.
	status, e := d.call("POST", "/v1/keys/claim", dave.token(), wire.ClaimRequest{User: "bob@b.test"}, nil)
	if status < 400 || (e.Code != wire.CodeForbidden && e.Code != wire.CodeUnavailable) {
		t.Fatalf("dave claiming bob's keys through d.test: %d %+v", status, e)
	}
	b.refused(403, wire.CodeForbidden, "GET", "/v1/users/dave@d.test/devices", bob.token(), nil)

	// Honest traffic still flows: mallory (c.test) to bob works.
	c.must("POST", "/v1/messages", mallory.token(), mallory.encryptFor("m1", "bob@b.test", "hi from c", bob), nil)
	msgs := byType(waitInbox(t, bob, "mallory's message", countMessages(1)), wire.EventMessage)
	if msgs[0].From != "mallory@c.test" || bob.decrypt(msgs[0]) != "hi from c" {
		t.Fatalf("message from c.test: %+v", msgs[0])
	}
	_ = alice
}

// A group whose hub is a.test with members on three homeservers: events
// and messages reach every member server in one order, a remote member's
// send and operations go through the hub, a shared ciphertext travels
// once per server, and a removed member gets nothing more.
func TestFederatedGroup(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil)
	b := startFederated(t, zone, "b.test", "", nil)
	c := startFederated(t, zone, "c.test", "", nil)
	alice := a.register("alice", 20)
	alice2 := a.login("alice", 20)
	bob := b.register("bob", 20)
	carol := c.register("carol", 20)
	carol2 := c.login("carol", 20)

	g := alice.createGroup("three servers", "bob@b.test", "carol@c.test")
	path := "/v1/groups/" + g.ID
	// b.test mirrors the group from the hub's events.
	var mirror wire.Group
	eventually(t, "b.test to mirror the group", func() bool {
		st, _ := b.call("GET", path, bob.token(), nil, &mirror)
		return st == 200 && len(mirror.Members) == 3
	})
	if mirror.Hub != "a.test" || mirror.Name != "three servers" {
		t.Fatalf("b.test's mirror: %+v", mirror)
	}

	// alice (on the hub) sends one shared ciphertext to everybody.
	everyone := []wire.DeviceAddress{alice2.addr(), bob.addr(), carol.addr(), carol2.addr()}
	a.must("POST", "/v1/messages", alice.token(), groupSend("a1", g.ID, everyone), nil)

	// bob (on b.test) sends through his own server, which forwards to the hub.
	var devs wire.GroupDevices
	b.must("GET", path+"/devices", bob.token(), nil, &devs)
	if len(devs.Devices) != 5 {
		t.Fatalf("group devices through b.test: %+v", devs)
	}
	var res wire.SendResult
	b.must("POST", "/v1/messages", bob.token(), groupSend("b1", g.ID,
		[]wire.DeviceAddress{alice.addr(), alice2.addr(), carol.addr(), carol2.addr()}), &res)
	if res.Status != wire.SendAccepted {
		t.Fatalf("bob's group send: %+v", res)
	}
	waitInbox(t, bob, "bob's sent event", func(evs []wire.Event) bool { return len(byType(evs, wire.EventSent)) == 1 })

	// alice removes carol; carol's server delivers the removal and nothing after.
	a.must("DELETE", path+"/members/carol@c.test", alice.token(), nil, nil)
	a.must("POST", "/v1/messages", alice.token(), groupSend("a2", g.ID, []wire.DeviceAddress{alice2.addr(), bob.addr()}), nil)
	_, _, e := alice.send("a3", g.ID, alice2.addr(), bob.addr(), carol.addr())
	if e.Code != wire.CodeStaleDevices {
		t.Fatalf("send to a removed remote member: %+v", e)
	}
	// bob leaves, through b.test, which asks the hub.
	b.must("DELETE", path+"/members/bob@b.test", bob.token(), nil, nil)

	want := map[*device]string{
		alice:  "1:created 3:msg:bob@b.test 4:removed 6:left",
		alice2: "1:created 2:msg:alice@a.test 3:msg:bob@b.test 4:removed 5:msg:alice@a.test 6:left",
		bob:    "1:created 2:msg:alice@a.test 4:removed 5:msg:alice@a.test 6:left",
		carol:  "1:created 2:msg:alice@a.test 3:msg:bob@b.test 4:removed",
		carol2: "1:created 2:msg:alice@a.test 3:msg:bob@b.test 4:removed",
	}
	for d, w := range want {
		var got string
		deadline := time.Now().Add(10 * time.Second)
		for got != w && time.Now().Before(deadline) {
			got = timeline(d.inbox(), g.ID)
			if got != w {
				time.Sleep(20 * time.Millisecond)
			}
		}
		if got != w {
			t.Errorf("%s/%d sees %q, want %q", d.session.UserID, d.session.DeviceID, got, w)
		}
	}
	// The shared ciphertext arrived intact on the other servers.
	for _, ev := range carol2.inbox() {
		if ev.Type == wire.EventMessage && ev.Seq == 2 && string(ev.Body) != "sender-key ciphertext a1" {
			t.Fatalf("carol2's copy of the shared message: %q", ev.Body)
		}
	}
	// A removed member's server refuses her send locally; the hub would too.
	c.refused(403, wire.CodeNotMember, "POST", "/v1/messages", carol.token(), groupSend("c1", g.ID, []wire.DeviceAddress{alice.addr()}))
}

// Device-list changes cross servers through the durable queue: a new
// device of bob's reaches a.test as a notice, alice's device is told, and a
// send that misses the new device is refused as stale until it includes it.
func TestFederatedDeviceListChanges(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil)
	b := startFederated(t, zone, "b.test", "", nil)
	alice := a.register("alice", 20)
	bob := b.register("bob", 20)
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("d1", "bob@b.test", "one", bob), nil)
	waitInbox(t, bob, "the first message", countMessages(1))

	bob2 := b.login("bob", 20) // a new device: announced to a.test
	waitInbox(t, alice, "a device_list event about bob", func(evs []wire.Event) bool {
		for _, e := range byType(evs, wire.EventDeviceList) {
			if e.User == "bob@b.test" {
				return true
			}
		}
		return false
	})
	_, _, e := alice.send("d2", "bob@b.test", bob.addr())
	if e.Code != wire.CodeStaleDevices || fmt.Sprint(e.Missing) != fmt.Sprint([]wire.DeviceAddress{bob2.addr()}) {
		t.Fatalf("send without bob's new device: %+v", e)
	}
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("d2", "bob@b.test", "two", bob, bob2), nil)
	msgs := byType(waitInbox(t, bob2, "the message on the new device", countMessages(1)), wire.EventMessage)
	if bob2.decrypt(msgs[0]) != "two" {
		t.Fatalf("bob2 got %+v", msgs[0])
	}
	// And a removal the other way round.
	b.must("DELETE", "/v1/devices/2", bob.token(), wire.RemoveDeviceRequest{Password: "correct horse"}, nil)
	eventually(t, "a.test to learn of the removal", func() bool {
		_, _, e := alice.send("d3", "bob@b.test", bob.addr())
		return e.Code == ""
	})
}
