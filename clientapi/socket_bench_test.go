package clientapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/internal/proccpu"
	"github.com/parleychat/parley/wire"
)

// BenchmarkSocketFrames measures WebSocket framing of events over loopback
// TCP, as a socket's writer sends them: gorilla's framing on the server's
// hijacked connection (through corkConn) and a client reading and decoding
// each frame. One op is one 400-byte message event; "gathered" writes
// eight frames per write, as a writer pass with eight events in hand does.
// It reports the process's CPU per frame, both ends included.
func BenchmarkSocketFrames(b *testing.B) {
	for _, tc := range []struct {
		name    string
		perPass int
	}{{"one-per-write", 1}, {"gathered-8", 8}} {
		b.Run(tc.name, func(b *testing.B) { benchSocketFrames(b, tc.perPass) })
	}
}

func benchSocketFrames(b *testing.B, perPass int) {
	type served struct {
		conn *websocket.Conn
		cork *corkConn
	}
	got := make(chan served, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ob := &ownBuffer{ResponseWriter: w}
		conn, err := upgrader.Upgrade(ob, r, nil)
		if err != nil {
			b.Error(err)
			return
		}
		got <- served{conn, ob.cork}
	}))
	defer srv.Close()
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	s := <-got
	defer s.conn.Close()
	if s.cork == nil {
		b.Fatal("no corkConn under the server's connection")
	}
	sentAt := time.Date(2026, 11, 27, 18, 0, 0, 0, time.UTC)
	ev, err := wire.EncodeEvent(&wire.Event{Type: wire.EventMessage, ID: 1 << 40, Conversation: "d-" + strings.Repeat("ab", 32),
		Seq: 123456, From: "alice@example.org", FromDevice: 1, CiphertextType: wire.CiphertextWhisper,
		Body: bytes.Repeat([]byte{7}, 200), SentAt: &sentAt})
	if err != nil {
		b.Fatal(err)
	}

	read := make(chan error, 1)
	go func() {
		var buf bytes.Buffer
		for i := 0; i < b.N; i++ {
			_, r, err := client.NextReader()
			if err == nil {
				buf.Reset()
				_, err = buf.ReadFrom(r)
			}
			var e wire.Event
			if err == nil {
				err = wire.DecodeEvent(buf.Bytes(), &e)
			}
			if err == nil && e.Seq != 123456 {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				read <- err
				return
			}
		}
		read <- nil
	}()
	b.SetBytes(int64(len(ev)))
	b.ReportAllocs()
	cpu0 := proccpu.Used()
	b.ResetTimer()
	for i := 0; i < b.N; {
		n := min(perPass, b.N-i)
		if n > 1 {
			s.cork.cork()
		}
		for range n {
			if err := s.conn.WriteMessage(websocket.TextMessage, ev); err != nil {
				b.Fatal(err)
			}
		}
		if n > 1 {
			if err := s.cork.flush(); err != nil {
				b.Fatal(err)
			}
		}
		i += n
	}
	if err := <-read; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((proccpu.Used()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/frame")
}
