package federation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DefaultPort is the federation port of a domain that publishes no SRV
// record.
const DefaultPort uint16 = 8448

// srvPrefix is prepended to a domain to find its federation endpoint.
const srvPrefix = "_parley._tcp."

// Discovery errors. A *DNSError wraps one of the first three, so callers
// tell a missing name from a broken resolver with errors.Is.
var (
	// ErrNXDomain: the name does not exist (a definitive answer).
	ErrNXDomain = errors.New("federation: no such domain (NXDOMAIN)")
	// ErrServFail: the DNS server failed to answer (SERVFAIL, REFUSED or
	// another error code); worth retrying later.
	ErrServFail = errors.New("federation: DNS server failure")
	// ErrDNSTimeout: no DNS server answered in time.
	ErrDNSTimeout = errors.New("federation: DNS query timed out")
	// ErrNoAddress: the name exists but has no A or AAAA record.
	ErrNoAddress = errors.New("federation: name has no address records")
	// ErrNoService: the domain's SRV record says it runs no federation
	// endpoint (RFC 2782's target ".").
	ErrNoService = errors.New("federation: domain declares no federation service")
	// ErrInvalidDomain: not a host name, IP literal or host:port.
	ErrInvalidDomain = errors.New("federation: invalid domain")
	// ErrForbiddenAddress: the SSRF guard refused to dial an address.
	ErrForbiddenAddress = errors.New("federation: address not allowed")
)

// DNSError is a failed DNS query. Err wraps ErrNXDomain, ErrServFail,
// ErrDNSTimeout or ErrNoAddress, plus the underlying network error when
// there is one.
type DNSError struct {
	Name   string // the name queried, fully qualified
	Type   string // "SRV", "A", "AAAA"
	Server string // the last server asked; empty when none answered
	Rcode  int    // the response code, -1 when no response arrived
	Err    error
}

func (e *DNSError) Error() string {
	s := fmt.Sprintf("dns %s %s", e.Type, e.Name)
	if e.Server != "" {
		s += " via " + e.Server
	}
	return s + ": " + e.Err.Error()
}

func (e *DNSError) Unwrap() error { return e.Err }

// Timeout reports whether the query timed out (as net.Error does).
func (e *DNSError) Timeout() bool { return errors.Is(e.Err, ErrDNSTimeout) }

// Target is one place a domain's federation endpoint listens. Host is a
// name (or an IP literal) that the caller resolves with LookupHost.
type Target struct {
	Host string
	Port uint16
}

// String returns host:port, with brackets around an IPv6 literal.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// ResolverOptions tune a Resolver. Zero values take the defaults.
type ResolverOptions struct {
	// Timeout bounds one query to one server (dial, write, read).
	// Default 3s.
	Timeout time.Duration
	// MinTTL and MaxTTL clamp every cached answer's lifetime, positive or
	// negative. Defaults 30s and 1h.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL caches "no such name / no such record" when the answer
	// carries no SOA to take the TTL from (RFC 2308). Default 5m, then
	// clamped like any TTL.
	NegativeTTL time.Duration
	// StaleTTL is how long past its expiry an answer may still be used
	// when refreshing it fails with a timeout or a server failure (as
	// Synapse does). Default 1h; negative disables.
	StaleTTL time.Duration
	// MaxEntries bounds the cache. Default 10,000.
	MaxEntries int
	// ResolvConf is read when the server is "". Default /etc/resolv.conf.
	ResolvConf string
	// Now is the clock; tests inject one. Default time.Now.
	Now func() time.Time
	// Rand orders SRV records of equal priority (RFC 2782 weights).
	// Default: randomly seeded.
	Rand *rand.Rand
}

// Resolver finds a domain's federation endpoint through DNS SRV records
// and resolves host names, with its own cache, over miekg/dns. It is safe
// for concurrent use.
type Resolver struct {
	servers []string
	udp     dns.Client
	tcp     dns.Client
	opts    ResolverOptions

	mu    sync.Mutex
	cache map[cacheKey]*cacheEntry

	flight flightGroup[cacheKey, *cacheEntry]

	randMu sync.Mutex
}

