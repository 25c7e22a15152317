package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// cheapPasswords keeps argon2id real but fast enough for tests that
// register many accounts.
var cheapPasswords = homeserver.PasswordParams{Memory: 1024, Time: 1, Threads: 1}

type server struct {
	t    *testing.T
	node *setup.Node
	cfg  setup.Config
	url  string
	logs *bytes.Buffer
	now  *clock
}

// clock is a settable clock for retention tests.
type clock struct{ offset time.Duration }

func (c *clock) Now() time.Time { return time.Now().Add(c.offset) }

type option func(*setup.Config)

// startServer runs a homeserver on 127.0.0.1:0 with its data in dir (a
// fresh temp dir when empty) and stops it when the test ends.
func startServer(t *testing.T, dir string, opts ...option) *server {
	return startServerExtra(t, dir, nil, opts...)
}

// startServerExtra also sets test-only knobs.
func startServerExtra(t *testing.T, dir string, extras []func(*setup.Extra), opts ...option) *server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	cfg := setup.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Data = dir
	cfg.LogLevel = "debug"
	for _, o := range opts {
		o(&cfg)
	}
	s := &server{t: t, cfg: cfg, logs: &bytes.Buffer{}, now: &clock{}}
	extra := setup.Extra{Password: cheapPasswords, Now: s.now.Now}
	for _, o := range extras {
		o(&extra)
	}
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: s.logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	node, err := setup.Start(context.Background(), cfg, log, extra)
	if err != nil {
		t.Fatal(err)
	}
	s.node, s.url = node, node.URL()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *server) stop() {
	if s.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.node.Close(ctx); err != nil {
		s.t.Errorf("closing server: %v", err)
	}
	s.node = nil
}

// restart stops the server and starts a new one on the same data.
func (s *server) restart() *server {
	s.stop()
	return startServer(s.t, s.cfg.Data)
}

// call makes one REST request and decodes a 2xx answer into out.
func (s *server) call(method, path, token string, body, out any) (int, wire.Error) {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var werr wire.Error
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(data, &werr); err != nil {
			s.t.Fatalf("%s %s: %d with a body that is not an error: %q", method, path, resp.StatusCode, data)
		}
		return resp.StatusCode, werr
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode, werr
}

// must is call that requires a 2xx answer.
func (s *server) must(method, path, token string, body, out any) {
	s.t.Helper()
	if status, e := s.call(method, path, token, body, out); status >= 300 {
		s.t.Fatalf("%s %s: %d %s: %s", method, path, status, e.Code, e.Message)
	}
}

// refused checks that a request fails with the given status and code.
func (s *server) refused(status int, code, method, path, token string, body any) wire.Error {
	s.t.Helper()
	got, e := s.call(method, path, token, body, nil)
	if got != status || e.Code != code {
		s.t.Fatalf("%s %s: got %d %q (%s), want %d %q", method, path, got, e.Code, e.Message, status, code)
	}
	return e
}

// device is a registered device with a real Signal store.
type device struct {
	srv     *server
	session wire.Session
	store   *e2ee.Store
}

func (d *device) addr() wire.DeviceAddress {
	return wire.DeviceAddress{User: d.session.UserID, Device: d.session.DeviceID}
}

// register creates an account and uploads real keys with n one-time prekeys.
func (s *server) register(name string, prekeys int) *device {
	s.t.Helper()
	d := &device{srv: s}
	s.must("POST", "/v1/register", "", wire.RegisterRequest{User: name, Password: "correct horse"}, &d.session)
	d.uploadKeys(prekeys)
	return d
}

// login adds a device to an account and uploads its keys.
func (s *server) login(name string, prekeys int) *device {
	s.t.Helper()
	d := &device{srv: s}
	s.must("POST", "/v1/login", "", wire.LoginRequest{User: name, Password: "correct horse"}, &d.session)
	d.uploadKeys(prekeys)
	return d
}

