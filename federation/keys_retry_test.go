package federation

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

// An origin that fails once (restarting, say) is asked again after the
// short FailedRefetchInterval, not after the full minute: its requests
// are refused for seconds, not for a minute. A flood still costs at most
// one fetch per interval.
func TestKeyCacheRetriesAFailedFetchSooner(t *testing.T) {
	e := newKeyEnv(t)
	k := e.key()
	e.origin.mu.Lock()
	e.origin.status = http.StatusServiceUnavailable
	e.origin.mu.Unlock()
	for range 20 {
		if _, err := e.lookup(k.ID); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("origin down: %v", err)
		}
	}
	if n := e.origin.hits.Load(); n != 1 {
		t.Fatalf("%d fetches while the origin is down, want 1", n)
	}
	e.origin.mu.Lock()
	e.origin.status = 0
	e.origin.mu.Unlock()
	e.clock.Advance(4 * time.Second)
	if _, err := e.lookup(k.ID); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("within 5s of a failed fetch: %v", err)
	}
	e.clock.Advance(2 * time.Second)
	if _, err := e.lookup(k.ID); err != nil {
		t.Fatalf("6s after a failed fetch, the origin being back: %v", err)
	}
	// After a successful fetch the full minute applies again.
	e.clock.Advance(10 * time.Second)
	_, _ = e.lookup("ed25519:bogus")
	if n := e.origin.hits.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}
