package federation

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dunglas/httpsfv"
)

// Header fields of a signed server-to-server request.
const (
	HeaderOrigin         = "Parley-Origin"      // the signing server's domain
	HeaderDestination    = "Parley-Destination" // the receiving server's domain
	HeaderContentDigest  = "Content-Digest"     // RFC 9530, sha-256
	HeaderSignatureInput = "Signature-Input"    // RFC 9421
	HeaderSignature      = "Signature"          // RFC 9421
)

// signatureLabel names Parley's signature in Signature-Input/Signature.
const signatureLabel = "sig1"

// algorithm is the RFC 9421 algorithm name of Ed25519.
const algorithm = "ed25519"

// DefaultSkew is how far a signature's created time may lie from the
// receiver's clock, either way.
const DefaultSkew = 5 * time.Minute

// coveredComponents are the components Parley signs, in this order.
var coveredComponents = []string{"@method", "@target-uri", "content-digest", "parley-origin", "parley-destination"}

// Signature refusals. Verify wraps exactly one of them (with details
// after a colon), so the API layer maps each to a stable code with
// errors.Is.
var (
	// ErrUnsigned: no Signature or Signature-Input header.
	ErrUnsigned = errors.New("federation: request is not signed")
	// ErrBadSignature: the signature headers are malformed, do not cover
	// what Parley requires, or the signature does not verify.
	ErrBadSignature = errors.New("federation: bad request signature")
	// ErrStale: created is outside the accepted window (or expires has
	// passed); the sender should sign again with a fresh time.
	ErrStale = errors.New("federation: signature is too old or from the future")
	// ErrReplay: this origin already sent a request with this nonce.
	ErrReplay = errors.New("federation: replayed request")
	// ErrWrongDestination: the request is addressed to another server.
	ErrWrongDestination = errors.New("federation: request is addressed to another server")
	// ErrDigestMismatch: Content-Digest is missing, malformed or does not
	// match the body.
	ErrDigestMismatch = errors.New("federation: content digest does not match the body")
	// ErrUnknownKey: the origin has no such key (or it could not be
	// fetched, or has expired).
	ErrUnknownKey = errors.New("federation: unknown signing key")
)

// ContentDigest returns the RFC 9530 Content-Digest field value of body:
// sha-256=:BASE64:.
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	d := httpsfv.NewDictionary()
	d.Add("sha-256", httpsfv.NewItem(sum[:]))
	s, _ := httpsfv.Marshal(d) // cannot fail: a byte sequence item
	return s
}

// NewSignedRequest builds a request carrying body and signs it (Sign).
// url should be "https://<destination>/path" so the destination's
// endpoint is discovered by Transport.
func NewSignedRequest(ctx context.Context, method, url string, body []byte, origin, destination string, key *SigningKey, now time.Time) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if err := Sign(req, body, origin, destination, key, now); err != nil {
		return nil, err
	}
	return req, nil
}

