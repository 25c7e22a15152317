package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// The server pings idle sockets; a client that answers stays connected, a
// client that stops answering is dropped and can reconnect.
func TestPingKeepAlive(t *testing.T) {
	s := startServerExtra(t, "", []func(*setup.Extra){func(e *setup.Extra) {
		e.Client.PingInterval = time.Second // generous: a loaded CI machine must answer within 2.5 s
	}})
	alive := s.register("alice", 25)
	silent := s.register("bob", 25)

	var pings atomic.Int32
	as := alive.dial(func(c *websocket.Conn) {
		c.SetPingHandler(func(data string) error {
			pings.Add(1)
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
	})
	as.until(wire.EventCaughtUp)
	bs := silent.dial(func(c *websocket.Conn) {
		c.SetPingHandler(func(string) error { return nil }) // swallow pings, never pong
	})
	bs.until(wire.EventCaughtUp)

	eventually(t, "the silent socket to be dropped", func() bool { return s.node.Sockets() == 1 })
	eventually(t, "three pings answered", func() bool { return pings.Load() >= 3 })
	if n := s.node.Sockets(); n != 1 {
		t.Fatalf("%d sockets, want the answering one only", n)
	}
	// The answering socket still works.
	s.must("POST", "/v1/messages", silent.token(), silent.encryptFor("x", "alice@localhost", "still there?", alive), nil)
	if ev := as.next(); ev.Type != wire.EventMessage || alive.decrypt(ev) != "still there?" {
		t.Fatalf("after pings: %+v", ev)
	}
}

// A second socket of the same device replaces the first.
func TestOneSocketPerDevice(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 25)
	first := alice.online()
	alice.online() // the second socket
	for range first.events {
	} // drained until the server closed it
	eventually(t, "one socket", func() bool { return s.node.Sockets() == 1 })
}

// Removing a device closes its socket at once.
func TestRemovedDeviceIsDisconnected(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 25)
	phone := s.login("alice", 25)
	ps := phone.online()
	s.must("DELETE", "/v1/devices/2", alice.token(), wire.RemoveDeviceRequest{Password: "correct horse"}, nil)
	for range ps.events {
	}
	s.refused(401, wire.CodeUnknownToken, "GET", "/v1/ws", phone.token(), nil)
}

// A connected device gets its events from the commit path, not by reading
// them back: with the default MaxPending, the two sockets here read
// storage once each (to catch up at connect), however many messages and
// receipts reach them. With MaxPending 2, bursts (20 receipts committed at
// once) overflow what a socket may hold, and the socket catches up from
// storage instead. Either way each socket receives exactly what its inbox
// holds, byte for byte, once, in id order.
func TestSocketLiveDelivery(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxPending int
	}{{"handed-over", 0}, {"overflowing", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServerExtra(t, "", []func(*setup.Extra){func(e *setup.Extra) {
				e.Client.MaxPending = tc.maxPending
			}})
			alice := s.register("alice", 5)
			bob := s.register("bob", 5)
			as, bs := alice.dial(), bob.dial()
			as.until(wire.EventCaughtUp)
			bs.until(wire.EventCaughtUp)
			for round := range 5 {
				for i := range 20 {
					id := fmt.Sprintf("r%d-%d", round, i)
					if status, _, e := alice.send(id, "bob@localhost", bob.addr()); status != 200 {
						t.Fatalf("send %s: %d %+v", id, status, e)
					}
				}
				msgs := receiveExactly(t, bs, bob, 20)
				bob.ack(msgs...) // one commit with 20 receipts for alice's device
				// Alice's device gets the 20 answers to her sends, then the
				// receipts.
				events := receiveExactly(t, as, alice, 40)
				for i, ev := range events[:20] {
					if ev.Type != wire.EventSent || ev.Seq != msgs[i].Seq || ev.ClientID != fmt.Sprintf("r%d-%d", round, i) {
						t.Fatalf("round %d: answer %d is %+v, want one for seq %d", round, i, ev, msgs[i].Seq)
					}
				}
				for i, r := range events[20:] {
					if r.Type != wire.EventReceipt || r.Seq != msgs[i].Seq {
						t.Fatalf("round %d: receipt %d is %+v, want one for seq %d", round, i, r, msgs[i].Seq)
					}
				}
				alice.ack(events...)
			}
			reads := s.node.SocketInboxReads()
			if tc.maxPending == 0 && reads != 2 {
				t.Fatalf("sockets read their inbox %d times, want 2 (one catch-up each)", reads)
			}
			if tc.maxPending > 0 && reads <= 2 {
				t.Fatalf("sockets read their inbox %d times: no burst fell back to storage", reads)
			}
			t.Logf("inbox reads by sockets: %d", reads)
		})
	}
}

