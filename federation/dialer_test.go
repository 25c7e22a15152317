package federation

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
)

func TestIsPublic(t *testing.T) {
	public := []string{
		"1.1.1.1", "8.8.8.8", "93.184.216.34", "2606:4700::1111", "2a00:1450:4001::1",
		"::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
	}
	private := []string{
		"127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
		"0.0.0.0", "0.1.2.3", "100.64.0.1", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.1",
		"203.0.113.1", "224.0.0.1", "240.0.0.1", "255.255.255.255",
		"::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1", "100::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a00:1", "2002:7f00:1::1",
		"2002:c0a8:101::1", "2001::1", "fec0::1",
	}
	for _, s := range public {
		if !IsPublic(netip.MustParseAddr(s)) {
			t.Errorf("IsPublic(%s) = false", s)
		}
	}
	for _, s := range private {
		if IsPublic(netip.MustParseAddr(s)) {
			t.Errorf("IsPublic(%s) = true", s)
		}
	}
	if IsPublic(netip.Addr{}) || IsPublic(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("invalid or zoned address judged public")
	}
}

func TestDialerAllowed(t *testing.T) {
	d := &Dialer{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	for s, want := range map[string]bool{
		"10.1.2.3": true, "::ffff:10.1.2.3": true, "10.2.0.1": false, "8.8.8.8": true, "127.0.0.1": false,
	} {
		if got := d.Allowed(netip.MustParseAddr(s)); got != want {
			t.Errorf("Allowed(%s) = %v", s, got)
		}
	}
	open := &Dialer{AllowPrivate: true}
	if !open.Allowed(netip.MustParseAddr("127.0.0.1")) || open.Allowed(netip.Addr{}) {
		t.Error("AllowPrivate")
	}
	// The socket hook checks the address actually connected to.
	if err := d.control("tcp4", "127.0.0.1:80", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control(127.0.0.1) = %v", err)
	}
	if err := d.control("tcp6", "[::1]:80", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control(::1) = %v", err)
	}
	if err := d.control("tcp4", "8.8.8.8:443", nil); err != nil {
		t.Errorf("control(8.8.8.8) = %v", err)
	}
	if err := d.control("tcp4", "garbage", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control(garbage) = %v", err)
	}
}

// listen starts a TCP listener on loopback that accepts and closes.
func listen(t *testing.T) (port uint16, accepted chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port), accepted
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return uint16(p)
}

func TestDialerSSRFGuard(t *testing.T) {
	d := startDNS(t)
	port, _ := listen(t)
	d.add(
		"evil.test. 300 IN A 127.0.0.1",
		"_parley._tcp.evil.test. 300 IN SRV 1 1 "+strconv.Itoa(int(port))+" evil.test.",
		"meta.test. 300 IN A 169.254.169.254",
	)
	r := newResolver(t, d, newClock())
	guarded := &Dialer{Resolver: r}
	p := strconv.Itoa(int(port))
	for _, addr := range []string{"evil.test", "evil.test:" + p, "127.0.0.1:" + p, "[::1]:" + p, "meta.test:80"} {
		conn, err := guarded.DialContext(bg(), "tcp", addr)
		if err == nil {
			conn.Close()
			t.Errorf("dialled %s", addr)
			continue
		}
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("dial %s: %v, want ErrForbiddenAddress", addr, err)
		}
	}
	for name, dialer := range map[string]*Dialer{
		"allow-list":    {Resolver: r, Allow: loopback},
		"allow private": {Resolver: r, AllowPrivate: true},
	} {
		for _, addr := range []string{"evil.test", "evil.test:" + p, "127.0.0.1:" + p} {
			conn, err := dialer.DialContext(bg(), "tcp", addr)
			if err != nil {
				t.Errorf("%s: dial %s: %v", name, addr, err)
				continue
			}
			conn.Close()
		}
	}
	if _, err := guarded.DialContext(bg(), "udp", "evil.test"); err == nil {
		t.Error("udp dial accepted")
	}
	if _, err := (&Dialer{Resolver: r, Allow: loopback}).DialContext(bg(), "tcp6", "evil.test"); err == nil {
		t.Error("tcp6 dial of an IPv4-only name succeeded")
	}
}

func TestDialerTriesTargetsInOrder(t *testing.T) {
	d := startDNS(t)
	live, accepted := listen(t)
	dead := closedPort(t)
	d.add(
		fmt.Sprintf("_parley._tcp.multi.test. 300 IN SRV 10 1 %d dead.multi.test.", dead),
		fmt.Sprintf("_parley._tcp.multi.test. 300 IN SRV 20 1 %d live.multi.test.", live),
		"dead.multi.test. 300 IN A 127.0.0.1",
		"live.multi.test. 300 IN A 127.0.0.1",
	)
	dialer := &Dialer{Resolver: newResolver(t, d, newClock()), Allow: loopback}
	conn, err := dialer.DialContext(bg(), "tcp", "multi.test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().(*net.TCPAddr).Port; got != int(live) {
		t.Fatalf("connected to port %d, want %d", got, live)
	}
	<-accepted

	if _, err := dialer.DialContext(bg(), "tcp", "nowhere.test"); !errors.Is(err, ErrNXDomain) {
		t.Fatalf("dial of a name that does not exist: %v", err)
	}
}

// fedHTTP starts an HTTP server on loopback and publishes it in d as the
// federation endpoint of domain (through SRV to srv.<domain>).
func fedHTTP(t *testing.T, d *testDNS, domain string, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	d.add(
		fmt.Sprintf("_parley._tcp.%s. 300 IN SRV 10 1 %d srv.%s.", domain, port, domain),
		fmt.Sprintf("srv.%s. 300 IN A 127.0.0.1", domain),
	)
	return srv
}

func TestTransportDiscoversEndpoint(t *testing.T) {
	d := startDNS(t)
	srv := fedHTTP(t, d, "a.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Host, r.URL.Path)
	}))
	r := newResolver(t, d, newClock())
	client := &http.Client{Transport: NewTransport(&Dialer{Resolver: r, Allow: loopback}, nil)}
	get := func(url string) string {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get("http://a.test/v1/hello"); got != "a.test /v1/hello" {
		t.Errorf("discovered: %q", got)
	}
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	if got, want := get(fmt.Sprintf("http://srv.a.test:%d/x", port)), fmt.Sprintf("srv.a.test:%d /x", port); got != want {
		t.Errorf("explicit port: %q, want %q", got, want)
	}

	guarded := &http.Client{Transport: NewTransport(&Dialer{Resolver: r}, nil)}
	if _, err := guarded.Get("http://a.test/v1/hello"); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("guarded client: %v, want ErrForbiddenAddress", err)
	}
	if _, err := guarded.Get(srv.URL); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("guarded client to %s: %v, want ErrForbiddenAddress", srv.URL, err)
	}
	client.Transport.(*Transport).CloseIdleConnections()
}
