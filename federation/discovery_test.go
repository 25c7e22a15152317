package federation

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestResolveSRVByPriority(t *testing.T) {
	d := startDNS(t)
	d.add(
		"_parley._tcp.a.test. 300 IN SRV 20 0 9000 backup.a.test.",
		"_parley._tcp.a.test. 300 IN SRV 10 5 8448 Fed1.A.test.",
		"_parley._tcp.a.test. 300 IN SRV 30 0 7000 last.a.test.",
	)
	r := newResolver(t, d, newClock())
	got, err := r.Resolve(bg(), "A.Test.")
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{"fed1.a.test", 8448}, {"backup.a.test", 9000}, {"last.a.test", 7000}}
	if !slices.Equal(got, want) {
		t.Fatalf("Resolve = %v, want %v", got, want)
	}
	if got[0].String() != "fed1.a.test:8448" {
		t.Errorf("Target.String = %q", got[0].String())
	}
}

func TestResolveWeightedOrder(t *testing.T) {
	d := startDNS(t)
	d.add(
		"_parley._tcp.w.test. 300 IN SRV 10 1 1001 light.w.test.",
		"_parley._tcp.w.test. 300 IN SRV 10 3 1003 heavy.w.test.",
		"_parley._tcp.z.test. 300 IN SRV 10 0 1000 zero.z.test.",
		"_parley._tcp.z.test. 300 IN SRV 10 100 1100 big.z.test.",
	)
	r := newResolver(t, d, newClock())
	const runs = 4000
	first := map[string]int{}
	for range runs {
		got, err := r.Resolve(bg(), "w.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("got %v", got)
		}
		first[got[0].Host]++
		got, err = r.Resolve(bg(), "z.test")
		if err != nil {
			t.Fatal(err)
		}
		first[got[0].Host]++
	}
	// In proportion to weight: P(heavy first) = 3/4; weight 0 goes last.
	if share := float64(first["heavy.w.test"]) / runs; share < 0.72 || share > 0.78 {
		t.Errorf("weight 3 of 4 came first %.3f of the time", share)
	}
	if first["zero.z.test"] != 0 {
		t.Errorf("weight 0 came first %d times", first["zero.z.test"])
	}
	if n := d.count("_parley._tcp.w.test", dns.TypeSRV); n != 1 {
		t.Errorf("%d SRV queries, want 1 (the order is randomized per call, the answer cached)", n)
	}
}

func TestOrderAllZeroWeights(t *testing.T) {
	r := &Resolver{opts: ResolverOptions{Rand: rand.New(rand.NewPCG(3, 4))}}
	recs := []srvRecord{{"a", 1, 5, 0}, {"b", 2, 5, 0}, {"c", 3, 1, 0}, {"d", 4, 5, 1}}
	seen := map[string]bool{}
	for range 200 {
		got := r.order(recs)
		if len(got) != 4 || got[0].Host != "c" || got[1].Host != "d" {
			t.Fatalf("order = %v", got)
		}
		seen[got[2].Host] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Errorf("equal zero weights should both come first sometimes: %v", seen)
	}
}

func TestResolveFallback(t *testing.T) {
	d := startDNS(t)
	d.add(
		"nodata.test. 300 IN A 192.0.2.1",
		"_parley._tcp.nodata.test. 300 IN TXT \"not an srv\"",
	)
	r := newResolver(t, d, newClock())
	for _, domain := range []string{"nxdomain.test", "nodata.test"} {
		got, err := r.Resolve(bg(), domain)
		if err != nil {
			t.Fatalf("%s: %v", domain, err)
		}
		if want := []Target{{domain, 8448}}; !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", domain, got, want)
		}
	}
}

func TestResolveWithoutLookup(t *testing.T) {
	d := startDNS(t)
	r := newResolver(t, d, newClock())
	cases := map[string]Target{
		"b.example:9000":   {"b.example", 9000},
		"B.Example.:9000":  {"b.example", 9000},
		"127.0.0.1":        {"127.0.0.1", 8448},
		"127.0.0.1:9":      {"127.0.0.1", 9},
		"[::1]:9000":       {"::1", 9000},
		"[::1]":            {"::1", 8448},
		"::1":              {"::1", 8448},
		"[::ffff:1.2.3.4]": {"1.2.3.4", 8448},
	}
	for in, want := range cases {
		got, err := r.Resolve(bg(), in)
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: got %v, want %v", in, got, want)
		}
	}
	if n := d.total(); n != 0 {
		t.Errorf("%d DNS queries for explicit ports and IP literals, want 0", n)
	}
}

