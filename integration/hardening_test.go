package integration

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// Hardening: TLS defaults, security headers, the WebSocket origin check,
// size limits and slow clients, on both listeners.

func hostOf(u string) string {
	_, rest, _ := strings.Cut(u, "://")
	return rest
}

// Both listeners speak TLS 1.2 and 1.3 with modern suites only: a TLS 1.1
// client and a TLS 1.2 client offering only CBC suites are refused, and a
// connection that never says hello is dropped after the header timeout.
func TestTLSDefaults(t *testing.T) {
	zone := testdns.Start(t)
	ca := newTestCA(t)
	cert, key := ca.issue(t, "a.test")
	a := startFederated(t, zone, "a.test", "", []func(*setup.Extra){func(e *setup.Extra) {
		e.ReadHeaderTimeout = 300 * time.Millisecond
	}}, func(c *setup.Config) {
		c.FederationInsecure = false
		c.TLSCert, c.TLSKey, c.FederationCA = cert, key, ca.pemPath
		c.ClientTLSCert, c.ClientTLSKey = cert, key
	})
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(ca.pemPath)
	pool.AppendCertsFromPEM(pem)
	for _, l := range []struct{ name, url string }{{"client", a.node.URL()}, {"federation", a.node.FederationURL()}} {
		if !strings.HasPrefix(l.url, "https://") {
			t.Fatalf("%s listener is not TLS: %s", l.name, l.url)
		}
		addr := hostOf(l.url)
		dial := func(c *tls.Config) (*tls.Conn, error) {
			c.ServerName, c.RootCAs = "a.test", pool
			return tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, c)
		}
		for _, c := range []struct {
			what string
			cfg  *tls.Config
			ok   bool
		}{
			{"TLS 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, false},
			{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, false},
			{"TLS 1.2 with CBC suites only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false},
			{"TLS 1.2 with an RSA-key-exchange suite only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, false},
			{"TLS 1.2 with AES-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
			{"TLS 1.2 with ChaCha20-Poly1305", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
			{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
		} {
			conn, err := dial(c.cfg)
			if c.ok != (err == nil) {
				t.Errorf("%s listener, %s: handshake error %v", l.name, c.what, err)
			}
			if err == nil {
				conn.Close()
			}
		}
		// A client that connects and never starts the handshake is cut off.
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		raw.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := raw.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("%s listener kept a silent TLS connection open: %v", l.name, err)
		}
		raw.Close()
		// HSTS over TLS.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", RootCAs: pool}}}
		path := "/v1/whoami"
		if l.name == "federation" {
			path = federation.KeyPath
		}
		resp, err := hc.Get(l.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Strict-Transport-Security") == "" {
			t.Errorf("%s listener: no Strict-Transport-Security over TLS", l.name)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Every answer, errors included, carries the security headers: JSON that
// no browser sniffs, caches, frames or runs.
func TestSecurityHeaders(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil)
	alice := a.register("alice", 5)
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	}
	check := func(what string, req *http.Request, status int) {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", what, resp.StatusCode, status)
		}
		for k, v := range want {
			if k == "Cache-Control" && req.URL.Path == federation.KeyPath {
				continue // public and cacheable on purpose
			}
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s is %q, want %q", what, k, got, v)
			}
		}
		if resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS over plain HTTP", what)
		}
	}
	req := func(method, url, token string, body io.Reader) *http.Request {
		r, _ := http.NewRequest(method, url, body)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return r
	}
	c, f := a.node.URL(), a.node.FederationURL()
	check("whoami", req("GET", c+"/v1/whoami", alice.token(), nil), 200)
	check("no token", req("GET", c+"/v1/whoami", "", nil), 401)
	check("unknown route", req("GET", c+"/v1/nothing", "", nil), 404)
	check("wrong method", req("DELETE", c+"/v1/whoami", alice.token(), nil), 405)
	check("bad JSON", req("POST", c+"/v1/register", "", strings.NewReader("{")), 400)
	check("body too large", req("PUT", c+"/v1/profile", alice.token(), bytes.NewReader(make([]byte, wire.MaxRequestBytes+1))), 413)
	check("not a WebSocket handshake", req("GET", c+"/v1/ws", alice.token(), nil), 400)
	check("key document", req("GET", f+federation.KeyPath, "", nil), 200)
	check("unsigned federation request", req("GET", f+"/v1/federation/profile/alice@a.test", "", nil), 401)
	check("unknown federation route", req("GET", f+"/v1/federation/nothing", "", nil), 404)
}

// Browsers send an Origin with every WebSocket handshake, and a page of
// any site could otherwise open one with a visitor's token from the
// query string: only this server's own origin, or none (non-browser
// clients), may open a socket.
func TestWebSocketOrigin(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	u := "ws" + strings.TrimPrefix(s.url, "http") + "/v1/ws?access_token=" + alice.token()
	for _, c := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{s.url, true},
		{"https://evil.example", false},
		{"http://" + hostOf(s.url) + ".evil.example", false},
		{"null", false},
	} {
		h := http.Header{}
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		conn, resp, err := websocket.DefaultDialer.Dial(u, h)
		if c.ok {
			if err != nil {
				t.Errorf("origin %q refused: %v", c.origin, err)
				continue
			}
			conn.Close()
			continue
		}
		if err == nil {
			conn.Close()
			t.Errorf("origin %q allowed", c.origin)
			continue
		}
		var e wire.Error
		if resp == nil || resp.StatusCode != 403 || json.NewDecoder(resp.Body).Decode(&e) != nil || e.Code != wire.CodeForbidden {
			t.Errorf("origin %q: %v %+v, want 403 forbidden", c.origin, resp, e)
		}
	}
}

// A frame over 8 MiB closes the socket with 1009 (message too big); one
// of exactly 8 MiB is read and answered. A REST body over 8 MiB is
// too_large.
func TestFrameSizeLimits(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	prefix := `{"type":"nonsense","client_id":"`
	frame := func(n int) []byte {
		b := bytes.Repeat([]byte("x"), n)
		copy(b, prefix)
		copy(b[n-2:], `"}`)
		return b
	}

	ok := alice.online()
	if err := ok.conn.WriteMessage(websocket.TextMessage, frame(wire.MaxRequestBytes)); err != nil {
		t.Fatal(err)
	}
	if ev := ok.next(); ev.Type != wire.EventError || ev.Code != wire.CodeInvalidParam {
		t.Fatalf("answer to an 8 MiB frame: %+v", ev)
	}

	u := "ws" + strings.TrimPrefix(s.url, "http") + "/v1/ws"
	conn, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + alice.token()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go conn.WriteMessage(websocket.TextMessage, frame(wire.MaxRequestBytes+1)) // may fail once the server hangs up
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, _, err := conn.ReadMessage()
		if err == nil {
			continue // the inbox, caught_up
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("oversized frame: %v, want close 1009", err)
		}
		break
	}
	s.refused(413, wire.CodeTooLarge, "PUT", "/v1/profile", alice.token(), bytes.Repeat([]byte(" "), wire.MaxRequestBytes+1))
}