type cacheKey struct {
	name  string // fully qualified, lower case
	qtype uint16
}

// cacheEntry is a parsed answer. Entries are immutable once stored.
type cacheEntry struct {
	srv     []srvRecord  // SRV answers
	addrs   []netip.Addr // A/AAAA answers
	err     error        // a definitive negative answer (NXDOMAIN) for addresses
	expires time.Time
}

type srvRecord struct {
	Target                 string
	Port, Priority, Weight uint16
}

// NewResolver returns a resolver asking server ("HOST:PORT"), or the
// name servers of resolv.conf when server is "".
func NewResolver(server string, opts ResolverOptions) (*Resolver, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 3 * time.Second
	}
	if opts.MinTTL <= 0 {
		opts.MinTTL = 30 * time.Second
	}
	if opts.MaxTTL <= 0 {
		opts.MaxTTL = time.Hour
	}
	if opts.MaxTTL < opts.MinTTL {
		return nil, fmt.Errorf("federation: resolver MaxTTL %v is below MinTTL %v", opts.MaxTTL, opts.MinTTL)
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 5 * time.Minute
	}
	if opts.StaleTTL == 0 {
		opts.StaleTTL = time.Hour
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10_000
	}
	if opts.ResolvConf == "" {
		opts.ResolvConf = "/etc/resolv.conf"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	r := &Resolver{
		opts:  opts,
		cache: make(map[cacheKey]*cacheEntry),
		udp:   dns.Client{Net: "udp", Timeout: opts.Timeout},
		tcp:   dns.Client{Net: "tcp", Timeout: opts.Timeout},
	}
	if server != "" {
		host, port, err := net.SplitHostPort(server)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("federation: DNS resolver %q: want HOST:PORT", server)
		}
		r.servers = []string{server}
		return r, nil
	}
	conf, err := dns.ClientConfigFromFile(opts.ResolvConf)
	if err != nil {
		return nil, fmt.Errorf("federation: reading %s: %w", opts.ResolvConf, err)
	}
	for _, s := range conf.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, conf.Port))
	}
	if len(r.servers) == 0 {
		return nil, fmt.Errorf("federation: %s lists no nameserver", opts.ResolvConf)
	}
	return r, nil
}

// Servers returns the DNS servers asked, in order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// Resolve returns where domain's federation endpoint listens, in the
// order to try them:
//   - "host:port" (or "[v6]:port"): that, without any lookup;
//   - an IP literal: that address on DefaultPort;
//   - otherwise the SRV records of _parley._tcp.<domain>, by priority and
//     then RFC 2782 weighted random order; without any record (NXDOMAIN or
//     an empty answer), <domain>:DefaultPort.
//
// A server failure or timeout is an error (a *DNSError), not a fallback:
// guessing the default port could send traffic to the wrong place.
func (r *Resolver) Resolve(ctx context.Context, domain string) ([]Target, error) {
	host, port, hasPort, err := splitDomain(domain)
	if err != nil {
		return nil, err
	}
	if hasPort {
		return []Target{{Host: host, Port: port}}, nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return []Target{{Host: host, Port: DefaultPort}}, nil
	}
	e, err := r.query(ctx, cacheKey{name: srvPrefix + host + ".", qtype: dns.TypeSRV})
	if err != nil {
		return nil, err
	}
	if len(e.srv) == 0 {
		return []Target{{Host: host, Port: DefaultPort}}, nil
	}
	if len(e.srv) == 1 && e.srv[0].Target == "" {
		return nil, fmt.Errorf("%w: %s", ErrNoService, host)
	}
	return r.order(e.srv), nil
}

