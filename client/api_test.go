package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

func TestContentFormat(t *testing.T) {
	b, err := TextContent("hi \"you\"").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"v":1,"text":"hi \"you\""}` {
		t.Fatalf("content %s", b)
	}
	c, err := ParseContent([]byte(`{"v":1,"text":"x","future":{"a":1}}`))
	if err != nil || c.Text != "x" {
		t.Fatalf("unknown members must be ignored: %+v %v", c, err)
	}
	if _, err := ParseContent([]byte(`{"v":2,"text":"x"}`)); !errors.Is(err, ErrUnsupportedContent) {
		t.Fatalf("v2: %v", err)
	}
	if _, err := ParseContent([]byte(`{"text":"x"}`)); !errors.Is(err, ErrUnsupportedContent) {
		t.Fatalf("no version: %v", err)
	}
	if _, err := ParseContent([]byte(`hi`)); err == nil {
		t.Fatal("non-JSON accepted")
	}
}

// prefixProxy serves the homeserver at base under /prefix, as a reverse
// proxy in front of it would, and records the requests it passes on.
type prefixProxy struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newPrefixProxy(t *testing.T, base string) *prefixProxy {
	target, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	p := &prefixProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Method+" "+r.URL.RequestURI()+" "+r.Header.Get("Authorization"))
		p.mu.Unlock()
		if !strings.HasPrefix(r.URL.Path, "/prefix/") {
			http.NotFound(w, r)
			return
		}
		http.StripPrefix("/prefix", rp).ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *prefixProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.seen
	p.seen = nil
	return out
}

// The API against the real server, behind a reverse proxy that serves it
// under a path prefix.
func TestAPIRequestsAndErrors(t *testing.T) {
	srv := startServer(t)
	proxy := newPrefixProxy(t, srv.URL())
	ctx := testCtx(t)
	bob := newAccount(t, srv, "bob", false, nil)

	anon := New(proxy.URL+"/prefix/", "")
	sess, err := anon.Register(ctx, wire.RegisterRequest{User: "alice", Password: testPassword, DeviceName: "laptop"})
	if err != nil || sess.UserID != "alice@localhost" || sess.DeviceID != 1 || sess.AccessToken == "" {
		t.Fatalf("register %+v %v", sess, err)
	}
	api := anon.WithToken(sess.AccessToken)
	if api.Token() != sess.AccessToken || anon.Token() != "" {
		t.Fatal("WithToken changed the original")
	}

	w, err := api.WhoAmI(ctx)
	if err != nil || w.UserID != "alice@localhost" || w.DeviceID != 1 {
		t.Fatalf("whoami %+v %v", w, err)
	}
	_, err = api.UserDevices(ctx, "nobody@localhost")
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeUnknownUser || !strings.HasPrefix(err.Error(), "unknown_user: ") {
		t.Fatalf("user devices: %v", err)
	}
	// No envelopes: bob's device is missing.
	_, err = api.SendMessage(ctx, wire.SendRequest{ClientID: "c1", To: bob.UserID()})
	if !errors.As(err, &werr) || werr.Code != wire.CodeStaleDevices || len(werr.Missing) != 1 ||
		werr.Missing[0] != (wire.DeviceAddress{User: "bob@localhost", Device: 1}) || len(werr.Extra) != 0 {
		t.Fatalf("send: %#v", err)
	}
	if err := api.Ack(ctx, []int64{1, 2}); err != nil { // unknown ids are ignored
		t.Fatal(err)
	}
	if err := api.Ack(ctx, nil); err != nil { // no request at all
		t.Fatal(err)
	}
	page, err := api.Inbox(ctx, 5, 10)
	if err != nil || len(page.Events) != 0 || page.More {
		t.Fatalf("inbox %+v %v", page, err)
	}
	list, err := api.Devices(ctx)
	if err != nil || len(list.Devices) != 1 || list.Devices[0].Name != "laptop" || !list.Devices[0].Current ||
		list.Devices[0].HasKeys {
		t.Fatalf("devices %+v %v", list, err)
	}
	bearer := "Bearer " + sess.AccessToken
	want := []string{
		"POST /prefix/v1/register ",
		"GET /prefix/v1/whoami " + bearer,
		"GET /prefix/v1/users/nobody@localhost/devices " + bearer,
		"POST /prefix/v1/messages " + bearer,
		"POST /prefix/v1/inbox/ack " + bearer,
		"GET /prefix/v1/inbox?after=5&limit=10 " + bearer,
		"GET /prefix/v1/devices " + bearer,
	}
	seen := proxy.requests()
	if len(seen) != len(want) {
		t.Fatalf("requests %q", seen)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, seen[i], want[i])
		}
	}

	// The socket works through the proxy and its prefix too.
	c, err := api.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for ev := range c.Events() {
		if ev.Type == wire.EventCaughtUp {
			break
		}
	}
	c.Close()
	if seen := proxy.requests(); len(seen) != 1 || seen[0] != "GET /prefix/v1/ws "+bearer {
		t.Fatalf("dial requests %q", seen)
	}

	// A proxy whose backend is down answers with its own page, which is
	// not mistaken for one of the server's codes, and is worth a retry.
	down := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: "127.0.0.1:1"})
	down.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html>bad gateway</html>")
	}
	dead := httptest.NewServer(down)
	defer dead.Close()
	_, err = New(dead.URL, "tok").Devices(ctx)
	if !errors.As(err, &werr) || werr.Code != "http_502" || werr.Message != "Bad Gateway" {
		t.Fatalf("non-JSON error: %v", err)
	}
	if !transient(err) {
		t.Fatalf("a 502 should be transient: %v", err)
	}

	// Network errors are wrapped, not *wire.Error.
	proxy.Close()
	_, err = api.WhoAmI(ctx)
	if err == nil || errors.As(err, &werr) {
		t.Fatalf("closed proxy: %v", err)
	}
	if !transient(err) {
		t.Fatalf("connection refused should be transient: %v", err)
	}

	if _, err := New("ftp://x", "").WhoAmI(ctx); err == nil {
		t.Fatal("ftp URL accepted")
	}
}

func TestConn(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	bob := newAccount(t, srv, "bob", false, nil)

	if _, err := New(srv.URL(), "bad").Dial(ctx); !IsCode(err, wire.CodeUnknownToken) {
		t.Fatalf("bad token: %v", err)
	}

	// Twenty messages wait for bob (the server never looks inside).
	const n = 20
	for i := range n {
		_, err := alice.API().SendMessage(ctx, wire.SendRequest{ClientID: fmt.Sprint("c", i), To: "bob@localhost",
			Envelopes: []wire.Envelope{{User: "bob@localhost", Device: 1, Type: wire.CiphertextWhisper,
				Body: []byte(fmt.Sprint("opaque ", i))}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := bob.API().Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for ev := range c.Events() {
		if ev.Type == wire.EventCaughtUp {
			break
		}
		if ev.Type != wire.EventMessage || ev.Seq != uint64(len(ids)+1) || string(ev.Body) != fmt.Sprint("opaque ", len(ids)) {
			t.Fatalf("event %d: %+v", len(ids), ev)
		}
		ids = append(ids, ev.ID)
	}
	if len(ids) != n {
		t.Fatalf("got %d messages before caught_up, want %d", len(ids), n)
	}
	// Concurrent acks, one frame each.
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Ack(ctx, []int64{id}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	eventually(t, "the acks to empty bob's inbox", func() bool { return len(pending(t, bob)) == 0 })
	// Alice's inbox holds the answers to her sends, then one delivered
	// receipt per ack.
	eventually(t, "alice's delivered receipts", func() bool { return len(pending(t, alice)) == 2*n })
	for i, ev := range pending(t, alice) {
		if i < n {
			if ev.Type != wire.EventSent || ev.ClientID != fmt.Sprint("c", i) || ev.Seq != uint64(i+1) {
				t.Fatalf("alice's answer %d: %+v", i, ev)
			}
			continue
		}
		if ev.Type != wire.EventReceipt || ev.Status != wire.StatusDelivered || ev.By != "bob@localhost" || ev.ByDevice != 1 {
			t.Fatalf("alice's event %+v", ev)
		}
	}
	// A read frame.
	conv := homeserver.DirectConversationID("alice@localhost", "bob@localhost")
	if err := c.Send(ctx, wire.ClientFrame{Type: wire.FrameRead, Conversation: conv, Seq: n}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice's read receipt", func() bool {
		p := pending(t, alice)
		return len(p) == 2*n+1 && p[2*n].Status == wire.StatusRead && p[2*n].Seq == n
	})

	// A newer socket of the device makes the server close this one.
	c2, err := bob.API().Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range c.Events() {
	}
	var cerr *websocket.CloseError
	if err := c.Err(); !errors.As(err, &cerr) || cerr.Code != websocket.ClosePolicyViolation {
		t.Fatalf("Err after the server closed: %v", err)
	}
	c.Close()
	c.Close()

	// Closing from our side ends Events with no error, even with unread
	// events in the buffer.
	c2.Close()
	for range c2.Events() {
	}
	if err := c2.Err(); err != nil {
		t.Fatalf("Err after Close: %v", err)
	}
}
