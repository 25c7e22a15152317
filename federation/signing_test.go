package federation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dunglas/httpsfv"
)

// RFC 9421 appendix B.2.6: signing a request with Ed25519.
func TestRFC9421Ed25519Vector(t *testing.T) {
	block, _ := pem.Decode([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n"))
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv := parsed.(ed25519.PrivateKey)
	req := httptest.NewRequest("POST", "http://example.com/foo?param=Value&Pet=dog", strings.NewReader(`{"hello": "world"}`))
	req.Header.Set("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Length", "18")
	in, err := parseSignatureInput([]string{`sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`})
	if err != nil {
		t.Fatal(err)
	}
	base, err := signatureBase(req, in.components, in.list, RequestTargetURI)
	if err != nil {
		t.Fatal(err)
	}
	wantBase := `"date": Tue, 20 Apr 2021 02:07:55 GMT
"@method": POST
"@path": /foo
"@authority": example.com
"content-type": application/json
"content-length": 18
"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`
	if base != wantBase {
		t.Fatalf("signature base:\n%s\nwant:\n%s", base, wantBase)
	}
	const wantSig = "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
	if got := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, []byte(base))); got != wantSig {
		t.Fatalf("signature %s, want %s", got, wantSig)
	}
	sig, err := parseSignature([]string{"sig-b26=:" + wantSig + ":"}, in.label)
	if err != nil || !ed25519.Verify(priv.Public().(ed25519.PublicKey), []byte(base), sig) {
		t.Fatalf("parsing the RFC's Signature field: %v", err)
	}
}

// RFC 9530 appendix B.1 / section 2 example.
func TestContentDigestRFC9530(t *testing.T) {
	if got, want := ContentDigest([]byte(`{"hello": "world"}`)), "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"; got != want {
		t.Fatalf("ContentDigest = %s, want %s", got, want)
	}
	if err := checkDigest([]string{"sha-512=:AAAA:, sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"}, []byte(`{"hello": "world"}`)); err != nil {
		t.Fatalf("digest among several: %v", err)
	}
}

type signEnv struct {
	key   *SigningKey
	keys  StaticKeys
	now   time.Time
	v     *Verifier
	body  []byte
	url   string
	other *SigningKey
}

func newSignEnv(t *testing.T) *signEnv {
	t.Helper()
	k, _ := GenerateKey()
	other, _ := GenerateKey()
	return &signEnv{
		key:   k,
		other: other,
		keys: StaticKeys{
			"a.test": {k.ID: k.Public},
			// c.test uses a.test's key id with another key.
			"c.test": {k.ID: other.Public},
		},
		now:  time.Unix(1_700_000_000, 0),
		v:    NewVerifier(VerifierOptions{}),
		body: []byte(`{"txn":"t1","pdus":[]}`),
		url:  "https://b.test/v1/federation/send/t1?x=1&y=%2F",
	}
}

