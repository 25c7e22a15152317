package integration

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// encryptFor builds a send with real Signal ciphertexts of text for every
// target device, claiming bundles for devices without a session.
func (d *device) encryptFor(clientID, to, text string, targets ...*device) wire.SendRequest {
	t := d.srv.t
	t.Helper()
	ctx := context.Background()
	req := wire.SendRequest{ClientID: clientID, To: to}
	for _, td := range targets {
		a := e2ee.Address{User: td.session.UserID, Device: td.session.DeviceID}
		if ok, _ := d.store.HasSession(ctx, a); !ok {
			var res wire.ClaimResponse
			d.srv.must("POST", "/v1/keys/claim", d.token(), wire.ClaimRequest{User: a.User, Devices: []uint32{a.Device}}, &res)
			if err := d.store.ProcessBundle(ctx, res.Bundles[0]); err != nil {
				t.Fatal(err)
			}
		}
		typ, body, err := d.store.Encrypt(ctx, a, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		req.Envelopes = append(req.Envelopes, wire.Envelope{User: a.User, Device: a.Device, Type: typ, Body: body})
	}
	return req
}

// decrypt opens a message event addressed to d.
func (d *device) decrypt(ev wire.Event) string {
	d.srv.t.Helper()
	pt, err := d.store.Decrypt(context.Background(), e2ee.Address{User: ev.From, Device: ev.FromDevice}, ev.CiphertextType, ev.Body)
	if err != nil {
		d.srv.t.Fatalf("decrypting %s seq %d: %v", ev.Conversation, ev.Seq, err)
	}
	return string(pt)
}

func messages(evs []wire.Event) []wire.Event {
	var out []wire.Event
	for _, e := range evs {
		if e.Type == wire.EventMessage {
			out = append(out, e)
		}
	}
	return out
}

// A send must cover exactly the recipient's devices and the sender's other
// devices; otherwise it is refused with the devices to add and remove, and
// nothing is stored.
func TestStaleDeviceList(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	alice2 := s.login("alice", 5)
	bob := s.register("bob", 5)
	bob2 := s.login("bob", 5)

	_, _, e := alice.send("m1", "bob@localhost", bob.addr())
	if e.Code != wire.CodeStaleDevices {
		t.Fatalf("send missing devices: %+v", e)
	}
	wantMissing := []wire.DeviceAddress{alice2.addr(), bob2.addr()}
	if fmt.Sprint(e.Missing) != fmt.Sprint(wantMissing) || len(e.Extra) != 0 {
		t.Fatalf("missing = %v extra = %v, want missing %v", e.Missing, e.Extra, wantMissing)
	}
	ghost := wire.DeviceAddress{User: "bob@localhost", Device: 7}
	status, _, e := alice.send("m1", "bob@localhost", bob.addr(), bob2.addr(), alice2.addr(), ghost)
	if status != 409 || e.Code != wire.CodeStaleDevices || fmt.Sprint(e.Extra) != fmt.Sprint([]wire.DeviceAddress{ghost}) {
		t.Fatalf("send to a removed device: %d %+v", status, e)
	}
	// The sending device itself is not a recipient.
	_, _, e = alice.send("m1", "bob@localhost", bob.addr(), bob2.addr(), alice2.addr(), alice.addr())
	if e.Code != wire.CodeStaleDevices || len(e.Extra) != 1 || e.Extra[0] != alice.addr() {
		t.Fatalf("send to itself: %+v", e)
	}
	if n := len(messages(bob.inbox())); n != 0 {
		t.Fatalf("refused sends left %d messages in bob's inbox", n)
	}
	_, res, e := alice.send("m1", "bob@localhost", bob.addr(), bob2.addr(), alice2.addr())
	if e.Code != "" || res.Seq != 1 {
		t.Fatalf("correct send: %+v %+v", res, e)
	}
	// Bob removes a device: a sender still using the old list is told.
	s.must("DELETE", "/v1/devices/2", bob.token(), wire.RemoveDeviceRequest{Password: "correct horse"}, nil)
	_, _, e = alice.send("m2", "bob@localhost", bob.addr(), bob2.addr(), alice2.addr())
	if e.Code != wire.CodeStaleDevices || fmt.Sprint(e.Extra) != fmt.Sprint([]wire.DeviceAddress{bob2.addr()}) {
		t.Fatalf("after removal: %+v", e)
	}
	// ... and was told through a device_list event.
	found := false
	for _, ev := range alice.inbox() {
		found = found || (ev.Type == wire.EventDeviceList && ev.User == "bob@localhost")
	}
	if !found {
		t.Fatal("alice was not told that bob's device list changed")
	}
}

// A retried client message id stores and delivers nothing twice and
// answers with the first result.
func TestIdempotentRetry(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	_, first, _ := alice.send("same-id", "bob@localhost", bob.addr())
	_, second, e := alice.send("same-id", "bob@localhost", bob.addr())
	if e.Code != "" || first.Repeated || !second.Repeated || !sameAnswer(first, second) {
		t.Fatalf("retry: %+v vs %+v (%+v)\n%s", first, second, e, s.logs.String())
	}
	if n := len(messages(bob.inbox())); n != 1 {
		t.Fatalf("bob has %d messages after a retry, want 1", n)
	}
	// Retries racing each other (most share a commit) answer the same and
	// use no sequence number: the next message takes the one after.
	var wg sync.WaitGroup
	results := make([]wire.SendResult, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i], _ = alice.send("same-id", "bob@localhost", bob.addr())
		}()
	}
	wg.Wait()
	for i, r := range results {
		if !r.Repeated || !sameAnswer(r, first) {
			t.Fatalf("concurrent retry %d: %+v, want %+v", i, r, first)
		}
	}
	if _, next, e := alice.send("next-id", "bob@localhost", bob.addr()); e.Code != "" || next.Seq != first.Seq+1 {
		t.Fatalf("message after the retries: seq %d (%+v), want %d", next.Seq, e, first.Seq+1)
	}
	// A retry after bob added a device (a new send would be refused as
	// stale) is still answered as the first send was.
	phone := s.login("bob", 5)
	if _, again, e := alice.send("same-id", "bob@localhost", bob.addr()); e.Code != "" || !sameAnswer(again, first) {
		t.Fatalf("retry after a device change: %+v (%+v), want %+v", again, e, first)
	}
	if status, _, e := alice.send("new-id", "bob@localhost", bob.addr()); status != 409 || e.Code != wire.CodeStaleDevices {
		t.Fatalf("a new send missing %s/%d: %d %+v", phone.session.UserID, phone.session.DeviceID, status, e)
	}
	if n := len(messages(bob.inbox())); n != 2 {
		t.Fatalf("bob has %d messages, want 2", n)
	}
	carol := s.register("carol", 5)
	_, _, e = alice.send("same-id", "carol@localhost", carol.addr())
	if e.Code != wire.CodeClientIDReused {
		t.Fatalf("client id reused for another conversation: %+v", e)
	}
	// The answer waits in alice's inbox, once, until she acknowledges it;
	// after that the id is free again: she has the answer, so a send with
	// it is a new message.
	var answers []wire.Event
	for _, ev := range alice.inbox() {
		if ev.Type == wire.EventSent && ev.ClientID == "same-id" {
			answers = append(answers, ev)
		}
	}
	if len(answers) != 1 || answers[0].Seq != first.Seq || answers[0].Conversation != first.Conversation {
		t.Fatalf("answers to same-id in alice's inbox: %+v, want one for seq %d", answers, first.Seq)
	}
	alice.ack(answers...)
	if _, again, e := alice.send("same-id", "carol@localhost", carol.addr()); e.Code != "" || again.Repeated || again.Seq != 1 {
		t.Fatalf("the id after its answer was acknowledged: %+v (%+v)", again, e)
	}
	s.refused(400, wire.CodeInvalidParam, "POST", "/v1/messages", alice.token(), sendReq("", "bob@localhost", bob.addr()))
	s.refused(404, wire.CodeUnknownUser, "POST", "/v1/messages", alice.token(), sendReq("x", "zed@localhost"))
	big := sendReq("big", "bob@localhost", bob.addr())
	big.Envelopes[0].Body = make([]byte, wire.MaxEnvelopeBytes+1)
	s.refused(413, wire.CodeTooLarge, "POST", "/v1/messages", alice.token(), big)
	bad := sendReq("bad", "bob@localhost", bob.addr())
	bad.Envelopes[0].Type = "plaintext"
	s.refused(400, wire.CodeInvalidParam, "POST", "/v1/messages", alice.token(), bad)
}