func TestResolveInvalidDomain(t *testing.T) {
	d := startDNS(t)
	r := newResolver(t, d, newClock())
	for _, in := range []string{
		"", "a..test", "-a.test", "a-.test", "a_b.test", "a.test:0", "a.test:65536", "a.test:x",
		"a.test:", "a.test:+80", "a.test:080", "[::1", "[1.2.3.4]", "[::1]x", "fe80::1%eth0",
		"a.test/path", "a test", "a.test?x", "user@a.test", string(make([]byte, 400)),
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.test",
	} {
		if _, err := r.Resolve(bg(), in); !errors.Is(err, ErrInvalidDomain) {
			t.Errorf("Resolve(%q) = %v, want ErrInvalidDomain", in, err)
		}
	}
	if n := d.total(); n != 0 {
		t.Errorf("%d queries for invalid domains", n)
	}
}

func TestResolveNoService(t *testing.T) {
	d := startDNS(t)
	d.add("_parley._tcp.off.test. 300 IN SRV 0 0 0 .")
	r := newResolver(t, d, newClock())
	if _, err := r.Resolve(bg(), "off.test"); !errors.Is(err, ErrNoService) {
		t.Fatalf("Resolve = %v, want ErrNoService", err)
	}
}

func TestResolveCNAME(t *testing.T) {
	d := startDNS(t)
	d.add(
		"_parley._tcp.alias.test. 300 IN CNAME _parley._tcp.real.test.",
		"_parley._tcp.real.test. 300 IN SRV 1 1 4443 host.real.test.",
	)
	r := newResolver(t, d, newClock())
	got, err := r.Resolve(bg(), "alias.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Target{{"host.real.test", 4443}}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestResolveErrorsAreDistinguishable(t *testing.T) {
	d := startDNS(t)
	d.add("noaddr.test. 300 IN TXT \"x\"")
	d.set(func(d *testDNS) {
		d.rcode["_parley._tcp.broken.test."] = dns.RcodeServerFailure
		d.rcode["_parley._tcp.refused.test."] = dns.RcodeRefused
		d.silent["_parley._tcp.slow.test."] = true
	})
	r := newResolver(t, d, newClock(), func(o *ResolverOptions) { o.Timeout = 100 * time.Millisecond })
	sentinels := []error{ErrNXDomain, ErrServFail, ErrDNSTimeout, ErrNoAddress}
	check := func(what string, err error, want error) {
		t.Helper()
		var de *DNSError
		if !errors.As(err, &de) {
			t.Fatalf("%s: %v is not a *DNSError", what, err)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) != (s == want) {
				t.Errorf("%s: errors.Is(%v, %v) = %v", what, err, s, !(s == want))
			}
		}
		if de.Timeout() != (want == ErrDNSTimeout) {
			t.Errorf("%s: Timeout() = %v", what, de.Timeout())
		}
	}
	_, err := r.Resolve(bg(), "broken.test")
	check("SERVFAIL", err, ErrServFail)
	var de *DNSError
	if errors.As(err, &de); de.Rcode != dns.RcodeServerFailure || de.Server != d.addr || de.Type != "SRV" {
		t.Errorf("DNSError = %+v", de)
	}
	_, err = r.Resolve(bg(), "refused.test")
	check("REFUSED", err, ErrServFail)

	start := time.Now()
	_, err = r.Resolve(bg(), "slow.test")
	check("timeout", err, ErrDNSTimeout)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("timeout took %v", el)
	}

	_, err = r.LookupHost(bg(), "missing.test")
	check("NXDOMAIN", err, ErrNXDomain)
	_, err = r.LookupHost(bg(), "noaddr.test")
	check("no address", err, ErrNoAddress)
}