// LookupHost returns the addresses of host (A records first, then AAAA)
// through the resolver's DNS servers and cache. An IP literal is returned
// as it is. The result is empty only with an error.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
		if ip.Zone() != "" {
			return nil, fmt.Errorf("%w: %q: zoned addresses are not allowed", ErrInvalidDomain, host)
		}
		return []netip.Addr{ip.Unmap()}, nil
	}
	name, err := normalizeHostname(host)
	if err != nil {
		return nil, err
	}
	fqdn := name + "."
	type result struct {
		e   *cacheEntry
		err error
	}
	var a, aaaa result
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		aaaa.e, aaaa.err = r.query(ctx, cacheKey{name: fqdn, qtype: dns.TypeAAAA})
	}()
	a.e, a.err = r.query(ctx, cacheKey{name: fqdn, qtype: dns.TypeA})
	wg.Wait()

	var addrs []netip.Addr
	for _, res := range []result{a, aaaa} {
		if res.err == nil && res.e.err == nil {
			addrs = append(addrs, res.e.addrs...)
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	switch {
	case a.err != nil:
		return nil, a.err
	case aaaa.err != nil:
		return nil, aaaa.err
	case a.e.err != nil: // NXDOMAIN
		return nil, a.e.err
	case aaaa.e.err != nil:
		return nil, aaaa.e.err
	}
	return nil, &DNSError{Name: fqdn, Type: "A", Rcode: dns.RcodeSuccess, Err: ErrNoAddress}
}

// query returns the cached answer for k or asks the servers, one query in
// flight per key. A query that fails temporarily falls back to a stale
// answer within StaleTTL.
func (r *Resolver) query(ctx context.Context, k cacheKey) (*cacheEntry, error) {
	now := r.opts.Now()
	r.mu.Lock()
	e := r.cache[k]
	r.mu.Unlock()
	if e != nil && now.Before(e.expires) {
		return e, nil
	}
	fresh, err := r.flight.do(ctx, k, func() (*cacheEntry, error) { return r.fetch(k) })
	if err != nil {
		if e != nil && r.opts.StaleTTL > 0 && now.Before(e.expires.Add(r.opts.StaleTTL)) &&
			(errors.Is(err, ErrServFail) || errors.Is(err, ErrDNSTimeout)) {
			return e, nil
		}
		return nil, err
	}
	return fresh, nil
}

// fetch asks the servers in turn and caches the answer. It runs detached
// from any caller's context (others may be waiting for it), bounded by
// the per-query timeout.
func (r *Resolver) fetch(k cacheKey) (*cacheEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*r.opts.Timeout*time.Duration(len(r.servers)))
	defer cancel()
	resp, err := r.exchange(ctx, k)
	if err != nil {
		return nil, err
	}
	var (
		e   cacheEntry
		ttl time.Duration
	)
	switch k.qtype {
	case dns.TypeSRV:
		ans, perr := parseSRVResponse(k.name, resp)
		if perr != nil {
			return nil, &DNSError{Name: k.name, Type: "SRV", Rcode: resp.Rcode, Err: fmt.Errorf("%w: %w", ErrServFail, perr)}
		}
		e.srv, ttl = ans.records, r.ttl(ans.ttl, ans.negative)
	default:
		ans, perr := parseAddrResponse(k.name, k.qtype, resp)
		if perr != nil {
			return nil, &DNSError{Name: k.name, Type: dns.TypeToString[k.qtype], Rcode: resp.Rcode, Err: fmt.Errorf("%w: %w", ErrServFail, perr)}
		}
		e.addrs, ttl = ans.addrs, r.ttl(ans.ttl, ans.negative)
		if resp.Rcode == dns.RcodeNameError {
			e.err = &DNSError{Name: k.name, Type: dns.TypeToString[k.qtype], Rcode: resp.Rcode, Err: ErrNXDomain}
		}
	}
	e.expires = r.opts.Now().Add(ttl)
	r.store(k, &e)
	return &e, nil
}

// ttl turns a record TTL into a cache lifetime. A negative answer without
// a SOA (ttl < 0) gets NegativeTTL.
func (r *Resolver) ttl(ttl int64, negative bool) time.Duration {
	d := time.Duration(ttl) * time.Second
	if negative && ttl < 0 {
		d = r.opts.NegativeTTL
	}
	return min(max(d, r.opts.MinTTL), r.opts.MaxTTL)
}

