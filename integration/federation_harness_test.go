package integration

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/setup"
)

// dnsZone is a real DNS server on loopback serving the test domains'
// SRV and A records; federation discovers servers through it.
type dnsZone struct {
	addr string
	mu   sync.Mutex
	srv  map[string]*dns.SRV // "_parley._tcp.a.test." -> record
	a    map[string]bool     // "a.test." -> 127.0.0.1
}

func startDNS(t *testing.T) *dnsZone {
	t.Helper()
	z := &dnsZone{srv: map[string]*dns.SRV{}, a: map[string]bool{}}
	// UDP and TCP on one port; the TCP side of a free UDP port may be
	// taken, so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
	z.addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: z}
	tcp := &dns.Server{Listener: ln, Handler: z}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return z
}

// publish points domain's SRV record at 127.0.0.1:port.
func (z *dnsZone) publish(domain string, port int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	host := dns.Fqdn("fed." + domain)
	name := "_parley._tcp." + dns.Fqdn(domain)
	z.srv[name] = &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
		Priority: 10, Weight: 5, Port: uint16(port), Target: host}
	z.a[host] = true
}

func (z *dnsZone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, q := range r.Question {
		name := strings.ToLower(q.Name)
		switch {
		case q.Qtype == dns.TypeSRV && z.srv[name] != nil:
			rr := *z.srv[name]
			m.Answer = append(m.Answer, &rr)
		case q.Qtype == dns.TypeA && z.a[name]:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
				A: net.IPv4(127, 0, 0, 1)})
		case q.Qtype == dns.TypeAAAA && z.a[name]:
			// IPv4 only: an empty answer.
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	w.WriteMsg(m)
}

// fedServer is a homeserver of its own domain with a federation listener,
// published in the zone.
type fedServer struct {
	*server
	domain string
	zone   *dnsZone
	extra  []func(*setup.Extra)
	opts   []option
	addr   string // the federation listener's host:port
}

// fedOpts are the federation settings every test server shares: plain
// HTTP on loopback (an explicit test-only switch), discovery through the
// zone, short DNS cache lifetimes and backoffs.
func startFederated(t *testing.T, zone *dnsZone, domain, dir string, extra []func(*setup.Extra), opts ...option) *fedServer {
	t.Helper()
	all := append([]option{func(c *setup.Config) {
		c.Domain = domain
		c.FederationListen = "127.0.0.1:0"
		c.FederationInsecure = true
		c.FederationAllowPrivate = true
		c.DNSResolver = zone.addr
		c.LogLevel = "debug"
	}}, opts...)
	ex := append([]func(*setup.Extra){func(e *setup.Extra) {
		e.Resolver = federation.ResolverOptions{MinTTL: time.Millisecond, MaxTTL: time.Second, NegativeTTL: time.Millisecond}
		e.Sender = federation.SenderOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	}}, extra...)
	s := startServerExtra(t, dir, ex, all...)
	f := &fedServer{server: s, domain: domain, zone: zone, extra: ex, opts: all}
	f.publish()
	return f
}

func (f *fedServer) publish() {
	u := f.node.FederationURL()
	f.addr = strings.TrimPrefix(u, "http://")
	port, _ := strconv.Atoi(u[strings.LastIndex(u, ":")+1:])
	f.zone.publish(f.domain, port)
}

// restart stops the server and starts it again on the same data and the
// same federation port, as an operator's restart would.
func (f *fedServer) restart() {
	addr := f.addr
	f.stop()
	f.server = startServerExtra(f.t, f.cfg.Data, f.extra, append(f.opts, func(c *setup.Config) { c.FederationListen = addr })...)
	f.publish()
}

func (f *fedServer) user(name string) string { return name + "@" + f.domain }

var _ = context.Background