// trickle sends a request's headers one byte at a time and reports
// whether the server hung up before they were done (within a generous
// bound that is no timing assertion: the header timeout in these tests is
// 300 ms).
func trickle(t *testing.T, addr string) bool {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/whoami HTTP/1.1\r\nHost: %s\r\n", addr)
	buf := make([]byte, 512)
	for range 600 { // 30 s
		if _, err := conn.Write([]byte("X")); err != nil {
			return true
		}
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := conn.Read(buf); err != nil && !isTimeout(err) {
			return true // EOF or reset: cut off
		}
	}
	return false
}

// A slow-loris client (headers a byte at a time, or nothing at all) is
// cut off on both listeners, while other clients are served meanwhile.
func TestSlowClientsAreCutOff(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", []func(*setup.Extra){func(e *setup.Extra) {
		e.ReadHeaderTimeout = 300 * time.Millisecond
	}})
	alice := a.register("alice", 5)
	for _, addr := range []string{hostOf(a.node.URL()), hostOf(a.node.FederationURL())} {
		done := make(chan bool)
		go func() { done <- trickle(t, addr) }()
		// Served while the slow client dribbles.
		a.must("GET", "/v1/whoami", alice.token(), nil, nil)
		if !<-done {
			t.Errorf("%s: a client sending its headers a byte at a time was never cut off", addr)
		}
		// Silence from the start is cut off too.
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("%s: a silent connection was kept open: %v", addr, err)
		}
		conn.Close()
	}
}
