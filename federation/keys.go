package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// KeyPath is where a homeserver publishes its PublicKeyDocument on its
// federation listener (GET, no authentication).
const KeyPath = "/v1/federation/key"

// KeyFileName is the signing key's file in the data directory.
const KeyFileName = "federation_key.pem"

// keyIDPrefix starts every key id; it names the algorithm.
const keyIDPrefix = "ed25519:"

// ErrBadKeyDocument: a public key document that does not parse, is not
// signed by one of its own keys, or names another server.
var ErrBadKeyDocument = errors.New("federation: bad public key document")

// SigningKey is a homeserver's Ed25519 federation key. Its String and
// LogValue show only the key id.
type SigningKey struct {
	ID      string
	Public  ed25519.PublicKey
	Private ed25519.PrivateKey
}

// KeyID derives a public key's id: "ed25519:" and the first 8 characters
// of the base64url SHA-256 of the key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return keyIDPrefix + base64.RawURLEncoding.EncodeToString(sum[:])[:8]
}

// NewSigningKey wraps an Ed25519 private key.
func NewSigningKey(priv ed25519.PrivateKey) *SigningKey {
	pub := priv.Public().(ed25519.PublicKey)
	return &SigningKey{ID: KeyID(pub), Public: pub, Private: priv}
}

// GenerateKey returns a fresh signing key.
func GenerateKey() (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewSigningKey(priv), nil
}

func (k *SigningKey) String() string       { return "SigningKey(" + k.ID + ")" }
func (k *SigningKey) GoString() string     { return k.String() }
func (k *SigningKey) LogValue() slog.Value { return slog.StringValue(k.ID) }

// LoadOrCreateKey loads DATA/federation_key.pem (PKCS#8 PEM), creating it
// on first start: the new key is written to a temporary file (0600),
// synced, then linked into place, so a crash never leaves a partial key
// and two processes starting at once end up with the same key. A key file
// readable by group or others is refused.
func LoadOrCreateKey(dataDir string) (*SigningKey, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("federation: key directory: %w", err)
	}
	path := filepath.Join(dataDir, KeyFileName)
	k, err := loadKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = GenerateKey()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	tmp, err := os.CreateTemp(dataDir, ".federation_key-*.tmp") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("federation: writing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("federation: writing key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("federation: writing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("federation: writing key: %w", err)
	}
	// Link fails if another process created the key meanwhile: use theirs.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path)
		}
		// Some file systems have no hard links; rename is still atomic.
		if rerr := os.Rename(tmp.Name(), path); rerr != nil {
			return nil, fmt.Errorf("federation: installing key: %w", errors.Join(err, rerr))
		}
	}
	if dir, err := os.Open(dataDir); err == nil {
		_ = dir.Sync() // make the new name durable; not all systems can
		dir.Close()
	}
	return loadKey(path)
}

