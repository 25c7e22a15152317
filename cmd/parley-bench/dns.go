package main

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// zone is a DNS server on loopback, inside the bench process, that makes
// the federation scenario's domains discoverable: SRV _parley._tcp.DOMAIN
// -> fed.DOMAIN:PORT and A fed.DOMAIN -> 127.0.0.1.
type zone struct {
	addr     string
	udp, tcp *dns.Server

	mu  sync.Mutex
	srv map[string]*dns.SRV // "_parley._tcp.a.test." -> record
	a   map[string]bool     // "fed.a.test." -> 127.0.0.1
}

func startZone() (*zone, error) {
	z := &zone{srv: map[string]*dns.SRV{}, a: map[string]bool{}}
	// UDP and TCP on one port; the TCP side of a free UDP port may be
	// taken, so try a few.
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
			return nil, fmt.Errorf("dns: no free port for UDP and TCP: %w", err)
		}
	}
	z.addr = pc.LocalAddr().String()
	z.udp = &dns.Server{PacketConn: pc, Handler: z}
	z.tcp = &dns.Server{Listener: ln, Handler: z}
	go z.udp.ActivateAndServe()
	go z.tcp.ActivateAndServe()
	return z, nil
}

func (z *zone) close() {
	z.udp.Shutdown()
	z.tcp.Shutdown()
}

// publish points domain's SRV record at 127.0.0.1:port.
func (z *zone) publish(domain string, port int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	host := dns.Fqdn("fed." + domain)
	name := "_parley._tcp." + dns.Fqdn(domain)
	z.srv[name] = &dns.SRV{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 300},
		Priority: 10, Weight: 5, Port: uint16(port), Target: host}
	z.a[host] = true
}

func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
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
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A: net.IPv4(127, 0, 0, 1)})
		case q.Qtype == dns.TypeAAAA && z.a[name]:
			// IPv4 only: an empty answer.
		default:
			m.Rcode = dns.RcodeNameError
		}
	}
	w.WriteMsg(m)
}
