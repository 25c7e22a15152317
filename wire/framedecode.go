package wire

import (
	"encoding/base64"
	"encoding/json"
	"time"
)

// DecodeClientFrame decodes a socket frame into f exactly as
// json.Unmarshal does, faster for the frames clients send all the time:
// sends with envelopes, acknowledgements and read markers, written plainly
// (known keys once each, ASCII strings without escapes, integers). For
// anything else (a shared ciphertext, escapes, unknown or repeated keys,
// null, fractions) it leaves the work to json.Unmarshal, so results and
// errors are encoding/json's. FuzzDecodeClientFrame holds it to that.
// Reflection-driven decoding was a tenth of the server's CPU under load.
//
// (It and DecodeEvent are spelled out rather than generic: through a
// function value the decoder and its result escape to the heap, +15%.)
func DecodeClientFrame(data []byte, f *ClientFrame) error {
	d := frameDecoder{data: data}
	var fast ClientFrame
	if d.frame(&fast) {
		*f = fast
		return nil
	}
	return json.Unmarshal(data, f)
}

// frameDecoder is a cursor over a frame; each method reports false when
// the input is not of the plain form it handles (not necessarily invalid).
type frameDecoder struct {
	data []byte
	i    int
}

func (d *frameDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// byte consumes c (after whitespace).
func (d *frameDecoder) byte(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str returns the bytes of a string of printable ASCII without escapes.
func (d *frameDecoder) str() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			d.i++
			return d.data[start : d.i-1], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// uint reads a JSON integer without sign, fraction or exponent, at most
// limit.
func (d *frameDecoder) uint(limit uint64) (uint64, bool) {
	d.space()
	start := d.i
	var v uint64
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		digit := uint64(d.data[d.i] - '0')
		if v > (limit-digit)/10 {
			return 0, false
		}
		v = v*10 + digit
		d.i++
	}
	n := d.i - start
	if n == 0 || (n > 1 && d.data[start] == '0') {
		return 0, false
	}
	if d.i < len(d.data) && (d.data[d.i] == '.' || d.data[d.i] == 'e' || d.data[d.i] == 'E') {
		return 0, false
	}
	return v, true
}

// int reads an int64 the same way, with an optional minus sign.
func (d *frameDecoder) int() (int64, bool) {
	d.space()
	neg := d.i < len(d.data) && d.data[d.i] == '-'
	if neg {
		d.i++
		if d.i < len(d.data) && (d.data[d.i] < '0' || d.data[d.i] > '9') {
			return 0, false // "- 1" is not a number
		}
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	v, ok := d.uint(limit)
	if !ok {
		return 0, false
	}
	if neg {
		return -int64(v), true // wraps to MinInt64 for 1<<63, as intended
	}
	return int64(v), true
}

// object calls field for each key of an object, refusing repeated keys
// (seen collects them by index in keys).
func (d *frameDecoder) object(keys []string, field func(k int) bool) bool {
	if !d.byte('{') {
		return false
	}
	var seen uint32
	if d.byte('}') {
		return true
	}
	for {
		name, ok := d.str()
		if !ok || !d.byte(':') {
			return false
		}
		k := -1
		for j, key := range keys {
			if string(name) == key {
				k = j
				break
			}
		}
		if k < 0 || seen&(1<<k) != 0 || !field(k) {
			return false
		}
		seen |= 1 << k
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

// array calls elem for each element of an array.
func (d *frameDecoder) array(elem func() bool) bool {
	if !d.byte('[') {
		return false
	}
	if d.byte(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.byte(']') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

var frameKeys = []string{"type", "client_id", "to", "envelopes", "ids", "conversation", "seq"}

func (d *frameDecoder) frame(f *ClientFrame) bool {
	text := func(dst *string) bool {
		b, ok := d.str()
		*dst = string(b)
		return ok
	}
	ok := d.object(frameKeys, func(k int) bool {
		switch k {
		case 0:
			return text(&f.Type)
		case 1:
			return text(&f.ClientID)
		case 2:
			return text(&f.To)
		case 3:
			f.Envelopes = []Envelope{}
			return d.array(func() bool {
				var e Envelope
				if !d.envelope(&e) {
					return false
				}
				f.Envelopes = append(f.Envelopes, e)
				return true
			})
		case 4:
			f.IDs = []int64{}
			return d.array(func() bool {
				id, ok := d.int()
				f.IDs = append(f.IDs, id)
				return ok
			})
		case 5:
			return text(&f.Conversation)
		default:
			var ok bool
			f.Seq, ok = d.uint(1<<64 - 1)
			return ok
		}
	})
	d.space()
	return ok && d.i == len(d.data)
}

var envelopeKeys = []string{"user", "device", "type", "body"}

func (d *frameDecoder) envelope(e *Envelope) bool {
	return d.object(envelopeKeys, func(k int) bool {
		switch k {
		case 0:
			b, ok := d.str()
			e.User = string(b)
			return ok
		case 1:
			v, ok := d.uint(1<<32 - 1)
			e.Device = uint32(v)
			return ok
		case 2:
			b, ok := d.str()
			e.Type = string(b)
			return ok
		default:
			b, ok := d.str()
			if !ok {
				return false
			}
			e.Body = make([]byte, base64.StdEncoding.DecodedLen(len(b)))
			n, err := base64.StdEncoding.Decode(e.Body, b)
			e.Body = e.Body[:n]
			return err == nil
		}
	})
}

// DecodeEvent decodes a server event into ev exactly as json.Unmarshal
// does, by hand for the plain form of the events that come all the time
// (messages, answers, receipts, errors without device lists), and through
// encoding/json for anything else. FuzzDecodeEvent holds the two equal.
func DecodeEvent(data []byte, ev *Event) error {
	d := frameDecoder{data: data}
	var fast Event
	if d.event(&fast) {
		*ev = fast
		return nil
	}
	return json.Unmarshal(data, ev)
}

var eventKeys = []string{"type", "id", "conversation", "seq", "group", "from", "from_device", "ciphertext_type",
	"body", "sent_at", "status", "by", "by_device", "user", "action", "actor", "role", "from_seq", "to_seq",
	"client_id", "code", "message", "count"}

func (d *frameDecoder) event(ev *Event) bool {
	text := func(dst *string) bool {
		b, ok := d.str()
		*dst = string(b)
		return ok
	}
	number := func(dst *uint64, limit uint64) bool {
		v, ok := d.uint(limit)
		*dst = v
		return ok
	}
	device := func(dst *uint32) bool {
		v, ok := d.uint(1<<32 - 1)
		*dst = uint32(v)
		return ok
	}
	ok := d.object(eventKeys, func(k int) bool {
		switch k {
		case 0:
			return text(&ev.Type)
		case 1:
			var ok bool
			ev.ID, ok = d.int()
			return ok
		case 2:
			return text(&ev.Conversation)
		case 3:
			return number(&ev.Seq, 1<<64-1)
		case 4:
			return text(&ev.Group)
		case 5:
			return text(&ev.From)
		case 6:
			return device(&ev.FromDevice)
		case 7:
			return text(&ev.CiphertextType)
		case 8:
			b, ok := d.str()
			if !ok {
				return false
			}
			ev.Body = make([]byte, base64.StdEncoding.DecodedLen(len(b)))
			n, err := base64.StdEncoding.Decode(ev.Body, b)
			ev.Body = ev.Body[:n]
			return err == nil
		case 9:
			b, ok := d.str()
			if !ok {
				return false
			}
			quoted := d.data[d.i-len(b)-2 : d.i] // what encoding/json hands UnmarshalJSON
			var t time.Time
			if t.UnmarshalJSON(quoted) != nil {
				return false
			}
			ev.SentAt = &t
			return true
		case 10:
			return text(&ev.Status)
		case 11:
			return text(&ev.By)
		case 12:
			return device(&ev.ByDevice)
		case 13:
			return text(&ev.User)
		case 14:
			return text(&ev.Action)
		case 15:
			return text(&ev.Actor)
		case 16:
			return text(&ev.Role)
		case 17:
			return number(&ev.FromSeq, 1<<64-1)
		case 18:
			return number(&ev.ToSeq, 1<<64-1)
		case 19:
			return text(&ev.ClientID)
		case 20:
			return text(&ev.Code)
		case 21:
			return text(&ev.Message)
		default:
			v, ok := d.int()
			ev.Count = int(v)
			return ok && int64(int(v)) == v
		}
	})
	d.space()
	return ok && d.i == len(d.data)
}