// Offline delivery with real Signal sessions to every device of the
// recipient and the sender's other device; receipts come back in order.
func TestOfflineMultiDeviceAndReceipts(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	alice2 := s.login("alice", 5)
	bob := s.register("bob", 5)
	bob2 := s.login("bob", 5)
	for i := 1; i <= 3; i++ {
		req := alice.encryptFor(fmt.Sprint("c", i), "bob@localhost", fmt.Sprint("hello ", i), bob, bob2, alice2)
		var res wire.SendResult
		s.must("POST", "/v1/messages", alice.token(), req, &res)
		if res.Seq != uint64(i) {
			t.Fatalf("seq %d, want %d", res.Seq, i)
		}
	}
	for _, d := range []*device{bob, bob2, alice2} {
		msgs := messages(d.inbox())
		if len(msgs) != 3 {
			t.Fatalf("%s/%d has %d messages, want 3", d.session.UserID, d.session.DeviceID, len(msgs))
		}
		for i, m := range msgs {
			if m.Seq != uint64(i+1) || m.From != "alice@localhost" || m.FromDevice != 1 || m.SentAt == nil {
				t.Fatalf("message %d: %+v", i, m)
			}
			if got := d.decrypt(m); got != fmt.Sprint("hello ", i+1) {
				t.Fatalf("decrypted %q", got)
			}
		}
		d.ack(msgs...)
		if n := len(messages(d.inbox())); n != 0 {
			t.Fatalf("%d messages left after ack", n)
		}
	}
	conv := messages(alice.inbox())
	if len(conv) != 0 {
		t.Fatal("the sending device got a copy of its own message")
	}
	s.must("POST", "/v1/read", bob.token(), wire.ReadRequest{Conversation: bob2ConvID(), Seq: 3}, nil)
	s.must("POST", "/v1/read", bob.token(), wire.ReadRequest{Conversation: bob2ConvID(), Seq: 2}, nil) // no step back
	var got []string
	for _, ev := range alice.inbox() {
		if ev.Type == wire.EventReceipt {
			got = append(got, fmt.Sprintf("%s:%d:%s/%d", ev.Status, ev.Seq, ev.By, ev.ByDevice))
		}
	}
	want := "[delivered:1:bob@localhost/1 delivered:2:bob@localhost/1 delivered:3:bob@localhost/1 " +
		"delivered:1:bob@localhost/2 delivered:2:bob@localhost/2 delivered:3:bob@localhost/2 read:3:bob@localhost/0]"
	if fmt.Sprint(got) != want {
		t.Fatalf("receipts\n got %v\nwant %s", got, want)
	}
}

