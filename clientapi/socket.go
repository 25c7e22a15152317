package clientapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

// A device's socket costs one goroutine (the reader, blocked in a read) and
// a small session struct. Nothing else is parked per socket: the writer is
// a goroutine started when there is something to send and gone when the
// inbox is drained, write buffers come from a pool, and pings come from one
// ticker for all sockets. That is what keeps an idle socket to a few KiB.
var upgrader = websocket.Upgrader{
	// 0: use the hijacked connection's reader, which ownBuffer makes one
	// of readBufferSize bytes that the session can see.
	ReadBufferSize:  0,
	WriteBufferSize: 4096,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     sameOriginOrNone,
	Error:           upgradeError,
}

// upgradeError answers a refused handshake with the API's error body: a
// foreign Origin is forbidden, anything else is not a valid handshake.
func upgradeError(w http.ResponseWriter, r *http.Request, status int, reason error) {
	e := wire.Error{Code: wire.CodeInvalidParam, Message: "not a WebSocket handshake: " + reason.Error()}
	if status == http.StatusForbidden {
		e = wire.Error{Code: wire.CodeForbidden, Message: "this Origin may not open a socket here"}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(wire.HTTPStatus(e.Code))
	json.NewEncoder(w).Encode(e)
}

// sameOriginOrNone admits non-browser clients (no Origin header) and pages
// served by this server; other origins' pages cannot use a visitor's token.
func sameOriginOrNone(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

// socket upgrades GET /v1/ws. The handler returns right after the upgrade;
// the session lives on in its read goroutine.
func (a *API) socket(c echo.Context) error {
	caller := callerOf(c)
	w := &ownBuffer{ResponseWriter: c.Response()}
	conn, err := upgrader.Upgrade(w, c.Request(), nil)
	if err != nil {
		return nil // the upgrader has answered with an HTTP error
	}
	// stale: storage first, before any hand-over.
	s := &session{api: a, conn: conn, br: w.br, cork: w.cork, caller: caller, stale: true}
	s.lastRead.Store(time.Now().UnixNano()) // before the ping ticker can see it
	a.hub.add(s)
	if n, low, err := a.hs.PreKeysLow(c.Request().Context(), caller); err == nil && low {
		s.queue(wire.Event{Type: wire.EventPreKeysLow, Count: n})
	}
	s.startReading()
	s.wake(true)
	return nil
}

// session is one device's socket.
//
// Its inbox events reach it two ways. Reading storage "after my cursor" is
// complete by construction (committed entries form a gap-free id order),
// and is how a session catches up after connecting. Once caught up, it
// takes the entries the commit path hands it (Notifier.InboxAdded, called
// in commit order), so a live event is never read back from storage. The
// two meet safely: an entry is written only if its id is above the cursor,
// and whenever the handed-over entries may be incomplete (at connect, or
// when a slow reader let too many pile up) the session is marked stale and
// reads storage again first.
type session struct {
	api    *API
	conn   *websocket.Conn
	br     *bufio.Reader   // conn's read buffer
	cork   *corkConn       // conn's connection, to gather frames (nil: written one by one)
	raw    syscall.RawConn // conn's descriptor; nil over TLS
	caller homeserver.Caller

	lastRead atomic.Int64 // unix nanoseconds of the last frame read
	// readUntil is the socket's read deadline as last set (unix
	// nanoseconds; the reader's): it is moved only when little of it is
	// left, not at every frame, each move being a timer update. (The write
	// deadline is gorilla's field, which it applies at every write anyway.)
	readUntil int64
	pollID    uint64         // the poller's name for it, once parked (reader only)
	slots     chan struct{}  // frames being handled (inFlight); made at the first (reader only)
	sends     sync.WaitGroup // sends being handled (inFlight)
	parked    bool           // no reader goroutine: the poller waits for data (under mu)
	busy      bool           // the reader has had a frame since it last parked (under mu)

	// A busy socket's reader waiting in the runtime's poller (under mu):
	// since when, and whether the sweep has ended the wait.
	waiting      bool
	waitingSince int64
	kicked       bool

	mu      sync.Mutex
	stale   bool // storage may hold events after the cursor that pending lacks
	running bool // a drain goroutine exists
	closed  bool
	// A drain goroutine of a busy socket waits here for more to write
	// (true) or for its end (false), instead of exiting (see drain).
	lingerCh    chan bool
	lingerSince int64                   // unix nanoseconds
	live        []wire.Event            // live events waiting to be written
	pending     []homeserver.InboxEvent // committed inbox events handed over, in id order

	// Owned by the (single) drain goroutine.
	cursor   int64 // id of the last inbox event written
	caughtUp bool
}

// wake makes sure a drain runs after now; with stale it also makes that
// drain read storage. It never blocks.
func (s *session) wake(stale bool) {
	s.mu.Lock()
	s.stale = s.stale || stale
	s.startLocked()
}

// startLocked starts a drain unless one runs (waking a lingering one),
// and unlocks s.mu.
func (s *session) startLocked() {
	if s.running && s.lingerCh != nil {
		s.lingerCh <- true
		s.lingerCh = nil
	}
	if s.closed || s.running {
		s.mu.Unlock()
		return
	}
	s.running = true
	s.mu.Unlock()
	s.api.hub.drains.Add(1)
	go s.drain()
}

// queue adds a live event and wakes the writer.
func (s *session) queue(ev wire.Event) {
	s.mu.Lock()
	s.live = append(s.live, ev)
	s.startLocked()
}

// push hands over an inbox event just committed. While the session is
// stale, the read it is due covers the event, which is dropped here; so
// are all pending events once MaxPending are waiting (a slow reader): the
// session reads them back from storage when it gets to them.
func (s *session) push(ev homeserver.InboxEvent) {
	s.mu.Lock()
	switch {
	case s.stale:
	case len(s.pending) >= s.api.opts.MaxPending:
		s.pending, s.stale = nil, true
	default:
		s.pending = append(s.pending, ev)
	}
	s.startLocked()
}

// drain writes queued live events, then inbox events in id order: after a
// read of storage from the cursor when the session is stale, and the
// handed-over events above the cursor. When nothing new arrived meanwhile
// it returns, unless it wrote and the socket is busy (its reader has had a
// frame since it last parked; never so for an idle socket): then it
// lingers for the next events until the hub's sweep finds it idle for
// busyIdle. A new goroutine per pass cost a stack grown anew each time
// down gorilla's write path (7 µs a message at 5,000/s).
func (s *session) drain() {
	ctx := s.api.ctx
	wrote := false
	var linger chan bool // this goroutine's, reused: each wait gets one value
	for {
		s.mu.Lock()
		if s.closed {
			s.running = false
			s.mu.Unlock()
			return
		}
		if !s.stale && len(s.live) == 0 && len(s.pending) == 0 {
			if !wrote || !s.busy {
				s.running = false
				s.mu.Unlock()
				return
			}
			if linger == nil {
				linger = make(chan bool, 1)
			}
			s.lingerCh, s.lingerSince = linger, time.Now().UnixNano()
			s.mu.Unlock()
			if !<-linger {
				return // ended by the sweep or a close, which cleared running
			}
			continue
		}
		wrote = true
		stale, live, pending := s.stale, s.live, s.pending
		s.stale, s.live, s.pending = false, nil, nil
		s.mu.Unlock()

		// Several frames go out in one write (see corkConn).
		corked := s.corkIf(len(live)+len(pending) > 1)
		for _, ev := range live {
			b, err := wire.EncodeEvent(&ev)
			if err != nil { // events the server builds: a bug, not the client's doing
				s.api.log.ErrorContext(ctx, "encoding a live event", "type", ev.Type, "err", err)
				continue
			}
			if !s.write(b) {
				return
			}
		}
		if stale && !s.catchUp(ctx) {
			return
		}
		for _, e := range pending {
			if e.ID <= s.cursor {
				continue // read from storage already
			}
			if !s.write(e.JSON()) {
				return
			}
			s.cursor = e.ID
		}
		if corked && !s.flush() {
			return
		}
	}
}

// corkIf starts gathering frames (corkConn) if several are about to be
// written, and says whether it did.
func (s *session) corkIf(several bool) bool {
	if several && s.cork != nil {
		s.cork.cork()
		return true
	}
	return false
}

// flush writes the frames gathered since corkIf; false if the socket
// failed and is closed.
func (s *session) flush() bool {
	s.conn.SetWriteDeadline(time.Now().Add(s.api.opts.WriteTimeout))
	if err := s.cork.flush(); err != nil {
		s.writeFailed()
		return false
	}
	return true
}

// catchUp writes every inbox event in storage after the cursor, then (the
// first time) caught_up.
func (s *session) catchUp(ctx context.Context) bool {
	for {
		s.api.hub.reads.Add(1)
		events, more, err := s.api.hs.Inbox(ctx, s.caller, s.cursor, 256)
		if err != nil {
			if ctx.Err() == nil {
				s.api.log.ErrorContext(ctx, "reading inbox for socket", "user", s.caller.UserID,
					"device", s.caller.DeviceID, "err", err)
			}
			s.closeWith(websocket.CloseInternalServerErr, "inbox unavailable")
			s.stopped()
			return false
		}
		corked := s.corkIf(len(events) > 1)
		for _, e := range events {
			if !s.write(e.JSON()) {
				return false
			}
			s.cursor = e.ID
		}
		if corked && !s.flush() {
			return false
		}
		if !more {
			break
		}
	}
	if !s.caughtUp {
		s.caughtUp = true
		return s.write([]byte(`{"type":"caught_up"}`))
	}
	return true
}

// stopped records that the drain goroutine has given up on a closed socket.
func (s *session) stopped() {
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
}

// write sends one text frame; a client too slow to take it within the
// write timeout is dropped, so it cannot hold anything up.
func (s *session) write(b []byte) bool {
	s.conn.SetWriteDeadline(time.Now().Add(s.api.opts.WriteTimeout))
	if err := s.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		s.writeFailed()
		return false
	}
	return true
}

// writeFailed closes a socket the drain goroutine could not write to and
// records that the goroutine gives up.
func (s *session) writeFailed() {
	s.closeWith(websocket.CloseGoingAway, "write failed")
	s.stopped()
}

// startReading sets the socket up and starts its reader.
func (s *session) startReading() {
	c := s.conn
	c.SetReadLimit(wire.MaxRequestBytes)
	s.raw = rawConn(c.NetConn())
	s.alive()
	c.SetPongHandler(func(string) error { s.alive(); return nil })
	go s.serve()
}

// alive records that the client sent something: it has another 2.5 to 3
// ping intervals to send the next frame or pong.
func (s *session) alive() {
	now := time.Now()
	s.lastRead.Store(now.UnixNano())
	if now.UnixNano()+int64(s.api.opts.PingInterval*5/2) > s.readUntil {
		until := now.Add(s.api.opts.PingInterval * 3)
		s.readUntil = until.UnixNano()
		s.conn.SetReadDeadline(until)
	}
}

// serve reads and handles frames while they come. When the socket is idle
// it hands it to the poller and returns, so an idle socket has no
// goroutine; the poller starts serve again when data arrives. A socket
// that has just had a frame is likely to have another soon: its reader
// waits for it in the runtime's poller instead (no registration with our
// poller, no probe, no new goroutine per frame) until the hub's sweep
// finds it idle for busyIdle and sends it to the poller. Without a poller
// (TLS, other systems) it waits a few calls deep, where the goroutine's
// stack can shrink to the minimum. Answers to the server's pings are
// taken here too: gorilla handles control frames inside ReadMessage and
// would wait there, deep, for the next data frame.
func (s *session) serve() {
	c := s.conn
	busy := false // a frame was handled by this goroutine
	for {
		if s.raw != nil {
			if s.br.Buffered() == 0 {
				if busy && s.api.poller != nil {
					if !s.awaitFrame() {
						return
					}
				} else if !s.awaitIdle() {
					return
				}
			}
			if s.takePong() {
				s.alive()
				continue
			}
		}
		buf, err := readFrame(c)
		if err != nil {
			s.finish()
			return
		}
		s.alive()
		if !busy {
			busy = true
			s.mu.Lock()
			s.busy = true
			s.mu.Unlock()
		}
		s.handle(buf.Bytes())
		putFrameBuf(buf)
	}
}

// busyIdle is how long a busy socket's reader waits for the next frame
// before it is handed to the poller (the sweep runs as often).
const busyIdle = time.Second

// awaitIdle waits for the first byte of a frame on a socket that has been
// idle: it parks the socket (returning false: the caller must return)
// unless data is already there. False also when the socket failed.
func (s *session) awaitIdle() bool {
	if !readable(s.raw) {
		if s.api.poller.park(s) {
			return false
		}
		if err := waitReadable(s.raw); err != nil {
			s.finish()
			return false
		}
	}
	if _, err := s.br.Peek(1); err != nil {
		s.finish()
		return false
	}
	return true
}

// awaitFrame waits in the runtime's poller for the first byte of the next
// frame of a busy socket. The sweep ends the wait of one idle for
// busyIdle by moving the read deadline to now; the socket then goes to
// the poller (false: the caller must return). False also when it failed.
func (s *session) awaitFrame() bool {
	s.mu.Lock()
	s.waiting, s.waitingSince = true, time.Now().UnixNano()
	s.mu.Unlock()
	_, err := s.br.Peek(1)
	s.mu.Lock()
	kicked := s.kicked
	s.waiting, s.kicked = false, false
	s.mu.Unlock()
	if kicked {
		s.conn.SetReadDeadline(time.Unix(0, s.readUntil)) // the liveness deadline back
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return s.awaitIdle()
		}
	}
	if err != nil {
		s.finish()
		return false
	}
	return true
}

