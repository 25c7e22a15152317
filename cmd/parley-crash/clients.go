package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// A pair is one sender and one receiver, each its own account, and so one
// direct conversation. The receiver has two devices: a message must reach
// both or, if it was never accepted, neither. The sender numbers its
// messages 1, 2, 3… inside the opaque body; the server never looks inside.
type pair struct {
	n         int
	socket    bool // the sender sends on its WebSocket (else REST)
	sender    *client.API
	receivers []*receiver
	to        string // the receiver's user id

	mu        sync.Mutex
	accepted  map[int]uint64 // body number -> seq the server answered with
	attempted int            // highest body number tried
	// problems seen on the way
	misordered, mismatched, phantom, redelivered int
	retries, reconnects                          int
	firstProblem                                 string
}

// receiver is one device of the receiving user: its application's view.
// Guarded by the pair's mu.
type receiver struct {
	api       *client.API
	device    uint32
	delivered map[int]int    // body number -> times handed to the application
	seqOf     map[int]uint64 // body number -> seq it arrived with
	seen      map[uint64]bool
	lastSeq   uint64 // last seq handed to the application
	lastBody  int
}

func newPair(n int) *pair {
	return &pair{n: n, socket: n%2 == 1, accepted: map[int]uint64{}}
}

// payload is the body of every message.
type payload struct {
	Pair int    `json:"pair"`
	N    int    `json:"n"`
	CID  string `json:"cid"`
}

func (p *pair) clientID(n int) string { return fmt.Sprintf("crash-%d-%07d", p.n, n) }

func (p *pair) problem(format string, args ...any) {
	if p.firstProblem == "" {
		p.firstProblem = fmt.Sprintf("pair %d: ", p.n) + fmt.Sprintf(format, args...)
	}
}

// register creates the pair's accounts; the receiver's two devices upload
// real keys (the server only relays to devices with keys).
func (p *pair) register(ctx context.Context, url, dir string, hc *http.Client) error {
	const password = "crash harness password"
	anon := client.New(url, "", client.WithHTTPClient(hc))
	s, err := anon.Register(ctx, wire.RegisterRequest{User: fmt.Sprintf("sender%d", p.n), Password: password})
	if err != nil {
		return fmt.Errorf("register sender %d: %w", p.n, err)
	}
	p.sender = anon.WithToken(s.AccessToken)
	for i := range 2 {
		req := wire.RegisterRequest{User: fmt.Sprintf("receiver%d", p.n), Password: password}
		var r wire.Session
		if i == 0 {
			r, err = anon.Register(ctx, req)
		} else {
			r, err = anon.Login(ctx, req)
		}
		if err != nil {
			return fmt.Errorf("receiver %d device %d: %w", p.n, i+1, err)
		}
		p.to = r.UserID
		rc := &receiver{api: anon.WithToken(r.AccessToken), device: r.DeviceID, delivered: map[int]int{},
			seqOf: map[int]uint64{}, seen: map[uint64]bool{}}
		st, err := e2ee.OpenStore(filepath.Join(dir, fmt.Sprintf("receiver%d-%d.db", p.n, r.DeviceID)))
		if err != nil {
			return err
		}
		err = st.CreateIdentity(ctx)
		var up wire.KeyUpload
		if err == nil {
			up, err = st.KeyUpload(ctx, true, 5)
		}
		st.Close()
		if err != nil {
			return err
		}
		if _, err := rc.api.UploadKeys(ctx, up); err != nil {
			return fmt.Errorf("upload keys %d/%d: %w", p.n, r.DeviceID, err)
		}
		p.receivers = append(p.receivers, rc)
	}
	return nil
}

func (p *pair) request(n int) wire.SendRequest {
	cid := p.clientID(n)
	body, _ := json.Marshal(payload{Pair: p.n, N: n, CID: cid})
	req := wire.SendRequest{ClientID: cid, To: p.to}
	for _, r := range p.receivers {
		req.Envelopes = append(req.Envelopes, wire.Envelope{User: p.to, Device: r.device, Type: wire.CiphertextWhisper, Body: body})
	}
	return req
}

