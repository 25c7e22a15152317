package clientapi

import (
	"bufio"
	"bytes"
	"testing"
)

// takePong consumes exactly one whole, masked pong frame at the head of
// the read buffer and leaves anything else to gorilla.
func TestTakePong(t *testing.T) {
	pong := []byte{0x8a, 0x84, 1, 2, 3, 4, 'a', 'b', 'c', 'd'} // masked, 4 bytes of payload
	text := []byte{0x81, 0x82, 0, 0, 0, 0, '{', '}'}
	for _, tc := range []struct {
		name string
		in   []byte
		take bool
		left int // bytes left buffered
	}{
		{"pong then text", append(append([]byte{}, pong...), text...), true, len(text)},
		{"pong alone", pong, true, 0},
		{"empty pong", []byte{0x8a, 0x80, 9, 9, 9, 9}, true, 0},
		{"pong cut short", pong[:7], false, 7},
		{"unmasked pong", []byte{0x8a, 0x00}, false, 2},
		{"ping", []byte{0x89, 0x80, 0, 0, 0, 0}, false, 6},
		{"text", text, false, len(text)},
		{"pong with RSV bits", append([]byte{0xca}, pong[1:]...), false, len(pong)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &session{br: bufio.NewReaderSize(bytes.NewReader(tc.in), 512)}
			s.br.Peek(1) // fill, as readLoop does
			if got := s.takePong(); got != tc.take {
				t.Fatalf("takePong = %v, want %v", got, tc.take)
			}
			if n := s.br.Buffered(); n != tc.left {
				t.Fatalf("%d bytes left buffered, want %d", n, tc.left)
			}
		})
	}
}