// kickIfIdle ends the wait of a busy socket's reader that has waited
// busyIdle (see awaitFrame). Under s.mu, so that the reader, which looks
// at kicked under s.mu once its wait ends, always puts the deadline back.
func (s *session) kickIfIdle(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting && !s.kicked && now.UnixNano()-s.waitingSince >= int64(busyIdle) {
		s.kicked = true
		s.conn.NetConn().SetReadDeadline(now)
	}
}

// endIdleDrain ends a drain goroutine that has lingered busyIdle.
func (s *session) endIdleDrain(now time.Time) {
	s.mu.Lock()
	if s.lingerCh != nil && now.UnixNano()-s.lingerSince >= int64(busyIdle) {
		s.endLingerLocked()
	}
	s.mu.Unlock()
}

// endLingerLocked ends a lingering drain goroutine; under s.mu.
func (s *session) endLingerLocked() {
	if s.lingerCh != nil {
		s.lingerCh <- false
		s.lingerCh = nil
		s.running = false
	}
}

// frameBufs recycles the buffers frames are read into (gorilla's
// ReadMessage allocates a growing one per frame): handle keeps nothing of
// a frame's bytes.
var frameBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledFrame: a buffer grown by a larger frame goes to the collector.
const maxPooledFrame = 64 << 10

