package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/testdns"
)

var fedReadyRE = regexp.MustCompile(`msg="federation ready" url=http://127\.0\.0\.1:(\d+)`)

// startFederatedHomeserver runs the homeserver binary for domain with a
// plain-HTTP federation listener (the explicit test-only switch) that
// discovers other servers through zone, and publishes it there.
func startFederatedHomeserver(t *testing.T, zone *testdns.Zone, domain string) *hsProcess {
	t.Helper()
	h := startHomeserver(t, t.TempDir(), "--domain", domain, "--federation-listen", "127.0.0.1:0",
		"--federation-insecure", "--federation-allow-private", "--dns-resolver", zone.Addr)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := fedReadyRE.FindStringSubmatch(h.stderr.String()); m != nil {
			port, _ := strconv.Atoi(m[1])
			zone.Publish(domain, port)
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("no federation ready line:\n%s", h.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The README's walkthrough across two homeservers: alice on a.test writes
// to bob on b.test, each CLI talking to its own server only.
func TestCLIFederation(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederatedHomeserver(t, zone, "a.test")
	b := startFederatedHomeserver(t, zone, "b.test")
	alice := &user{t: t, home: t.TempDir() + "/alice", server: &a.url, password: "alice password"}
	bob := &user{t: t, home: t.TempDir() + "/bob", server: &b.url, password: "bob password"}
	if got := alice.ok("register", "alice"); got != "alice@a.test\n" {
		t.Fatalf("register: %q", got)
	}
	if got := bob.ok("register", "bob"); got != "bob@b.test\n" {
		t.Fatalf("register: %q", got)
	}
	alice.ok("send", "bob@b.test", "hi")
	// bob's reply goes through a.test, the conversation's hub.
	bob.ok("send", "alice@a.test", "hello from b")

	var msgs []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for len(msgs) == 0 && time.Now().Before(deadline) {
		msgs = ofType(jsonLines(t, bob.ok("recv", "--json")), "message")
	}
	if len(msgs) != 1 || msgs[0]["text"] != "hi" || msgs[0]["from"] != "alice@a.test" || msgs[0]["seq"] != 1.0 {
		t.Fatalf("bob received %v", msgs)
	}
	var got []map[string]any
	for len(got) == 0 && time.Now().Before(deadline) {
		got = ofType(jsonLines(t, alice.ok("recv", "--json")), "message")
	}
	if len(got) != 1 || got[0]["text"] != "hello from b" || got[0]["from"] != "bob@b.test" || got[0]["seq"] != 2.0 {
		t.Fatalf("alice received %v", got)
	}
	if got[0]["conversation"] != msgs[0]["conversation"] {
		t.Fatalf("two conversation ids: %v and %v", got[0]["conversation"], msgs[0]["conversation"])
	}
	// The safety number is the same seen from both servers.
	if sa, sb := alice.ok("safety-number", "bob@b.test"), bob.ok("safety-number", "alice@a.test"); sa != sb {
		t.Fatalf("safety numbers differ: %q vs %q", sa, sb)
	}
}