func (e *signEnv) request(t *testing.T) *http.Request {
	t.Helper()
	req, err := NewSignedRequest(bg(), "PUT", e.url, e.body, "a.test", "b.test", e.key, e.now)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func (e *signEnv) verify(req *http.Request, body []byte) (string, error) {
	return e.v.Verify(bg(), req, body, "b.test", e.keys, e.now)
}

func TestSignHeaders(t *testing.T) {
	e := newSignEnv(t)
	req := e.request(t)
	h := req.Header
	if h.Get(HeaderOrigin) != "a.test" || h.Get(HeaderDestination) != "b.test" {
		t.Fatalf("origin/destination headers: %v", h)
	}
	if h.Get(HeaderContentDigest) != ContentDigest(e.body) {
		t.Fatalf("Content-Digest = %s", h.Get(HeaderContentDigest))
	}
	wantInput := regexp.MustCompile(`^sig1=\("@method" "@target-uri" "content-digest" "parley-origin" "parley-destination"\);created=1700000000;keyid="` +
		regexp.QuoteMeta(e.key.ID) + `";alg="ed25519";nonce="[A-Za-z0-9_-]{22}"$`)
	if !wantInput.MatchString(h.Get(HeaderSignatureInput)) {
		t.Fatalf("Signature-Input = %s", h.Get(HeaderSignatureInput))
	}
	if !regexp.MustCompile(`^sig1=:[A-Za-z0-9+/]{86}==:$`).MatchString(h.Get(HeaderSignature)) {
		t.Fatalf("Signature = %s", h.Get(HeaderSignature))
	}

	// The exact signature base.
	in, err := parseSignatureInput(h.Values(HeaderSignatureInput))
	if err != nil {
		t.Fatal(err)
	}
	base, err := signatureBase(req, in.components, in.list, RequestTargetURI)
	if err != nil {
		t.Fatal(err)
	}
	params := strings.TrimPrefix(h.Get(HeaderSignatureInput), "sig1=")
	want := `"@method": PUT
"@target-uri": https://b.test/v1/federation/send/t1?x=1&y=%2F
"content-digest": ` + ContentDigest(e.body) + `
"parley-origin": a.test
"parley-destination": b.test
"@signature-params": ` + params
	if base != want {
		t.Fatalf("base:\n%s\nwant:\n%s", base, want)
	}
	sig, _ := parseSignature(h.Values(HeaderSignature), "sig1")
	if !ed25519.Verify(e.key.Public, []byte(base), sig) {
		t.Fatal("signature does not verify over the base")
	}

	// Two signatures of the same request differ in nonce.
	if e.request(t).Header.Get(HeaderSignatureInput) == h.Get(HeaderSignatureInput) {
		t.Fatal("nonce repeated")
	}
	if err := Sign(req, nil, "bad/origin", "b.test", e.key, e.now); err == nil {
		t.Fatal("invalid origin signed")
	}
	if err := Sign(req, nil, "a.test", "b.test", nil, e.now); err == nil {
		t.Fatal("signed without a key")
	}
}

func TestVerifyAcceptsGoodRequest(t *testing.T) {
	e := newSignEnv(t)
	origin, err := e.verify(e.request(t), e.body)
	if err != nil || origin != "a.test" {
		t.Fatalf("Verify = %q, %v", origin, err)
	}
	// An empty body is signed and verified too.
	e.body = nil
	if _, err := e.verify(e.request(t), nil); err != nil {
		t.Fatalf("empty body: %v", err)
	}
	// Within the skew either way.
	for _, d := range []time.Duration{-5 * time.Minute, 5 * time.Minute} {
		req := e.request(t)
		if _, err := e.v.Verify(bg(), req, nil, "b.test", e.keys, e.now.Add(d)); err != nil {
			t.Fatalf("verified %v later: %v", d, err)
		}
	}
	// Domains compare case-insensitively.
	if _, err := e.v.Verify(bg(), e.request(t), nil, "B.Test.", e.keys, e.now); err != nil {
		t.Fatalf("our domain in another case: %v", err)
	}
}

var sentinels = []error{ErrUnsigned, ErrBadSignature, ErrStale, ErrReplay, ErrWrongDestination, ErrDigestMismatch, ErrUnknownKey}

// onlyIs checks that err is want and none of the other refusals.
func onlyIs(t *testing.T, what string, err, want error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted, want %v", what, want)
		return
	}
	for _, s := range sentinels {
		if errors.Is(err, s) != (s == want) {
			t.Errorf("%s: %v; errors.Is(%v) = %v", what, err, s, errors.Is(err, s))
		}
	}
}

