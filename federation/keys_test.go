package federation

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeyID(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^ed25519:[A-Za-z0-9_-]{8}$`).MatchString(k.ID) {
		t.Fatalf("key id %q", k.ID)
	}
	if KeyID(k.Public) != k.ID || !validKeyID(k.ID) {
		t.Fatal("key id not derived from the public key")
	}
	// Pinned: the id of the all-zero public key.
	if got := KeyID(make(ed25519.PublicKey, 32)); got != "ed25519:Zmh6rfhi" {
		t.Fatalf("KeyID(zero key) = %q", got)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	k1, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, KeyFileName)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("key file is not one PKCS#8 PEM block:\n%s", data)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil || !parsed.(ed25519.PrivateKey).Equal(k1.Private) {
		t.Fatalf("key file does not hold the key: %v", err)
	}
	k2, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID != k1.ID || !k2.Private.Equal(k1.Private) {
		t.Fatal("second start made a new key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data directory holds %d files, want only the key (no temporary files left)", len(entries))
	}
}

func TestLoadOrCreateKeyConcurrentFirstStart(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateKey(dir)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent first starts got different keys: %v", ids)
		}
	}
}

func TestLoadOrCreateKeyRefusesBadFiles(t *testing.T) {
	write := func(t *testing.T, data []byte, mode os.FileMode) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, KeyFileName), data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, KeyFileName), mode); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	k, _ := GenerateKey()
	der, _ := x509.MarshalPKCS8PrivateKey(k.Private)
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)

	cases := map[string]struct {
		data []byte
		mode os.FileMode
		want string
	}{
		"garbage":     {[]byte("not a key"), 0o600, "no PKCS#8"},
		"wrong block": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600, "no PKCS#8"},
		"bad DER":     {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600, "key file"},
		"ECDSA key":   {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), 0o600, "not an Ed25519"},
	}
	if runtime.GOOS != "windows" {
		cases["world readable"] = struct {
			data []byte
			mode os.FileMode
			want string
		}{good, 0o644, "accessible to others"}
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := write(t, c.data, c.mode)
			_, err := LoadOrCreateKey(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadOrCreateKey = %v, want an error containing %q", err, c.want)
			}
			after, _ := os.ReadFile(filepath.Join(dir, KeyFileName))
			if !bytes.Equal(after, c.data) {
				t.Fatal("a bad key file was overwritten")
			}
		})
	}
}

func TestSigningKeyNeverPrintsPrivateKey(t *testing.T) {
	k, _ := GenerateKey()
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("started", "key", k)
	out := fmt.Sprintf("%v %+v %s %#v", k, k, k, k) + buf.String()
	for _, secret := range []string{
		base64.StdEncoding.EncodeToString(k.Private), base64.RawURLEncoding.EncodeToString(k.Private.Seed()),
		fmt.Sprint([]byte(k.Private)), fmt.Sprintf("%x", k.Private.Seed()[:8]),
	} {
		if strings.Contains(out, secret) {
			t.Fatalf("private key printed: %s", out)
		}
	}
	if !strings.Contains(buf.String(), k.ID) {
		t.Fatalf("log lacks the key id: %s", buf.String())
	}
}

func TestCanonicalJSON(t *testing.T) {
	in := `{ "b": 1, "a": [true, null, "<&>\u00e9\n"], "c": {"z": 1.50, "y": -0, "x": {}} }`
	want := `{"a":[true,null,"<&>é\n"],"b":1,"c":{"x":{},"y":-0,"z":1.50}}`
	got, err := CanonicalJSON([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("CanonicalJSON = %s, %v\nwant %s", got, err, want)
	}
	for _, bad := range []string{`{"a":1} {}`, `{"a":`, ``, strings.Repeat("[", 100) + strings.Repeat("]", 100)} {
		if _, err := CanonicalJSON([]byte(bad)); err == nil {
			t.Errorf("CanonicalJSON(%q) succeeded", bad)
		}
	}
}

func TestKeyDocument(t *testing.T) {
	k, _ := GenerateKey()
	old, _ := GenerateKey()
	until := time.Date(2030, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	oldEntry := PublicKeyEntry{KeyID: old.ID, PublicKey: base64.StdEncoding.EncodeToString(old.Public), ValidUntil: until.Add(-time.Hour)}
	data, err := BuildKeyDocument("A.Test", k, until, oldEntry)
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := CanonicalJSON(data)
	if !bytes.Equal(canon, data) {
		t.Errorf("document is not canonical JSON:\n%s", data)
	}
	if !strings.Contains(string(data), `"valid_until":"2030-01-02T02:04:05Z"`) {
		t.Errorf("valid_until is not RFC 3339 UTC seconds: %s", data)
	}
	doc, err := VerifyKeyDocument(data, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if doc.Server != "a.test" || len(doc.Keys) != 2 || doc.Signature.KeyID != k.ID {
		t.Fatalf("doc = %+v", doc)
	}
	e, pub, ok := doc.Key(k.ID)
	if !ok || !pub.Equal(k.Public) || !e.ValidUntil.Equal(until.Truncate(time.Second)) {
		t.Fatalf("Key(%s) = %+v, %v", k.ID, e, ok)
	}
	if _, pub, ok := doc.Key(old.ID); !ok || !pub.Equal(old.Public) {
		t.Fatal("older key missing")
	}

	// Reformatting (whitespace, member order) keeps the signature valid.
	var generic map[string]any
	_ = json.Unmarshal(data, &generic)
	pretty, _ := json.MarshalIndent(generic, "", "  ")
	if _, err := VerifyKeyDocument(pretty, "a.test"); err != nil {
		t.Errorf("reformatted document: %v", err)
	}

	// A member the receiver does not know is covered by the signature.
	withExtra := signDoc(t, k, map[string]any{"server": "a.test", "future": map[string]any{"x": 1},
		"keys": []any{map[string]any{"key_id": k.ID, "public_key": base64.StdEncoding.EncodeToString(k.Public), "valid_until": "2030-01-01T00:00:00Z"}}})
	if _, err := VerifyKeyDocument(withExtra, "a.test"); err != nil {
		t.Errorf("document with an unknown member: %v", err)
	}

	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	other, _ := GenerateKey()
	bad := map[string][]byte{
		"wrong server":  data, // checked against b.test below
		"added member":  mutate(func(m map[string]any) { m["extra"] = true }),
		"changed until": mutate(func(m map[string]any) { m["keys"].([]any)[0].(map[string]any)["valid_until"] = "2099-01-01T00:00:00Z" }),
		"swapped key": mutate(func(m map[string]any) {
			m["keys"].([]any)[1].(map[string]any)["public_key"] = base64.StdEncoding.EncodeToString(other.Public)
		}),
		"unlisted signer": mutate(func(m map[string]any) { m["signature"].(map[string]any)["key_id"] = other.ID }),
		"short signature": mutate(func(m map[string]any) { m["signature"].(map[string]any)["value"] = "AAAA" }),
		"bad public key":  mutate(func(m map[string]any) { m["keys"].([]any)[1].(map[string]any)["public_key"] = "!!" }),
		"bad key id":      mutate(func(m map[string]any) { m["keys"].([]any)[1].(map[string]any)["key_id"] = "rsa:x" }),
		"no keys":         mutate(func(m map[string]any) { m["keys"] = []any{} }),
		"not JSON":        []byte("<html>"),
		"resigned for other server": signDoc(t, k, map[string]any{"server": "evil.test",
			"keys": []any{map[string]any{"key_id": k.ID, "public_key": base64.StdEncoding.EncodeToString(k.Public), "valid_until": "2030-01-01T00:00:00Z"}}}),
		"signed by an unlisted key": signDoc(t, other, map[string]any{"server": "a.test",
			"keys": []any{map[string]any{"key_id": k.ID, "public_key": base64.StdEncoding.EncodeToString(k.Public), "valid_until": "2030-01-01T00:00:00Z"}}}),
		"repeated key id": signDoc(t, k, map[string]any{"server": "a.test", "keys": []any{
			map[string]any{"key_id": k.ID, "public_key": base64.StdEncoding.EncodeToString(k.Public), "valid_until": "2030-01-01T00:00:00Z"},
			map[string]any{"key_id": k.ID, "public_key": base64.StdEncoding.EncodeToString(other.Public), "valid_until": "2030-01-01T00:00:00Z"}}}),
	}
	for name, doc := range bad {
		server := "a.test"
		if name == "wrong server" {
			server = "b.test"
		}
		if _, err := VerifyKeyDocument(doc, server); !errors.Is(err, ErrBadKeyDocument) {
			t.Errorf("%s: VerifyKeyDocument = %v, want ErrBadKeyDocument", name, err)
		}
	}
}

// signDoc signs an arbitrary document the way BuildKeyDocument does,
// naming signer's key id.
func signDoc(t *testing.T, signer *SigningKey, doc map[string]any) []byte {
	t.Helper()
	raw, _ := json.Marshal(doc)
	canon, err := CanonicalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	doc["signature"] = map[string]any{"key_id": signer.ID, "value": base64.StdEncoding.EncodeToString(ed25519.Sign(signer.Private, canon))}
	out, _ := json.Marshal(doc)
	return out
}

func TestKeyHandler(t *testing.T) {
	k, _ := GenerateKey()
	clock := newClock()
	srv := httptest.NewServer(KeyHandler("a.test", k, time.Hour, clock.Now))
	defer srv.Close()
	resp, err := http.Get(srv.URL + KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	doc, err := VerifyKeyDocument(buf.Bytes(), "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if e, _, _ := doc.Key(k.ID); !e.ValidUntil.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("valid_until = %v", e.ValidUntil)
	}
	resp, err = http.Post(srv.URL+KeyPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}
}

// keyOrigin is a homeserver's key endpoint on loopback, discoverable
// through the test DNS server, whose key and document can be swapped.
type keyOrigin struct {
	mu     sync.Mutex
	key    *SigningKey
	server string // the server the document claims to be
	status int
	gate   chan struct{}
	hits   atomic.Int64
	clock  *fakeClock
}

func (o *keyOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.hits.Add(1)
	o.mu.Lock()
	key, server, status, gate := o.key, o.server, o.status, o.gate
	o.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if r.URL.Path != KeyPath {
		http.NotFound(w, r)
		return
	}
	if status != 0 {
		http.Error(w, "broken", status)
		return
	}
	KeyHandler(server, key, 10*time.Minute, o.clock.Now).ServeHTTP(w, r)
}

type keyEnv struct {
	dns    *testDNS
	clock  *fakeClock
	origin *keyOrigin
	cache  *KeyCache
}

func newKeyEnv(t *testing.T, tweak ...func(*KeyCacheOptions)) *keyEnv {
	t.Helper()
	d := startDNS(t)
	clock := newClock()
	k, _ := GenerateKey()
	o := &keyOrigin{key: k, server: "a.test", clock: clock}
	fedHTTP(t, d, "a.test", o)
	r := newResolver(t, d, clock)
	opts := KeyCacheOptions{
		Client: &http.Client{Transport: NewTransport(&Dialer{Resolver: r, Allow: loopback}, nil)},
		Scheme: "http",
		Now:    clock.Now,
	}
	for _, f := range tweak {
		f(&opts)
	}
	c, err := NewKeyCache(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &keyEnv{dns: d, clock: clock, origin: o, cache: c}
}

func (e *keyEnv) key() *SigningKey {
	e.origin.mu.Lock()
	defer e.origin.mu.Unlock()
	return e.origin.key
}

func (e *keyEnv) lookup(keyID string) (ed25519.PublicKey, error) {
	return e.cache.PublicKey(bg(), "a.test", keyID, e.clock.Now())
}

func TestKeyCacheFetchesAndCaches(t *testing.T) {
	e := newKeyEnv(t)
	k := e.key()
	for range 3 {
		pub, err := e.lookup(k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !pub.Equal(k.Public) {
			t.Fatal("wrong key")
		}
	}
	if n := e.origin.hits.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	// The document says valid for 10 minutes: a lookup after that fetches again.
	e.clock.Advance(10*time.Minute + time.Second)
	if _, err := e.lookup(k.ID); err != nil {
		t.Fatal(err)
	}
	if n := e.origin.hits.Load(); n != 2 {
		t.Fatalf("%d fetches after valid_until, want 2", n)
	}
	// A key is not valid for a time after its valid_until.
	if _, err := e.cache.PublicKey(bg(), "a.test", k.ID, e.clock.Now().Add(11*time.Minute)); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("lookup past valid_until: %v", err)
	}
}

func TestKeyCacheMaxTTL(t *testing.T) {
	e := newKeyEnv(t, func(o *KeyCacheOptions) { o.MaxTTL = 2 * time.Minute })
	k := e.key()
	for _, step := range []time.Duration{0, 119 * time.Second, 2 * time.Second} {
		e.clock.Advance(step)
		if _, err := e.lookup(k.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.origin.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2 (MaxTTL 2m caps valid_until 10m)", n)
	}
}

func TestKeyCacheUnknownKeyRefetchIsRateLimited(t *testing.T) {
	e := newKeyEnv(t)
	k := e.key()
	if _, err := e.lookup(k.ID); err != nil {
		t.Fatal(err)
	}
	// A flood of bogus key ids right after a fetch: no refetch at all.
	for i := range 100 {
		if _, err := e.lookup(fmt.Sprintf("ed25519:bogus%03d", i)); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("bogus key: %v", err)
		}
	}
	if n := e.origin.hits.Load(); n != 1 {
		t.Fatalf("%d fetches after a flood of bogus key ids, want 1", n)
	}
	// A minute later one unknown key id refetches, once.
	e.clock.Advance(61 * time.Second)
	for i := range 100 {
		_, _ = e.lookup(fmt.Sprintf("ed25519:bogus%03d", i))
	}
	if n := e.origin.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// The known key keeps working from the cache meanwhile.
	if _, err := e.lookup(k.ID); err != nil {
		t.Fatal(err)
	}

	// Key rotation: the origin's new key is found on the next allowed fetch.
	newKey, _ := GenerateKey()
	e.origin.mu.Lock()
	e.origin.key = newKey
	e.origin.mu.Unlock()
	if _, err := e.lookup(newKey.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new key within the refetch interval: %v", err)
	}
	e.clock.Advance(61 * time.Second)
	pub, err := e.lookup(newKey.ID)
	if err != nil || !pub.Equal(newKey.Public) {
		t.Fatalf("rotated key: %v", err)
	}
	if n := e.origin.hits.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
}

func TestKeyCacheRefusesBadDocuments(t *testing.T) {
	e := newKeyEnv(t)
	k := e.key()
	e.origin.mu.Lock()
	e.origin.server = "evil.test" // a valid document, for another server
	e.origin.mu.Unlock()
	_, err := e.lookup(k.ID)
	if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrBadKeyDocument) {
		t.Fatalf("document for another server: %v", err)
	}

	e.clock.Advance(time.Minute)
	e.origin.mu.Lock()
	e.origin.server, e.origin.status = "a.test", http.StatusInternalServerError
	e.origin.mu.Unlock()
	if _, err := e.lookup(k.ID); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "500") {
		t.Fatalf("origin failing: %v", err)
	}
	// A failing origin is not asked again within the interval either.
	for range 10 {
		if _, err := e.lookup(k.ID); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "500") {
			t.Fatalf("origin failing, rate limited: %v", err)
		}
	}
	if n := e.origin.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	if _, err := e.cache.PublicKey(bg(), "bad/host", k.ID, e.clock.Now()); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("invalid server name: %v", err)
	}
	if _, err := NewKeyCache(KeyCacheOptions{}); err == nil {
		t.Fatal("KeyCache without client accepted")
	}
	if _, err := NewKeyCache(KeyCacheOptions{Client: http.DefaultClient, Scheme: "ftp"}); err == nil {
		t.Fatal("scheme ftp accepted")
	}
}

func TestKeyCacheSingleFetchForConcurrentLookups(t *testing.T) {
	e := newKeyEnv(t)
	k := e.key()
	gate := make(chan struct{})
	e.origin.mu.Lock()
	e.origin.gate = gate
	e.origin.mu.Unlock()
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() { _, err := e.lookup(k.ID); errs <- err }()
	}
	waitFor(t, "lookups to share the fetch", func() bool { return e.cache.flight.joined() == n-1 })
	close(gate)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := e.origin.hits.Load(); got != 1 {
		t.Fatalf("%d fetches for %d concurrent lookups", got, n)
	}
	// A caller that gives up does not spoil the fetch for others.
	ctx, cancel := context.WithCancel(bg())
	cancel()
	if _, err := e.cache.PublicKey(ctx, "b.test", "ed25519:x", e.clock.Now()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled lookup: %v", err)
	}
}

func TestKeyCacheBounded(t *testing.T) {
	d := startDNS(t)
	clock := newClock()
	keys := map[string]*SigningKey{}
	for _, dom := range []string{"s1.test", "s2.test", "s3.test"} {
		k, _ := GenerateKey()
		keys[dom] = k
		fedHTTP(t, d, dom, KeyHandler(dom, k, time.Hour, clock.Now))
	}
	r := newResolver(t, d, clock)
	c, err := NewKeyCache(KeyCacheOptions{
		Client:     &http.Client{Transport: NewTransport(&Dialer{Resolver: r, Allow: loopback}, nil)},
		Scheme:     "http",
		Now:        clock.Now,
		MaxServers: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dom := range []string{"s1.test", "s2.test", "s3.test"} {
		clock.Advance(time.Second)
		if _, err := c.PublicKey(bg(), dom, keys[dom].ID, clock.Now()); err != nil {
			t.Fatalf("%s: %v", dom, err)
		}
	}
	c.mu.Lock()
	_, has1 := c.servers["s1.test"]
	n := len(c.servers)
	c.mu.Unlock()
	if n != 2 || has1 {
		t.Fatalf("cache holds %d servers (s1 present: %v), want 2 without the oldest", n, has1)
	}
}

// testCA issues certificates for test domains.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Parley test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// fedHTTPS is fedHTTP over TLS with a certificate for names.
func fedHTTPS(t *testing.T, d *testDNS, ca *testCA, domain string, h http.Handler, names ...string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, names...)}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	d.add(
		fmt.Sprintf("_parley._tcp.%s. 300 IN SRV 10 1 %d srv.%s.", domain, port, domain),
		fmt.Sprintf("srv.%s. 300 IN A 127.0.0.1", domain),
	)
}

func TestKeyCacheHTTPSWithTestCA(t *testing.T) {
	d := startDNS(t)
	ca := newTestCA(t)
	clock := newClock()
	good, _ := GenerateKey()
	// The certificate is for the domain, not for the SRV target host.
	fedHTTPS(t, d, ca, "a.test", KeyHandler("a.test", good, time.Hour, clock.Now), "a.test")
	fedHTTPS(t, d, ca, "b.test", KeyHandler("b.test", good, time.Hour, clock.Now), "srv.b.test")
	r := newResolver(t, d, clock)
	c, err := NewKeyCache(KeyCacheOptions{
		Client: &http.Client{Transport: NewTransport(&Dialer{Resolver: r, Allow: loopback}, &tls.Config{RootCAs: ca.pool})},
		Now:    clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.PublicKey(bg(), "a.test", good.ID, clock.Now())
	if err != nil || !pub.Equal(good.Public) {
		t.Fatalf("HTTPS fetch: %v", err)
	}
	_, err = c.PublicKey(bg(), "b.test", good.ID, clock.Now())
	var certErr x509.HostnameError
	if !errors.Is(err, ErrUnknownKey) || !errors.As(err, &certErr) {
		t.Fatalf("certificate for the SRV host only: %v, want a hostname error", err)
	}
}