// readFrame reads the next data frame into a pooled buffer; putFrameBuf
// gives it back.
func readFrame(c *websocket.Conn) (*bytes.Buffer, error) {
	_, r, err := c.NextReader()
	if err != nil {
		return nil, err
	}
	buf := frameBufs.Get().(*bytes.Buffer)
	if _, err := buf.ReadFrom(r); err != nil {
		putFrameBuf(buf)
		return nil, err
	}
	return buf, nil
}

func putFrameBuf(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledFrame {
		buf.Reset()
		frameBufs.Put(buf)
	}
}

// finish closes the session after its reader failed.
func (s *session) finish() {
	s.closeWith(websocket.CloseNormalClosure, "")
	s.forget()
}

// forget removes a closed session from the hub and the poller.
func (s *session) forget() {
	s.api.hub.remove(s)
	s.api.poller.forget(s)
}

// takePong consumes a pong frame at the head of the read buffer, if a
// whole one is there. Between ReadMessage calls the buffer starts at a
// frame boundary; a client's pong is FIN+opcode 0xA, masked, with at most
// 125 bytes of payload, which nobody reads.
func (s *session) takePong() bool {
	n := s.br.Buffered()
	if n < 6 {
		return false
	}
	h, _ := s.br.Peek(2)
	size := int(h[1] & 0x7f)
	if h[0] != 0x8a || h[1]&0x80 == 0 || size > 125 || n < 6+size {
		return false
	}
	s.br.Discard(6 + size)
	return true
}

