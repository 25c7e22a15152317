package integration

import (
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

	as := alive.dial()
	as.until(wire.EventCaughtUp)
	var pings atomic.Int32
	as.conn.SetPingHandler(func(data string) error {
		pings.Add(1)
		return as.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	bs := silent.dial()
	bs.until(wire.EventCaughtUp)
	bs.conn.SetPingHandler(func(string) error { return nil }) // swallow pings, never pong

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
	first := alice.dial()
	first.until(wire.EventCaughtUp)
	second := alice.dial()
	second.until(wire.EventCaughtUp)
	for range first.events {
	} // drained until the server closed it
	eventually(t, "one socket", func() bool { return s.node.Sockets() == 1 })
}

// Removing a device closes its socket at once.
func TestRemovedDeviceIsDisconnected(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 25)
	phone := s.login("alice", 25)
	ps := phone.dial()
	ps.until(wire.EventCaughtUp)
	s.must("DELETE", "/v1/devices/2", alice.token(), wire.RemoveDeviceRequest{Password: "correct horse"}, nil)
	for range ps.events {
	}
	s.refused(401, wire.CodeUnknownToken, "GET", "/v1/ws", phone.token(), nil)
}