// Sign signs an outgoing request (RFC 9421, Ed25519) as origin, for
// destination: it sets Content-Digest (over body, which must be exactly
// what req sends), Parley-Origin, Parley-Destination, Signature-Input
// (covering @method, @target-uri, content-digest, parley-origin,
// parley-destination, with created, keyid, alg and a fresh random nonce)
// and Signature. Sign does not set req.Body.
func Sign(req *http.Request, body []byte, origin, destination string, key *SigningKey, now time.Time) error {
	origin, err := NormalizeDomain(origin)
	if err != nil {
		return fmt.Errorf("federation: sign: origin: %w", err)
	}
	destination, err = NormalizeDomain(destination)
	if err != nil {
		return fmt.Errorf("federation: sign: destination: %w", err)
	}
	if key == nil || len(key.Private) != ed25519.PrivateKeySize {
		return errors.New("federation: sign: no signing key")
	}
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	req.Header.Set(HeaderContentDigest, ContentDigest(body))
	req.Header.Set(HeaderOrigin, origin)
	req.Header.Set(HeaderDestination, destination)

	params := httpsfv.NewParams()
	params.Add("created", now.Unix())
	params.Add("keyid", key.ID)
	params.Add("alg", algorithm)
	params.Add("nonce", base64.RawURLEncoding.EncodeToString(nonce[:]))
	list := httpsfv.InnerList{Params: params}
	for _, c := range coveredComponents {
		list.Items = append(list.Items, httpsfv.NewItem(c))
	}
	base, err := signatureBase(req, coveredComponents, list, RequestTargetURI)
	if err != nil {
		return fmt.Errorf("federation: sign: %w", err)
	}
	sig := ed25519.Sign(key.Private, []byte(base))

	input := httpsfv.NewDictionary()
	input.Add(signatureLabel, list)
	inputValue, err := httpsfv.Marshal(input)
	if err != nil {
		return fmt.Errorf("federation: sign: %w", err)
	}
	sigDict := httpsfv.NewDictionary()
	sigDict.Add(signatureLabel, httpsfv.NewItem(sig))
	sigValue, err := httpsfv.Marshal(sigDict)
	if err != nil {
		return fmt.Errorf("federation: sign: %w", err)
	}
	req.Header.Set(HeaderSignatureInput, inputValue)
	req.Header.Set(HeaderSignature, sigValue)
	return nil
}

// RequestTargetURI returns the @target-uri of a request: scheme, host
// (both lower case) and request target as sent. For an outgoing request
// (no RequestURI) they come from req.URL and req.Host; for a received one,
// the scheme is https when the connection is TLS, the host is the Host
// header and the target is RequestURI.
func RequestTargetURI(req *http.Request) string {
	if req.RequestURI == "" {
		host := req.Host
		if host == "" {
			host = req.URL.Host
		}
		return strings.ToLower(req.URL.Scheme) + "://" + strings.ToLower(host) + req.URL.RequestURI()
	}
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	target := req.RequestURI
	if !strings.HasPrefix(target, "/") {
		if u, err := url.Parse(target); err == nil && u.IsAbs() {
			target = u.RequestURI() // absolute-form request target
		}
	}
	return scheme + "://" + strings.ToLower(req.Host) + target
}

// signatureBase builds the RFC 9421 signature base (section 2.5): one line
// per covered component, then "@signature-params" with the serialized
// inner list. It supports @method, @target-uri, @authority, @scheme,
// @path, @query and header fields without parameters.
func signatureBase(req *http.Request, components []string, params httpsfv.InnerList, targetURI func(*http.Request) string) (string, error) {
	var b strings.Builder
	var target *url.URL
	for _, c := range components {
		var v string
		switch c {
		case "@method":
			v = req.Method
			if v == "" {
				v = http.MethodGet
			}
		case "@target-uri":
			v = targetURI(req)
		case "@authority", "@scheme", "@path", "@query":
			if target == nil {
				u, err := url.Parse(targetURI(req))
				if err != nil {
					return "", fmt.Errorf("component %s: %w", c, err)
				}
				target = u
			}
			switch c {
			case "@authority":
				v = strings.ToLower(target.Host)
			case "@scheme":
				v = strings.ToLower(target.Scheme)
			case "@path":
				v = target.EscapedPath()
				if v == "" {
					v = "/"
				}
			case "@query":
				v = "?" + target.RawQuery
			}
		default:
			if strings.HasPrefix(c, "@") {
				return "", fmt.Errorf("unsupported derived component %q", c)
			}
			values := req.Header.Values(c)
			if len(values) == 0 {
				return "", fmt.Errorf("covered header %q is missing", c)
			}
			trimmed := make([]string, len(values))
			for i, s := range values {
				trimmed[i] = strings.Trim(s, " \t")
			}
			v = strings.Join(trimmed, ", ")
		}
		if strings.ContainsAny(v, "\r\n") {
			return "", fmt.Errorf("component %s contains a line break", c)
		}
		b.WriteString(`"` + c + `": ` + v + "\n")
	}
	p, err := httpsfv.Marshal(params)
	if err != nil {
		return "", fmt.Errorf("signature parameters: %w", err)
	}
	b.WriteString(`"@signature-params": ` + p)
	return b.String(), nil
}

