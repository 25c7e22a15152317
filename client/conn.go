package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/wire"
)

// writeTimeout bounds one frame write when the caller's context has no
// earlier deadline: gorilla cannot abandon a write on cancellation, only on
// a deadline.
const writeTimeout = 30 * time.Second

// Conn is a device's WebSocket to its homeserver. One goroutine reads
// frames and delivers them, in order, on Events; Send may be called from
// several goroutines at once.
//
// The server first sends every pending inbox event, then one
// wire.EventCaughtUp, then live events. Inbox events (ID > 0) stay pending
// until acknowledged (a "ack" frame or API.Ack); after a reconnect the
// unacknowledged ones come again.
type Conn struct {
	ws     *websocket.Conn
	events chan wire.Event
	done   chan struct{} // closed by Close

	closeOnce sync.Once
	closeErr  error

	wmu sync.Mutex // serialises writes of data frames; gorilla allows one writer

	mu  sync.Mutex
	err error // why the reader stopped; guarded by mu
}

// Dial opens the device's WebSocket (GET /v1/ws). A refused handshake (a
// bad token, say) is returned as *wire.Error.
func (a *API) Dial(ctx context.Context) (*Conn, error) {
	target, err := a.endpoint("/v1/ws", nil)
	if err != nil {
		return nil, err
	}
	switch {
	case len(target) > 5 && target[:5] == "https":
		target = "wss" + target[5:]
	case len(target) > 4 && target[:4] == "http":
		target = "ws" + target[4:]
	}
	hdr := http.Header{}
	hdr.Set("User-Agent", userAgent)
	if a.token != "" {
		hdr.Set("Authorization", "Bearer "+a.token)
	}
	ws, resp, err := a.dialer.DialContext(ctx, target, hdr)
	if err != nil {
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
			return nil, responseError(resp.StatusCode, body)
		}
		return nil, fmt.Errorf("client: dial /v1/ws: %w", err)
	}
	// A frame carries at most one event; a message event's ciphertext is
	// at most wire.MaxEnvelopeBytes before base64.
	ws.SetReadLimit(wire.MaxRequestBytes)
	c := &Conn{
		ws:     ws,
		events: make(chan wire.Event, a.events),
		done:   make(chan struct{}),
	}
	go c.read()
	return c, nil
}

// read delivers frames until the socket fails or Close is called. The
// default ping handler answers the server's pings while it reads.
func (c *Conn) read() {
	defer close(c.events)
	var buf bytes.Buffer // reused: a decoded event keeps no part of it
	for {
		var ev wire.Event
		_, r, err := c.ws.NextReader()
		if err == nil {
			buf.Reset()
			if _, err = buf.ReadFrom(r); err == nil {
				err = wire.DecodeEvent(buf.Bytes(), &ev)
			}
		}
		if err != nil {
			select {
			case <-c.done: // closed by us: not an error
			default:
				c.mu.Lock()
				c.err = fmt.Errorf("client: websocket: %w", err)
				c.mu.Unlock()
			}
			return
		}
		select {
		case c.events <- ev:
		case <-c.done:
			return
		}
	}
}

// Events delivers the server's events in order. It is closed when the
// connection ends; Err then tells why.
func (c *Conn) Events() <-chan wire.Event { return c.events }

// Err returns why the connection ended: nil while Events is open and after
// Close, the read error otherwise (a *websocket.CloseError when the server
// closed it). Call it after Events is closed.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Send writes one frame. It is safe for concurrent use; the write is
// abandoned at ctx's deadline (or after 30 s), which breaks the connection.
func (c *Conn) Send(ctx context.Context, f wire.ClientFrame) error {
	b, err := wire.EncodeClientFrame(&f)
	if err != nil {
		return fmt.Errorf("client: encode frame: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	deadline := time.Now().Add(writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.ws.SetWriteDeadline(deadline)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("client: websocket send: %w", err)
	}
	return nil
}

// Ack sends an "ack" frame for ids (no-op when empty).
func (c *Conn) Ack(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return c.Send(ctx, wire.ClientFrame{Type: wire.FrameAck, IDs: ids})
}

// Close says goodbye (a close frame, best effort) and closes the socket;
// the reader goroutine then ends and Events is closed. It is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		// WriteControl may run concurrently with a data write.
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		c.closeErr = c.ws.Close()
	})
	return c.closeErr
}
