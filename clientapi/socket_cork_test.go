package clientapi

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// countingConn counts the Writes that reach the connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair is a connected loopback TCP pair.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// While corked, frames (and a control frame written by another goroutine)
// are gathered and leave in one write, in the order written; uncorked,
// each write goes through at once; a flush on a failed connection reports
// the error.
func TestCorkConnGathersWrites(t *testing.T) {
	client, server := tcpPair(t)
	under := &countingConn{Conn: server}
	c := &corkConn{Conn: under}

	if _, err := c.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if n := under.writes.Load(); n != 1 {
		t.Fatalf("uncorked: %d writes, want 1", n)
	}
	if err := c.flush(); err != nil || under.writes.Load() != 1 {
		t.Fatalf("flush without cork: err %v, %d writes", err, under.writes.Load())
	}

	c.cork()
	c.cork() // corking twice gathers into the same buffer
	for _, p := range []string{"b", "cd", "e"} {
		if n, err := c.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("corked Write(%q) = %d, %v", p, n, err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a ping from the hub's goroutine
		defer wg.Done()
		c.Write([]byte("P"))
	}()
	wg.Wait()
	if n := under.writes.Load(); n != 1 {
		t.Fatalf("corked: %d writes reached the connection, want none yet", n-1)
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	if n := under.writes.Load(); n != 2 {
		t.Fatalf("after flush: %d writes, want 2 (one for the gathered frames)", n)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "abcdeP" {
		t.Fatalf("read %q, want %q", got, "abcdeP")
	}

	// After a flush, writes go straight through again.
	c.Write([]byte("f"))
	if n := under.writes.Load(); n != 3 {
		t.Fatalf("after flush, uncorked: %d writes, want 3", n)
	}

	server.Close()
	c.cork()
	c.Write([]byte("lost"))
	if err := c.flush(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("flush on a closed connection: %v, want net.ErrClosed", err)
	}
}

// The poller needs the descriptor through the wrapper; a connection
// without one (TLS) gives an error, which rawConn turns into nil.
func TestCorkConnDescriptor(t *testing.T) {
	_, server := tcpPair(t)
	if rawConn(&corkConn{Conn: server}) == nil {
		t.Fatal("no descriptor through corkConn over TCP")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if rawConn(&corkConn{Conn: p1}) != nil {
		t.Fatal("a descriptor for a connection without one")
	}
}