// signatureInput is one parsed Signature-Input member.
type signatureInput struct {
	label      string
	components []string
	list       httpsfv.InnerList // as parsed, re-serialized for the base
	created    int64
	expires    int64 // 0: none
	keyID      string
	alg        string
	nonce      string
}

// minNonceLen is the shortest nonce accepted.
const minNonceLen = 16

// maxSignatureHeader bounds Signature-Input and Signature.
const maxSignatureHeader = 4096

// parseSignatureInput parses Signature-Input field values and returns
// the member labelled sig1 (or the only member). Component identifiers
// must be lower-case strings without parameters, each at most once;
// parameters are limited to created, expires, keyid, alg, nonce and tag,
// of the right types, with created and keyid required.
func parseSignatureInput(values []string) (*signatureInput, error) {
	if n := totalLen(values); n > maxSignatureHeader {
		return nil, fmt.Errorf("Signature-Input is %d bytes", n)
	}
	dict, err := httpsfv.UnmarshalDictionary(values)
	if err != nil {
		return nil, fmt.Errorf("Signature-Input: %w", err)
	}
	label := signatureLabel
	m, ok := dict.Get(label)
	if !ok {
		names := dict.Names()
		if len(names) != 1 {
			return nil, fmt.Errorf("Signature-Input has no %q member", signatureLabel)
		}
		label = names[0]
		m, _ = dict.Get(label)
	}
	list, ok := m.(httpsfv.InnerList)
	if !ok {
		return nil, errors.New("Signature-Input member is not an inner list")
	}
	in := &signatureInput{label: label, list: list}
	if len(list.Items) == 0 || len(list.Items) > 16 {
		return nil, fmt.Errorf("Signature-Input covers %d components", len(list.Items))
	}
	for _, it := range list.Items {
		c, ok := it.Value.(string)
		if !ok || c == "" || c != strings.ToLower(c) {
			return nil, fmt.Errorf("bad component identifier %v", it.Value)
		}
		if it.Params != nil && len(it.Params.Names()) > 0 {
			return nil, fmt.Errorf("component %q has parameters, which are not supported", c)
		}
		if slices.Contains(in.components, c) {
			return nil, fmt.Errorf("component %q is covered twice", c)
		}
		in.components = append(in.components, c)
	}
	if list.Params == nil {
		return nil, errors.New("Signature-Input has no parameters")
	}
	for _, name := range list.Params.Names() {
		v, _ := list.Params.Get(name)
		switch name {
		case "created", "expires":
			n, ok := v.(int64)
			if !ok || n <= 0 {
				return nil, fmt.Errorf("parameter %s is not a positive integer", name)
			}
			if name == "created" {
				in.created = n
			} else {
				in.expires = n
			}
		case "keyid", "alg", "nonce", "tag":
			s, ok := v.(string)
			if !ok || s == "" || len(s) > 256 {
				return nil, fmt.Errorf("parameter %s is not a string", name)
			}
			switch name {
			case "keyid":
				in.keyID = s
			case "alg":
				in.alg = s
			case "nonce":
				in.nonce = s
			}
		default:
			return nil, fmt.Errorf("unknown signature parameter %q", name)
		}
	}
	switch {
	case in.created == 0:
		return nil, errors.New("signature has no created parameter")
	case in.keyID == "":
		return nil, errors.New("signature has no keyid parameter")
	}
	return in, nil
}

// parseSignature returns the signature bytes labelled label.
func parseSignature(values []string, label string) ([]byte, error) {
	if n := totalLen(values); n > maxSignatureHeader {
		return nil, fmt.Errorf("Signature is %d bytes", n)
	}
	dict, err := httpsfv.UnmarshalDictionary(values)
	if err != nil {
		return nil, fmt.Errorf("Signature: %w", err)
	}
	m, ok := dict.Get(label)
	if !ok {
		return nil, fmt.Errorf("Signature has no %q member", label)
	}
	it, ok := m.(httpsfv.Item)
	if !ok {
		return nil, errors.New("Signature member is not an item")
	}
	sig, ok := it.Value.([]byte)
	if !ok || len(sig) != ed25519.SignatureSize {
		return nil, errors.New("Signature member is not a 64-byte byte sequence")
	}
	return sig, nil
}

