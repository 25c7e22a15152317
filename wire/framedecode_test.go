package wire

import (
	"encoding/json"
	"reflect"
	"testing"
)

var frameSamples = []string{
	`{"type":"send","client_id":"b1-42","to":"bob@example.org","envelopes":[{"user":"bob@example.org","device":1,"type":"whisper","body":"aGVsbG8gd29ybGQ="}]}`,
	`{"type":"ack","ids":[1,2,9223372036854775807,-9223372036854775808,-0]}`,
	`{"type":"read","conversation":"d-abc","seq":18446744073709551615}`,
	` { "type" : "ack" , "ids" : [ ] } `,
	`{"type":"send","envelopes":[]}`,
	`{"envelopes":[{"body":""},{"user":"a","device":4294967295}]}`,
	`{}`,
	// Left to encoding/json: each must decode (or fail) exactly as it does.
	`{"type":"send","shared":{"type":"sender_key","body":"AAEC","devices":[{"user":"a","device":2}]}}`,
	`{"Type":"ack","IDS":[1]}`,
	`{"type":"ack","type":"send"}`,
	`{"type":"a\u0063k"}`,
	`{"type":"ack","ids":[1.0]}`,
	`{"type":"ack","ids":[1e3]}`,
	`{"type":"ack","ids":[01]}`,
	`{"type":"ack","ids":[- 1]}`,
	`{"type":"ack","ids":[9223372036854775808]}`,
	`{"type":"read","seq":-1}`,
	`{"type":"read","seq":18446744073709551616}`,
	`{"envelopes":[{"device":4294967296}]}`,
	`{"envelopes":[{"body":"not base64!"}]}`,
	`{"envelopes":[{"body":"aGk"}]}`,
	`{"type":null,"ids":null,"envelopes":null}`,
	`{"type":"ack","extra":{"nested":[1,2,{"x":null}]}}`,
	`{"type":"ack"} trailing`,
	`{"type":"ack"`,
	`{"type":"caf` + "\xc3\xa9" + `"}`,
	`{"type":"bad` + "\xff" + `"}`,
	`{"type":"tab	inside"}`,
	`[1,2]`,
	`"ack"`,
	``,
}

// DecodeClientFrame gives what json.Unmarshal gives: the same frame, or
// an error where it errs.
func TestDecodeClientFrameMatchesEncodingJSON(t *testing.T) {
	checkSamples(t, frameSamples, 7, checkFrameDecode, (*frameDecoder).frame)
}

// checkSamples runs check on each sample and counts those the plain path
// takes: the first wantPlain.
func checkSamples[T any](t *testing.T, samples []string, wantPlain int, check func(*testing.T, []byte),
	plain func(*frameDecoder, *T) bool) {
	t.Helper()
	n := 0
	for _, s := range samples {
		check(t, []byte(s))
		var v T
		if d := (frameDecoder{data: []byte(s)}); plain(&d, &v) {
			n++
		}
	}
	if n != wantPlain {
		t.Errorf("%d samples took the plain path, want the first %d", n, wantPlain)
	}
}

// checkDecode compares decode with json.Unmarshal on data.
func checkDecode[T any](t *testing.T, data []byte, decode func([]byte, *T) error) {
	t.Helper()
	var got, want T
	err := decode(data, &got)
	wantErr := json.Unmarshal(data, &want)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %#v\nwant %#v", data, got, want)
	}
}

func checkFrameDecode(t *testing.T, data []byte) { checkDecode(t, data, DecodeClientFrame) }

func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range frameSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(checkFrameDecode)
}

func BenchmarkDecodeClientFrame(b *testing.B) {
	for _, c := range []struct{ name, frame string }{{"send", frameSamples[0]}, {"ack", `{"type":"ack","ids":[1234567,1234568]}`}} {
		data := []byte(c.frame)
		b.Run(c.name+"/plain", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				var f ClientFrame
				if err := DecodeClientFrame(data, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				var f ClientFrame
				if err := json.Unmarshal(data, &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

var eventSamples = []string{
	`{"id":42,"type":"message","conversation":"d-abc","seq":7,"from":"alice@a.test","from_device":1,"ciphertext_type":"whisper","body":"aGVsbG8=","sent_at":"2026-11-27T16:00:00.123456789Z"}`,
	`{"id":43,"type":"sent","client_id":"c1","conversation":"d-abc","seq":8,"sent_at":"2026-11-27T17:00:00+01:00"}`,
	`{"id":44,"type":"receipt","status":"delivered","conversation":"g-x","group":"g-x","seq":8,"count":-3,"by":"bob@b.test","by_device":4294967295}`,
	`{"type":"error","client_id":"c2","code":"stale_devices","message":"devices changed"}`,
	`{"type":"expired","id":1,"conversation":"d-abc","from_seq":1,"to_seq":18446744073709551615}`,
	`{"type":"group_event","id":2,"group":"g-x","action":"left","actor":"a@x","user":"a@x","role":"member"}`,
	`{"type":"caught_up"}`,
	// Left to encoding/json.
	`{"type":"error","code":"stale_devices","missing":[{"user":"a@x","device":2}]}`,
	`{"type":"group_event","meta":{"name":"n"},"members":[{"user":"a@x","role":"owner"}]}`,
	`{"type":"message","sent_at":"yesterday"}`,
	`{"type":"message","sent_at":"2026-11-27T16:00:00"}`,
	`{"type":"message","sent_at":null}`,
	`{"type":"prekeys_low","count":9223372036854775808}`,
	`{"type":"message","body":"a\/b"}`,
	`{"type":"message","from_device":-1}`,
	`{"type":"x","id":1,"id":2}`,
}

func TestDecodeEventMatchesEncodingJSON(t *testing.T) {
	checkSamples(t, eventSamples, 7, checkEventDecode, (*frameDecoder).event)
}

func checkEventDecode(t *testing.T, data []byte) { checkDecode(t, data, DecodeEvent) }

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range append(eventSamples, frameSamples...) {
		f.Add([]byte(s))
	}
	f.Fuzz(checkEventDecode)
}

func BenchmarkDecodeEvent(b *testing.B) {
	data := []byte(eventSamples[0])
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var ev Event
			if err := DecodeEvent(data, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var ev Event
			if err := json.Unmarshal(data, &ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
