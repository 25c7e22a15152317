package client

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/setup"
)

// The tests of this package run against real homeservers (setup.Start) on
// loopback, with their data in a temporary directory: never a stand-in of
// our own server.

// cheapPasswords keeps argon2id real but fast enough for tests that create
// many devices.
var cheapPasswords = homeserver.PasswordParams{Memory: 1024, Time: 1, Threads: 1}

type testServer struct {
	t    *testing.T
	node *setup.Node
	url  string
}

// startServer runs a homeserver for domain "localhost" on 127.0.0.1:0 and
// stops it when the test ends. Its log is shown only if the test fails.
func startServer(t *testing.T) *testServer {
	t.Helper()
	cfg := setup.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Data = t.TempDir()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	node, err := setup.Start(context.Background(), cfg, log, setup.Extra{Password: cheapPasswords})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The clients' transport may hold a connection it dialled but never
		// used; the server's graceful shutdown would wait 5 s for its first
		// request (net/http treats new connections as busy that long).
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.Close(ctx); err != nil {
			t.Errorf("closing the homeserver: %v", err)
		}
		if t.Failed() {
			t.Logf("homeserver log:\n%s", logs.String())
		}
	})
	return &testServer{t: t, node: node, url: node.URL()}
}

func (s *testServer) URL() string { return s.url }

// lockedBuffer lets the server's goroutines log into one buffer.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hookTransport lets a test act between a request reaching the real server
// and the client seeing the answer (to change device lists in the window
// between listing and sending), or count what the client asked.
type hookTransport struct {
	after func(req *http.Request, resp *http.Response)
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && h.after != nil {
		h.after(req, resp)
	}
	return resp, err
}

// withHook makes an account's REST requests go through after.
func withHook(after func(req *http.Request, resp *http.Response)) AccountOption {
	return WithAPIOptions(WithHTTPClient(&http.Client{Transport: &hookTransport{after: after}, Timeout: 30 * time.Second}))
}

// eventually polls cond until it holds or 10 s pass.
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