func TestResolveCacheTTL(t *testing.T) {
	d := startDNS(t)
	d.add(
		"_parley._tcp.mid.test. 120 IN SRV 1 1 1 h.mid.test.",
		"_parley._tcp.short.test. 1 IN SRV 1 1 1 h.short.test.",
		"_parley._tcp.long.test. 86400 IN SRV 1 1 1 h.long.test.",
	)
	clock := newClock()
	r := newResolver(t, d, clock, func(o *ResolverOptions) { o.MinTTL, o.MaxTTL = 30*time.Second, time.Hour })
	resolveAll := func() {
		t.Helper()
		for _, dom := range []string{"mid.test", "short.test", "long.test"} {
			if _, err := r.Resolve(bg(), dom); err != nil {
				t.Fatal(err)
			}
		}
	}
	counts := func() [3]int {
		return [3]int{
			d.count("_parley._tcp.mid.test", dns.TypeSRV),
			d.count("_parley._tcp.short.test", dns.TypeSRV),
			d.count("_parley._tcp.long.test", dns.TypeSRV),
		}
	}
	// TTLs: mid 120s; short 1s, raised to MinTTL 30s; long 86400s, capped
	// to MaxTTL 1h. Times are since the first lookup.
	steps := []struct {
		at   time.Duration
		want [3]int
	}{
		{0, [3]int{1, 1, 1}},
		{0, [3]int{1, 1, 1}},                 // all cached
		{29 * time.Second, [3]int{1, 1, 1}},  // short lives 30s, not 1s
		{31 * time.Second, [3]int{1, 2, 1}},  // short expired; next at 61s
		{60 * time.Second, [3]int{1, 2, 1}},  //
		{119 * time.Second, [3]int{1, 3, 1}}, // mid still cached; short again
		{121 * time.Second, [3]int{2, 3, 1}}, // mid expired
		{time.Hour - time.Second, [3]int{3, 4, 1}},
		{time.Hour + time.Second, [3]int{3, 4, 2}}, // long capped at 1h
	}
	start := clock.Now()
	for i, s := range steps {
		clock.Advance(start.Add(s.at).Sub(clock.Now()))
		resolveAll()
		if got := counts(); got != s.want {
			t.Fatalf("step %d: queries (mid, short, long) = %v, want %v", i, got, s.want)
		}
	}
}