// accept records the server's answer for message n; a retry of n must get
// the seq of its first answer, and later messages later seqs.
func (p *pair) accept(n int, seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.accepted[n]; ok && prev != seq {
		p.mismatched++
		p.problem("message %d accepted twice, as seq %d and %d", n, prev, seq)
	}
	if prev, ok := p.accepted[n-1]; ok && seq <= prev {
		p.misordered++
		p.problem("message %d got seq %d, not after message %d's %d", n, seq, n-1, prev)
	}
	p.accepted[n] = seq
}

// sendPatience bounds how long one message may go unaccepted while the
// server is up and down: beyond it the harness fails rather than hangs
// (a server that refuses a retried client id forever, say).
var sendPatience = 60 * time.Second

// retryable: the server was unreachable, or said to try again.
func retryable(err error) bool {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code == wire.CodeInternal || we.Code == wire.CodeUnavailable || we.Code == "http_502" || we.Code == "http_503"
	}
	return true // transport: refused, reset, EOF, timeout
}

// sendLoop sends messages 1, 2, 3… until stop is closed, each until the
// server accepts it, always with the same client id.
func (p *pair) sendLoop(ctx context.Context, stop <-chan struct{}, fatal func(error)) {
	if p.socket {
		p.sendSocket(ctx, stop, fatal)
		return
	}
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		p.mu.Lock()
		p.attempted = n
		p.mu.Unlock()
		req := p.request(n)
		giveUp := time.Now().Add(sendPatience)
		for {
			res, err := p.sender.SendMessage(ctx, req)
			if err == nil {
				if res.Status != wire.SendSent || res.ClientID != req.ClientID {
					fatal(fmt.Errorf("pair %d: unexpected answer %+v", p.n, res))
					return
				}
				p.accept(n, res.Seq)
				break
			}
			if ctx.Err() != nil {
				return
			}
			if !retryable(err) || time.Now().After(giveUp) {
				fatal(fmt.Errorf("pair %d: send %d not accepted: %w", p.n, n, err))
				return
			}
			p.mu.Lock()
			p.retries++
			p.mu.Unlock()
			pause(ctx, 20*time.Millisecond)
		}
	}
}

// sendSocket is sendLoop over the sender's WebSocket: a send frame, then
// wait for its "sent" event; if the socket breaks first, reconnect and
// send the same frame again. Receipts arriving meanwhile are acknowledged.
func (p *pair) sendSocket(ctx context.Context, stop <-chan struct{}, fatal func(error)) {
	var conn *client.Conn
	dialed := false // a later dial is a reconnect
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for n := 1; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		p.mu.Lock()
		p.attempted = n
		p.mu.Unlock()
		req := p.request(n)
		frame := wire.ClientFrame{Type: wire.FrameSend, ClientID: req.ClientID, To: req.To, Envelopes: req.Envelopes}
		giveUp := time.Now().Add(sendPatience)
	attempt:
		for {
			if ctx.Err() != nil {
				return
			}
			if time.Now().After(giveUp) {
				fatal(fmt.Errorf("pair %d: send %d not accepted within %s", p.n, n, sendPatience))
				return
			}
			if conn == nil {
				if conn = p.dial(ctx, p.sender, dialed); conn == nil {
					return
				}
				dialed = true
			}
			if err := conn.Send(ctx, frame); err != nil {
				conn.Close()
				conn = nil
				p.mu.Lock()
				p.retries++
				p.mu.Unlock()
				continue
			}
			timeout := time.NewTimer(30 * time.Second)
			for {
				select {
				case ev, ok := <-conn.Events():
					if !ok {
						timeout.Stop()
						conn = nil
						p.mu.Lock()
						p.retries++
						p.mu.Unlock()
						continue attempt
					}
					if ev.ID > 0 {
						conn.Ack(ctx, []int64{ev.ID})
					}
					switch {
					case ev.Type == wire.EventSent && ev.ClientID == frame.ClientID:
						timeout.Stop()
						p.accept(n, ev.Seq)
						break attempt
					case ev.Type == wire.EventError && ev.ClientID == frame.ClientID:
						timeout.Stop()
						if !retryable(&wire.Error{Code: ev.Code}) {
							fatal(fmt.Errorf("pair %d: send %d refused: %s %s", p.n, n, ev.Code, ev.Message))
							return
						}
						pause(ctx, 20*time.Millisecond)
						continue attempt
					}
				case <-timeout.C:
					// The socket is alive but the answer never came: not
					// expected, but a reconnect and resend is safe.
					conn.Close()
					conn = nil
					continue attempt
				case <-ctx.Done():
					timeout.Stop()
					return
				}
			}
		}
	}
}

