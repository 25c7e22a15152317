package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// benchPassword is every bench account's password. The server hashes it
// with its real argon2id cost, which is why accounts are made a dozen at
// a time and can be kept between runs (--keep).
const benchPassword = "parley-bench password"

// env is what every scenario shares: options, progress output, the
// servers started, the HTTP client, key material and the accounts.
type env struct {
	o        *options
	progress io.Writer
	tmp      string
	tag      [8]byte
	start    time.Time // origin of the send times carried in payloads
	hc       *http.Client

	binOnce sync.Once
	bin     string
	binErr  error

	started []*server

	keysOnce sync.Once
	keys     wire.KeyUpload
	keysErr  error

	cacheMu sync.Mutex
	cache   map[string]map[string]cachedDevice // server domain -> name -> device

	filler  []byte // "ciphertext" padding, random once
	dialMu  sync.Mutex
	dialers map[int]*websocket.Dialer
}

func newEnv(o *options, stderr io.Writer) (*env, error) {
	tmp, err := os.MkdirTemp("", "parley-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{o: o, progress: stderr, tmp: tmp, tag: newRunTag(), start: time.Now(),
		cache: map[string]map[string]cachedDevice{}, dialers: map[int]*websocket.Dialer{}}
	if o.quiet {
		e.progress = io.Discard
	}
	e.hc = &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			MaxIdleConns:        512,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	e.filler = make([]byte, 64<<10)
	rand.Read(e.filler)
	if o.keep != "" {
		if err := os.MkdirAll(o.keep, 0o700); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *env) close() {
	for i := len(e.started) - 1; i >= 0; i-- {
		if err := e.started[i].stop(); err != nil {
			fmt.Fprintf(e.progress, "parley-bench: stopping %s: %v\n", e.started[i].domain, err)
		}
	}
	e.hc.CloseIdleConnections()
	os.RemoveAll(e.tmp)
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// homeserverBin returns --homeserver-bin, or builds the homeserver once.
func (e *env) homeserverBin(ctx context.Context) (string, error) {
	e.binOnce.Do(func() {
		if e.o.homeserverBin != "" {
			e.bin = e.o.homeserverBin
			return
		}
		e.bin, e.binErr = buildHomeserver(ctx, e.tmp, e.progress)
	})
	return e.bin, e.binErr
}

// startServer starts a homeserver subprocess for domain; with dnsAddr it
// federates, discovering peers through that DNS server.
func (e *env) startServer(ctx context.Context, domain, dnsAddr string) (*server, error) {
	bin, err := e.homeserverBin(ctx)
	if err != nil {
		return nil, err
	}
	base := e.tmp
	if e.o.keep != "" {
		base = e.o.keep
	}
	logPath := filepath.Join(e.tmp, domain+".log")
	if e.o.serverLog != "" {
		logPath = e.o.serverLog
		if len(e.started) > 0 {
			logPath += "." + domain
		}
	}
	spec := serverSpec{bin: bin, domain: domain, dataDir: filepath.Join(base, "data-"+domain), logPath: logPath,
		dnsAddr: dnsAddr, extra: e.o.serverFlags}
	s, err := startServer(ctx, spec)
	if err != nil {
		return nil, err
	}
	e.started = append(e.started, s)
	e.logf("homeserver %s ready at %s (pid %d, data %s)", domain, s.url, s.pid, spec.dataDir)
	return s, nil
}

// target is the single homeserver of the one-server scenarios.
func (e *env) target(ctx context.Context) (*server, error) {
	if e.o.server != "" {
		return &server{url: e.o.server, pid: e.o.serverPID, domain: "(given)"}, nil
	}
	return e.startServer(ctx, "bench.test", "")
}

// pids are the servers whose CPU and memory can be read.
func pids(servers ...*server) []int {
	var out []int
	for _, s := range servers {
		if s.pid != 0 {
			out = append(out, s.pid)
		}
	}
	return out
}

// serverRSS sums the servers' resident memory (0 if unknown).
func serverRSS(servers ...*server) int64 {
	var sum int64
	for _, s := range servers {
		if s.pid != 0 {
			r, _ := procRSS(s.pid)
			sum += r
		}
	}
	return sum
}

// keyUpload is one real identity and signed prekey, made once with
// e2ee.Store and uploaded for every bench device: the server checks the
// signature but does not care that devices share keys, and one bundle
// instead of thousands keeps setup cheap. No one-time prekeys: nobody
// claims them (with --crypto=signal receivers upload their own keys).
func (e *env) keyUpload(ctx context.Context) (wire.KeyUpload, error) {
	e.keysOnce.Do(func() {
		st, err := e2ee.OpenStore(filepath.Join(e.tmp, "bench-keys.db"))
		if err != nil {
			e.keysErr = err
			return
		}
		defer st.Close()
		if err := st.CreateIdentity(ctx); err != nil {
			e.keysErr = err
			return
		}
		e.keys, e.keysErr = st.KeyUpload(ctx, true, 0)
	})
	return e.keys, e.keysErr
}

// device is one bench device: an account of its own with one device.
type device struct {
	name string
	srv  *server
	sess wire.Session
	api  *client.API
	conn *client.Conn
}

type cachedDevice struct {
	Session wire.Session `json:"session"`
	Keys    bool         `json:"keys"`
}

func (e *env) cachePath(s *server) string {
	return filepath.Join(e.o.keep, "accounts-"+s.domain+".json")
}

func (e *env) loadCache(s *server) map[string]cachedDevice {
	e.cacheMu.Lock()
	defer e.cacheMu.Unlock()
	if c := e.cache[s.domain]; c != nil {
		return c
	}
	c := map[string]cachedDevice{}
	if e.o.keep != "" {
		if b, err := os.ReadFile(e.cachePath(s)); err == nil {
			json.Unmarshal(b, &c)
		}
	}
	e.cache[s.domain] = c
	return c
}

func (e *env) saveCache(s *server) error {
	if e.o.keep == "" {
		return nil
	}
	e.cacheMu.Lock()
	b, err := json.Marshal(e.cache[s.domain])
	e.cacheMu.Unlock()
	if err != nil {
		return err
	}
	tmp := e.cachePath(s) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, e.cachePath(s))
}

// accountName names bench account i of a role ("s", "r", ...). Kept
// accounts have stable names; others carry the run tag, so that runs
// against one --server never collide.
func (e *env) accountName(role string, i int) string {
	if e.o.keep != "" {
		return fmt.Sprintf("%s%d", role, i)
	}
	return fmt.Sprintf("%s-%s-%d", role, hexTag(e.tag), i)
}

// devices returns n devices of role on s, registering those not kept from
// an earlier run (--register-concurrency at a time) and uploading keys if
// upload. Registration pays the server's real argon2id cost.
func (e *env) devices(ctx context.Context, s *server, role string, n int, upload bool) ([]*device, error) {
	cache := e.loadCache(s)
	devs := make([]*device, n)
	var todo []int
	e.cacheMu.Lock()
	for i := range devs {
		name := e.accountName(role, i)
		devs[i] = &device{name: name, srv: s}
		if c, ok := cache[name]; ok {
			devs[i].sess = c.Session
			devs[i].api = e.api(s, c.Session.AccessToken)
			if c.Keys || !upload {
				continue
			}
		}
		todo = append(todo, i)
	}
	e.cacheMu.Unlock()
	if len(todo) == 0 {
		return devs, nil
	}
	var keys wire.KeyUpload
	if upload {
		var err error
		if keys, err = e.keyUpload(ctx); err != nil {
			return nil, err
		}
	}
	e.logf("registering %d %q accounts on %s (%d at a time)", len(todo), role, s.domain, e.o.registerConc)
	began := time.Now()
	var done atomic.Int64
	err := parallel(ctx, len(todo), e.o.registerConc, func(ctx context.Context, j int) error {
		d := devs[todo[j]]
		if err := e.register(ctx, d, upload, keys); err != nil {
			return err
		}
		e.cacheMu.Lock()
		cache[d.name] = cachedDevice{Session: d.sess, Keys: upload}
		e.cacheMu.Unlock()
		if k := done.Add(1); len(todo) >= 1000 && k%int64(len(todo)/10) == 0 {
			e.logf("  %d/%d registered (%.0f/s)", k, len(todo), float64(k)/time.Since(began).Seconds())
		}
		return nil
	})
	if serr := e.saveCache(s); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	e.logf("registered %d accounts in %.1fs (%.0f/s)", len(todo), time.Since(began).Seconds(),
		float64(len(todo))/time.Since(began).Seconds())
	return devs, nil
}

// register creates d's account (or, if the name is taken by a kept
// account whose token was lost, logs in a new device) and uploads keys.
func (e *env) register(ctx context.Context, d *device, upload bool, keys wire.KeyUpload) error {
	anon := e.api(d.srv, "")
	req := wire.RegisterRequest{User: d.name, Password: benchPassword, DeviceName: "parley-bench"}
	var err error
	if d.sess.AccessToken == "" {
		err = retry(ctx, func() error {
			d.sess, err = anon.Register(ctx, req)
			if client.IsCode(err, wire.CodeUserInUse) && e.o.keep != "" {
				d.sess, err = anon.Login(ctx, req)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("register %s: %w", d.name, err)
		}
	}
	d.api = e.api(d.srv, d.sess.AccessToken)
	if upload {
		if err := retry(ctx, func() error { _, err := d.api.UploadKeys(ctx, keys); return err }); err != nil {
			return fmt.Errorf("upload keys of %s: %w", d.name, err)
		}
	}
	return nil
}

// retry runs fn up to 4 times while it fails with something transient
// (the server busy, a connection reset under load).
func retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := range 4 {
		if err = fn(); err == nil {
			return nil
		}
		var we *wire.Error
		if errors.As(err, &we) && we.Code != wire.CodeUnavailable && we.Code != wire.CodeInternal &&
			we.Code != wire.CodeRateLimited {
			return err // a refusal: retrying will not help
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(100<<attempt) * time.Millisecond):
		}
	}
	return err
}

// api returns a client for token on s, using the bench's shared HTTP
// connection pool.
func (e *env) api(s *server, token string, opts ...client.Option) *client.API {
	return client.New(s.url, token, append([]client.Option{client.WithHTTPClient(e.hc)}, opts...)...)
}

// sourceAddrs is how many loopback source addresses (127.0.0.2 and up)
// sockets are spread over: each address has its own ~28,000 ephemeral
// ports, so 19,000 sockets plus REST traffic never run out.
const sourceAddrs = 64

// dialer returns the WebSocket dialer for socket i: small buffers (the
// bench holds up to 19,000 sockets) and, when the server is on an IPv4
// loopback address, a source address of its own.
func (e *env) dialer(s *server, i int) *websocket.Dialer {
	k := i % sourceAddrs
	e.dialMu.Lock()
	defer e.dialMu.Unlock()
	key := k
	if d := e.dialers[key]; d != nil {
		return d
	}
	nd := &net.Dialer{Timeout: 30 * time.Second}
	if u, err := url.Parse(s.url); err == nil {
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.To4() != nil && ip.IsLoopback() {
			nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+k))}
		}
	}
	d := &websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   2048,
		WriteBufferSize:  2048,
	}
	e.dialers[key] = d
	return d
}