func TestResolveNegativeCache(t *testing.T) {
	d := startDNS(t)
	d.set(func(d *testDNS) { d.soaTTL, d.soaMin = 3600, 120 })
	clock := newClock()
	r := newResolver(t, d, clock)
	name := "_parley._tcp.gone.test"
	resolve := func() {
		t.Helper()
		if _, err := r.Resolve(bg(), "gone.test"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.LookupHost(bg(), "gone.test"); !errors.Is(err, ErrNXDomain) {
			t.Fatalf("LookupHost = %v, want NXDOMAIN", err)
		}
	}
	resolve()
	clock.Advance(119 * time.Second)
	resolve()
	if n := d.count(name, dns.TypeSRV); n != 1 {
		t.Fatalf("%d queries within the SOA minimum, want 1", n)
	}
	if n := d.count("gone.test", dns.TypeA); n != 1 {
		t.Fatalf("%d A queries within the SOA minimum, want 1", n)
	}
	clock.Advance(2 * time.Second)
	resolve()
	if n := d.count(name, dns.TypeSRV); n != 2 {
		t.Fatalf("%d queries after the SOA minimum, want 2", n)
	}

	// Without a SOA the configured NegativeTTL applies.
	d.set(func(d *testDNS) { d.noSOA = true })
	r2 := newResolver(t, d, clock, func(o *ResolverOptions) { o.NegativeTTL = 10 * time.Minute })
	for range 2 {
		if _, err := r2.Resolve(bg(), "gone2.test"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(9 * time.Minute)
	}
	if n := d.count("_parley._tcp.gone2.test", dns.TypeSRV); n != 1 {
		t.Fatalf("%d queries within NegativeTTL, want 1", n)
	}
	if _, err := r2.Resolve(bg(), "gone2.test"); err != nil {
		t.Fatal(err)
	}
	if n := d.count("_parley._tcp.gone2.test", dns.TypeSRV); n != 2 {
		t.Fatalf("%d queries after NegativeTTL, want 2", n)
	}
}

func TestResolveStaleIfError(t *testing.T) {
	d := startDNS(t)
	d.add("_parley._tcp.flaky.test. 60 IN SRV 1 1 1234 h.flaky.test.")
	clock := newClock()
	r := newResolver(t, d, clock, func(o *ResolverOptions) { o.StaleTTL = 10 * time.Minute })
	want := []Target{{"h.flaky.test", 1234}}
	if got, err := r.Resolve(bg(), "flaky.test"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("Resolve = %v, %v", got, err)
	}
	d.set(func(d *testDNS) { d.rcode["_parley._tcp.flaky.test."] = dns.RcodeServerFailure })
	clock.Advance(5 * time.Minute)
	if got, err := r.Resolve(bg(), "flaky.test"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("stale Resolve = %v, %v; want the stale answer", got, err)
	}
	if n := d.count("_parley._tcp.flaky.test", dns.TypeSRV); n != 2 {
		t.Fatalf("%d queries, want 2 (the refresh was tried)", n)
	}
	clock.Advance(6 * time.Minute)
	if _, err := r.Resolve(bg(), "flaky.test"); !errors.Is(err, ErrServFail) {
		t.Fatalf("Resolve past StaleTTL = %v, want ErrServFail", err)
	}
	d.set(func(d *testDNS) { delete(d.rcode, "_parley._tcp.flaky.test.") })
	if got, err := r.Resolve(bg(), "flaky.test"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("recovered Resolve = %v, %v", got, err)
	}
}

func TestResolveSingleFlight(t *testing.T) {
	d := startDNS(t)
	d.add("_parley._tcp.busy.test. 300 IN SRV 1 1 1 h.busy.test.")
	gate := make(chan struct{})
	d.set(func(d *testDNS) { d.gate = gate })
	r := newResolver(t, d, newClock(), func(o *ResolverOptions) { o.Timeout = 10 * time.Second })
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := r.Resolve(bg(), "busy.test")
			if err == nil && len(got) != 1 {
				err = errors.New("wrong answer")
			}
			errs <- err
		}()
	}
	waitFor(t, "all callers to share the query", func() bool { return r.flight.joined() == n-1 })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if q := d.count("_parley._tcp.busy.test", dns.TypeSRV); q != 1 {
		t.Fatalf("%d queries for %d concurrent lookups, want 1", q, n)
	}
}

func TestResolveCancelledCallerDoesNotCancelOthers(t *testing.T) {
	d := startDNS(t)
	d.add("_parley._tcp.busy.test. 300 IN SRV 1 1 1 h.busy.test.")
	gate := make(chan struct{})
	d.set(func(d *testDNS) { d.gate = gate })
	r := newResolver(t, d, newClock(), func(o *ResolverOptions) { o.Timeout = 10 * time.Second })

	ctx, cancel := context.WithCancel(bg())
	first := make(chan error, 1)
	go func() { _, err := r.Resolve(ctx, "busy.test"); first <- err }()
	waitFor(t, "the query", func() bool { return d.count("_parley._tcp.busy.test", dns.TypeSRV) == 1 })
	second := make(chan error, 1)
	go func() { _, err := r.Resolve(bg(), "busy.test"); second <- err }()
	waitFor(t, "the second caller to join", func() bool { return r.flight.joined() == 1 })

	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller got %v", err)
	}
	close(gate)
	if err := <-second; err != nil {
		t.Fatalf("other caller got %v", err)
	}
}

func TestResolveTruncatedRetriesOverTCP(t *testing.T) {
	d := startDNS(t)
	d.add("_parley._tcp.big.test. 300 IN SRV 1 1 5555 h.big.test.")
	d.set(func(d *testDNS) { d.truncate["_parley._tcp.big.test."] = true })
	r := newResolver(t, d, newClock())
	got, err := r.Resolve(bg(), "big.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Target{{"h.big.test", 5555}}; !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tcpCount != 1 {
		t.Fatalf("%d TCP queries, want 1", d.tcpCount)
	}
}

