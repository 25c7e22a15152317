package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/clientapi"
	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// Outages and backpressure: a failure of one part must not take the rest
// down, and nothing accepted may be lost or doubled on the way. The tests
// assert what arrives, never how fast.

// moveTo stops f and starts it again on the same data with its federation
// listener on host (a fresh port), published in the zone: the server moved.
func (f *fedServer) moveTo(host string) {
	f.t.Helper()
	f.stop()
	f.server = startServerExtra(f.t, f.cfg.Data, f.extra, append(f.opts, func(c *setup.Config) {
		c.FederationListen = net.JoinHostPort(host, "0")
	})...)
	f.addr = strings.TrimPrefix(f.node.FederationURL(), "http://")
	h, p, _ := net.SplitHostPort(f.addr)
	port, _ := strconv.Atoi(p)
	f.zone.PublishAt(f.domain, net.ParseIP(h), port)
}

// inOrder checks that d's inbox holds exactly the texts want, in seq order,
// once each, and acknowledges them.
func inOrder(t *testing.T, d *device, want []string) {
	t.Helper()
	msgs := byType(waitInbox(t, d, fmt.Sprintf("%d messages for %s", len(want), d.session.UserID), countMessages(len(want))), wire.EventMessage)
	var got []string
	var last uint64
	for _, m := range msgs {
		if m.Seq <= last {
			t.Fatalf("seq %d after %d", m.Seq, last)
		}
		last = m.Seq
		got = append(got, d.decrypt(m))
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%s got %q, want %q (in order, once each)", d.session.UserID, got, want)
	}
	d.ack(msgs...)
}

// A destination down for longer than several backoff steps gets
// everything queued for it, in order and once, when it is back, without
// any request from it cutting the backoff short (TestFederationOutage
// covers that shortcut).
func TestFederationLongOutageBackoff(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil) // backoff 20ms doubling to 200ms
	b := startFederated(t, zone, "b.test", "", nil)
	alice := a.register("alice", 20)
	bob := b.register("bob", 20)
	want := []string{"before"}
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("m0", "bob@b.test", "before", bob), nil)
	inOrder(t, bob, want)
	want = want[:0]

	b.stop()
	send := func(i int) {
		text := fmt.Sprint("during ", i)
		want = append(want, text)
		a.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprint("d", i), "bob@b.test", text, bob), nil)
	}
	for i := range 5 {
		send(i)
	}
	// 20, 40, 80, 160, 200 ms: at the cap, at least five attempts failed.
	eventually(t, "a.test to back off to its cap", func() bool {
		for _, st := range a.node.FederationStatus() {
			if st.Destination == "b.test" && st.Failing && st.Backoff >= 200*time.Millisecond {
				return true
			}
		}
		return false
	})
	for i := 5; i < 10; i++ {
		send(i)
	}
	b.restart()
	bob.srv = b.server
	inOrder(t, bob, want)
	eventually(t, "the queue to recover", func() bool {
		for _, st := range a.node.FederationStatus() {
			if st.Destination == "b.test" {
				return !st.Failing
			}
		}
		return false
	})
}

// A server that moves (another port, then another host) is followed
// once the DNS answer's TTL has passed, in both directions, and nothing is
// lost or doubled on the way.
func TestFederationServerMoves(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil)
	b := startFederated(t, zone, "b.test", "", nil)
	alice := a.register("alice", 20)
	bob := b.register("bob", 20)
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("m0", "bob@b.test", "hello", bob), nil)
	inOrder(t, bob, []string{"hello"})

	for i, host := range []string{"127.0.0.1", "127.0.0.2"} {
		old := b.addr
		b.moveTo(host)
		bob.srv = b.server
		if b.addr == old {
			t.Fatalf("b.test did not move: still %s", old)
		}
		// a.test's cached answer points at the old address for up to a
		// second: the first attempts fail and are retried.
		var want []string
		for j := range 3 {
			text := fmt.Sprintf("after move %d, %d", i, j)
			want = append(want, text)
			a.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprintf("a%d-%d", i, j), "bob@b.test", text, bob), nil)
		}
		inOrder(t, bob, want)
		// bob's send goes to the hub (a.test) and comes back to b.test's
		// new address sequenced.
		text := fmt.Sprint("reply ", i)
		// bob's server may answer "unavailable" (retry later) for a moment
		// if a.test was fetching its key while it moved; the client retries
		// with the same client id, as clients do.
		req := bob.encryptFor(fmt.Sprint("b", i), "alice@a.test", text, alice)
		eventually(t, "bob's send to be accepted", func() bool {
			st, e := b.call("POST", "/v1/messages", bob.token(), req, nil)
			if st != 200 && e.Code != wire.CodeUnavailable {
				t.Fatalf("bob's send: %d %+v", st, e)
			}
			return st == 200
		})
		inOrder(t, alice, []string{text})
		waitInbox(t, bob, "bob's sent event", func(evs []wire.Event) bool {
			for _, e := range byType(evs, wire.EventSent) {
				if e.ClientID == fmt.Sprint("b", i) {
					bob.ack(e)
					return true
				}
			}
			return false
		})
	}
}

// staller accepts TCP connections and never answers: a peer that hangs.
type staller struct {
	ln       net.Listener
	accepted atomic.Int32
	closed   atomic.Int32 // connections the other side gave up on
}

func startStaller(t *testing.T) *staller {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &staller{ln: ln}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				// Read (and ignore) what the client sends, to notice when
				// it hangs up; never write a byte.
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						s.closed.Add(1)
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return s
}