// handle runs one client frame. A send is handed on once its place among
// the device's sends is fixed, so one device's sends are sequenced in the
// order it sent them while up to maxInFlight frames wait for commits.
func (s *session) handle(data []byte) {
	var f wire.ClientFrame
	if err := wire.DecodeClientFrame(data, &f); err != nil {
		s.queue(errorEvent("", decodeError(err)))
		return
	}
	// No deadline per frame: a frame waits for its commit as long as the
	// writer takes (beyond maxInFlight the client's frames wait in the
	// socket, which is the backpressure), and a timer per frame cost ~7% of the server's
	// CPU at 4,000 messages/s (interleaved runs). A dead peer is found by
	// the pings and write deadlines, and shutdown cancels api.ctx.
	ctx := s.api.ctx
	switch f.Type {
	case wire.FrameSend:
		// The send goes on in a goroutine of its own once its place in
		// this device's order is fixed (its Write queued), so that the
		// next frame is read while it waits for its commit.
		placed := make(chan struct{}, 1)
		place := func() { // at most one signal is waited for; later calls do nothing
			select {
			case placed <- struct{}{}:
			default:
			}
		}
		s.inFlight(func() {
			defer place()
			s.send(homeserver.WithSequenced(ctx, place), f)
		})
		<-placed
	case wire.FrameAck:
		// After the sends before it: acknowledgements are low-priority
		// Writes, which could otherwise overtake them, and a retried send
		// is recognised only while the answer to its first attempt is
		// unacknowledged. Waited for itself: a device's acknowledgements
		// take effect (and its senders' receipts are queued) in order.
		s.sends.Wait()
		if err := s.api.hs.Ack(ctx, s.caller, f.IDs); err != nil {
			s.queue(s.api.logged(ctx, errorEvent("", err), err))
		}
	case wire.FrameRead:
		s.sends.Wait()
		if err := s.api.hs.MarkRead(ctx, s.caller, wire.ReadRequest{Conversation: f.Conversation, Seq: f.Seq}); err != nil {
			s.queue(s.api.logged(ctx, errorEvent("", err), err))
		}
	default:
		s.queue(errorEvent("", &wire.Error{Code: wire.CodeInvalidParam, Field: "type",
			Message: "frame type must be send, ack or read"}))
	}
}

