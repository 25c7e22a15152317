package federation

import (
	"testing"
	"time"
)

// Each origin has its own bucket: a burst, then the steady rate.
func TestLimiterPerOrigin(t *testing.T) {
	l := newLimiter(10, 5)
	now := time.Unix(1000, 0)
	for i := range 5 {
		if !l.allow("a.example", now) {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	if l.allow("a.example", now) {
		t.Fatal("request over the burst allowed")
	}
	if !l.allow("b.example", now) {
		t.Fatal("another origin was limited by the first one's traffic")
	}
	if !l.allow("a.example", now.Add(100*time.Millisecond)) { // 10/s: one token back
		t.Fatal("no token after a tenth of a second at 10/s")
	}
	if l.allow("a.example", now.Add(100*time.Millisecond)) {
		t.Fatal("two requests on one token")
	}
}

func TestPolicy(t *testing.T) {
	open := &Policy{Deny: []string{"bad.example"}}
	if open.Allowed("bad.example") || open.Allowed("BAD.example") || !open.Allowed("good.example") {
		t.Fatal("deny list")
	}
	closed := &Policy{Allow: []string{"friend.example"}, Deny: []string{"friend.example"}}
	if closed.Allowed("friend.example") || closed.Allowed("other.example") {
		t.Fatal("allow list, with deny winning")
	}
}
