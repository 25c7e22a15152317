// Package client is the Go SDK of Parley's client protocol.
//
// It has two layers:
//
//   - API speaks the protocol and nothing more: one method per REST endpoint
//     under /v1 and Dial for the device's WebSocket. It holds no state besides
//     the server URL and the access token, so it is cheap enough for a load
//     tool that opens thousands of them.
//   - Account is one device of one user kept in a home directory
//     (account.json and the device's Signal state in signal.db). It encrypts
//     and decrypts: SendText, Process, Receive, SafetyNumber.
//
// Server refusals come back as *wire.Error (test with errors.As); transport
// failures are wrapped with the method and path that failed.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/wire"
)

// maxResponseBytes bounds what is read from one REST response. An inbox
// page of many messages, each up to wire.MaxEnvelopeBytes and base64
// encoded, stays well below it.
const maxResponseBytes = 64 << 20

// DefaultHTTPTimeout bounds one REST request made with the default HTTP
// client, so that a command against a dead server does not hang forever
// when its context has no deadline.
const DefaultHTTPTimeout = 60 * time.Second

// userAgent names the SDK in requests; servers may log it.
const userAgent = "parley-go-client/1"

// API is a low-level client of one homeserver, authenticated as one device
// (or not at all: Register and Login need no token). It is safe for
// concurrent use.
type API struct {
	base   *url.URL // scheme://host[:port][/prefix], without trailing slash
	token  string
	hc     *http.Client
	dialer *websocket.Dialer
	events int // buffer of Conn.Events
}

// Option configures an API.
type Option func(*API)

// WithHTTPClient makes the API use hc for REST requests (the default has
// DefaultHTTPTimeout and http.DefaultTransport).
func WithHTTPClient(hc *http.Client) Option { return func(a *API) { a.hc = hc } }

// WithDialer makes Dial use d (the default is websocket.DefaultDialer with
// a 30 s handshake timeout).
func WithDialer(d *websocket.Dialer) Option { return func(a *API) { a.dialer = d } }

// WithEventBuffer sets how many events a Conn buffers before its reader
// stops reading from the socket (default 64). A load tool holding many
// connections may lower it.
func WithEventBuffer(n int) Option {
	return func(a *API) {
		if n >= 0 {
			a.events = n
		}
	}
}

// New returns an API for the homeserver at serverURL (e.g.
// "http://127.0.0.1:8080" or "https://chat.example.org/prefix"), using
// token as the access token; token may be empty for Register and Login.
// A malformed URL is reported by the first request.
func New(serverURL, token string, opts ...Option) *API {
	a := &API{
		token:  token,
		hc:     &http.Client{Timeout: DefaultHTTPTimeout},
		dialer: &websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: 30 * time.Second},
		events: 64,
	}
	if u, err := parseServerURL(serverURL); err == nil {
		a.base = u
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// parseServerURL accepts an http or https URL without query or fragment.
func parseServerURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://HOST[:PORT] or https://HOST[:PORT]", s)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q: must not have a query or fragment", s)
	}
	return u, nil
}

// ValidateServerURL reports whether s is a server URL New accepts.
func ValidateServerURL(s string) error {
	_, err := parseServerURL(s)
	return err
}

// Server returns the server URL the API talks to.
func (a *API) Server() string {
	if a.base == nil {
		return ""
	}
	return a.base.String()
}

// Token returns the access token the API sends (empty if none).
func (a *API) Token() string { return a.token }

// WithToken returns a copy of the API that authenticates with token.
func (a *API) WithToken(token string) *API {
	b := *a
	b.token = token
	return &b
}

// endpoint returns the absolute URL of path (which starts with /v1/).
func (a *API) endpoint(path string, query url.Values) (string, error) {
	if a.base == nil {
		return "", errors.New("client: no valid server URL (want http://HOST[:PORT] or https://HOST[:PORT])")
	}
	u := *a.base
	u.Path = a.base.Path + path
	u.RawPath = ""
	if a.base.RawPath != "" {
		u.RawPath = a.base.RawPath + path
	}
	if query != nil {
		u.RawQuery = query.Encode()
	}
	return u.String(), nil
}

// do sends one REST request. in (if not nil) is the JSON body; out (if not
// nil) receives the JSON answer of a 2xx response. A non-2xx answer is
// returned as *wire.Error.
func (a *API) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	target, err := a.endpoint(path, query)
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		// The URL in a *url.Error may carry ?access_token=; ours never
		// does, but keep the message about the path, not the URL.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("client: %s %s: read response: %w", method, path, err)
	}
	if len(raw) > maxResponseBytes {
		return fmt.Errorf("client: %s %s: response over %d bytes", method, path, maxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp.StatusCode, raw)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("client: %s %s: decode response: %w", method, path, err)
	}
	return nil
}

// responseError turns a non-2xx response into a *wire.Error. A body that is
// not a wire.Error (a proxy's HTML page, say) gets the code "http_STATUS",
// which is not one of the server's codes, so it is never mistaken for one.
func responseError(status int, body []byte) *wire.Error {
	var e wire.Error
	if err := json.Unmarshal(body, &e); err == nil && e.Code != "" {
		return &e
	}
	msg := http.StatusText(status)
	if s := strings.TrimSpace(string(body)); s != "" && len(s) < 200 && !strings.ContainsAny(s, "\n\r<") {
		msg += " (" + s + ")"
	}
	return &wire.Error{Code: "http_" + strconv.Itoa(status), Message: msg}
}

// IsCode reports whether err is (or wraps) a *wire.Error with code.
func IsCode(err error, code string) bool {
	var e *wire.Error
	return errors.As(err, &e) && e.Code == code
}