func TestVerifyRefusals(t *testing.T) {
	type tc struct {
		name   string
		mutate func(e *signEnv, req *http.Request) []byte // returns the body to verify
		want   error
	}
	resign := func(e *signEnv, req *http.Request, components []string, params func(*httpsfv.Params)) {
		signCustom(t, req, e.key, components, e.now, params)
	}
	cases := []tc{
		{"no signature headers", func(e *signEnv, req *http.Request) []byte {
			req.Header.Del(HeaderSignature)
			req.Header.Del(HeaderSignatureInput)
			return e.body
		}, ErrUnsigned},
		{"no Signature", func(e *signEnv, req *http.Request) []byte {
			req.Header.Del(HeaderSignature)
			return e.body
		}, ErrUnsigned},
		{"no Signature-Input", func(e *signEnv, req *http.Request) []byte {
			req.Header.Del(HeaderSignatureInput)
			return e.body
		}, ErrUnsigned},
		{"body changed", func(e *signEnv, req *http.Request) []byte { return []byte(`{"txn":"t2"}`) }, ErrDigestMismatch},
		{"body and digest changed", func(e *signEnv, req *http.Request) []byte {
			b := []byte(`{"txn":"t2"}`)
			req.Header.Set(HeaderContentDigest, ContentDigest(b))
			return b
		}, ErrBadSignature},
		{"digest removed", func(e *signEnv, req *http.Request) []byte {
			req.Header.Del(HeaderContentDigest)
			return e.body
		}, ErrDigestMismatch},
		{"digest malformed", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderContentDigest, "sha-256=abc")
			return e.body
		}, ErrDigestMismatch},
		{"digest of another algorithm only", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderContentDigest, "sha-512=:AAAA:")
			return e.body
		}, ErrDigestMismatch},
		{"method changed", func(e *signEnv, req *http.Request) []byte { req.Method = "POST"; return e.body }, ErrBadSignature},
		{"path changed", func(e *signEnv, req *http.Request) []byte { req.URL.Path = "/v1/federation/send/t2"; return e.body }, ErrBadSignature},
		{"query changed", func(e *signEnv, req *http.Request) []byte { req.URL.RawQuery = "x=2"; return e.body }, ErrBadSignature},
		{"host changed", func(e *signEnv, req *http.Request) []byte { req.Host = "b2.test"; return e.body }, ErrBadSignature},
		{"scheme changed", func(e *signEnv, req *http.Request) []byte { req.URL.Scheme = "http"; return e.body }, ErrBadSignature},
		{"destination changed", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderDestination, "d.test")
			return e.body
		}, ErrWrongDestination},
		{"destination missing", func(e *signEnv, req *http.Request) []byte {
			req.Header.Del(HeaderDestination)
			return e.body
		}, ErrWrongDestination},
		{"signed for another destination", func(e *signEnv, req *http.Request) []byte {
			if err := Sign(req, e.body, "a.test", "d.test", e.key, e.now); err != nil {
				t.Fatal(err)
			}
			return e.body
		}, ErrWrongDestination},
		{"origin claims a server without that key", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderOrigin, "x.test")
			return e.body
		}, ErrUnknownKey},
		{"origin claims a server whose key has that id", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderOrigin, "c.test")
			return e.body
		}, ErrBadSignature},
		{"origin repeated", func(e *signEnv, req *http.Request) []byte {
			req.Header.Add(HeaderOrigin, "c.test")
			return e.body
		}, ErrBadSignature},
		{"origin invalid", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderOrigin, "a.test/../x")
			return e.body
		}, ErrBadSignature},
		{"signed by another key", func(e *signEnv, req *http.Request) []byte {
			if err := Sign(req, e.body, "a.test", "b.test", NewSigningKey(e.other.Private), e.now); err != nil {
				t.Fatal(err)
			}
			return e.body
		}, ErrUnknownKey},
		{"signed by another key under a known id", func(e *signEnv, req *http.Request) []byte {
			forged := &SigningKey{ID: e.key.ID, Public: e.other.Public, Private: e.other.Private}
			if err := Sign(req, e.body, "a.test", "b.test", forged, e.now); err != nil {
				t.Fatal(err)
			}
			return e.body
		}, ErrBadSignature},
		{"signature bytes flipped", func(e *signEnv, req *http.Request) []byte {
			sig, _ := parseSignature(req.Header.Values(HeaderSignature), "sig1")
			sig[0] ^= 1
			req.Header.Set(HeaderSignature, "sig1=:"+base64.StdEncoding.EncodeToString(sig)+":")
			return e.body
		}, ErrBadSignature},
		{"signature input edited", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderSignatureInput, strings.Replace(req.Header.Get(HeaderSignatureInput), `nonce="`, `nonce="X`, 1))
			return e.body
		}, ErrBadSignature},
		{"created 6 minutes ago", func(e *signEnv, req *http.Request) []byte {
			if err := Sign(req, e.body, "a.test", "b.test", e.key, e.now.Add(-6*time.Minute)); err != nil {
				t.Fatal(err)
			}
			return e.body
		}, ErrStale},
		{"created 6 minutes ahead", func(e *signEnv, req *http.Request) []byte {
			if err := Sign(req, e.body, "a.test", "b.test", e.key, e.now.Add(6*time.Minute)); err != nil {
				t.Fatal(err)
			}
			return e.body
		}, ErrStale},
		{"expired", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents, func(p *httpsfv.Params) { p.Add("expires", e.now.Unix()-1) })
			return e.body
		}, ErrStale},
		{"component missing", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents[:4], nil)
			return e.body
		}, ErrBadSignature},
		{"component with parameters", func(e *signEnv, req *http.Request) []byte {
			v := req.Header.Get(HeaderSignatureInput)
			req.Header.Set(HeaderSignatureInput, strings.Replace(v, `"content-digest"`, `"content-digest";sf`, 1))
			return e.body
		}, ErrBadSignature},
		{"extra covered header absent", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, append(coveredComponents[:5:5], "x-missing"), nil)
			return e.body
		}, ErrBadSignature},
		{"unsupported derived component", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, append(coveredComponents[:5:5], "@status"), nil)
			return e.body
		}, ErrBadSignature},
		{"wrong alg", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents, func(p *httpsfv.Params) { p.Add("alg", "rsa-pss-sha512") })
			return e.body
		}, ErrBadSignature},
		{"no alg", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents, func(p *httpsfv.Params) { p.Del("alg") })
			return e.body
		}, ErrBadSignature},
		{"short nonce", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents, func(p *httpsfv.Params) { p.Add("nonce", "short") })
			return e.body
		}, ErrBadSignature},
		{"no nonce", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents, func(p *httpsfv.Params) { p.Del("nonce") })
			return e.body
		}, ErrBadSignature},
		{"unknown parameter", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents, func(p *httpsfv.Params) { p.Add("flavour", "x") })
			return e.body
		}, ErrBadSignature},
		{"created not an integer", func(e *signEnv, req *http.Request) []byte {
			resign(e, req, coveredComponents, func(p *httpsfv.Params) { p.Add("created", "1700000000") })
			return e.body
		}, ErrBadSignature},
		{"label mismatch", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderSignature, strings.Replace(req.Header.Get(HeaderSignature), "sig1=", "sig2=", 1))
			return e.body
		}, ErrBadSignature},
		{"Signature not a byte sequence", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderSignature, `sig1="abc"`)
			return e.body
		}, ErrBadSignature},
		{"Signature-Input not a dictionary", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderSignatureInput, `"@method"`)
			return e.body
		}, ErrBadSignature},
		{"Signature-Input huge", func(e *signEnv, req *http.Request) []byte {
			req.Header.Set(HeaderSignatureInput, req.Header.Get(HeaderSignatureInput)+`;tag="`+strings.Repeat("a", 5000)+`"`)
			return e.body
		}, ErrBadSignature},
		{"two labels, none sig1", func(e *signEnv, req *http.Request) []byte {
			v := strings.Replace(req.Header.Get(HeaderSignatureInput), "sig1=", "a=", 1)
			req.Header.Set(HeaderSignatureInput, v+", b=();created=1;keyid=\"k\"")
			return e.body
		}, ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newSignEnv(t)
			req := e.request(t)
			body := c.mutate(e, req)
			_, err := e.verify(req, body)
			onlyIs(t, c.name, err, c.want)
		})
	}
}