func loadKey(path string) (*SigningKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("federation: key file %s is accessible to others (mode %04o); make it 0600",
			path, info.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("federation: key file %s: no PKCS#8 PRIVATE KEY block", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("federation: key file %s: %w", path, err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("federation: key file %s holds a %T, not an Ed25519 key", path, parsed)
	}
	return NewSigningKey(priv), nil
}

// PublicKeyDocument is what GET KeyPath returns: the server's public keys
// and a signature by one of them over the canonical JSON of the document
// without its "signature" member.
type PublicKeyDocument struct {
	Server    string            `json:"server"`
	Keys      []PublicKeyEntry  `json:"keys"`
	Signature DocumentSignature `json:"signature"`
}

// PublicKeyEntry is one published key. PublicKey is standard base64 of
// the 32-byte Ed25519 key; ValidUntil is RFC 3339 (UTC, seconds).
type PublicKeyEntry struct {
	KeyID      string    `json:"key_id"`
	PublicKey  string    `json:"public_key"`
	ValidUntil time.Time `json:"valid_until"`
}

// DocumentSignature is the self-signature: the signing key's id and the
// standard base64 Ed25519 signature.
type DocumentSignature struct {
	KeyID string `json:"key_id"`
	Value string `json:"value"`
}

// Key returns the entry for keyID and its decoded public key.
func (d *PublicKeyDocument) Key(keyID string) (PublicKeyEntry, ed25519.PublicKey, bool) {
	for _, e := range d.Keys {
		if e.KeyID == keyID {
			pub, err := base64.StdEncoding.DecodeString(e.PublicKey)
			if err != nil || len(pub) != ed25519.PublicKeySize {
				return PublicKeyEntry{}, nil, false
			}
			return e, ed25519.PublicKey(pub), true
		}
	}
	return PublicKeyEntry{}, nil, false
}

// BuildKeyDocument returns the signed JSON document for server: signer's
// key valid until validUntil, then any older keys still published for
// verification (extra), all signed by signer.
func BuildKeyDocument(server string, signer *SigningKey, validUntil time.Time, extra ...PublicKeyEntry) ([]byte, error) {
	server, err := NormalizeDomain(server)
	if err != nil {
		return nil, err
	}
	doc := PublicKeyDocument{Server: server, Keys: []PublicKeyEntry{{
		KeyID:      signer.ID,
		PublicKey:  base64.StdEncoding.EncodeToString(signer.Public),
		ValidUntil: validUntil.UTC().Truncate(time.Second),
	}}}
	for _, e := range extra {
		e.ValidUntil = e.ValidUntil.UTC().Truncate(time.Second)
		doc.Keys = append(doc.Keys, e)
	}
	unsigned, err := json.Marshal(struct {
		Server string           `json:"server"`
		Keys   []PublicKeyEntry `json:"keys"`
	}{doc.Server, doc.Keys})
	if err != nil {
		return nil, err
	}
	canon, err := CanonicalJSON(unsigned)
	if err != nil {
		return nil, err
	}
	doc.Signature = DocumentSignature{
		KeyID: signer.ID,
		Value: base64.StdEncoding.EncodeToString(ed25519.Sign(signer.Private, canon)),
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return CanonicalJSON(out)
}

// VerifyKeyDocument parses a document, checks that it is about server and
// that its signature verifies with the listed key it names, and that every
// key is well formed. Members it does not know are covered by the
// signature and otherwise ignored.
func VerifyKeyDocument(data []byte, server string) (*PublicKeyDocument, error) {
	bad := func(format string, args ...any) (*PublicKeyDocument, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadKeyDocument, fmt.Sprintf(format, args...))
	}
	want, err := NormalizeDomain(server)
	if err != nil {
		return nil, err
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return bad("%v", err)
	}
	var doc PublicKeyDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		return bad("%v", err)
	}
	got, err := NormalizeDomain(doc.Server)
	if err != nil || got != want {
		return bad("document is for server %q, expected %q", doc.Server, want)
	}
	if len(doc.Keys) == 0 || len(doc.Keys) > 32 {
		return bad("%d keys", len(doc.Keys))
	}
	seen := make(map[string]bool, len(doc.Keys))
	for _, e := range doc.Keys {
		if !validKeyID(e.KeyID) || seen[e.KeyID] {
			return bad("bad or repeated key id %q", e.KeyID)
		}
		seen[e.KeyID] = true
		if _, _, ok := doc.Key(e.KeyID); !ok {
			return bad("key %s: public key is not 32 bytes of base64", e.KeyID)
		}
	}
	_, pub, ok := doc.Key(doc.Signature.KeyID)
	if !ok {
		return bad("signed by %q, which the document does not list", doc.Signature.KeyID)
	}
	sig, err := base64.StdEncoding.DecodeString(doc.Signature.Value)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return bad("signature is not 64 bytes of base64")
	}
	delete(members, "signature")
	rest, err := json.Marshal(members)
	if err != nil {
		return bad("%v", err)
	}
	canon, err := CanonicalJSON(rest)
	if err != nil {
		return bad("%v", err)
	}
	if !ed25519.Verify(pub, canon, sig) {
		return bad("signature does not verify")
	}
	doc.Server = got
	return &doc, nil
}