func (r *Resolver) store(k cacheKey, e *cacheEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cache[k]; !ok && len(r.cache) >= r.opts.MaxEntries {
		now := r.opts.Now()
		for key, old := range r.cache {
			if !now.Before(old.expires.Add(max(r.opts.StaleTTL, 0))) {
				delete(r.cache, key)
			}
		}
		for key := range r.cache { // still full: drop any one
			if len(r.cache) < r.opts.MaxEntries {
				break
			}
			delete(r.cache, key)
		}
	}
	r.cache[k] = e
}

// exchange sends one question to each server in turn until one gives a
// definitive answer (NOERROR or NXDOMAIN), retrying a truncated UDP
// answer over TCP.
func (r *Resolver) exchange(ctx context.Context, k cacheKey) (*dns.Msg, error) {
	typ := dns.TypeToString[k.qtype]
	var last error
	for _, server := range r.servers {
		m := new(dns.Msg)
		m.SetQuestion(k.name, k.qtype)
		m.RecursionDesired = true
		m.SetEdns0(1232, false)
		resp, _, err := r.udp.ExchangeContext(ctx, m, server)
		if err == nil && resp.Truncated {
			resp, _, err = r.tcp.ExchangeContext(ctx, m, server)
		}
		if err != nil {
			last = &DNSError{Name: k.name, Type: typ, Server: server, Rcode: -1, Err: classifyNetError(err)}
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if err := checkResponse(m, resp); err != nil {
			last = &DNSError{Name: k.name, Type: typ, Server: server, Rcode: resp.Rcode, Err: fmt.Errorf("%w: %w", ErrServFail, err)}
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return resp, nil
		default:
			last = &DNSError{Name: k.name, Type: typ, Server: server, Rcode: resp.Rcode,
				Err: fmt.Errorf("%w: %s", ErrServFail, dns.RcodeToString[resp.Rcode])}
		}
	}
	if last == nil {
		last = &DNSError{Name: k.name, Type: typ, Rcode: -1, Err: ErrDNSTimeout}
	}
	return nil, last
}

func classifyNetError(err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w", ErrDNSTimeout, err)
	}
	return fmt.Errorf("%w: %w", ErrServFail, err)
}

// checkResponse refuses an answer to another question.
func checkResponse(q, resp *dns.Msg) error {
	if !resp.Response {
		return errors.New("not a response")
	}
	if len(resp.Question) != 1 {
		return fmt.Errorf("response has %d questions", len(resp.Question))
	}
	got, want := resp.Question[0], q.Question[0]
	if got.Qtype != want.Qtype || got.Qclass != want.Qclass || !strings.EqualFold(got.Name, want.Name) {
		return fmt.Errorf("response answers %s %s, not %s %s",
			got.Name, dns.TypeToString[got.Qtype], want.Name, dns.TypeToString[want.Qtype])
	}
	return nil
}

// answerNames returns qname and the names its CNAME chain in the answer
// section leads to, lower case.
func answerNames(qname string, answer []dns.RR) (map[string]bool, uint32) {
	names := map[string]bool{strings.ToLower(qname): true}
	minTTL := uint32(1<<32 - 1)
	for changed := true; changed; {
		changed = false
		for _, rr := range answer {
			c, ok := rr.(*dns.CNAME)
			if !ok || !names[strings.ToLower(c.Hdr.Name)] || names[strings.ToLower(c.Target)] {
				continue
			}
			names[strings.ToLower(c.Target)] = true
			minTTL = min(minTTL, c.Hdr.Ttl)
			changed = true
		}
	}
	return names, minTTL
}

// negativeTTL is the RFC 2308 lifetime of a negative answer: the SOA's
// own TTL capped by its MINIMUM field; -1 without a SOA.
func negativeTTL(resp *dns.Msg) int64 {
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return int64(min(soa.Hdr.Ttl, soa.Minttl))
		}
	}
	return -1
}

type srvAnswer struct {
	records  []srvRecord // empty: no record (NXDOMAIN or NODATA)
	ttl      int64       // seconds; -1 for a negative answer without SOA
	negative bool
}

