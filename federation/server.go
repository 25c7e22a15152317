package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

// API is the inbound half of federation: the endpoints other homeservers
// call on the federation listener. Every endpoint but the key document
// needs a valid signature; the origin it proves is then checked against
// the policy and its rate limit, and any request from it tells the Sender
// that it is up.
type API struct {
	hs       *homeserver.Server
	sender   *Sender
	verifier *Verifier
	keys     KeyLookup
	key      *SigningKey
	policy   *Policy
	limiter  *limiter
	log      *slog.Logger
	now      func() time.Time
	maxBody  int64
}

// APIOptions configure the API.
type APIOptions struct {
	Policy      *Policy
	RatePerSec  float64 // requests per second per origin (default 100)
	Burst       int     // (default 400)
	MaxBodySize int64   // (default 16 MiB)
	Verifier    VerifierOptions
}

const defaultMaxBody = 16 << 20

// NewAPI builds the inbound API.
func NewAPI(hs *homeserver.Server, sender *Sender, key *SigningKey, keys KeyLookup, log *slog.Logger, opts APIOptions) *API {
	if opts.Policy == nil {
		opts.Policy = &Policy{}
	}
	if opts.RatePerSec <= 0 {
		opts.RatePerSec = 100
	}
	if opts.Burst <= 0 {
		opts.Burst = 400
	}
	a := &API{hs: hs, sender: sender, verifier: NewVerifier(opts.Verifier), keys: keys, key: key,
		policy: opts.Policy, limiter: newLimiter(opts.RatePerSec, opts.Burst), log: log, now: time.Now}
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = defaultMaxBody
	}
	a.maxBody = opts.MaxBodySize
	return a
}

// endpoints is every federation route (a net/http pattern and its
// handler); Handler serves them and Routes lists them.
func (a *API) endpoints() []struct {
	pattern string
	h       http.Handler
} {
	return []struct {
		pattern string
		h       http.Handler
	}{
		{"GET " + KeyPath, KeyHandler(a.hs.Domain(), a.key, 24*time.Hour, a.now)},
		{"PUT " + wire.FederationPrefix + "/send/{txn}", a.signed(a.send)},
		{"GET " + wire.FederationPrefix + "/users/{user}/devices", a.signed(a.devices)},
		{"POST " + wire.FederationPrefix + "/keys/claim", a.signed(a.claim)},
		{"GET " + wire.FederationPrefix + "/profile/{user}", a.signed(a.profile)},
		{"GET " + wire.FederationPrefix + "/groups/{group}/devices", a.signed(a.groupDevices)},
		{"POST " + wire.FederationPrefix + "/groups/{group}/op", a.signed(a.groupOp)},
	}
}

// Routes lists the patterns of every federation endpoint ("PUT
// /v1/federation/send/{txn}"), for tests that must cover each one.
func (a *API) Routes() []string {
	var out []string
	for _, e := range a.endpoints() {
		out = append(out, e.pattern)
	}
	return out
}

// Handler serves the federation endpoints.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, e := range a.endpoints() {
		mux.Handle(e.pattern, e.h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &wire.Error{Code: wire.CodeNotFound, Message: "no such federation endpoint"})
	})
	return securityHeaders(mux)
}

// handler is a federation endpoint after authentication.
type handler func(ctx context.Context, r *http.Request, origin string, body []byte) (any, error)

// signed authenticates a request: signature, policy, rate limit.
func (a *API) signed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		body, err := ReadBody(r, a.maxBody)
		if err != nil {
			writeError(w, &wire.Error{Code: wire.CodeTooLarge, Message: "request body too large"})
			return
		}
		origin, err := a.verifier.Verify(ctx, r, body, a.hs.Domain(), a.keys, a.now())
		if err != nil {
			a.log.InfoContext(ctx, "refused a federation request", "path", r.URL.Path, "err", err)
			writeError(w, verifyError(err))
			return
		}
		if !a.policy.Allowed(origin) {
			writeError(w, &wire.Error{Code: wire.CodeForbidden, Message: "federation with " + origin + " is not allowed here"})
			return
		}
		if !a.limiter.allow(origin, a.now()) {
			w.Header().Set("Retry-After", "1")
			writeError(w, &wire.Error{Code: wire.CodeRateLimited, Message: "too many requests from " + origin})
			return
		}
		if a.sender != nil {
			a.sender.Reset(origin)
		}
		out, err := h(ctx, r, origin, body)
		if err != nil {
			a.writeDomainError(ctx, w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}
}

func (a *API) send(ctx context.Context, r *http.Request, origin string, body []byte) (any, error) {
	var txn wire.Transaction
	if err := json.Unmarshal(body, &txn); err != nil {
		return nil, &wire.Error{Code: wire.CodeBadJSON, Message: "malformed transaction: " + err.Error()}
	}
	if txn.Origin != origin || txn.Destination != a.hs.Domain() {
		return nil, &wire.Error{Code: wire.CodeForbidden, Message: "the transaction's origin or destination does not match its signature"}
	}
	txnID := r.PathValue("txn")
	if txnID == "" || len(txnID) > 128 {
		return nil, &wire.Error{Code: wire.CodeInvalidParam, Field: "txn", Message: "a transaction id is 1-128 characters"}
	}
	if len(txn.Items) > maxTxnItems {
		return nil, &wire.Error{Code: wire.CodeInvalidParam, Field: "items", Message: fmt.Sprintf("at most %d items per transaction", maxTxnItems)}
	}
	return a.hs.ReceiveTransaction(ctx, origin, txnID, txn.Items)
}

