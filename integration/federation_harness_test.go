package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/setup"
)

// fedServer is a homeserver of its own domain with a federation listener,
// published in the zone.
type fedServer struct {
	*server
	domain string
	zone   *testdns.Zone
	extra  []func(*setup.Extra)
	opts   []option
	addr   string // the federation listener's host:port
}

// fedOpts are the federation settings every test server shares: plain
// HTTP on loopback (an explicit test-only switch), discovery through the
// zone, short DNS cache lifetimes and backoffs.
func startFederated(t *testing.T, zone *testdns.Zone, domain, dir string, extra []func(*setup.Extra), opts ...option) *fedServer {
	t.Helper()
	all := append([]option{func(c *setup.Config) {
		c.Domain = domain
		c.FederationListen = "127.0.0.1:0"
		c.FederationInsecure = true
		c.FederationAllowPrivate = true
		c.DNSResolver = zone.Addr
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
	f.addr = strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	port, _ := strconv.Atoi(u[strings.LastIndex(u, ":")+1:])
	f.zone.Publish(f.domain, port)
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