func (d *device) uploadKeys(n int) {
	t := d.srv.t
	t.Helper()
	st, err := e2ee.OpenStore(filepath.Join(t.TempDir(), "signal.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	if err := st.CreateIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	up, err := st.KeyUpload(ctx, true, n)
	if err != nil {
		t.Fatal(err)
	}
	d.store = st
	d.srv.must("PUT", "/v1/keys", d.token(), up, nil)
}

func (d *device) token() string { return d.session.AccessToken }

// send posts raw ciphertext bytes (the server never looks inside) to the
// given devices.
func (d *device) send(clientID, to string, targets ...wire.DeviceAddress) (int, wire.SendResult, wire.Error) {
	var res wire.SendResult
	status, e := d.srv.call("POST", "/v1/messages", d.token(), sendReq(clientID, to, targets...), &res)
	return status, res, e
}

func sendReq(clientID, to string, targets ...wire.DeviceAddress) wire.SendRequest {
	req := wire.SendRequest{ClientID: clientID, To: to}
	for _, a := range targets {
		req.Envelopes = append(req.Envelopes, wire.Envelope{User: a.User, Device: a.Device,
			Type: wire.CiphertextWhisper, Body: []byte(fmt.Sprintf("opaque %s for %s/%d", clientID, a.User, a.Device))})
	}
	return req
}

// inbox fetches every pending event.
func (d *device) inbox() []wire.Event {
	var page wire.InboxPage
	d.srv.must("GET", "/v1/inbox?limit=1000", d.token(), nil, &page)
	return page.Events
}

func (d *device) ack(events ...wire.Event) {
	var ids []int64
	for _, e := range events {
		ids = append(ids, e.ID)
	}
	d.srv.must("POST", "/v1/inbox/ack", d.token(), wire.AckRequest{IDs: ids}, nil)
}

// socket is a device's WebSocket with a reader goroutine.
type socket struct {
	t      *testing.T
	conn   *websocket.Conn
	events chan wire.Event
	// keepLow: report prekeys_low events; most tests upload few prekeys
	// and do not care.
	keepLow bool
}

// dial connects the device's socket; before any reads, each of setup runs
// on the connection (to set handlers without racing the reader).
func (d *device) dial(setup ...func(*websocket.Conn)) *socket {
	t := d.srv.t
	t.Helper()
	u := "ws" + strings.TrimPrefix(d.srv.url, "http") + "/v1/ws"
	h := http.Header{"Authorization": {"Bearer " + d.token()}}
	conn, resp, err := websocket.DefaultDialer.Dial(u, h)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", u, err, resp)
	}
	for _, f := range setup {
		f(conn)
	}
	s := &socket{t: t, conn: conn, events: make(chan wire.Event, 1024)}
	go func() {
		defer close(s.events)
		for {
			var ev wire.Event
			if err := conn.ReadJSON(&ev); err != nil {
				return
			}
			s.events <- ev
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return s
}

// online dials the device's socket and waits until it has caught up.
func (d *device) online() *socket {
	d.srv.t.Helper()
	s := d.dial()
	s.until(wire.EventCaughtUp)
	return s
}

// next waits for the next event that is not in skip.
func (s *socket) next(skip ...string) wire.Event {
	s.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatal("socket closed while waiting for an event")
			}
			if contains(skip, ev.Type) || (ev.Type == wire.EventPreKeysLow && !s.keepLow) {
				continue
			}
			return ev
		case <-timeout:
			s.t.Fatal("no event within 10s")
		}
	}
}

// until collects events up to and including the first of type typ.
func (s *socket) until(typ string) []wire.Event {
	s.t.Helper()
	var out []wire.Event
	for {
		ev := s.next()
		out = append(out, ev)
		if ev.Type == typ {
			return out
		}
	}
}

func (s *socket) sendFrame(f wire.ClientFrame) {
	s.t.Helper()
	if err := s.conn.WriteJSON(f); err != nil {
		s.t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// lockedWriter lets several goroutines log into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func directID(a, b string) string { return homeserver.DirectConversationID(a, b) }
