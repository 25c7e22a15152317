// Package testdns is a DNS server for tests and the load tool: it serves,
// on loopback, the SRV records through which homeservers of test domains
// find each other.
package testdns

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Zone is a real DNS server on loopback serving the test domains'
// SRV and A records; federation discovers servers through it.
type Zone struct {
	Addr string // HOST:PORT of the server (UDP and TCP)

	udp, tcp *dns.Server

	mu  sync.Mutex
	srv map[string]*dns.SRV // "_parley._tcp.a.test." -> record
	a   map[string]net.IP   // "fed.a.test." -> 127.0.0.1
}

// Start runs a zone for the test and stops it when the test ends.
func Start(t testing.TB) *Zone {
	t.Helper()
	z, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Close)
	return z
}

// New runs a zone on 127.0.0.1, UDP and TCP on one port; Close stops it.
func New() (*Zone, error) {
	z := &Zone{srv: map[string]*dns.SRV{}, a: map[string]net.IP{}}
	// The TCP side of a free UDP port may be taken, so try a few.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			return nil, fmt.Errorf("testdns: no port free for both UDP and TCP: %w", err)
		}
	}
	z.Addr = pc.LocalAddr().String()
	z.udp = &dns.Server{PacketConn: pc, Handler: z}
	z.tcp = &dns.Server{Listener: ln, Handler: z}
	go z.udp.ActivateAndServe()
	go z.tcp.ActivateAndServe()
	return z, nil
}

// Close stops the zone's servers.
func (z *Zone) Close() {
	z.udp.Shutdown()
	z.tcp.Shutdown()
}

// Publish points domain's SRV record at 127.0.0.1:port.
func (z *Zone) Publish(domain string, port int) { z.PublishAt(domain, net.IPv4(127, 0, 0, 1), port) }

// PublishAt points domain's SRV record at ip:port (an IPv4 address, e.g.
// another loopback address: a server that moved to another host).
func (z *Zone) PublishAt(domain string, ip net.IP, port int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	host := dns.Fqdn("fed." + domain)
	name := "_parley._tcp." + dns.Fqdn(domain)
	z.srv[name] = &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1},
		Priority: 10, Weight: 5, Port: uint16(port), Target: host}
	z.a[host] = ip
}

func (z *Zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
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
		case q.Qtype == dns.TypeA && z.a[name] != nil:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1},
				A: z.a[name]})
		case q.Qtype == dns.TypeAAAA && z.a[name] != nil:
			// IPv4 only: an empty answer.
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	w.WriteMsg(m)
}