// parseSRVResponse extracts the SRV records for qname from a response,
// following CNAMEs. A target of "." is returned as the empty string (and
// must then be the only record, RFC 2782).
func parseSRVResponse(qname string, resp *dns.Msg) (srvAnswer, error) {
	if resp.Rcode == dns.RcodeNameError {
		return srvAnswer{ttl: negativeTTL(resp), negative: true}, nil
	}
	if resp.Rcode != dns.RcodeSuccess {
		return srvAnswer{}, fmt.Errorf("response code %s", dns.RcodeToString[resp.Rcode])
	}
	names, ttl := answerNames(qname, resp.Answer)
	var ans srvAnswer
	for _, rr := range resp.Answer {
		s, ok := rr.(*dns.SRV)
		if !ok || !names[strings.ToLower(s.Hdr.Name)] {
			continue
		}
		target := strings.ToLower(strings.TrimSuffix(s.Target, "."))
		if target != "" {
			if _, err := normalizeHostname(target); err != nil {
				return srvAnswer{}, fmt.Errorf("SRV target %q: %w", s.Target, err)
			}
			if s.Port == 0 {
				return srvAnswer{}, fmt.Errorf("SRV target %q has port 0", s.Target)
			}
		}
		ans.records = append(ans.records, srvRecord{Target: target, Port: s.Port, Priority: s.Priority, Weight: s.Weight})
		ttl = min(ttl, s.Hdr.Ttl)
	}
	if len(ans.records) == 0 {
		return srvAnswer{ttl: negativeTTL(resp), negative: true}, nil
	}
	for _, rec := range ans.records {
		if rec.Target == "" && len(ans.records) > 1 {
			return srvAnswer{}, errors.New(`SRV target "." among other records`)
		}
	}
	ans.ttl = int64(ttl)
	return ans, nil
}

type addrAnswer struct {
	addrs    []netip.Addr
	ttl      int64
	negative bool
}

// parseAddrResponse extracts the A or AAAA addresses for qname.
func parseAddrResponse(qname string, qtype uint16, resp *dns.Msg) (addrAnswer, error) {
	if resp.Rcode == dns.RcodeNameError {
		return addrAnswer{ttl: negativeTTL(resp), negative: true}, nil
	}
	if resp.Rcode != dns.RcodeSuccess {
		return addrAnswer{}, fmt.Errorf("response code %s", dns.RcodeToString[resp.Rcode])
	}
	names, ttl := answerNames(qname, resp.Answer)
	var ans addrAnswer
	for _, rr := range resp.Answer {
		if !names[strings.ToLower(rr.Header().Name)] {
			continue
		}
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				ip = v.A
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				ip = v.AAAA
			}
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		ans.addrs = append(ans.addrs, addr.Unmap())
		ttl = min(ttl, rr.Header().Ttl)
	}
	if len(ans.addrs) == 0 {
		return addrAnswer{ttl: negativeTTL(resp), negative: true}, nil
	}
	ans.ttl = int64(ttl)
	return ans, nil
}

// order sorts SRV records by priority and, within one priority, in
// weighted random order (RFC 2782): each next record is picked with
// probability proportional to its weight among those left. (The RFC's
// literal recipe, a random number in [0, sum] inclusive, favours the
// first record: weights 1 and 3 would come first 2:3, not 1:3. Go's net
// package picks in exact proportion too.) Weight-0 records follow the
// weighted ones of their priority, in random order among themselves.
func (r *Resolver) order(recs []srvRecord) []Target {
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b srvRecord) int { return int(a.Priority) - int(b.Priority) })
	out := make([]Target, 0, len(recs))
	r.randMu.Lock()
	defer r.randMu.Unlock()
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].Priority == recs[i].Priority {
			j++
		}
		group := recs[i:j]
		for len(group) > 0 {
			var sum int64
			for _, rec := range group {
				sum += int64(rec.Weight)
			}
			pick := 0
			if sum == 0 {
				pick = r.opts.Rand.IntN(len(group))
			} else {
				n := r.opts.Rand.Int64N(sum)
				var running int64
				for k, rec := range group {
					running += int64(rec.Weight)
					if running > n {
						pick = k
						break
					}
				}
			}
			out = append(out, Target{Host: group[pick].Target, Port: group[pick].Port})
			group = slices.Delete(group, pick, pick+1)
		}
		i = j
	}
	return out
}

