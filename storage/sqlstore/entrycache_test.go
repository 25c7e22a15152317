package sqlstore

import (
	"testing"

	"github.com/parleychat/parley/storage"
)

// The cache holds at most max entries, forgetting the oldest first, and
// only answers for the device an entry belongs to.
func TestEntryCacheForgetsTheOldest(t *testing.T) {
	c := NewEntryCache(3)
	add := func(ids ...int64) {
		for _, id := range ids {
			c.Add([]storage.InboxEntry{{ID: id, UserID: "a@x", DeviceID: 1, Kind: storage.EntryMessage, Seq: uint64(id)}})
		}
	}
	add(1, 2, 3, 4, 5)
	if c.Len() != 3 {
		t.Fatalf("%d remembered, want 3", c.Len())
	}
	for _, id := range []int64{1, 2} {
		if _, ok := c.take("a@x", 1, id); ok {
			t.Fatalf("entry %d still remembered", id)
		}
	}
	if _, ok := c.take("a@x", 2, 3); ok {
		t.Fatal("entry 3 given to another device")
	}
	if e, ok := c.take("a@x", 1, 3); !ok || e.seq != 3 {
		t.Fatalf("entry 3: %+v %v", e, ok)
	}
	if _, ok := c.take("a@x", 1, 3); ok {
		t.Fatal("entry 3 taken twice")
	}
	add(6, 7) // 6 replaces 3's slot, 7 replaces 4's
	if _, ok := c.take("a@x", 1, 4); ok {
		t.Fatal("entry 4 outlived its slot")
	}
	for _, id := range []int64{5, 6, 7} {
		if _, ok := c.take("a@x", 1, id); !ok {
			t.Fatalf("entry %d forgotten", id)
		}
	}
}
