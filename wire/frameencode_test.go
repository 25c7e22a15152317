package wire

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func checkEncodings(t *testing.T, ev *Event, f *ClientFrame) {
	t.Helper()
	got, err := EncodeEvent(ev)
	want, wantErr := json.Marshal(ev)
	if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("event %+v:\n got %s (%v)\nwant %s (%v)", ev, got, err, want, wantErr)
	}
	got, err = EncodeClientFrame(f)
	want, wantErr = json.Marshal(f)
	if (err == nil) != (wantErr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("frame %+v:\n got %s (%v)\nwant %s (%v)", f, got, err, want, wantErr)
	}
}

func TestEncodingsMatchEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 27, 16, 0, 0, 123400000, time.UTC)
	odd := time.Date(10000, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))
	events := []Event{
		{Type: EventMessage, ID: 42, Conversation: "d-abc", Seq: 7, From: "alice@a.test", FromDevice: 1,
			CiphertextType: CiphertextWhisper, Body: []byte("hello"), SentAt: &at},
		{Type: EventSent, ClientID: "c1", Conversation: "d-abc", Seq: 8, SentAt: &at},
		{Type: EventReceipt, Status: StatusDelivered, Conversation: "g-x", Group: "g-x", Seq: 8, Count: -3},
		{Type: EventError, ClientID: "c<2>", Code: "x", Message: "quote \" and é"},
		{Type: EventError, Missing: []DeviceAddress{{User: "a@x", Device: 2}}},
		{Type: EventMessage, SentAt: &odd},
		{Type: EventMessage, Body: []byte{}},
		{},
	}
	frames := []ClientFrame{
		{Type: FrameSend, ClientID: "b1-42", To: "bob@b.test", Envelopes: []Envelope{{User: "bob@b.test", Device: 1,
			Type: CiphertextWhisper, Body: []byte("x")}, {User: "bob@b.test", Device: 2}}},
		{Type: FrameAck, IDs: []int64{1, -2, 1 << 62}},
		{Type: FrameRead, Conversation: "d-abc", Seq: 1<<64 - 1},
		{Type: FrameSend, Shared: &Shared{Type: "sender_key", Body: []byte("y")}},
		{Type: "a&b"},
		{},
	}
	for i := range max(len(events), len(frames)) {
		checkEncodings(t, &events[min(i, len(events)-1)], &frames[min(i, len(frames)-1)])
	}
}

func FuzzEncodings(f *testing.F) {
	f.Add("message", int64(1), "d-abc", uint64(7), "alice@a.test", uint32(1), []byte("body"), int64(1764259200123456789), 0, "delivered", -3)
	f.Add("", int64(0), "", uint64(0), "", uint32(0), []byte(nil), int64(-1), 61, "é\"<", 0)
	f.Fuzz(func(t *testing.T, typ string, id int64, conv string, seq uint64, user string, dev uint32, body []byte,
		nanos int64, offsetMin int, status string, count int) {
		at := time.Unix(0, nanos).In(time.FixedZone("z", (offsetMin%(24*60))*60))
		ev := Event{Type: typ, ID: id, Conversation: conv, Seq: seq, Group: conv, From: user, FromDevice: dev,
			CiphertextType: status, Body: body, Status: status, By: user, ByDevice: dev, User: user, Action: typ,
			Actor: user, Role: status, FromSeq: seq, ToSeq: seq, ClientID: typ, Code: status, Message: conv, Count: count}
		if nanos >= 0 {
			ev.SentAt = &at
		}
		fr := ClientFrame{Type: typ, ClientID: status, To: user, Envelopes: []Envelope{{User: user, Device: dev, Type: typ, Body: body}},
			IDs: []int64{id, int64(seq)}, Conversation: conv, Seq: seq}
		if len(body) == 0 {
			fr.Envelopes, fr.IDs = nil, nil
		}
		checkEncodings(t, &ev, &fr)
	})
}

func BenchmarkEncodeEvent(b *testing.B) {
	at := time.Now().UTC()
	ev := Event{Type: EventMessage, ID: 42, Conversation: "d-abc", Seq: 7, From: "alice@a.test", FromDevice: 1,
		CiphertextType: CiphertextWhisper, Body: make([]byte, 160), SentAt: &at}
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			EncodeEvent(&ev)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			json.Marshal(&ev)
		}
	})
}