func totalLen(values []string) int {
	n := 0
	for _, v := range values {
		n += len(v)
	}
	return n
}

// checkDigest compares Content-Digest's sha-256 with body's.
func checkDigest(values []string, body []byte) error {
	if len(values) == 0 {
		return fmt.Errorf("%w: no Content-Digest", ErrDigestMismatch)
	}
	if totalLen(values) > maxSignatureHeader {
		return fmt.Errorf("%w: Content-Digest too long", ErrDigestMismatch)
	}
	dict, err := httpsfv.UnmarshalDictionary(values)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDigestMismatch, err)
	}
	m, ok := dict.Get("sha-256")
	if !ok {
		return fmt.Errorf("%w: no sha-256 digest", ErrDigestMismatch)
	}
	it, ok := m.(httpsfv.Item)
	if !ok {
		return fmt.Errorf("%w: sha-256 is not an item", ErrDigestMismatch)
	}
	got, ok := it.Value.([]byte)
	sum := sha256.Sum256(body)
	if !ok || subtle.ConstantTimeCompare(got, sum[:]) != 1 {
		return fmt.Errorf("%w: sha-256 differs", ErrDigestMismatch)
	}
	return nil
}

// VerifierOptions tune a Verifier. Zero values take the defaults.
type VerifierOptions struct {
	// Skew is how far created may lie from now, either way. Default 5m.
	Skew time.Duration
	// MaxNonces bounds the replay cache. Default 100,000.
	MaxNonces int
	// TargetURI derives @target-uri from a received request. Default
	// RequestTargetURI; override it behind a proxy that terminates TLS or
	// rewrites Host.
	TargetURI func(*http.Request) string
}

// Verifier checks signed server-to-server requests and remembers their
// nonces. Safe for concurrent use.
type Verifier struct {
	skew      time.Duration
	targetURI func(*http.Request) string
	replay    *replayCache
}

// NewVerifier returns a Verifier with an empty replay cache.
func NewVerifier(opts VerifierOptions) *Verifier {
	if opts.Skew <= 0 {
		opts.Skew = DefaultSkew
	}
	if opts.MaxNonces <= 0 {
		opts.MaxNonces = 100_000
	}
	if opts.TargetURI == nil {
		opts.TargetURI = RequestTargetURI
	}
	return &Verifier{skew: opts.Skew, targetURI: opts.TargetURI, replay: newReplayCache(opts.MaxNonces)}
}

