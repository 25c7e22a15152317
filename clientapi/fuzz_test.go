package clientapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// FuzzSocketFrame writes arbitrary frames on a real device socket of a
// real server (SQLite in a temporary directory), each followed by a
// sentinel frame of an unknown type. Frames of one socket are handled in
// order, so the sentinel's error event marks the end of the fuzzed
// frame's answers. The socket must stay open, every answer must be a
// well-formed event, and no frame may cause an "internal" error (input
// that reached storage unchecked).
func FuzzSocketFrame(f *testing.F) {
	ctx := context.Background()
	dir := f.TempDir()
	cfg := setup.Defaults()
	cfg.Listen, cfg.Data, cfg.FederationListen = "127.0.0.1:0", dir, ""
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	node, err := setup.Start(ctx, cfg, log, setup.Extra{Password: homeserver.PasswordParams{Memory: 1024, Time: 1, Threads: 1}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { node.Close(ctx) })
	account := func(name string) wire.Session {
		body, _ := json.Marshal(wire.RegisterRequest{User: name, Password: "correct horse"})
		resp, err := http.Post(node.URL()+"/v1/register", "application/json", bytes.NewReader(body))
		if err != nil {
			f.Fatal(err)
		}
		defer resp.Body.Close()
		var s wire.Session
		json.NewDecoder(resp.Body).Decode(&s)
		st, err := e2ee.OpenStore(filepath.Join(dir, name+".db"))
		if err != nil {
			f.Fatal(err)
		}
		defer st.Close()
		st.CreateIdentity(ctx)
		up, _ := st.KeyUpload(ctx, true, 20)
		b, _ := json.Marshal(up)
		req, _ := http.NewRequest("PUT", node.URL()+"/v1/keys", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+s.AccessToken)
		kr, err := http.DefaultClient.Do(req)
		if err != nil || kr.StatusCode != 200 {
			f.Fatalf("key upload: %v %v", err, kr)
		}
		kr.Body.Close()
		return s
	}
	alice := account("alice")
	account("bob")

	var conn *websocket.Conn
	dial := func(t testing.TB) {
		if conn != nil {
			conn.Close()
		}
		u := "ws" + strings.TrimPrefix(node.URL(), "http") + "/v1/ws"
		c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + alice.AccessToken}})
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	dial(f)
	f.Cleanup(func() { conn.Close() })

	for _, s := range []string{
		`{"type":"send","client_id":"c1","to":"bob@localhost","envelopes":[{"user":"bob@localhost","device":1,"type":"prekey","body":"AAEC"}]}`,
		`{"type":"send","client_id":"c2","to":"bob@localhost","envelopes":[]}`,
		`{"type":"send","client_id":"c3","to":"g-0000","shared":{"type":"senderkey","body":"AA==","devices":[{"user":"bob@localhost","device":1}]}}`,
		`{"type":"ack","ids":[1,2,3,-1,9223372036854775807]}`,
		`{"type":"read","conversation":"d-0","seq":1}`,
		`{"type":"read","conversation":"","seq":18446744073709551615}`,
		`{"type":"send","client_id":"` + strings.Repeat("x", 65) + `","to":"bob@localhost"}`,
		`{"type":"send","to":"ALICE@localhost"}`,
		`{"type":1}`,
		`[]`,
		`{"type":"ack","ids":"1"}`,
		"\xff\xfe",
		``,
	} {
		f.Add([]byte(s))
	}

	const sentinel = `{"type":"fuzz-sentinel"}`
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > wire.MaxRequestBytes {
			return
		}
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := conn.WriteMessage(websocket.TextMessage, frame); err != nil {
			t.Fatal(err)
		}
		if err := conn.WriteMessage(websocket.TextMessage, []byte(sentinel)); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		typeErrors := 1
		var probe wire.ClientFrame
		if json.Unmarshal(frame, &probe) == nil && probe.Type != wire.FrameSend && probe.Type != wire.FrameAck &&
			probe.Type != wire.FrameRead {
			typeErrors = 2
		}
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				dial(t) // for the next input
				t.Fatalf("socket closed after frame %q: %v", frame, err)
			}
			var ev wire.Event
			if err := json.Unmarshal(data, &ev); err != nil || ev.Type == "" {
				t.Fatalf("malformed event %q after frame %q", data, frame)
			}
			if ev.Type == wire.EventError && ev.Code == wire.CodeInternal {
				t.Fatalf("frame %q: internal error %q", frame, ev.Message)
			}
			if ev.Type == wire.EventError && wire.HTTPStatus(ev.Code) == http.StatusInternalServerError {
				t.Fatalf("frame %q: unknown error code %q", frame, ev.Code)
			}
			if ev.ID > 0 {
				// Acknowledge inbox events (receipts, device lists) so that
				// they do not pile up across inputs.
				ack, _ := json.Marshal(wire.ClientFrame{Type: wire.FrameAck, IDs: []int64{ev.ID}})
				conn.WriteMessage(websocket.TextMessage, ack)
			}
			if ev.Type == wire.EventError && ev.Code == wire.CodeInvalidParam && strings.HasPrefix(ev.Message, "frame type must be") {
				// The sentinel's answer, or the fuzzed frame's if it was of
				// an unknown type itself.
				if typeErrors--; typeErrors == 0 {
					return
				}
			}
		}
	})
}
