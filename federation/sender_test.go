package federation

import (
	"testing"

	"github.com/parleychat/parley/homeserver"
)

// A transaction takes items while they fit its byte budget, and always at
// least one, however large.
func TestWithinBytes(t *testing.T) {
	item := func(n int) homeserver.OutboxEntry { return homeserver.OutboxEntry{Item: make([]byte, n)} }
	entries := []homeserver.OutboxEntry{item(40), item(40), item(30), item(10)}
	for _, c := range []struct{ max, want int }{{100, 2}, {110, 3}, {1000, 4}, {10, 1}, {40, 1}, {80, 2}} {
		if got := len(withinBytes(entries, c.max)); got != c.want {
			t.Errorf("budget %d: %d items, want %d", c.max, got, c.want)
		}
	}
	if got := len(withinBytes(nil, 10)); got != 0 {
		t.Errorf("no entries: %d", got)
	}
}