// connect opens d's socket and reads until the server's caught_up,
// acknowledging whatever was pending (left over from a kept earlier run,
// or group events): the scenario then starts from an empty inbox. It
// returns how long the authenticated connect took.
func (e *env) connect(ctx context.Context, d *device, i, events int) (time.Duration, error) {
	began := time.Now()
	api := e.api(d.srv, d.sess.AccessToken, client.WithDialer(e.dialer(d.srv, i)), client.WithEventBuffer(events))
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := api.Dial(dctx)
	if err != nil {
		return 0, fmt.Errorf("connect %s: %w", d.name, err)
	}
	var ids []int64
	for caught := false; !caught; {
		select {
		case ev, ok := <-conn.Events():
			if !ok {
				conn.Close()
				return 0, fmt.Errorf("connect %s: socket closed before caught_up: %v", d.name, conn.Err())
			}
			if ev.ID > 0 {
				ids = append(ids, ev.ID)
			}
			caught = ev.Type == wire.EventCaughtUp
		case <-dctx.Done():
			conn.Close()
			return 0, fmt.Errorf("connect %s: no caught_up: %w", d.name, dctx.Err())
		}
	}
	took := time.Since(began)
	// Over REST, which answers once the acks are committed: acks sent on
	// the socket would still be running when the measurement starts.
	if err := ackREST(ctx, d, ids); err != nil {
		conn.Close()
		return 0, err
	}
	d.conn = conn
	return took, nil
}