// signCustom signs req like Sign but with the given components and a
// chance to edit the parameters (created, keyid, alg, nonce).
func signCustom(t *testing.T, req *http.Request, key *SigningKey, components []string, now time.Time, edit func(*httpsfv.Params)) {
	t.Helper()
	params := httpsfv.NewParams()
	params.Add("created", now.Unix())
	params.Add("keyid", key.ID)
	params.Add("alg", "ed25519")
	params.Add("nonce", fmt.Sprintf("nonce-%020d", now.UnixNano()))
	if edit != nil {
		edit(params)
	}
	list := httpsfv.InnerList{Params: params}
	for _, c := range components {
		list.Items = append(list.Items, httpsfv.NewItem(c))
	}
	base, err := signatureBase(req, components, list, RequestTargetURI)
	if err != nil {
		// A component that cannot be derived: sign garbage, the verifier
		// must refuse before checking the signature.
		base = "unbuildable"
	}
	in := httpsfv.NewDictionary()
	in.Add("sig1", list)
	sd := httpsfv.NewDictionary()
	sd.Add("sig1", httpsfv.NewItem(ed25519.Sign(key.Private, []byte(base))))
	iv, err := httpsfv.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	sv, _ := httpsfv.Marshal(sd)
	req.Header.Set(HeaderSignatureInput, iv)
	req.Header.Set(HeaderSignature, sv)
}

