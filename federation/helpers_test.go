package federation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// testDNS is a real DNS server (miekg/dns) on 127.0.0.1, UDP and TCP on
// the same port, authoritative for whatever records a test adds.
type testDNS struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	records  map[string][]dns.RR // "name./TYPE" → records
	names    map[string]bool     // names that exist (have any record)
	rcode    map[string]int      // name → forced response code
	silent   map[string]bool     // name → never answer
	truncate map[string]bool     // name → truncated over UDP
	noSOA    bool                // negative answers carry no SOA
	soaTTL   uint32
	soaMin   uint32
	gate     chan struct{} // when set, answers wait for it to close
	queries  map[string]int
	tcpCount int
}

func startDNS(t testing.TB) *testDNS {
	t.Helper()
	d := &testDNS{
		t:        t,
		records:  map[string][]dns.RR{},
		names:    map[string]bool{},
		rcode:    map[string]int{},
		silent:   map[string]bool{},
		truncate: map[string]bool{},
		queries:  map[string]int{},
		soaTTL:   3600,
		soaMin:   120,
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // TCP on the UDP port; retry if someone holds it
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no port free for both UDP and TCP: %v", err)
	}
	d.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: ln, Handler: d}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("DNS server did not start")
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return d
}

// add adds records in zone file syntax.
func (d *testDNS) add(rrs ...string) {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			d.t.Fatalf("bad record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		k := name + "/" + dns.TypeToString[rr.Header().Rrtype]
		d.records[k] = append(d.records[k], rr)
		d.names[name] = true
	}
}

func (d *testDNS) set(f func(d *testDNS)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *testDNS) count(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[strings.ToLower(dns.Fqdn(name))+"/"+dns.TypeToString[qtype]]
}

func (d *testDNS) total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.queries {
		n += c
	}
	return n
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 {
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	_, overTCP := w.LocalAddr().(*net.TCPAddr)

	d.mu.Lock()
	d.queries[name+"/"+dns.TypeToString[q.Qtype]]++
	if overTCP {
		d.tcpCount++
	}
	gate, silent := d.gate, d.silent[name]
	d.mu.Unlock()
	if silent {
		return
	}
	if gate != nil {
		<-gate
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if rc, ok := d.rcode[name]; ok {
		m.Rcode = rc
		_ = w.WriteMsg(m)
		return
	}
	if d.truncate[name] && !overTCP {
		m.Truncated = true
		_ = w.WriteMsg(m)
		return
	}
	// Follow CNAMEs, as a recursive resolver would.
	cur := name
	for range 8 {
		cn := d.records[cur+"/CNAME"]
		if len(cn) == 0 || q.Qtype == dns.TypeCNAME {
			break
		}
		m.Answer = append(m.Answer, cn[0])
		cur = strings.ToLower(cn[0].(*dns.CNAME).Target)
	}
	m.Answer = append(m.Answer, d.records[cur+"/"+dns.TypeToString[q.Qtype]]...)
	if len(m.Answer) == 0 || (len(m.Answer) > 0 && m.Answer[len(m.Answer)-1].Header().Rrtype == dns.TypeCNAME) {
		if !d.names[cur] {
			m.Rcode = dns.RcodeNameError
		}
		if !d.noSOA {
			soa, _ := dns.NewRR(fmt.Sprintf("test. %d IN SOA ns.test. admin.test. 1 3600 600 86400 %d", d.soaTTL, d.soaMin))
			m.Ns = append(m.Ns, soa)
		}
	}
	_ = w.WriteMsg(m)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newResolver returns a resolver asking d, with a fake clock and a fixed
// random seed.
func newResolver(t testing.TB, d *testDNS, clock *fakeClock, tweak ...func(*ResolverOptions)) *Resolver {
	t.Helper()
	opts := ResolverOptions{
		Timeout: 300 * time.Millisecond,
		Now:     clock.Now,
		Rand:    rand.New(rand.NewPCG(1, 2)),
	}
	for _, f := range tweak {
		f(&opts)
	}
	r, err := NewResolver(d.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// waitFor polls cond until it holds (never sleeps a fixed time first).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func bg() context.Context { return context.Background() }
