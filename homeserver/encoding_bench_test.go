package homeserver

import (
	"testing"
	"time"

	"github.com/parleychat/parley/wire"
)

// BenchmarkEventEncoding builds a message event as stored and as served:
// the JSON encoding (with base64 of the body) outside the writer, then the
// seq and the id spliced in.
func BenchmarkEventEncoding(b *testing.B) {
	body := make([]byte, 200)
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for range b.N {
		p := mustEvent(wire.Event{Type: wire.EventMessage, Conversation: "d-0123456789abcdef", From: "alice@example.org",
			FromDevice: 1, CiphertextType: wire.CiphertextWhisper, Body: body, SentAt: &now})
		if len(withField(withSeq(p, 42), "id", 4242)) == 0 {
			b.Fatal("empty")
		}
	}
}