func TestLookupHost(t *testing.T) {
	d := startDNS(t)
	d.add(
		"dual.test. 300 IN AAAA 2001:db8::7",
		"dual.test. 300 IN A 192.0.2.7",
		"dual.test. 300 IN A 192.0.2.8",
		"v6.test. 300 IN AAAA ::1",
		"alias.test. 300 IN CNAME dual.test.",
	)
	r := newResolver(t, d, newClock())
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	cases := map[string][]netip.Addr{
		"dual.test":       addrs("192.0.2.7", "192.0.2.8", "2001:db8::7"),
		"DUAL.test.":      addrs("192.0.2.7", "192.0.2.8", "2001:db8::7"),
		"alias.test":      addrs("192.0.2.7", "192.0.2.8", "2001:db8::7"),
		"v6.test":         addrs("::1"),
		"10.1.2.3":        addrs("10.1.2.3"),
		"::ffff:10.1.2.3": addrs("10.1.2.3"),
		"[2001:db8::1]":   addrs("2001:db8::1"),
	}
	for host, want := range cases {
		got, err := r.LookupHost(bg(), host)
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", host, got, want)
		}
	}
	if n := d.count("dual.test", dns.TypeA); n != 1 {
		t.Errorf("%d A queries for dual.test, want 1 (cached)", n)
	}
	if _, err := r.LookupHost(bg(), "fe80::1%eth0"); !errors.Is(err, ErrInvalidDomain) {
		t.Errorf("zoned address: %v", err)
	}
	if _, err := r.LookupHost(bg(), "bad_name.test"); !errors.Is(err, ErrInvalidDomain) {
		t.Errorf("bad name: %v", err)
	}
}

func TestResolverCacheBounded(t *testing.T) {
	d := startDNS(t)
	r := newResolver(t, d, newClock(), func(o *ResolverOptions) { o.MaxEntries = 3 })
	for _, dom := range []string{"a.test", "b.test", "c.test", "d.test", "e.test"} {
		if _, err := r.Resolve(bg(), dom); err != nil {
			t.Fatal(err)
		}
	}
	r.mu.Lock()
	n := len(r.cache)
	r.mu.Unlock()
	if n > 3 {
		t.Fatalf("cache holds %d entries, MaxEntries 3", n)
	}
}

func TestNewResolverFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("# test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver("", ResolverOptions{ResolvConf: conf})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Servers(), []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Fatalf("Servers = %v, want %v", got, want)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewResolver("", ResolverOptions{ResolvConf: empty}); err == nil {
		t.Error("resolv.conf without nameserver accepted")
	}
	if _, err := NewResolver("", ResolverOptions{ResolvConf: filepath.Join(dir, "missing")}); err == nil {
		t.Error("missing resolv.conf accepted")
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:", ":53"} {
		if _, err := NewResolver(bad, ResolverOptions{}); err == nil {
			t.Errorf("NewResolver(%q) accepted", bad)
		}
	}
	if _, err := NewResolver("127.0.0.1:53", ResolverOptions{MinTTL: time.Hour, MaxTTL: time.Minute}); err == nil {
		t.Error("MaxTTL below MinTTL accepted")
	}
}

func TestResolverTriesNextServer(t *testing.T) {
	broken := startDNS(t)
	broken.set(func(d *testDNS) { d.rcode["_parley._tcp.a.test."] = dns.RcodeServerFailure })
	good := startDNS(t)
	good.add("_parley._tcp.a.test. 300 IN SRV 1 1 4000 h.a.test.")
	// Two servers in order, the failing one first (as resolv.conf lists them).
	res, err := NewResolver(broken.addr, ResolverOptions{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res.servers = append(res.servers, good.addr)
	got, err := res.Resolve(bg(), "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Target{{"h.a.test", 4000}}; !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	if broken.count("_parley._tcp.a.test", dns.TypeSRV) != 1 || good.count("_parley._tcp.a.test", dns.TypeSRV) != 1 {
		t.Fatal("both servers should have been asked once")
	}
}

func TestNormalizeDomain(t *testing.T) {
	cases := map[string]string{
		"Example.ORG.":     "example.org",
		"example.org:8448": "example.org:8448",
		"[::1]:80":         "[::1]:80",
		"::1":              "[::1]",
		"127.0.0.1":        "127.0.0.1",
	}
	for in, want := range cases {
		got, err := NormalizeDomain(in)
		if err != nil || got != want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