// Verify checks a received request's signature and returns the origin
// server it speaks for. body is the request body as received. The checks,
// cheapest first: signature headers present and well formed (ErrUnsigned,
// ErrBadSignature); created within ±skew of now and expires not passed
// (ErrStale); Parley-Destination is ourDomain (ErrWrongDestination);
// Content-Digest matches body (ErrDigestMismatch); keyid is a key of the
// origin (ErrUnknownKey, looked up through keys); the signature verifies
// over the exact signature base (ErrBadSignature); the nonce is new for
// this origin within the window (ErrReplay). Only a request that passes
// every other check records its nonce.
func (v *Verifier) Verify(ctx context.Context, req *http.Request, body []byte, ourDomain string, keys KeyLookup, now time.Time) (origin string, err error) {
	if keys == nil {
		return "", errors.New("federation: Verify needs a KeyLookup")
	}
	inputs, sigs := req.Header.Values(HeaderSignatureInput), req.Header.Values(HeaderSignature)
	if len(inputs) == 0 || len(sigs) == 0 {
		return "", ErrUnsigned
	}
	in, err := parseSignatureInput(inputs)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	sig, err := parseSignature(sigs, in.label)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if in.alg != algorithm {
		return "", fmt.Errorf("%w: alg %q, want %q", ErrBadSignature, in.alg, algorithm)
	}
	if len(in.nonce) < minNonceLen {
		return "", fmt.Errorf("%w: no nonce of at least %d characters", ErrBadSignature, minNonceLen)
	}
	for _, c := range coveredComponents {
		if !slices.Contains(in.components, c) {
			return "", fmt.Errorf("%w: signature does not cover %q", ErrBadSignature, c)
		}
	}

	skew := int64(v.skew / time.Second)
	nowUnix := now.Unix()
	if in.created < nowUnix-skew || in.created > nowUnix+skew {
		return "", fmt.Errorf("%w: created %d, now %d, allowed skew %v", ErrStale, in.created, nowUnix, v.skew)
	}
	if in.expires != 0 && in.expires < nowUnix {
		return "", fmt.Errorf("%w: expired at %d", ErrStale, in.expires)
	}

	origin, err = singleDomain(req, HeaderOrigin)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	dest, err := singleDomain(req, HeaderDestination)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrWrongDestination, err)
	}
	ours, err := NormalizeDomain(ourDomain)
	if err != nil {
		return "", err
	}
	if dest != ours {
		return "", fmt.Errorf("%w: addressed to %q, we are %q", ErrWrongDestination, dest, ours)
	}
	if err := checkDigest(req.Header.Values(HeaderContentDigest), body); err != nil {
		return "", err
	}

	base, err := signatureBase(req, in.components, in.list, v.targetURI)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	pub, err := keys.PublicKey(ctx, origin, in.keyID, now)
	if err != nil {
		return "", err
	}
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, []byte(base), sig) {
		return "", fmt.Errorf("%w: signature by %s %s does not verify", ErrBadSignature, origin, in.keyID)
	}
	expiry := time.Unix(in.created, 0).Add(v.skew)
	if err := v.replay.add(origin+"\x00"+in.nonce, expiry, now); err != nil {
		return "", err
	}
	return origin, nil
}

// singleDomain returns the one value of a domain header, normalized.
func singleDomain(req *http.Request, name string) (string, error) {
	values := req.Header.Values(name)
	if len(values) != 1 {
		return "", fmt.Errorf("want one %s header, got %d", name, len(values))
	}
	d, err := NormalizeDomain(strings.Trim(values[0], " \t"))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

// ReadBody reads a request body of at most limit bytes, for Verify. A
// larger body is an error; the body is closed.
func ReadBody(req *http.Request, limit int64) ([]byte, error) {
	if req.Body == nil {
		return nil, nil
	}
	defer req.Body.Close()
	data, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("federation: request body larger than %d bytes", limit)
	}
	return data, nil
}

// replayCache remembers nonces until the signature they came with can no
// longer pass the time check. When full it forgets the entry expiring
// first and raises a floor: a request whose entry would expire at or
// before the floor is refused as stale, so an evicted nonce can never be
// replayed; under a flood the accepted window narrows instead of the
// cache growing or forgetting unsafely.
type replayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[string]time.Time
	queue expiryHeap
	floor time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[string]time.Time)}
}

func (c *replayCache) add(key string, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.queue.Len() > 0 && !c.queue[0].expires.After(now) {
		e := heap.Pop(&c.queue).(expiryEntry)
		delete(c.seen, e.key)
	}
	if _, ok := c.seen[key]; ok {
		return ErrReplay
	}
	if !expires.After(c.floor) || (len(c.seen) >= c.max && !expires.After(c.queue[0].expires)) {
		return fmt.Errorf("%w: replay window narrowed under load; sign again", ErrStale)
	}
	for len(c.seen) >= c.max {
		e := heap.Pop(&c.queue).(expiryEntry)
		delete(c.seen, e.key)
		c.floor = e.expires // the heap minimum: never below the floor
	}
	c.seen[key] = expires
	heap.Push(&c.queue, expiryEntry{key: key, expires: expires})
	return nil
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

type expiryEntry struct {
	key     string
	expires time.Time
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