// dial connects a device's socket, retrying while the server is down; nil
// when ctx ends. again: the device was connected before (a reconnect).
func (p *pair) dial(ctx context.Context, api *client.API, again bool) *client.Conn {
	for {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := api.Dial(dctx)
		cancel()
		if err == nil {
			if again {
				p.mu.Lock()
				p.reconnects++
				p.mu.Unlock()
			}
			return conn
		}
		if !pause(ctx, 20*time.Millisecond) {
			return nil
		}
	}
}

// receiveLoop is one receiving device's application: it reads its socket,
// reconnecting whenever it breaks, hands each message to the application
// once (de-duplicated by conversation and seq), then acknowledges it.
func (p *pair) receiveLoop(ctx context.Context, r *receiver) {
	for dialed := false; ctx.Err() == nil; dialed = true {
		conn := p.dial(ctx, r.api, dialed)
		if conn == nil {
			return
		}
		var acks []int64
		flush := func() {
			if len(acks) > 0 && conn.Ack(ctx, acks) == nil {
				acks = acks[:0]
			}
		}
	read:
		for {
			select {
			case ev, ok := <-conn.Events():
				if !ok {
					break read
				}
				if ev.ID == 0 {
					continue
				}
				if ev.Type == wire.EventMessage {
					p.deliver(r, ev)
				}
				acks = append(acks, ev.ID)
				if len(acks) >= 32 || len(conn.Events()) == 0 {
					flush()
				}
			case <-ctx.Done():
				break read
			}
		}
		conn.Close()
	}
}

// deliver is the application's side: the first copy of each (conversation,
// seq) counts, later copies are redeliveries of unacknowledged events.
func (p *pair) deliver(r *receiver, ev wire.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.seen[ev.Seq] {
		p.redelivered++
		return
	}
	r.seen[ev.Seq] = true
	if ev.Seq < r.lastSeq {
		p.misordered++
		p.problem("device %d: seq %d delivered after seq %d", r.device, ev.Seq, r.lastSeq)
	}
	var body payload
	if err := json.Unmarshal(ev.Body, &body); err != nil || body.Pair != p.n || body.CID != p.clientID(body.N) || body.N <= 0 {
		p.phantom++
		p.problem("message seq %d has a body we never sent: %q", ev.Seq, ev.Body)
		return
	}
	if body.N <= r.lastBody {
		p.misordered++
		p.problem("device %d: message %d (seq %d) delivered after message %d", r.device, body.N, ev.Seq, r.lastBody)
	}
	r.lastSeq, r.lastBody = ev.Seq, body.N
	r.delivered[body.N]++
	if prev, ok := r.seqOf[body.N]; ok {
		p.problem("device %d: message %d delivered as seq %d and %d", r.device, body.N, prev, ev.Seq)
	}
	r.seqOf[body.N] = ev.Seq
}

// caughtUp reports whether every accepted message has been delivered.
func (p *pair) caughtUp() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := range p.accepted {
		for _, r := range p.receivers {
			if r.delivered[n] == 0 {
				return false
			}
		}
	}
	return true
}

// pause sleeps for d; false when ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
