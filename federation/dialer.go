package federation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// nonPublic lists special-purpose ranges (IANA IPv4 and IPv6
// special-purpose registries) beyond what netip.Addr's predicates cover.
// Dialling them from a federation request would reach something that is
// not another homeserver on the internet.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use IPv4/IPv6 translation
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments (Teredo, ORCHID, ...)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("3fff::/20"),       // documentation
	netip.MustParsePrefix("5f00::/16"),       // segment routing SIDs
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// IsPublic reports whether ip is a globally routable unicast address: not
// loopback, private (RFC 1918, fc00::/7), link-local, multicast,
// unspecified or any other special-purpose range. IPv4-mapped, NAT64 and
// 6to4 addresses are judged by the IPv4 address they carry.
func IsPublic(ip netip.Addr) bool {
	if !ip.IsValid() || ip.Zone() != "" {
		return false
	}
	ip = ip.Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return IsPublic(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return IsPublic(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsPrivate() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Dialer opens connections to federation servers: it resolves through a
// Resolver and refuses non-public addresses (an SSRF guard, as
// GoToSocial's internal/httpclient/sanitizer.go), checking both the
// resolved addresses and, in the socket's Control hook, the address
// actually connected to.
type Dialer struct {
	Resolver *Resolver
	// AllowPrivate lets the dialer reach any address, for closed
	// deployments and tests.
	AllowPrivate bool
	// Allow lists non-public ranges that may nevertheless be dialled
	// (e.g. 127.0.0.0/8 in tests, a LAN peer).
	Allow []netip.Prefix
	// Timeout bounds one connection attempt. Default 10s.
	Timeout time.Duration
}

// Allowed reports whether the guard lets ip be dialled.
func (d *Dialer) Allowed(ip netip.Addr) bool {
	if d.AllowPrivate {
		return ip.IsValid()
	}
	ip = ip.Unmap()
	for _, p := range d.Allow {
		if p.Contains(ip) {
			return true
		}
	}
	return IsPublic(ip)
}

// DialContext connects to a federation server. address is a domain (its
// endpoint is discovered with Resolver.Resolve: SRV, else port 8448) or
// host:port (dialled as given). Each target's addresses are tried in turn
// until one connects; addresses the guard refuses are skipped, and if
// nothing is left the error wraps ErrForbiddenAddress. network is "tcp",
// "tcp4" or "tcp6".
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("federation: dial %s: unsupported network %q", address, network)
	}
	if d.Resolver == nil {
		return nil, errors.New("federation: Dialer has no Resolver")
	}
	targets, err := d.Resolver.Resolve(ctx, address)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, t := range targets {
		conn, err := d.dialTarget(ctx, network, t)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("federation: dial %s: %w", address, errors.Join(errs...))
}

func (d *Dialer) dialTarget(ctx context.Context, network string, t Target) (net.Conn, error) {
	addrs, err := d.Resolver.LookupHost(ctx, t.Host)
	if err != nil {
		return nil, err
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	nd := net.Dialer{Timeout: timeout, Control: d.control}
	var errs []error
	for _, ip := range addrs {
		if (network == "tcp4" && !ip.Is4()) || (network == "tcp6" && !ip.Is6()) {
			continue
		}
		if !d.Allowed(ip) {
			errs = append(errs, fmt.Errorf("%w: %s (%s) is not a public address", ErrForbiddenAddress, t.Host, ip))
			continue
		}
		conn, err := nd.DialContext(ctx, network, netip.AddrPortFrom(ip, t.Port).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("federation: %s has no %s address", t.Host, network)
	}
	return nil, errors.Join(errs...)
}

// control re-checks the address the socket is about to connect to, so
// nothing between resolution and connect (a proxy, a rebinding resolver)
// can slip a forbidden address past the guard.
func (d *Dialer) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: unparsable address %q", ErrForbiddenAddress, address)
	}
	if !d.Allowed(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
	}
	return nil
}

// Transport is the http.RoundTripper for server-to-server requests. A URL
// without a port ("https://b.example/v1/...") is sent to the domain's
// discovered endpoint (SRV, else 8448) with TLS verified against the
// domain, and with Host "b.example", so the receiver sees the URL the
// sender signed. A URL with a port is dialled as given. Both go through
// the Dialer's SSRF guard; environment proxies are never used.
type Transport struct {
	discover *http.Transport
	direct   *http.Transport
}

// NewTransport returns a Transport dialling through d. tlsConfig may be
// nil (system roots); set RootCAs to trust a private CA.
func NewTransport(d *Dialer, tlsConfig *tls.Config) *Transport {
	newHTTP := func(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
		var tc *tls.Config
		if tlsConfig != nil {
			tc = tlsConfig.Clone()
		}
		return &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			TLSClientConfig:       tc,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   8,
			ExpectContinueTimeout: time.Second,
		}
	}
	return &Transport{
		// http.Transport always hands the dialer host:port (443 or 80 by
		// default); dropping the port makes the Dialer discover it.
		discover: newHTTP(func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if strings.Contains(host, ":") {
				host = "[" + host + "]"
			}
			return d.DialContext(ctx, network, host)
		}),
		direct: newHTTP(d.DialContext),
	}
}

// RoundTrip sends req, discovering the endpoint when the URL has no port.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Port() == "" {
		return t.discover.RoundTrip(req)
	}
	return t.direct.RoundTrip(req)
}

// CloseIdleConnections closes idle keep-alive connections.
func (t *Transport) CloseIdleConnections() {
	t.discover.CloseIdleConnections()
	t.direct.CloseIdleConnections()
}
