package wire

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
)

// EncodeEvent returns json.Marshal(ev), byte for byte, without reflection
// for the events a server sends all the time; events with group metadata,
// member or device lists, or strings that JSON must escape go through
// encoding/json. FuzzEncodeEvent holds the two equal.
func EncodeEvent(ev *Event) ([]byte, error) {
	if ev.Meta != nil || len(ev.Members) > 0 || len(ev.Missing) > 0 || len(ev.Extra) > 0 {
		return json.Marshal(ev)
	}
	e := encoder{b: make([]byte, 0, 160+base64.StdEncoding.EncodedLen(len(ev.Body)))}
	e.b = append(e.b, '{')
	e.str("type", ev.Type, true)
	e.int("id", ev.ID)
	e.str("conversation", ev.Conversation, false)
	e.uint("seq", ev.Seq)
	e.str("group", ev.Group, false)
	e.str("from", ev.From, false)
	e.uint("from_device", uint64(ev.FromDevice))
	e.str("ciphertext_type", ev.CiphertextType, false)
	if len(ev.Body) > 0 {
		e.key("body")
		e.bytes(ev.Body)
	}
	if ev.SentAt != nil {
		e.time("sent_at", *ev.SentAt)
	}
	e.str("status", ev.Status, false)
	e.str("by", ev.By, false)
	e.uint("by_device", uint64(ev.ByDevice))
	e.str("user", ev.User, false)
	e.str("action", ev.Action, false)
	e.str("actor", ev.Actor, false)
	e.str("role", ev.Role, false)
	e.uint("from_seq", ev.FromSeq)
	e.uint("to_seq", ev.ToSeq)
	e.str("client_id", ev.ClientID, false)
	e.str("code", ev.Code, false)
	e.str("message", ev.Message, false)
	e.int("count", int64(ev.Count))
	if e.slow {
		return json.Marshal(ev)
	}
	return append(e.b, '}'), nil
}

// encoder appends object members; slow records that a value needs
// encoding/json (an escape, a time it formats differently).
type encoder struct {
	b    []byte
	n    int // members written
	slow bool
}

func (e *encoder) key(k string) {
	if e.n > 0 {
		e.b = append(e.b, ',')
	}
	e.n++
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

// str appends a string member (omitted when empty, unless always).
func (e *encoder) str(k, v string, always bool) {
	if v == "" && !always {
		return
	}
	for i := 0; i < len(v); i++ {
		// encoding/json escapes these (and control characters, and
		// anything beyond ASCII it may need to check or replace).
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			e.slow = true
			return
		}
	}
	e.key(k)
	e.b = append(e.b, '"')
	e.b = append(e.b, v...)
	e.b = append(e.b, '"')
}

// bytes appends a base64 string, as encoding/json writes []byte.
func (e *encoder) bytes(v []byte) {
	e.b = append(e.b, '"')
	e.b = base64.StdEncoding.AppendEncode(e.b, v)
	e.b = append(e.b, '"')
}

// array appends a JSON array of n elements, elem writing each.
func (e *encoder) array(n int, elem func(i int)) {
	e.b = append(e.b, '[')
	for i := range n {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		elem(i)
	}
	e.b = append(e.b, ']')
}

func (e *encoder) int(k string, v int64) {
	if v != 0 {
		e.key(k)
		e.b = strconv.AppendInt(e.b, v, 10)
	}
}

func (e *encoder) uint(k string, v uint64) {
	if v != 0 {
		e.key(k)
		e.b = strconv.AppendUint(e.b, v, 10)
	}
}

func (e *encoder) time(k string, t time.Time) {
	if y := t.Year(); y < 0 || y > 9999 {
		e.slow = true // MarshalJSON refuses it
		return
	}
	e.key(k)
	e.b = append(e.b, '"')
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	e.b = append(e.b, '"')
}

// EncodeClientFrame is json.Marshal(f), byte for byte, without reflection
// for send frames with envelopes, acknowledgements and read markers; a
// frame with a shared ciphertext goes through encoding/json.
func EncodeClientFrame(f *ClientFrame) ([]byte, error) {
	if f.Shared != nil {
		return json.Marshal(f)
	}
	size := 96 + 8*len(f.IDs)
	for _, env := range f.Envelopes {
		size += 64 + len(env.User) + base64.StdEncoding.EncodedLen(len(env.Body))
	}
	e := encoder{b: make([]byte, 0, size)}
	e.b = append(e.b, '{')
	e.str("type", f.Type, true)
	e.str("client_id", f.ClientID, false)
	e.str("to", f.To, false)
	if len(f.Envelopes) > 0 {
		e.key("envelopes")
		e.array(len(f.Envelopes), func(i int) {
			env := f.Envelopes[i]
			in := encoder{b: e.b}
			in.b = append(in.b, '{')
			in.str("user", env.User, true)
			in.key("device")
			in.b = strconv.AppendUint(in.b, uint64(env.Device), 10)
			in.str("type", env.Type, true)
			in.key("body")
			if env.Body == nil {
				in.b = append(in.b, "null"...)
			} else {
				in.bytes(env.Body)
			}
			e.b, e.slow = append(in.b, '}'), e.slow || in.slow
		})
	}
	if len(f.IDs) > 0 {
		e.key("ids")
		e.array(len(f.IDs), func(i int) { e.b = strconv.AppendInt(e.b, f.IDs[i], 10) })
	}
	e.str("conversation", f.Conversation, false)
	e.uint("seq", f.Seq)
	if e.slow {
		return json.Marshal(f)
	}
	return append(e.b, '}'), nil
}