// connectAll connects every device, --dial-concurrency at a time.
func (e *env) connectAll(ctx context.Context, devs []*device, events int) error {
	return parallel(ctx, len(devs), e.o.dialConc, func(ctx context.Context, i int) error {
		_, err := e.connect(ctx, devs[i], i, events)
		return err
	})
}

func closeAll(devs []*device) {
	var wg sync.WaitGroup
	for _, d := range devs {
		if d.conn != nil {
			wg.Add(1)
			go func(c *client.Conn) { defer wg.Done(); c.Close() }(d.conn)
		}
	}
	wg.Wait()
}

// ackREST acknowledges ids over REST, 1000 at a time.
func ackREST(ctx context.Context, d *device, ids []int64) error {
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		if err := d.api.Ack(ctx, ids[:n]); err != nil {
			return fmt.Errorf("acknowledge pending events of %s: %w", d.name, err)
		}
		ids = ids[n:]
	}
	return nil
}

// awaitEmptyInbox polls d's inbox until the server has processed every
// acknowledgement (nothing pending), at most for max.
func awaitEmptyInbox(ctx context.Context, d *device, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		page, err := d.api.Inbox(ctx, 0, 1)
		if err != nil {
			return err
		}
		if len(page.Events) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still has events pending after %s", d.name, max)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pump reads conn's events until it is closed, calls fn for each, and
// acknowledges every inbox event as the client package's Acker does: a
// message as soon as no further event is waiting, the rest (answers,
// receipts) held up to client.LazyAckDelay to share a frame.
func pump(conn *client.Conn, fn func(ev *wire.Event)) {
	ctx := context.Background()
	acks := client.NewAcker(conn)
	events := conn.Events()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			if fn != nil {
				fn(&ev)
			}
			acks.Add(ctx, &ev) // fails only once the socket is closing
		case <-acks.Due():
			acks.Tick(ctx)
		}
	}
}