// maxInFlight bounds a socket's sends waiting for their commits; beyond
// it the reader waits, and the client's frames wait
// in the socket (backpressure).
const maxInFlight = 16

// inFlight runs fn in a goroutine once fewer than maxInFlight of the
// socket's frames are being handled. Reader only.
func (s *session) inFlight(fn func()) {
	if s.slots == nil {
		s.slots = make(chan struct{}, maxInFlight)
	}
	slots := s.slots
	slots <- struct{}{}
	s.sends.Add(1)
	go func() {
		defer func() { <-slots; s.sends.Done() }()
		fn()
	}()
}

// send runs a send frame and answers it. A sequenced send is answered by
// the "sent" entry it put in this device's inbox, which reaches the socket
// like any entry. Only a send queued for a remote hub, or a repeated one
// (whose answer may have been acknowledged already), is answered live.
func (s *session) send(ctx context.Context, f wire.ClientFrame) {
	res, err := s.api.hs.Send(ctx, s.caller, wire.SendRequest{ClientID: f.ClientID, To: f.To, Envelopes: f.Envelopes, Shared: f.Shared})
	if err != nil {
		s.queue(s.api.logged(ctx, errorEvent(f.ClientID, err), err))
		return
	}
	var ev wire.Event
	switch {
	case res.Status == wire.SendAccepted:
		ev = wire.Event{Type: wire.EventAccepted, ClientID: f.ClientID}
	case res.Repeated:
		sentAt := res.SentAt
		ev = wire.Event{Type: wire.EventSent, ClientID: f.ClientID, Conversation: res.Conversation, Seq: res.Seq, SentAt: &sentAt}
	default:
		return
	}
	s.queue(ev)
}

func errorEvent(clientID string, err error) wire.Event {
	body, _ := toWire(err)
	return wire.Event{Type: wire.EventError, ClientID: clientID, Code: body.Code, Message: body.Message,
		Missing: body.Missing, Extra: body.Extra}
}

// logged logs the private cause of an error event once, like errorHandler.
func (a *API) logged(ctx context.Context, ev wire.Event, err error) wire.Event {
	if _, cause := toWire(err); cause != nil {
		a.log.ErrorContext(ctx, "socket frame failed", "code", ev.Code, "err", cause)
	}
	return ev
}

func (s *session) closeWith(code int, reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	parked := s.parked // no reader goroutine will see the close
	s.parked = false
	s.endLingerLocked()
	s.mu.Unlock()
	s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
		time.Now().Add(time.Second))
	s.conn.Close()
	if parked {
		s.forget()
	}
}

// checkAlive reports whether the socket is still open; it closes a parked socket whose client has sent nothing, not
// even a pong, for 2.5 ping intervals: it has no read to time out. A
// socket with a reader is left to its read deadline (its reader may be
// busy handling a frame, with pongs waiting unread).
func (s *session) checkAlive(now time.Time) bool {
	s.mu.Lock()
	parked := s.parked
	s.mu.Unlock()
	if parked && now.Sub(time.Unix(0, s.lastRead.Load())) > s.api.opts.PingInterval*5/2 {
		s.closeWith(websocket.CloseGoingAway, "no answer to pings")
		return false
	}
	return true
}