// sameAnswer reports whether two answers to a send agree, apart from
// Repeated.
func sameAnswer(a, b wire.SendResult) bool {
	a.Repeated, b.Repeated = false, false
	return a == b
}

func bob2ConvID() string {
	return directID("alice@localhost", "bob@localhost")
}

// Live delivery over the socket: pending first, then caught_up, then live
// messages in order; a socket send is answered by a "sent" inbox event.
func TestLiveDeliveryOverSocket(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	s.must("POST", "/v1/messages", alice.token(), alice.encryptFor("p1", "bob@localhost", "pending", bob), nil)

	bs := bob.dial()
	evs := bs.until(wire.EventCaughtUp)
	if len(evs) != 2 || evs[0].Type != wire.EventMessage || bob.decrypt(evs[0]) != "pending" {
		t.Fatalf("pending then caught_up, got %+v", evs)
	}
	as := alice.online()
	for i := 1; i <= 20; i++ {
		req := alice.encryptFor(fmt.Sprint("w", i), "bob@localhost", fmt.Sprint("live ", i), bob)
		as.sendFrame(wire.ClientFrame{Type: wire.FrameSend, ClientID: req.ClientID, To: req.To, Envelopes: req.Envelopes})
	}
	for i := 1; i <= 20; i++ {
		sent := as.next(wire.EventReceipt)
		if sent.Type != wire.EventSent || sent.ID == 0 || sent.ClientID != fmt.Sprint("w", i) || sent.Seq != uint64(i+1) {
			t.Fatalf("answer %d: %+v", i, sent)
		}
	}
	for i := 1; i <= 20; i++ {
		ev := bs.next()
		if ev.Type != wire.EventMessage || ev.Seq != uint64(i+1) || bob.decrypt(ev) != fmt.Sprint("live ", i) {
			t.Fatalf("live %d: %+v", i, ev)
		}
		bs.sendFrame(wire.ClientFrame{Type: wire.FrameAck, IDs: []int64{ev.ID}})
	}
	bs.sendFrame(wire.ClientFrame{Type: wire.FrameRead, Conversation: bob2ConvID(), Seq: 21})
	// Alice sees delivered receipts live, in order, then the read receipt.
	for i := 1; i <= 20; i++ {
		ev := as.next()
		if ev.Type != wire.EventReceipt || ev.Status != wire.StatusDelivered || ev.Seq != uint64(i+1) {
			t.Fatalf("receipt %d: %+v", i, ev)
		}
	}
	if ev := as.next(); ev.Type != wire.EventReceipt || ev.Status != wire.StatusRead || ev.Seq != 21 {
		t.Fatalf("read receipt: %+v", ev)
	}
	// Bad frames get error events and the socket stays up.
	bs.sendFrame(wire.ClientFrame{Type: "shout"})
	if ev := bs.next(); ev.Type != wire.EventError || ev.Code != wire.CodeInvalidParam {
		t.Fatalf("bad frame: %+v", ev)
	}
	as.sendFrame(wire.ClientFrame{Type: wire.FrameSend, ClientID: "stale", To: "bob@localhost"})
	if ev := as.next(wire.EventReceipt); ev.Type != wire.EventError || ev.Code != wire.CodeStaleDevices || ev.ClientID != "stale" {
		t.Fatalf("stale send over socket: %+v", ev)
	}
	if err := bs.conn.WriteMessage(1, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if ev := bs.next(); ev.Type != wire.EventError || ev.Code != wire.CodeBadJSON {
		t.Fatalf("malformed frame: %+v", ev)
	}
}

// Unacknowledged messages survive a restart and come in order.
func TestRestartKeepsPendingMessages(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	for i := 1; i <= 5; i++ {
		s.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprint(i), "bob@localhost", fmt.Sprint("m", i), bob), nil)
	}
	s2 := s.restart()
	bob.srv = s2
	msgs := messages(bob.inbox())
	if len(msgs) != 5 {
		t.Fatalf("%d messages after restart, want 5", len(msgs))
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) || bob.decrypt(m) != fmt.Sprint("m", i+1) {
			t.Fatalf("message %d after restart: %+v", i, m)
		}
	}
	alice.srv = s2
	var res wire.SendResult
	s2.must("POST", "/v1/messages", alice.token(), alice.encryptFor("6", "bob@localhost", "m6", bob), &res)
	if res.Seq != 6 {
		t.Fatalf("sequence after restart: %d, want 6", res.Seq)
	}
}