// parallel runs fn(0..n-1) on conc goroutines; the first error cancels
// the rest and is returned.
func parallel(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	return parallelWorkers(ctx, n, conc, func(ctx context.Context, _, i int) error { return fn(ctx, i) })
}

// parallelWorkers is parallel that also tells fn which worker
// (0..conc-1) runs it, for per-worker state such as histograms.
func parallelWorkers(ctx context.Context, n, conc int, fn func(ctx context.Context, w, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for w := range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, w, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// Payloads. With --crypto=none a message's ciphertext is opaque bytes the
// bench made up ("pre-encrypted"): the server cannot tell, and the run
// measures the server rather than the client's Signal crypto. The first
// payloadHeader bytes carry what the receiving side of the bench needs:
const payloadHeader = 24 // send time (ns since env.start), index, run tag

func (e *env) payload(size int, sent time.Duration, idx uint64) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b[0:], uint64(sent))
	binary.LittleEndian.PutUint64(b[8:], idx)
	copy(b[16:24], e.tag[:])
	copy(b[payloadHeader:], e.filler)
	return b
}

// parsePayload reads a payload's header; ok is false for payloads of other
// runs (or of warm-up sends, which carry another tag).
func (e *env) parsePayload(b []byte) (sent time.Duration, idx uint64, ok bool) {
	if len(b) < payloadHeader || [8]byte(b[16:24]) != e.tag {
		return 0, 0, false
	}
	return time.Duration(binary.LittleEndian.Uint64(b[0:])), binary.LittleEndian.Uint64(b[8:]), true
}

// since is the time since env.start, the clock of payload send times.
func (e *env) since() time.Duration { return time.Since(e.start) }