func (s *session) ping() {
	if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.api.opts.WriteTimeout)); err != nil {
		s.closeWith(websocket.CloseGoingAway, "ping failed")
	}
}

type devKey struct {
	user string
	dev  uint32
}

// hub maps devices to their sockets and implements homeserver.Notifier.
type hub struct {
	api      *API
	mu       sync.RWMutex
	sessions map[devKey]*session
	reads    atomic.Int64 // inbox reads from storage, for SocketInboxReads
	drains   atomic.Int64 // drain goroutines started, for SocketWriterStarts
}

func newHub(a *API) *hub { return &hub{api: a, sessions: map[devKey]*session{}} }

// add registers s, replacing (and closing) an older socket of the same
// device: one socket per device.
func (h *hub) add(s *session) {
	k := devKey{s.caller.UserID, s.caller.DeviceID}
	h.mu.Lock()
	old := h.sessions[k]
	h.sessions[k] = s
	h.mu.Unlock()
	if old != nil {
		old.closeWith(websocket.ClosePolicyViolation, "replaced by a newer connection of this device")
	}
}

func (h *hub) remove(s *session) {
	k := devKey{s.caller.UserID, s.caller.DeviceID}
	h.mu.Lock()
	if h.sessions[k] == s {
		delete(h.sessions, k)
	}
	h.mu.Unlock()
}

func (h *hub) get(user string, dev uint32) *session {
	h.mu.RLock()
	s := h.sessions[devKey{user, dev}]
	h.mu.RUnlock()
	return s
}

func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sessions)
}

func (h *hub) InboxAdded(user string, dev uint32, ev homeserver.InboxEvent) {
	if s := h.get(user, dev); s != nil {
		s.push(ev)
	}
}

func (h *hub) PreKeysLow(user string, dev uint32, count int) {
	if s := h.get(user, dev); s != nil {
		s.queue(wire.Event{Type: wire.EventPreKeysLow, Count: count})
	}
}

func (h *hub) DeviceRemoved(user string, dev uint32) {
	if s := h.get(user, dev); s != nil {
		s.closeWith(websocket.ClosePolicyViolation, "device removed")
	}
}

func (h *hub) snapshot() []*session { return h.appendSessions(nil) }

// appendSessions appends every session to out.
func (h *hub) appendSessions(out []*session) []*session {
	h.mu.RLock()
	out = slices.Grow(out, len(h.sessions))
	for _, s := range h.sessions {
		out = append(out, s)
	}
	h.mu.RUnlock()
	return out
}

// run pings every socket each interval and closes them all when ctx ends.
func (h *hub) run(ctx context.Context) {
	t := time.NewTicker(h.api.opts.PingInterval)
	defer t.Stop()
	sweep := time.NewTicker(busyIdle)
	defer sweep.Stop()
	var swept []*session // reused: the sweep runs every second over every socket
	for {
		select {
		case now := <-sweep.C:
			swept = h.appendSessions(swept[:0])
			for _, s := range swept {
				if h.api.poller != nil {
					s.kickIfIdle(now)
				}
				s.endIdleDrain(now)
			}
			clear(swept) // let closed sessions go
		case <-ctx.Done():
			for _, s := range h.snapshot() {
				s.closeWith(websocket.CloseGoingAway, "server shutting down")
			}
			return
		case now := <-t.C:
			for _, s := range h.snapshot() {
				if s.checkAlive(now) {
					s.ping()
				}
			}
		}
	}
}

// readBufferSize is each socket's read buffer: the smallest the upgrader
// reuses (over 256) and a whole allocation size class. Acks and small
// sends fit; a larger frame's payload is read straight into the message.
// 512 cost 0.4 KiB more per idle socket at 19,000, 1,024 another 0.5 KiB.
const readBufferSize = 288

// ownBuffer hands the upgrader a read buffer for the hijacked
// connection (it uses the hijacked one when its own ReadBufferSize is 0),
// so that the session knows whether a frame is already buffered before it
// waits on the socket, and a corkConn to write to.
type ownBuffer struct {
	http.ResponseWriter
	br   *bufio.Reader
	cork *corkConn // what gorilla writes to (nil if the handshake had data after it)
}

func (w *ownBuffer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return conn, brw, err // the upgrader refuses data sent before the handshake
	}
	w.br = bufio.NewReaderSize(conn, readBufferSize)
	w.cork = &corkConn{Conn: conn}
	return w.cork, bufio.NewReadWriter(w.br, brw.Writer), nil
}
