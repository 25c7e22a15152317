package clientapi

import (
	"errors"
	"net"
	"sync"
	"syscall"
)

// corkConn is the hijacked connection under a socket's gorilla Conn. While
// corked, what gorilla writes (whole frames: Parley's messages are one
// frame each) is gathered instead of written, and flush writes it with one
// syscall: when a commit hands a socket several events, or a catch-up
// reads a page of them, they leave in one TCP segment instead of one
// each (at saturation the direct scenario had 1.8 frames per drain pass).
// Gorilla keeps the framing; only the moment bytes reach the kernel moves.
//
// The drain goroutine corks and flushes. A control frame written by
// another goroutine meanwhile (a ping, a close) joins the gathered bytes:
// frames are whole, so order between them does not matter to WebSocket.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    *[]byte // gathered bytes while corked, from corkBufs
}

// corkBufs holds the gathering buffers, so an idle socket owns none.
var corkBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxCorkBuf is the largest buffer returned to the pool; a larger one (a
// big catch-up page) is left to the collector.
const maxCorkBuf = 64 << 10

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.corked {
		*c.buf = append(*c.buf, p...)
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// cork starts gathering writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	if !c.corked {
		c.corked = true
		c.buf = corkBufs.Get().(*[]byte)
	}
	c.mu.Unlock()
}

// flush writes what was gathered since cork, in one Write, and stops
// gathering. Writes that gorilla was told had succeeded fail here if the
// connection does: the caller closes the socket then, and the entries stay
// in storage for the next connection.
func (c *corkConn) flush() error {
	c.mu.Lock()
	if !c.corked {
		c.mu.Unlock()
		return nil
	}
	c.corked = false
	buf := c.buf
	c.buf = nil
	c.mu.Unlock()
	var err error
	if len(*buf) > 0 {
		_, err = c.Conn.Write(*buf)
	}
	if cap(*buf) <= maxCorkBuf {
		*buf = (*buf)[:0]
		corkBufs.Put(buf)
	}
	return err
}

// SyscallConn is the underlying connection's, for the poller; an error
// when it has no descriptor of its own (TLS).
func (c *corkConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNoDescriptor
	}
	return sc.SyscallConn()
}

var errNoDescriptor = errors.New("clientapi: connection has no descriptor of its own")