func validKeyID(id string) bool {
	if !strings.HasPrefix(id, keyIDPrefix) || len(id) > 64 || len(id) == len(keyIDPrefix) {
		return false
	}
	for _, c := range id[len(keyIDPrefix):] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// CanonicalJSON re-encodes a JSON value in the form that is signed:
// object members sorted by key (byte order), no insignificant whitespace,
// numbers as written, strings as Go's encoding/json writes them with HTML
// escaping off. Duplicate keys keep the last value.
func CanonicalJSON(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("federation: trailing data after JSON value")
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeCanonical(buf *bytes.Buffer, v any, depth int) error {
	if depth > 64 {
		return errors.New("federation: JSON nested too deeply")
	}
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, k, depth+1); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeCanonical(buf, v[k], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case string:
		enc := json.NewEncoder(buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return err
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
	case json.Number:
		buf.WriteString(v.String())
	case bool:
		if v {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case nil:
		buf.WriteString("null")
	default:
		return fmt.Errorf("federation: unexpected JSON value %T", v)
	}
	return nil
}

// KeyHandler serves the server's PublicKeyDocument at KeyPath: the
// current key, valid for validity from now (receivers cache it that
// long), plus older keys still accepted (extra). now may be nil.
func KeyHandler(server string, key *SigningKey, validity time.Duration, now func() time.Time, extra ...PublicKeyEntry) http.Handler {
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		doc, err := BuildKeyDocument(server, key, now().Add(validity), extra...)
		if err != nil {
			http.Error(w, "key document unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(validity/time.Second/2)))
		_, _ = w.Write(doc)
	})
}

// KeyLookup finds the public key a server signs with. Implementations
// return an error wrapping ErrUnknownKey when the server has no such key
// valid at the given time.
type KeyLookup interface {
	PublicKey(ctx context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error)
}

// StaticKeys is a fixed KeyLookup: server → key id → public key. Keys
// never expire. For tests and pinned peers.
type StaticKeys map[string]map[string]ed25519.PublicKey

// PublicKey implements KeyLookup.
func (s StaticKeys) PublicKey(_ context.Context, server, keyID string, _ time.Time) (ed25519.PublicKey, error) {
	if pub, ok := s[server][keyID]; ok {
		return pub, nil
	}
	return nil, fmt.Errorf("%w: %s %s", ErrUnknownKey, server, keyID)
}

// KeyCacheOptions tune a KeyCache. Zero values take the defaults.
type KeyCacheOptions struct {
	// Client fetches documents. It should use a Transport (NewTransport)
	// so the request goes to the server's discovered address, through
	// the SSRF guard. Required.
	Client *http.Client
	// Scheme is "https" (default) or "http" (explicitly insecure, for
	// local testing only).
	Scheme string
	// RefetchInterval is the least time between two fetches of one
	// server's document, whatever key ids requests name. Default 1m.
	RefetchInterval time.Duration
	// FailedRefetchInterval replaces RefetchInterval after a fetch that
	// failed (the origin unreachable or answering badly): an origin that
	// was restarting when we first asked must not have all its requests
	// refused for a whole minute. Default 5s (at most RefetchInterval).
	FailedRefetchInterval time.Duration
	// MaxTTL caps how long a fetched key is trusted, whatever its
	// valid_until. Default 24h.
	MaxTTL time.Duration
	// MaxServers bounds the number of servers cached. Default 10,000.
	MaxServers int
	// MaxConcurrentFetches bounds fetches in flight. Default 32.
	MaxConcurrentFetches int
	// FetchTimeout bounds one fetch. Default 15s.
	FetchTimeout time.Duration
	// MaxDocumentSize bounds a document. Default 64 KiB.
	MaxDocumentSize int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// KeyCache is the KeyLookup for remote servers: it fetches a server's
// PublicKeyDocument from KeyPath at the server's discovered address,
// verifies it, and caches its keys until their valid_until (at most
// MaxTTL). An unknown key id makes it fetch again, at most once per
// RefetchInterval per server (FailedRefetchInterval after a failed
// fetch), so a flood of requests naming bogus key ids cannot make it
// hammer the origin. Safe for concurrent use.
type KeyCache struct {
	opts   KeyCacheOptions
	sem    chan struct{}
	flight flightGroup[string, struct{}]

	mu      sync.Mutex
	servers map[string]*serverKeys
}

type serverKeys struct {
	keys      map[string]cachedKey
	lastFetch time.Time // last attempt, successful or not
	lastErr   error     // of the last attempt
}

type cachedKey struct {
	pub     ed25519.PublicKey
	expires time.Time // min(valid_until, fetch time + MaxTTL)
	valid   time.Time // valid_until as published
}

// NewKeyCache returns an empty cache.
func NewKeyCache(opts KeyCacheOptions) (*KeyCache, error) {
	if opts.Client == nil {
		return nil, errors.New("federation: KeyCache needs an HTTP client")
	}
	switch opts.Scheme {
	case "":
		opts.Scheme = "https"
	case "https", "http":
	default:
		return nil, fmt.Errorf("federation: KeyCache scheme %q: want https or http", opts.Scheme)
	}
	if opts.RefetchInterval <= 0 {
		opts.RefetchInterval = time.Minute
	}
	if opts.FailedRefetchInterval <= 0 {
		opts.FailedRefetchInterval = 5 * time.Second
	}
	opts.FailedRefetchInterval = min(opts.FailedRefetchInterval, opts.RefetchInterval)
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = 24 * time.Hour
	}
	if opts.MaxServers <= 0 {
		opts.MaxServers = 10_000
	}
	if opts.MaxConcurrentFetches <= 0 {
		opts.MaxConcurrentFetches = 32
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = 15 * time.Second
	}
	if opts.MaxDocumentSize <= 0 {
		opts.MaxDocumentSize = 64 << 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &KeyCache{
		opts:    opts,
		sem:     make(chan struct{}, opts.MaxConcurrentFetches),
		servers: make(map[string]*serverKeys),
	}, nil
}

// PublicKey implements KeyLookup: the key keyID of server, valid at at.
func (c *KeyCache) PublicKey(ctx context.Context, server, keyID string, at time.Time) (ed25519.PublicKey, error) {
	server, err := NormalizeDomain(server)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownKey, err)
	}
	if pub, ok := c.lookup(server, keyID, at); ok {
		return pub, nil
	}
	c.mu.Lock()
	sk := c.servers[server]
	limited := sk != nil && c.opts.Now().Sub(sk.lastFetch) < c.interval(sk)
	var lastErr error
	if sk != nil {
		lastErr = sk.lastErr
	}
	c.mu.Unlock()
	if !limited {
		_, err := c.flight.do(ctx, server, func() (struct{}, error) {
			return struct{}{}, c.fetch(ctx, server)
		})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		lastErr = err
		if pub, ok := c.lookup(server, keyID, at); ok {
			return pub, nil
		}
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: %s %s: fetching the key document: %w", ErrUnknownKey, server, keyID, lastErr)
	}
	return nil, fmt.Errorf("%w: %s %s", ErrUnknownKey, server, keyID)
}

func (c *KeyCache) lookup(server, keyID string, at time.Time) (ed25519.PublicKey, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sk := c.servers[server]
	if sk == nil {
		return nil, false
	}
	k, ok := sk.keys[keyID]
	if !ok || !c.opts.Now().Before(k.expires) || at.After(k.valid) {
		return nil, false
	}
	return k.pub, true
}

// fetch gets, verifies and stores server's document. It runs once per
// server at a time; the attempt is recorded even when it fails, so the
// refetch limit holds for unreachable origins too.
func (c *KeyCache) fetch(ctx context.Context, server string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.FetchTimeout)
	defer cancel()
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return ctx.Err()
	}
	c.mu.Lock()
	if sk := c.servers[server]; sk != nil && c.opts.Now().Sub(sk.lastFetch) < c.interval(sk) {
		c.mu.Unlock()
		return sk.lastErr // someone fetched while we waited for the semaphore
	}
	c.mu.Unlock()

	doc, err := c.get(ctx, server)
	now := c.opts.Now()

	c.mu.Lock()
	defer c.mu.Unlock()
	sk := c.servers[server]
	if sk == nil {
		c.makeRoom()
		sk = &serverKeys{keys: map[string]cachedKey{}}
		c.servers[server] = sk
	}
	sk.lastFetch, sk.lastErr = now, err
	if err != nil {
		return err
	}
	keys := make(map[string]cachedKey, len(doc.Keys))
	for _, e := range doc.Keys {
		_, pub, _ := doc.Key(e.KeyID)
		keys[e.KeyID] = cachedKey{pub: pub, valid: e.ValidUntil, expires: minTime(e.ValidUntil, now.Add(c.opts.MaxTTL))}
	}
	sk.keys = keys
	return nil
}

// interval is the least time between sk's last fetch and the next. Called
// with c.mu held.
func (c *KeyCache) interval(sk *serverKeys) time.Duration {
	if sk.lastErr != nil {
		return c.opts.FailedRefetchInterval
	}
	return c.opts.RefetchInterval
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// makeRoom evicts, when the cache is full, the server fetched longest ago.
// Called with c.mu held.
func (c *KeyCache) makeRoom() {
	if len(c.servers) < c.opts.MaxServers {
		return
	}
	var oldest string
	var oldestAt time.Time
	for name, sk := range c.servers {
		if oldest == "" || sk.lastFetch.Before(oldestAt) {
			oldest, oldestAt = name, sk.lastFetch
		}
	}
	delete(c.servers, oldest)
}

func (c *KeyCache) get(ctx context.Context, server string) (*PublicKeyDocument, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opts.Scheme+"://"+server+KeyPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("GET %s: status %s", KeyPath, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxDocumentSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > c.opts.MaxDocumentSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadKeyDocument, c.opts.MaxDocumentSize)
	}
	return VerifyKeyDocument(data, server)
}