// receiveExactly takes n events from the socket and checks them against
// the device's inbox (read over REST, nothing acknowledged yet): the same
// events, in id order, each once.
func receiveExactly(t *testing.T, sock *socket, d *device, n int) []wire.Event {
	t.Helper()
	got := make([]wire.Event, 0, n)
	for len(got) < n {
		got = append(got, sock.next(wire.EventCaughtUp))
	}
	want := d.inbox()
	if len(want) != n {
		t.Fatalf("inbox holds %d events, want %d", len(want), n)
	}
	for i := range got {
		if i > 0 && got[i].ID <= got[i-1].ID {
			t.Fatalf("event %d has id %d after %d: not in id order", i, got[i].ID, got[i-1].ID)
		}
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("event %d on the socket:\n %+v\nin the inbox:\n %+v", i, got[i], want[i])
		}
	}
	select {
	case ev := <-sock.events:
		t.Fatalf("an event more than the inbox holds: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
	return got
}

// Frames a client sends back to back (here 40 in one TCP write, so most
// sit in the server's read buffer at once) are each answered: the socket
// only waits on the descriptor when its buffer is empty. Over TLS, where
// decrypted bytes hide from the descriptor, it waits inside the reader.
func TestSocketPipelinedFrames(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.issue(t, "localhost")
	for _, tc := range []struct {
		name string
		opts []option
	}{
		{"plain", nil},
		{"tls", []option{func(c *setup.Config) { c.ClientTLSCert, c.ClientTLSKey = cert, key }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, "", tc.opts...)
			// Registered in the domain layer: the REST helpers do not speak TLS.
			sess, err := s.node.Homeserver().Register(context.Background(), wire.RegisterRequest{User: "alice", Password: "correct horse"})
			if err != nil {
				t.Fatal(err)
			}
			u := "ws" + strings.TrimPrefix(s.url, "http") + "/v1/ws"
			pool := x509.NewCertPool()
			pem, _ := os.ReadFile(ca.pemPath)
			pool.AppendCertsFromPEM(pem)
			dialer := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
			conn, _, err := dialer.Dial(u, http.Header{"Authorization": {"Bearer " + sess.AccessToken}})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var ev wire.Event
			if err := conn.ReadJSON(&ev); err != nil || ev.Type != wire.EventCaughtUp {
				t.Fatalf("first event %+v, %v", ev, err)
			}
			const n = 40
			var burst []byte
			for i := range n {
				payload := fmt.Sprintf(`{"type":"bogus%d"}`, i)
				// A masked client text frame; a zero mask leaves the payload as is.
				burst = append(burst, 0x81, 0x80|byte(len(payload)), 0, 0, 0, 0)
				burst = append(burst, payload...)
			}
			if _, err := conn.NetConn().Write(burst); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			for i := range n {
				if err := conn.ReadJSON(&ev); err != nil || ev.Type != wire.EventError || ev.Code != wire.CodeInvalidParam {
					t.Fatalf("answer %d of %d: %+v, %v", i+1, n, ev, err)
				}
			}
		})
	}
}