func (s *staller) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// A peer that accepts connections and never answers holds up only its own
// queue: messages to a healthy domain keep flowing meanwhile.
func TestStalledPeerDoesNotBlockOthers(t *testing.T) {
	zone := testdns.Start(t)
	// a.test would wait 10 minutes for the stalled peer's answer: longer
	// than the test, so any progress elsewhere happens while it waits.
	a := startFederated(t, zone, "a.test", "", []func(*setup.Extra){func(e *setup.Extra) {
		e.Sender = federation.SenderOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Timeout: 10 * time.Minute}
	}})
	b := startFederated(t, zone, "b.test", "", nil)
	c := startFederated(t, zone, "c.test", "", nil)
	alice := a.register("alice", 20)
	bob := b.register("bob", 20)
	carol := c.register("carol", 20)
	// alice knows carol's devices from a first exchange, so later sends to
	// her need nothing from c.test but the queue.
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("c0", "carol@c.test", "hi carol", carol), nil)
	inOrder(t, carol, []string{"hi carol"})

	// c.test is replaced by a peer that never answers.
	c.stop()
	st := startStaller(t)
	zone.Publish("c.test", st.port())
	for i := range 3 {
		var res wire.SendResult
		a.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprint("c", i+1), "carol@c.test", "into the void", carol), &res)
		if res.Status != wire.SendSent {
			t.Fatalf("send to carol: %+v", res)
		}
	}
	eventually(t, "a.test to reach the stalled peer", func() bool { return st.accepted.Load() > 0 })

	var want []string
	for i := range 10 {
		text := fmt.Sprint("to bob ", i)
		want = append(want, text)
		a.must("POST", "/v1/messages", alice.token(), alice.encryptFor(fmt.Sprint("b", i), "bob@b.test", text, bob), nil)
	}
	inOrder(t, bob, want)
	if st.closed.Load() == st.accepted.Load() {
		t.Fatal("a.test gave up on the stalled peer: the test no longer shows that delivery went on while it waited")
	}
	for _, s := range a.node.FederationStatus() {
		if s.Destination == "b.test" && s.Failing {
			t.Fatal("b.test's queue is failing")
		}
	}
}

// stuckSocket opens a device's WebSocket by hand and never reads from it.
func stuckSocket(t *testing.T, s *server, token string) net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(s.url, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.(*net.TCPConn).SetReadBuffer(4096) // a small window fills the server's buffers sooner
	fmt.Fprintf(conn, "GET /v1/ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n", addr, token)
	// Read the handshake answer byte by byte, so that nothing after it is
	// consumed; then never read again.
	r := bufio.NewReaderSize(conn, 16)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s", resp.Status)
	}
	return conn
}

// A client that stops reading its socket is dropped once a write to it
// has waited for the write timeout; other clients get their messages
// meanwhile, and the dropped device loses nothing: its inbox keeps it all.
func TestStuckReaderIsDropped(t *testing.T) {
	s := startServerExtra(t, "", []func(*setup.Extra){func(e *setup.Extra) {
		e.Client = clientapi.Options{WriteTimeout: 300 * time.Millisecond}
	}})
	victim := s.register("victim", 5)
	bob := s.register("bob", 5)
	carol := s.register("carol", 5)
	cs := carol.online()
	stuckSocket(t, s, victim.token())
	eventually(t, "both sockets", func() bool { return s.node.Sockets() == 2 })

	big := strings.Repeat("x", 60<<10)
	flood, toCarol := 0, 0
	for s.node.Sockets() == 2 {
		if flood == 2000 {
			t.Fatal("2000 messages of 60 KiB did not fill a socket that is never read")
		}
		req := wire.SendRequest{ClientID: fmt.Sprint("flood-", flood), To: "victim@localhost",
			Envelopes: []wire.Envelope{{User: "victim@localhost", Device: 1, Type: wire.CiphertextWhisper, Body: []byte(big)}}}
		s.must("POST", "/v1/messages", bob.token(), req, nil)
		flood++
		if flood%10 == 0 {
			// carol keeps getting hers, in order, while the victim's
			// socket is stuck.
			s.must("POST", "/v1/messages", bob.token(), sendReq(fmt.Sprint("carol-", toCarol), "carol@localhost", carol.addr()), nil)
			toCarol++
			ev := cs.next()
			if ev.Type != wire.EventMessage || ev.Seq != uint64(toCarol) {
				t.Fatalf("carol's socket: %+v, want message %d", ev, toCarol)
			}
			cs.sendFrame(wire.ClientFrame{Type: wire.FrameAck, IDs: []int64{ev.ID}})
		}
	}
	// Dropped; carol's socket is still there and still works.
	if s.node.Sockets() != 1 {
		t.Fatalf("%d sockets after the drop, want carol's alone", s.node.Sockets())
	}
	s.must("POST", "/v1/messages", bob.token(), sendReq("carol-last", "carol@localhost", carol.addr()), nil)
	if ev := cs.next(); ev.Type != wire.EventMessage || ev.Seq != uint64(toCarol+1) {
		t.Fatalf("carol after the drop: %+v", ev)
	}
	// Nothing was lost for the victim: every message waits in its inbox.
	var got int
	after := int64(0)
	for {
		var page wire.InboxPage
		s.must("GET", fmt.Sprintf("/v1/inbox?after=%d&limit=1000", after), victim.token(), nil, &page)
		for _, e := range page.Events {
			if e.Type == wire.EventMessage {
				got++
			}
			after = e.ID
		}
		if !page.More {
			break
		}
	}
	if got != flood {
		t.Fatalf("the victim's inbox holds %d messages, want all %d", got, flood)
	}
}