func (a *API) devices(ctx context.Context, r *http.Request, origin string, _ []byte) (any, error) {
	return a.hs.RemoteDeviceList(ctx, r.PathValue("user"))
}

func (a *API) claim(ctx context.Context, r *http.Request, origin string, body []byte) (any, error) {
	var req wire.ClaimRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &wire.Error{Code: wire.CodeBadJSON, Message: "malformed claim: " + err.Error()}
	}
	b, err := a.hs.RemoteClaim(ctx, req)
	if b == nil {
		b = []wire.Bundle{}
	}
	return wire.ClaimResponse{Bundles: b}, err
}

func (a *API) profile(ctx context.Context, r *http.Request, origin string, _ []byte) (any, error) {
	user := r.PathValue("user")
	if homeserver.DomainOf(user) != a.hs.Domain() {
		return nil, &wire.Error{Code: wire.CodeForbidden, Message: user + " is not a user of this server"}
	}
	return a.hs.Profile(ctx, user)
}

func (a *API) groupDevices(ctx context.Context, r *http.Request, origin string, _ []byte) (any, error) {
	return a.hs.RemoteGroupDevices(ctx, origin, r.PathValue("group"), r.URL.Query().Get("member"))
}

func (a *API) groupOp(ctx context.Context, r *http.Request, origin string, body []byte) (any, error) {
	var op wire.GroupOp
	if err := json.Unmarshal(body, &op); err != nil {
		return nil, &wire.Error{Code: wire.CodeBadJSON, Message: "malformed group operation: " + err.Error()}
	}
	if err := a.hs.RemoteGroupOp(ctx, origin, r.PathValue("group"), op); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// verifyError maps a signature check failure to its stable code.
func verifyError(err error) *wire.Error {
	switch {
	case errors.Is(err, ErrReplay):
		return &wire.Error{Code: wire.CodeReplayed, Message: "this request was seen before"}
	case errors.Is(err, ErrWrongDestination):
		return &wire.Error{Code: wire.CodeWrongDestination, Message: "this request is signed for another server"}
	case errors.Is(err, ErrDigestMismatch):
		return &wire.Error{Code: wire.CodeBadDigest, Message: "Content-Digest does not match the body"}
	case errors.Is(err, ErrStale):
		return &wire.Error{Code: wire.CodeUnauthenticated, Message: "the signature is too old or from the future"}
	case errors.Is(err, ErrUnsigned):
		return &wire.Error{Code: wire.CodeUnauthenticated, Message: "federation requests must be signed"}
	case errors.Is(err, ErrUnknownKey):
		return &wire.Error{Code: wire.CodeUnauthenticated, Message: "the signing key is not one of the origin's keys"}
	}
	return &wire.Error{Code: wire.CodeUnauthenticated, Message: "the request signature does not verify"}
}

func (a *API) writeDomainError(ctx context.Context, w http.ResponseWriter, err error) {
	var we *wire.Error
	if errors.As(err, &we) {
		writeError(w, we)
		return
	}
	if e, ok := homeserver.AsError(err); ok {
		if e.Cause != nil || e.Code == wire.CodeInternal {
			a.log.ErrorContext(ctx, "federation request failed", "code", e.Code, "err", e.Cause)
		}
		writeError(w, &wire.Error{Code: e.Code, Message: e.Message, Field: e.Field, Missing: e.Missing, Extra: e.Extra})
		return
	}
	a.log.ErrorContext(ctx, "federation request failed", "err", err)
	writeError(w, &wire.Error{Code: wire.CodeInternal, Message: "internal error"})
}

func writeError(w http.ResponseWriter, e *wire.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(wire.HTTPStatus(e.Code))
	json.NewEncoder(w).Encode(e)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}

// Policy decides which domains we federate with: with an allow list, only
// those; otherwise everyone not on the deny list.
type Policy struct {
	Allow []string
	Deny  []string
}

// Allowed reports whether domain may federate with us.
func (p *Policy) Allowed(domain string) bool {
	if p == nil {
		return true
	}
	domain = strings.ToLower(domain)
	if slices.Contains(p.Deny, domain) {
		return false
	}
	return len(p.Allow) == 0 || slices.Contains(p.Allow, domain)
}

// limiter is a token bucket per origin.
type limiter struct {
	rate  float64
	burst float64
	mu    sync.Mutex
	b     map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), b: map[string]*bucket{}}
}

func (l *limiter) allow(origin string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.b[origin]
	if b == nil {
		if len(l.b) > 100_000 {
			clear(l.b) // bounded memory; a reset only grants a fresh burst
		}
		b = &bucket{tokens: l.burst, last: now}
		l.b[origin] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