// Messages older than the retention period are removed, and the device
// learns on its next connection which ranges it lost.
func TestRetentionExpiry(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	carol := s.register("carol", 5)
	for i := 1; i <= 4; i++ {
		s.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprint("a", i), "bob@localhost", "x", bob), nil)
	}
	s.must("POST", "/v1/messages", carol.token(), carol.encryptFor("c1", "bob@localhost", "x", bob), nil)
	// Bob takes message 2 before the deadline.
	msgs := messages(bob.inbox())
	bob.ack(msgs[1])

	hs := s.node.Homeserver()
	if n, err := hs.Expire(context.Background(), time.Now().Add(29*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("expire before retention: %d, %v", n, err)
	}
	s.now.offset = 31 * 24 * time.Hour // later events must not expire at once
	n, err := hs.Expire(context.Background(), time.Now().Add(31*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n < 4 {
		t.Fatalf("expired %d entries, want at least 4", n)
	}
	bs := bob.dial()
	evs := bs.until(wire.EventCaughtUp)
	var got []string
	for _, e := range evs {
		if e.Type == wire.EventExpired {
			got = append(got, fmt.Sprintf("%s:%d-%d", e.Conversation, e.FromSeq, e.ToSeq))
		} else if e.Type != wire.EventCaughtUp {
			t.Fatalf("unexpected event after expiry: %+v", e)
		}
	}
	ab, cb := directID("alice@localhost", "bob@localhost"), directID("bob@localhost", "carol@localhost")
	want := fmt.Sprint([]string{ab + ":1-1", ab + ":3-4", cb + ":1-1"})
	if fmt.Sprint(got) != want {
		t.Fatalf("expired notices %v, want %s", got, want)
	}
}

// The server stores ciphertext only: no plaintext in any file of its data
// directory.
func TestNoPlaintextOnDisk(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	secret := "the eagle lands at midnight 7f3a9c"
	for i := range 3 {
		s.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprint(i), "bob@localhost", secret, bob), nil)
	}
	s.stop() // flush the WAL into the files we read
	err := filepath.WalkDir(s.cfg.Data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte(secret)) || bytes.Contains(data, []byte("eagle")) {
			t.Errorf("plaintext found in %s", path)
		}
		if bytes.Contains(data, []byte("correct horse")) {
			t.Errorf("a password found in %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