// An idle socket costs no goroutine: its reader hands it to the poller and
// returns, and the poller starts a reader again when a frame arrives.
func TestIdleSocketsHaveNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux-only")
	}
	s := startServer(t, "")
	ctx := context.Background()
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/v1/ws"
	before := runtime.NumGoroutine()
	const n = 50
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		sess, err := s.node.Homeserver().Register(ctx, wire.RegisterRequest{User: fmt.Sprint("idle", i), Password: "correct horse"})
		if err != nil {
			t.Fatal(err)
		}
		conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + sess.AccessToken}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var ev wire.Event
		if err := conn.ReadJSON(&ev); err != nil || ev.Type != wire.EventCaughtUp {
			t.Fatalf("socket %d: %+v %v", i, ev, err)
		}
		conns[i] = conn
	}
	eventually(t, "idle sockets to give up their goroutines", func() bool {
		return runtime.NumGoroutine() < before+n/5
	})
	// Every parked socket still answers.
	answer := func(when string) {
		t.Helper()
		for i, conn := range conns {
			if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"bogus"}`)); err != nil {
				t.Fatal(err)
			}
			var ev wire.Event
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := conn.ReadJSON(&ev); err != nil || ev.Type != wire.EventError {
				t.Fatalf("socket %d %s: %+v %v", i, when, ev, err)
			}
		}
	}
	answer("after parking")
	// Having had a frame, each socket's reader waits for the next one in
	// the runtime's poller (a goroutine each) until the sweep finds it
	// idle and hands it to the poller again; it still answers after that.
	if got := runtime.NumGoroutine(); got < before+n/2 {
		t.Fatalf("%d goroutines right after a frame on each of %d sockets, want busy readers (%d before)", got, n, before)
	}
	eventually(t, "busy sockets to be parked again once idle", func() bool {
		return runtime.NumGoroutine() < before+n/5
	})
	answer("after parking again")
	if got := s.node.Sockets(); got != n {
		t.Fatalf("%d sockets connected, want %d", got, n)
	}
}

// A device that connects while messages keep arriving gets them gap-free
// and in order: what was stored before it connected, then what arrived
// since, whichever way each reached the socket (read back, or handed over
// by the commit). Twenty connects in a row, each read for a while, then
// acknowledged and closed.
func TestSocketConnectWhileSending(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 1)
	bob := s.register("bob", 1)
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if status, _, e := alice.send(fmt.Sprint("m", i), "bob@localhost", bob.addr()); status != 200 {
				t.Errorf("send %d: %d %+v", i, status, e)
				return
			}
		}
	}()
	defer func() { close(stop); <-sent }()
	var acked uint64 // highest seq acknowledged
	for round := range 20 {
		sock := bob.dial()
		var got []wire.Event
		for len(got) < 30 {
			ev := sock.next(wire.EventCaughtUp)
			if ev.Type == wire.EventMessage {
				got = append(got, ev)
			}
		}
		if first := got[0].Seq; first > acked+1 {
			t.Fatalf("round %d: first message seq %d, but %d was never acknowledged", round, first, acked+1)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq != got[i-1].Seq+1 {
				t.Fatalf("round %d: seq %d after %d", round, got[i].Seq, got[i-1].Seq)
			}
		}
		bob.ack(got...)
		acked = got[len(got)-1].Seq
		sock.conn.Close()
	}
}

// One device's sends over its socket are handed on as soon as each has
// its place in the device's order, so several wait for one commit; they
// are still sequenced in the order sent, a repeated client id among them
// is recognised, and a refused one does not hold up the rest.
func TestSocketSendsPipelinedInOrder(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	as := alice.online()
	const n = 200
	before := s.node.StoreStats()
	for i := 1; i <= n; i++ {
		req := alice.encryptFor(fmt.Sprint("p", i), "bob@localhost", fmt.Sprint("m", i), bob)
		as.sendFrame(wire.ClientFrame{Type: wire.FrameSend, ClientID: req.ClientID, To: req.To, Envelopes: req.Envelopes})
		switch i {
		case 100: // a retry of an earlier one, in the middle of the stream
			as.sendFrame(wire.ClientFrame{Type: wire.FrameSend, ClientID: "p99", To: req.To, Envelopes: req.Envelopes})
		case 150: // refused: no ciphertext for bob's device
			as.sendFrame(wire.ClientFrame{Type: wire.FrameSend, ClientID: "bad", To: "bob@localhost"})
		}
	}
	var seqs []uint64
	repeated, refused := false, false
	for len(seqs) < n || !repeated || !refused {
		ev := as.next()
		switch {
		case ev.Type == wire.EventSent && ev.ID > 0:
			if want := fmt.Sprint("p", len(seqs)+1); ev.ClientID != want {
				t.Fatalf("answer %d is for %s, want %s", len(seqs)+1, ev.ClientID, want)
			}
			seqs = append(seqs, ev.Seq)
		case ev.Type == wire.EventSent: // the live answer to the retry
			repeated = ev.ClientID == "p99"
		case ev.Type == wire.EventError:
			refused = ev.ClientID == "bad" && ev.Code == wire.CodeStaleDevices
		}
	}
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("send %d got seq %d", i+1, seq)
		}
	}
	st := s.node.StoreStats()
	if writes, commits := st.Writes-before.Writes, st.Commits-before.Commits; commits >= writes {
		t.Fatalf("%d Writes in %d commits: the socket's sends never shared one", writes, commits)
	}
	bs := bob.dial()
	for i := 1; i <= n; i++ {
		if ev := bs.next(); ev.Type != wire.EventMessage || ev.Seq != uint64(i) || bob.decrypt(ev) != fmt.Sprint("m", i) {
			t.Fatalf("bob's message %d: %+v", i, ev)
		}
	}
}

// An acknowledgement does not overtake the sends before it on the socket:
// a retry followed at once by the acknowledgement of its first attempt's
// answer is still recognised (acknowledgements are low-priority Writes,
// and a retry is recognised only while that answer is unacknowledged).
func TestSocketAckAfterRetryDoesNotOvertakeIt(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	as := alice.online()
	const rounds = 40
	for i := 1; i <= rounds; i++ {
		req := alice.encryptFor(fmt.Sprint("r", i), "bob@localhost", fmt.Sprint("m", i), bob)
		var first wire.SendResult
		s.must("POST", "/v1/messages", alice.token(), req, &first)
		answer := as.next()
		if answer.Type != wire.EventSent || answer.ClientID != req.ClientID {
			t.Fatalf("round %d: %+v, want the answer", i, answer)
		}
		// The retry, then at once the acknowledgement of the answer.
		as.sendFrame(wire.ClientFrame{Type: wire.FrameSend, ClientID: req.ClientID, To: req.To, Envelopes: req.Envelopes})
		as.sendFrame(wire.ClientFrame{Type: wire.FrameAck, IDs: []int64{answer.ID}})
		again := as.next()
		if again.Type != wire.EventSent || again.ID != 0 || again.ClientID != req.ClientID || again.Seq != first.Seq {
			t.Fatalf("round %d: %+v, want the live answer to a repeated send (seq %d)", i, again, first.Seq)
		}
	}
	if n := len(bob.inbox()); n != rounds {
		t.Fatalf("bob has %d messages, want %d: a retry was stored again", n, rounds)
	}
}

// A busy socket keeps its writer goroutine between events: thirty
// messages delivered one by one, each acknowledged over the socket, start
// no new writer on the receiving socket, where each used to start one.
// Once idle, the writers end (TestIdleSocketsHaveNoGoroutine).
func TestBusySocketKeepsItsWriter(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	bob := s.register("bob", 5)
	bs := bob.online()
	// A frame makes bob's socket busy; its answer shows that the reader
	// has had it.
	bs.sendFrame(wire.ClientFrame{Type: "bogus"})
	if ev := bs.next(); ev.Type != wire.EventError {
		t.Fatalf("answer to a bogus frame: %+v", ev)
	}
	before := s.node.SocketWriterStarts()
	const n = 30
	for i := range n {
		if status, _, e := alice.send(fmt.Sprint("m", i), "bob@localhost", bob.addr()); status != 200 {
			t.Fatalf("send %d: %d %+v", i, status, e)
		}
		ev := bs.next()
		if ev.Type != wire.EventMessage || ev.Seq != uint64(i+1) {
			t.Fatalf("event %d: %+v", i, ev)
		}
		bs.sendFrame(wire.ClientFrame{Type: wire.FrameAck, IDs: []int64{ev.ID}})
		fmt.Fprintf(os.Stderr, "MSG %d starts %d\n", i, s.node.SocketWriterStarts()-before)
	}
	// Alice sent over REST with no socket: every writer started since is
	// bob's.
	if started := s.node.SocketWriterStarts() - before; started > 1 {
		t.Fatalf("%d writer goroutines started for %d messages to a busy socket, want the one it had", started, n)
	}
}
