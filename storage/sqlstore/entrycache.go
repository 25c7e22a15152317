package sqlstore

import "github.com/parleychat/parley/storage"

// EntryCache remembers, for a single-writer engine (SQLite), what an
// acknowledgement needs of the inbox entries committed lately: their
// device, kind and, for messages, whom to tell. With it DeleteInbox
// deletes them by plain statements instead of DELETE … RETURNING, which
// SQLite runs as a trigger per row: three acknowledgements per direct
// message cost ~55 µs of the writer's CPU with RETURNING and ~33 µs
// without (docs/performance.md). It is owned by the writer and used by
// one transaction at a time, so it needs no lock.
//
// It is never an authority. Entries are immutable and their ids never
// reused, so a remembered entry is right about everything but whether its
// row still exists; DeleteInbox learns that from the row count where it
// matters (a message, whose deletion has consequences). An entry the
// cache lacks (older, evicted, or from another process) takes the
// RETURNING path. Forgetting early is always safe.
type EntryCache struct {
	byID map[int64]cachedEntry
	ring []int64 // ids in the order added, for eviction; grows to max
	next int     // once ring is full, the slot of the oldest id
	max  int
}

type cachedEntry struct {
	userID       string
	deviceID     uint32
	kind         string
	conversation string
	seq          uint64
	messageID    int64
	sender       string
}

// NewEntryCache remembers up to max entries, forgetting the oldest first.
// It grows with use: made at full size, it cost an idle server 14 MB of
// memory (and each of 19,000 idle sockets 600 bytes more, the collector's
// goal growing with it).
func NewEntryCache(max int) *EntryCache {
	return &EntryCache{byID: map[int64]cachedEntry{}, max: max}
}

// Add remembers committed entries. The engine calls it after each commit
// with the entries the commit added (and did not delete again).
func (c *EntryCache) Add(entries []storage.InboxEntry) {
	for _, e := range entries {
		if len(c.ring) < c.max {
			c.ring = append(c.ring, e.ID)
		} else {
			delete(c.byID, c.ring[c.next])
			c.ring[c.next] = e.ID
			c.next = (c.next + 1) % len(c.ring)
		}
		c.byID[e.ID] = cachedEntry{userID: e.UserID, deviceID: e.DeviceID, kind: e.Kind,
			conversation: e.Conversation, seq: e.Seq, messageID: e.MessageID, sender: e.Sender}
	}
}

// take returns what the cache knows of entry id of the given device and
// forgets it (the caller is deleting it).
func (c *EntryCache) take(userID string, deviceID uint32, id int64) (cachedEntry, bool) {
	e, ok := c.byID[id]
	if !ok || e.userID != userID || e.deviceID != deviceID {
		return cachedEntry{}, false
	}
	delete(c.byID, id) // its ring slot is reused in turn
	return e, true
}

// Len is how many entries are remembered.
func (c *EntryCache) Len() int { return len(c.byID) }
