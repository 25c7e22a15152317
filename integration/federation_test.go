package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"

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
	zone := startDNS(t)
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