func TestVerifyCustomSkew(t *testing.T) {
	e := newSignEnv(t)
	e.v = NewVerifier(VerifierOptions{Skew: 10 * time.Minute})
	req := e.request(t)
	if _, err := e.v.Verify(bg(), req, e.body, "b.test", e.keys, e.now.Add(9*time.Minute)); err != nil {
		t.Fatalf("9 minutes with a 10-minute skew: %v", err)
	}
	req = e.request(t)
	_, err := e.v.Verify(bg(), req, e.body, "b.test", e.keys, e.now.Add(11*time.Minute))
	onlyIs(t, "11 minutes", err, ErrStale)
}

func TestVerifyReplay(t *testing.T) {
	e := newSignEnv(t)
	req := e.request(t)
	if _, err := e.verify(req, e.body); err != nil {
		t.Fatal(err)
	}
	_, err := e.verify(req, e.body)
	onlyIs(t, "replay", err, ErrReplay)
	// Still refused later in the window; stale once the window has passed.
	_, err = e.v.Verify(bg(), req, e.body, "b.test", e.keys, e.now.Add(4*time.Minute))
	onlyIs(t, "replay 4 minutes later", err, ErrReplay)
	_, err = e.v.Verify(bg(), req, e.body, "b.test", e.keys, e.now.Add(6*time.Minute))
	onlyIs(t, "replay 6 minutes later", err, ErrStale)

	// A refused request does not use up its nonce: the same nonce with a
	// bad body, then correctly, is accepted once.
	e2 := newSignEnv(t)
	first := e2.request(t)
	signCustom(t, first, e2.key, coveredComponents, e2.now, nil)
	if _, err := e2.verify(first, []byte("tampered")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := e2.verify(first, e2.body); err != nil {
		t.Fatalf("after a refused attempt with the same nonce: %v", err)
	}

	// The same nonce from two origins is two requests.
	e3 := newSignEnv(t)
	e3.keys["d.test"] = map[string]ed25519.PublicKey{e3.key.ID: e3.key.Public}
	for _, origin := range []string{"a.test", "d.test"} {
		req, _ := http.NewRequest("PUT", e3.url, bytes.NewReader(e3.body))
		if err := Sign(req, e3.body, origin, "b.test", e3.key, e3.now); err != nil {
			t.Fatal(err)
		}
		signCustom(t, req, e3.key, coveredComponents, e3.now, func(p *httpsfv.Params) { p.Add("nonce", "same-nonce-for-both") })
		if _, err := e3.verify(req, e3.body); err != nil {
			t.Fatalf("%s: %v", origin, err)
		}
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := newReplayCache(3)
	now := time.Unix(1000, 0)
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	for i, exp := range []int{10, 20, 30} {
		if err := c.add(fmt.Sprint("k", i), at(exp), now); err != nil {
			t.Fatal(err)
		}
	}
	// Full: a new nonce evicts the one expiring first (k0, at 10s) and no
	// request expiring at or before 10s is accepted any more.
	if err := c.add("k3", at(40), now); err != nil {
		t.Fatal(err)
	}
	if c.len() != 3 {
		t.Fatalf("len %d, want 3", c.len())
	}
	if err := c.add("k0", at(10), now); !errors.Is(err, ErrStale) {
		t.Fatalf("evicted nonce replayed: %v, want ErrStale", err)
	}
	if err := c.add("k1", at(20), now); !errors.Is(err, ErrReplay) {
		t.Fatalf("remembered nonce: %v, want ErrReplay", err)
	}
	// Expired entries go first, freeing room without raising the floor.
	if err := c.add("k4", at(50), at(31)); err != nil {
		t.Fatal(err)
	}
	if c.len() != 2 {
		t.Fatalf("len %d after expiry, want 2 (k3, k4)", c.len())
	}
}

// Over real HTTP: a received request's @target-uri comes from Host and
// the request line, and the body is read as sent.
func TestSignVerifyOverHTTP(t *testing.T) {
	e := newSignEnv(t)
	type result struct {
		origin string
		err    error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := ReadBody(r, 1<<20)
		if err != nil {
			results <- result{err: err}
			return
		}
		origin, err := e.v.Verify(r.Context(), r, body, "b.test", e.keys, e.now)
		results <- result{origin, err}
	}))
	defer srv.Close()
	for _, path := range []string{"/v1/federation/send/t1", "/v1/x%2Fy/z?b=1&a=%20", "/"} {
		req, err := NewSignedRequest(bg(), "PUT", srv.URL+path, e.body, "a.test", "b.test", e.key, e.now)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if r := <-results; r.err != nil || r.origin != "a.test" {
			t.Fatalf("%s: Verify = %q, %v", path, r.origin, r.err)
		}
	}
	// The same request signed for another path fails on the server.
	req, _ := NewSignedRequest(bg(), "PUT", srv.URL+"/signed", e.body, "a.test", "b.test", e.key, e.now)
	req.URL.Path = "/sent"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := <-results; !errors.Is(r.err, ErrBadSignature) {
		t.Fatalf("path swapped in transit: %v", r.err)
	}
}