// NormalizeDomain checks that s names a federation server (a host name, an
// IP literal, either with an optional port) and returns it in canonical
// form: lower case, without a trailing dot.
func NormalizeDomain(s string) (string, error) {
	host, port, hasPort, err := splitDomain(s)
	if err != nil {
		return "", err
	}
	if hasPort {
		return net.JoinHostPort(host, strconv.Itoa(int(port))), nil
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]", nil
	}
	return host, nil
}

// splitDomain parses "host", "host:port", "[v6]", "[v6]:port" or a bare
// IPv6 literal. host comes back lower case, without brackets or trailing
// dot.
func splitDomain(s string) (host string, port uint16, hasPort bool, err error) {
	bad := func(why string) (string, uint16, bool, error) {
		return "", 0, false, fmt.Errorf("%w: %q: %s", ErrInvalidDomain, s, why)
	}
	if s == "" || len(s) > 300 {
		return bad("empty or too long")
	}
	h, p := s, ""
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return bad("unclosed bracket")
		}
		h, p = s[1:end], s[end+1:]
		if p != "" {
			if !strings.HasPrefix(p, ":") {
				return bad("junk after bracket")
			}
			p = p[1:]
			hasPort = true
		}
		ip, perr := netip.ParseAddr(h)
		if perr != nil || !ip.Is6() || ip.Zone() != "" {
			return bad("not an IPv6 address in brackets")
		}
		h = ip.String()
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		h, p, hasPort = s[:i], s[i+1:], true
	case strings.Count(s, ":") > 1:
		ip, perr := netip.ParseAddr(s)
		if perr != nil || ip.Zone() != "" {
			return bad("not an IPv6 address")
		}
		return ip.String(), 0, false, nil
	}
	if hasPort {
		n, perr := strconv.ParseUint(p, 10, 16)
		if perr != nil || n == 0 || p[0] == '+' || (len(p) > 1 && p[0] == '0') {
			return bad("bad port")
		}
		port = uint16(n)
	}
	if ip, perr := netip.ParseAddr(h); perr == nil {
		if ip.Zone() != "" {
			return bad("zoned address")
		}
		return ip.Unmap().String(), port, hasPort, nil
	}
	h, err = normalizeHostname(h)
	if err != nil {
		return "", 0, false, err
	}
	return h, port, hasPort, nil
}

// normalizeHostname checks an LDH host name (letters, digits, hyphens;
// labels of 1 to 63 characters) and returns it lower case without a
// trailing dot.
func normalizeHostname(h string) (string, error) {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("%w: %q: bad length", ErrInvalidDomain, h)
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%w: %q: bad label %q", ErrInvalidDomain, h, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("%w: %q: bad character %q", ErrInvalidDomain, h, c)
			}
		}
	}
	return h, nil
}

// flightGroup runs one call per key at a time and hands its result to
// every caller that asked meanwhile (like x/sync/singleflight). A caller
// whose context ends stops waiting; the call goes on for the others.
type flightGroup[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*flightCall[V]
	joins int // callers that shared a call in flight (for tests)
}

type flightCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func (g *flightGroup[K, V]) joined() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.joins
}

func (g *flightGroup[K, V]) do(ctx context.Context, key K, fn func() (V, error)) (V, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[K]*flightCall[V])
	}
	c, ok := g.calls[key]
	if ok {
		g.joins++
	} else {
		c = &flightCall[V]{done: make(chan struct{})}
		g.calls[key] = c
		go func() {
			c.val, c.err = fn()
			g.mu.Lock()
			delete(g.calls, key)
			g.mu.Unlock()
			close(c.done)
		}()
	}
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