func TestRequestTargetURI(t *testing.T) {
	out, _ := http.NewRequest("GET", "HTTPS://B.Test:8448/a%2Fb?q=1", nil)
	if got := RequestTargetURI(out); got != "https://b.test:8448/a%2Fb?q=1" {
		t.Errorf("outgoing: %s", got)
	}
	out.Host = "b.test"
	if got := RequestTargetURI(out); got != "https://b.test/a%2Fb?q=1" {
		t.Errorf("outgoing with Host: %s", got)
	}
	in := httptest.NewRequest("GET", "/a%2Fb?q=1", nil)
	in.Host = "B.test"
	if got := RequestTargetURI(in); got != "http://b.test/a%2Fb?q=1" {
		t.Errorf("incoming: %s", got)
	}
	abs := httptest.NewRequest("GET", "http://b.test/x?y", nil)
	if got := RequestTargetURI(abs); got != "http://b.test/x?y" {
		t.Errorf("incoming absolute-form: %s", got)
	}
}

func TestSignatureBaseRefusesLineBreaks(t *testing.T) {
	req, _ := http.NewRequest("GET", "https://b.test/", nil)
	req.Header["Parley-Origin"] = []string{"a.test\n\"@method\": POST"}
	list := httpsfv.InnerList{Items: []httpsfv.Item{httpsfv.NewItem("parley-origin")}, Params: httpsfv.NewParams()}
	if _, err := signatureBase(req, []string{"parley-origin"}, list, RequestTargetURI); err == nil {
		t.Fatal("line break in a component accepted")
	}
}

// End to end on loopback: a.test signs a request to b.test; b.test's
// verifier fetches a.test's key from its discovered address through DNS.
func TestEndToEndSignedRequest(t *testing.T) {
	d := startDNS(t)
	clock := newClock()
	aKey, _ := GenerateKey()
	fedHTTP(t, d, "a.test", KeyHandler("a.test", aKey, time.Hour, clock.Now))

	r := newResolver(t, d, clock)
	client := &http.Client{Transport: NewTransport(&Dialer{Resolver: r, Allow: loopback}, nil)}
	keys, err := NewKeyCache(KeyCacheOptions{Client: client, Scheme: "http", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	verifier := NewVerifier(VerifierOptions{})
	fedHTTP(t, d, "b.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := ReadBody(r, 1<<20)
		if err == nil {
			var origin string
			origin, err = verifier.Verify(r.Context(), r, body, "b.test", keys, clock.Now())
			if err == nil {
				fmt.Fprintf(w, "hello %s, got %s", origin, body)
				return
			}
		}
		http.Error(w, err.Error(), http.StatusUnauthorized)
	}))

	send := func(key *SigningKey, origin string) (int, string) {
		t.Helper()
		req, err := NewSignedRequest(bg(), "PUT", "http://b.test/v1/federation/send/1", []byte("payload"), origin, "b.test", key, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := send(aKey, "a.test"); code != 200 || body != "hello a.test, got payload" {
		t.Fatalf("signed request: %d %s", code, body)
	}
	forger, _ := GenerateKey()
	forged := &SigningKey{ID: aKey.ID, Public: forger.Public, Private: forger.Private}
	if code, body := send(forged, "a.test"); code != http.StatusUnauthorized || !strings.Contains(body, "bad request signature") {
		t.Fatalf("forged request: %d %s", code, body)
	}
	if code, body := send(forger, "a.test"); code != http.StatusUnauthorized || !strings.Contains(body, "unknown signing key") {
		t.Fatalf("request with an unknown key: %d %s", code, body)
	}
}
