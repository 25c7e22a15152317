package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlite"
)

func open(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addAccount(ctx context.Context, s storage.Store, user string) error {
	return s.Write(ctx, func(tx storage.Tx) error {
		return tx.InsertAccount(storage.Account{UserID: user, PasswordHash: "x", CreatedAt: time.Now()})
	})
}

// Concurrent writers share commits, and one failing Write in a batch rolls
// back only itself.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	const n = 400
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Write(ctx, func(tx storage.Tx) error {
				if err := tx.InsertAccount(storage.Account{UserID: fmt.Sprintf("u%d@x", i), PasswordHash: "x"}); err != nil {
					return err
				}
				if i%10 == 0 {
					return errors.New("refused on purpose") // must undo the insert above
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != (err != nil) {
			t.Fatalf("write %d: err = %v", i, err)
		}
	}
	err := s.Read(ctx, func(tx storage.Tx) error {
		for i := range n {
			_, err := tx.Account(fmt.Sprintf("u%d@x", i))
			if i%10 == 0 && !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("failed write %d left its row: %v", i, err)
			}
			if i%10 != 0 && err != nil {
				return fmt.Errorf("write %d lost: %v", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Writes != n {
		t.Fatalf("stats count %d writes, want %d", st.Writes, n)
	}
	t.Logf("%d writes in %d commits", st.Writes, st.Commits)
}

func TestUniqueViolationIsConflict(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if err := addAccount(ctx, s, "a@x"); err != nil {
		t.Fatal(err)
	}
	if err := addAccount(ctx, s, "a@x"); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("second insert: %v, want ErrConflict", err)
	}
}

// Every one-time prekey goes to exactly one of many concurrent claimers.
func TestConcurrentPreKeyClaims(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	const keys, claimers = 50, 120
	err := s.Write(ctx, func(tx storage.Tx) error {
		var ks []storage.PreKey
		for i := 1; i <= keys; i++ {
			ks = append(ks, storage.PreKey{ID: uint32(i), PublicKey: []byte{byte(i)}})
		}
		return tx.InsertPreKeys("a@x", 1, ks)
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[uint32]int{}
	empty := 0
	var wg sync.WaitGroup
	for range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var k storage.PreKey
			err := s.Write(ctx, func(tx storage.Tx) (err error) {
				k, err = tx.ClaimPreKey("a@x", 1)
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, storage.ErrNotFound):
				empty++
			case err != nil:
				t.Error(err)
			default:
				got[k.ID]++
			}
		}()
	}
	wg.Wait()
	if len(got) != keys || empty != claimers-keys {
		t.Fatalf("%d distinct keys claimed, %d empty; want %d and %d", len(got), empty, keys, claimers-keys)
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("prekey %d handed out %d times", id, n)
		}
	}
}

// Inbox ids are never reused, even after the newest entry is deleted:
// devices de-duplicate by id.
func TestInboxIDsNeverReused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	insert := func() int64 {
		var last int64
		err := s.Write(ctx, func(tx storage.Tx) error {
			if err := tx.InsertInbox([]storage.InboxEntry{{UserID: "a@x", DeviceID: 1, Kind: storage.EntryMessage, Payload: []byte(`{}`)}}); err != nil {
				return err
			}
			es, err := tx.Inbox("a@x", 1, 0, 100)
			if err != nil {
				return err
			}
			last = es[len(es)-1].ID
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return last
	}
	first := insert()
	err := s.Write(ctx, func(tx storage.Tx) error {
		_, err := tx.DeleteInbox("a@x", 1, []int64{first})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir) // reopening must not reset the counter either
	defer s.Close()
	if second := insert(); second <= first {
		t.Fatalf("id %d reused after deleting %d", second, first)
	}
}

func TestReopenKeepsDataAndMigratesOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if err := addAccount(ctx, s, "a@x"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	defer s.Close()
	err := s.Read(ctx, func(tx storage.Tx) error {
		_, err := tx.Account("a@x")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteAfterClose(t *testing.T) {
	s := open(t, t.TempDir())
	s.Close()
	if err := addAccount(context.Background(), s, "a@x"); !errors.Is(err, sqlite.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestReadIsReadOnly(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	err := s.Read(ctx, func(tx storage.Tx) error {
		return tx.InsertAccount(storage.Account{UserID: "a@x", PasswordHash: "x"})
	})
	if err == nil {
		t.Fatal("a write inside Read succeeded")
	}
}

// DeleteInbox deletes exactly the listed entries of the device, whatever
// the number of ids (the IN list is padded to a few fixed sizes), and
// skips unknown ids and other devices' entries.
func TestDeleteInboxBatchSizes(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	for _, n := range []int{1, 3, 16, 17, 300, 1500} {
		var ids []int64
		err := s.Write(ctx, func(tx storage.Tx) error {
			var es []storage.InboxEntry
			for range n {
				es = append(es, storage.InboxEntry{UserID: "a@x", DeviceID: 1, Kind: storage.EntryMessage, Payload: []byte(`{}`)})
			}
			es = append(es, storage.InboxEntry{UserID: "a@x", DeviceID: 2, Kind: storage.EntryMessage, Payload: []byte(`{}`)})
			if err := tx.InsertInbox(es); err != nil {
				return err
			}
			got, err := tx.Inbox("a@x", 1, 0, 10000)
			ids = ids[:0]
			for _, e := range got {
				ids = append(ids, e.ID)
			}
			return err
		})
		if err != nil || len(ids) != n {
			t.Fatalf("n=%d: %d entries, %v", n, len(ids), err)
		}
		var deleted []storage.InboxEntry
		err = s.Write(ctx, func(tx storage.Tx) (err error) {
			deleted, err = tx.DeleteInbox("a@x", 1, append(ids, 1<<40)) // one unknown id
			return err
		})
		if err != nil || len(deleted) != n {
			t.Fatalf("n=%d: deleted %d, %v", n, len(deleted), err)
		}
		err = s.Read(ctx, func(tx storage.Tx) error {
			left, err := tx.Inbox("a@x", 1, 0, 10)
			if err == nil && len(left) != 0 {
				return fmt.Errorf("%d entries left", len(left))
			}
			other, err := tx.Inbox("a@x", 2, 0, 10000)
			if err == nil && len(other) == 0 {
				return fmt.Errorf("another device's entries were deleted")
			}
			return err
		})
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
	}
}

// Write transactions answer KeyedDevices from the writer's device cache.
// It must agree with the database at every step: after keys are set, after
// a device is removed, and after a Write that changed devices failed and
// was rolled back (alone, inside a shared commit, or on its own).
func TestDeviceCacheStaysExact(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	const user = "carol@x"
	if err := addAccount(ctx, s, user); err != nil {
		t.Fatal(err)
	}
	keys := storage.DeviceKeys{IdentityKey: []byte("ik"), SignedPreKey: storage.SignedPreKey{PublicKey: []byte("p"), Signature: []byte("s")}}
	write := func(fn func(tx storage.Tx) error) error { return s.Write(ctx, fn) }
	check := func(step string, want ...uint32) {
		t.Helper()
		var inWrite, inRead []uint32
		if err := write(func(tx storage.Tx) (err error) { inWrite, err = tx.KeyedDevices(user); return err }); err != nil {
			t.Fatal(err)
		}
		if err := s.Read(ctx, func(tx storage.Tx) (err error) { inRead, err = tx.KeyedDevices(user); return err }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(inWrite) != fmt.Sprint(want) || fmt.Sprint(inRead) != fmt.Sprint(want) {
			t.Fatalf("%s: write tx sees %v, read tx %v, want %v", step, inWrite, inRead, want)
		}
	}
	addDevice := func(id uint32, withKeys bool) error {
		return write(func(tx storage.Tx) error {
			if err := tx.InsertDevice(storage.Device{UserID: user, DeviceID: id, TokenHash: []byte(fmt.Sprint("t", id))}); err != nil {
				return err
			}
			if withKeys {
				return tx.SetDeviceKeys(user, id, keys)
			}
			return nil
		})
	}
	check("no devices")
	if err := addDevice(1, true); err != nil {
		t.Fatal(err)
	}
	check("one device", 1)
	if err := addDevice(2, false); err != nil {
		t.Fatal(err)
	}
	check("a device without keys", 1)
	if err := write(func(tx storage.Tx) error { return tx.SetDeviceKeys(user, 2, keys) }); err != nil {
		t.Fatal(err)
	}
	check("keys uploaded", 1, 2)

	// A Write that adds a device, reads it back (filling the cache inside
	// its own transaction) and then fails leaves no trace, also when it
	// shares its commit with others.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := write(func(tx storage.Tx) error {
				if i%2 == 0 {
					_, err := tx.KeyedDevices(user)
					return err
				}
				if err := tx.InsertDevice(storage.Device{UserID: user, DeviceID: 3, TokenHash: []byte("t3")}); err != nil {
					return err
				}
				if err := tx.SetDeviceKeys(user, 3, keys); err != nil {
					return err
				}
				if devs, err := tx.KeyedDevices(user); err != nil || len(devs) != 3 {
					return fmt.Errorf("inside the write: %v %v", devs, err)
				}
				return errors.New("refused on purpose")
			})
			if (i%2 == 0) != (err == nil) {
				t.Errorf("write %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	check("after rolled-back additions", 1, 2)
	if err := write(func(tx storage.Tx) error { return tx.DeleteDevice(user, 1) }); err != nil {
		t.Fatal(err)
	}
	check("device removed", 2)
}

// Low-priority Writes wait behind normal ones queued after them, but are
// never starved: a waiting one goes after every three normal ones. Once a
// batch holds a normal Write that has waited lowBudget (2 ms), it takes no
// more low-priority ones, so a send is not held up by a burst of acks.
func TestLowPriorityWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		holdLow bool // the Write that holds the writer is low-priority
		want    string
	}{
		{"fair", true, "normal normal normal low normal normal normal"},
		{"send-bounded", false, "normal normal normal normal normal normal normal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{MaxBatch: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Hold the writer in a Write until both queues have filled up;
			// the requests that join its batch show the order.
			hold, held := make(chan struct{}), make(chan struct{})
			holder := s.Write
			if tc.holdLow {
				holder = s.WriteLowPriority
			}
			go holder(ctx, func(storage.Tx) error { close(held); <-hold; return nil })
			<-held
			var mu sync.Mutex
			var order []string
			var wg sync.WaitGroup
			queue := func(name string, write func(context.Context, func(storage.Tx) error) error) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					err := write(ctx, func(storage.Tx) error {
						mu.Lock()
						order = append(order, name)
						mu.Unlock()
						return nil
					})
					if err != nil {
						t.Error(err)
					}
				}()
			}
			for range 12 {
				queue("low", s.WriteLowPriority)
			}
			time.Sleep(50 * time.Millisecond) // the low-priority ones are queued first
			for range 12 {
				queue("normal", s.Write)
			}
			time.Sleep(50 * time.Millisecond)
			close(hold)
			wg.Wait()
			if got := fmt.Sprint(order[:7]); got != "["+tc.want+"]" {
				t.Fatalf("the holder's batch ran %v, want [%s]", got, tc.want)
			}
		})
	}
}

// An inbox entry that a commit inserts and deletes again (a superseded
// summary) is not handed to the listener; the others are, in id order.
func TestListenerSkipsEntriesDeletedInTheSameCommit(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var got []storage.InboxEntry
	s.OnInboxAdded(func(added []storage.InboxEntry) { got = append(got, added...) })
	entry := func(kind string) storage.InboxEntry {
		return storage.InboxEntry{UserID: "u@x", DeviceID: 1, Kind: kind, Conversation: "c", Payload: []byte(`{}`)}
	}
	err := s.Write(ctx, func(tx storage.Tx) error {
		if err := tx.InsertInbox([]storage.InboxEntry{entry(storage.EntryReadSummary), entry("message")}); err != nil {
			return err
		}
		if newer, err := tx.ReplaceSummary("u@x", 1, storage.EntryReadSummary, "c", 0); err != nil || newer {
			return fmt.Errorf("ReplaceSummary: %v, newer %v", err, newer)
		}
		return tx.InsertInbox([]storage.InboxEntry{entry(storage.EntryReadSummary)})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, func(tx storage.Tx) error {
		_, err := tx.ReplaceSummary("u@x", 1, storage.EntryMessage, "c", 0)
		return err
	})
	if err == nil {
		t.Fatal("ReplaceSummary of message entries: no error (only summaries are indexed by kind)")
	}
	if len(got) != 2 || got[0].Kind != "message" || got[1].Kind != storage.EntryReadSummary || got[0].ID >= got[1].ID {
		t.Fatalf("listener got %+v, want the message, then the second summary", got)
	}
}

// Finally functions run once per commit and key, the last registered one,
// after every Write of the commit; a failed Write's registrations are
// dropped; what they insert reaches the listener.
func TestFinallyRunsOncePerCommitAndKey(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var got []storage.InboxEntry
	s.OnInboxAdded(func(added []storage.InboxEntry) { got = append(got, added...) })
	// Hold the writer so that the ten Writes below share one commit.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.Write(ctx, func(storage.Tx) error { close(held); <-hold; return nil })
	<-held
	var mu sync.Mutex
	var log []string // "w3" when Write 3 ran, "f:k0" when k0's function ran
	note := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Write(ctx, func(tx storage.Tx) error {
				note(fmt.Sprint("w", i))
				key := fmt.Sprint("k", i%2)
				tx.Finally(key, func(tx storage.Tx) error {
					note("f:" + key)
					return tx.InsertInbox([]storage.InboxEntry{{UserID: "u@x", DeviceID: 1, Kind: "message",
						Payload: []byte(fmt.Sprintf(`{"from":%d}`, i))}})
				})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(hold)
	wg.Wait()
	if len(log) != 12 || log[10][0] != 'f' || log[11][0] != 'f' || log[10] == log[11] {
		t.Fatalf("ran %v, want the ten Writes, then k0's and k1's functions once each", log)
	}
	last := map[string]string{} // key -> payload of the last Write registering it
	for _, l := range log[:10] {
		var i int
		fmt.Sscanf(l, "w%d", &i)
		last[fmt.Sprint("k", i%2)] = fmt.Sprintf(`{"from":%d}`, i)
	}
	if len(got) != 2 || string(got[0].Payload) != last[log[10][2:]] || string(got[1].Payload) != last[log[11][2:]] {
		t.Fatalf("listener got %d entries (%v), want the last registered function's of each key (%v)", len(got), got, last)
	}

	// A failed Write's registration does not run.
	ran := false
	err := s.Write(ctx, func(tx storage.Tx) error {
		tx.Finally("k2", func(storage.Tx) error { ran = true; return nil })
		return errors.New("refused on purpose")
	})
	if err == nil || ran {
		t.Fatalf("failed Write: err %v, its Finally function ran: %v", err, ran)
	}

	// A Finally function that panics fails its commit, not the process;
	// the writer goes on.
	err = s.Write(ctx, func(tx storage.Tx) error {
		tx.Finally("k3", func(storage.Tx) error { panic("on purpose") })
		return nil
	})
	if err == nil {
		t.Fatal("a Write whose Finally function panicked succeeded")
	}
	if err := addAccount(ctx, s, "after-panic@x"); err != nil {
		t.Fatalf("a Write after the panic: %v", err)
	}
}

// A summary is replaced only by one of the same or a later seq: one for
// an older message reports the newer one pending and deletes nothing.
func TestReplaceSummaryKeepsTheNewest(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	summary := func(seq uint64) storage.InboxEntry {
		return storage.InboxEntry{UserID: "u@x", DeviceID: 1, Kind: storage.EntryDeliveredSummary, Conversation: "g",
			Seq: seq, Payload: []byte(`{}`)}
	}
	replace := func(seq uint64) (newer bool) {
		t.Helper()
		err := s.Write(ctx, func(tx storage.Tx) (err error) {
			newer, err = tx.ReplaceSummary("u@x", 1, storage.EntryDeliveredSummary, "g", seq)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return newer
	}
	pending := func() (seqs []uint64) {
		s.Read(ctx, func(tx storage.Tx) error {
			es, err := tx.Inbox("u@x", 1, 0, 10)
			for _, e := range es {
				seqs = append(seqs, e.Seq)
			}
			return err
		})
		return seqs
	}
	if err := s.Write(ctx, func(tx storage.Tx) error { return tx.InsertInbox([]storage.InboxEntry{summary(5)}) }); err != nil {
		t.Fatal(err)
	}
	if !replace(3) || fmt.Sprint(pending()) != "[5]" {
		t.Fatalf("an older summary replaced seq 5: pending %v", pending())
	}
	if replace(7) || len(pending()) != 0 {
		t.Fatalf("a newer summary did not replace seq 5: pending %v", pending())
	}
}

// DeleteInbox reports the same deleted messages whether the writer still
// remembers the entries (and deletes them without reading them back) or
// not (after a rolled-back deletion, or a restart): each deleted message
// once, with what a receipt needs, and nothing of another device.
func TestDeleteInboxRemembersCommittedEntries(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	msg := func(dev uint32, seq uint64) storage.InboxEntry {
		return storage.InboxEntry{UserID: "a@x", DeviceID: dev, Kind: storage.EntryMessage, Conversation: "d-1",
			Seq: seq, Sender: "b@x", Payload: []byte(`{}`)}
	}
	var ids []int64
	err := s.Write(ctx, func(tx storage.Tx) error {
		es := []storage.InboxEntry{msg(1, 1),
			{UserID: "a@x", DeviceID: 1, Kind: storage.EntrySent, Conversation: "d-1", Seq: 2, ClientID: "c1", Payload: []byte(`{}`)},
			{UserID: "a@x", DeviceID: 1, Kind: storage.EntryReceipt, Conversation: "d-1", Seq: 2, Payload: []byte(`{}`)},
			msg(1, 3), msg(2, 1), msg(2, 3)}
		expiring := msg(1, 4)
		expiring.ExpiresAt = time.Now().Add(-time.Minute)
		es = append(es, expiring)
		if err := tx.InsertInbox(es); err != nil {
			return err
		}
		ids = nil
		for _, d := range []uint32{1, 2} {
			got, err := tx.Inbox("a@x", d, 0, 10)
			if err != nil {
				return err
			}
			for _, e := range got {
				ids = append(ids, e.ID)
			}
		}
		return nil
	})
	if err != nil || len(ids) != 7 {
		t.Fatalf("%d entries, %v", len(ids), err)
	}
	m1, sent, receipt, m3, expired, other1 := ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]
	wantMessage := func(got []storage.InboxEntry, id int64, seq uint64, dev uint32) {
		t.Helper()
		if len(got) != 1 {
			t.Fatalf("deleted %+v, want message %d alone", got, id)
		}
		e := got[0]
		if e.ID != id || e.Kind != storage.EntryMessage || e.Seq != seq || e.Conversation != "d-1" || e.Sender != "b@x" ||
			e.UserID != "a@x" || e.DeviceID != dev {
			t.Fatalf("deleted %+v, want message %d (seq %d) of device %d from b@x", e, id, seq, dev)
		}
	}
	left := func(dev uint32) int {
		t.Helper()
		var n int
		err := s.Read(ctx, func(tx storage.Tx) error {
			es, err := tx.Inbox("a@x", dev, 0, 10)
			n = len(es)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// A remembered message whose row is gone (expired) is not reported.
	expireOne(t, s)
	if got := deleteInbox(t, s, 1, expired); len(got) != 0 {
		t.Fatalf("acknowledging an expired message reported %+v", got)
	}

	// Remembered: the message is reported, the answer deleted silently,
	// another device's entry and an unknown id skipped.
	wantMessage(deleteInbox(t, s, 1, m1, sent, other1, 1<<40), m1, 1, 1)
	if got := deleteInbox(t, s, 1, m1, sent); len(got) != 0 {
		t.Fatalf("a repeated acknowledgement deleted %+v", got)
	}
	if n := left(1); n != 2 {
		t.Fatalf("device 1 has %d entries left, want the receipt and the second message", n)
	}
	if n := left(2); n != 2 {
		t.Fatalf("device 2 has %d entries left, want both", n)
	}

	// A deletion rolled back is forgotten by the cache, not undone in it:
	// the entry is still there, and deleting it again reports it.
	failed := errors.New("refused")
	err = s.Write(ctx, func(tx storage.Tx) error {
		if _, err := tx.DeleteInbox("a@x", 1, []int64{m3}); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("write: %v", err)
	}
	wantMessage(deleteInbox(t, s, 1, m3, m3), m3, 3, 1)

	// After a restart nothing is remembered.
	s.Close()
	s = open(t, dir)
	defer s.Close()
	if got := deleteInbox(t, s, 1, receipt); len(got) != 0 {
		t.Fatalf("deleting a receipt reported %+v", got)
	}
	wantMessage(deleteInbox(t, s, 2, other1, m1), other1, 1, 2)
	if n := left(1) + left(2); n != 1 {
		t.Fatalf("%d entries left, want device 2's second message", n)
	}
}

// Many remembered messages acknowledged at once (looked up in one read):
// each still there is reported once, one already gone (expired) is not.
func TestDeleteInboxManyRememberedMessages(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var ids []int64
	err := s.Write(ctx, func(tx storage.Tx) error {
		var es []storage.InboxEntry
		for i := range 6 {
			e := storage.InboxEntry{UserID: "a@x", DeviceID: 1, Kind: storage.EntryMessage, Conversation: "g-1",
				Seq: uint64(i + 1), MessageID: int64(100 + i), Sender: "b@x", Payload: []byte(`{}`)}
			if i == 0 {
				e.ExpiresAt = time.Now().Add(-time.Minute)
			}
			es = append(es, e)
		}
		if err := tx.InsertInbox(es); err != nil {
			return err
		}
		got, err := tx.Inbox("a@x", 1, 0, 10)
		ids = nil
		for _, e := range got {
			ids = append(ids, e.ID)
		}
		return err
	})
	if err != nil || len(ids) != 6 {
		t.Fatalf("%d entries, %v", len(ids), err)
	}
	expireOne(t, s)
	got := deleteInbox(t, s, 1, ids...)
	if len(got) != 5 {
		t.Fatalf("deleted %d messages, want 5: %+v", len(got), got)
	}
	seen := map[int64]bool{}
	for _, e := range got {
		if seen[e.ID] || e.ID == ids[0] || e.Sender != "b@x" || e.MessageID != 100+int64(e.Seq-1) {
			t.Fatalf("deleted %+v", e)
		}
		seen[e.ID] = true
	}
	if got := deleteInbox(t, s, 1, ids...); len(got) != 0 {
		t.Fatalf("repeated: %+v", got)
	}
}

// GroupDeviceIDs lists the devices GroupDevices lists (joined members'
// devices with keys, remote members' from their cached lists), without
// keys.
func TestGroupDeviceIDsMatchGroupDevices(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	var ids, full []storage.GroupDevice
	err := s.Write(ctx, func(tx storage.Tx) error {
		for i, u := range []string{"a@x", "b@x", "c@x"} {
			if err := tx.InsertAccount(storage.Account{UserID: u, PasswordHash: "x", CreatedAt: time.Now()}); err != nil {
				return err
			}
			for d := uint32(1); d <= 2; d++ {
				dev := storage.Device{UserID: u, DeviceID: d, Name: "d", TokenHash: []byte(fmt.Sprint(u, d)), CreatedAt: time.Now()}
				if d == 1 || i == 0 { // b's and c's second devices have no keys
					dev.IdentityKey = []byte{byte(i), byte(d)}
				}
				if err := tx.InsertDevice(dev); err != nil {
					return err
				}
			}
		}
		if err := tx.PutRemoteDeviceList(storage.RemoteList{UserID: "r@y", StreamPos: 1, FetchedAt: time.Now(),
			Devices: []storage.GroupDevice{{UserID: "r@y", DeviceID: 7, IdentityKey: []byte{9}}}}); err != nil {
			return err
		}
		if err := tx.InsertGroup(storage.Group{ID: "g-1", Name: "g", Creator: "a@x", CreatedAt: time.Now()}); err != nil {
			return err
		}
		for _, m := range []storage.GroupMember{{GroupID: "g-1", UserID: "a@x", Role: "owner", State: storage.MemberJoined},
			{GroupID: "g-1", UserID: "b@x", Role: "member", State: storage.MemberJoined},
			{GroupID: "g-1", UserID: "c@x", Role: "member", State: storage.MemberInvited},
			{GroupID: "g-1", UserID: "r@y", Role: "member", State: storage.MemberJoined}} {
			if err := tx.PutGroupMember(m); err != nil {
				return err
			}
		}
		var err error
		if ids, err = tx.GroupDeviceIDs("g-1"); err != nil {
			return err
		}
		full, err = tx.GroupDevices("g-1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	key := func(d storage.GroupDevice) string { return fmt.Sprint(d.UserID, "/", d.DeviceID) }
	var got, want []string
	for _, d := range ids {
		if d.IdentityKey != nil {
			t.Fatalf("%+v has a key", d)
		}
		got = append(got, key(d))
	}
	for _, d := range full {
		want = append(want, key(d))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) || len(want) != 4 {
		t.Fatalf("GroupDeviceIDs %v, GroupDevices %v (want a@x/1, a@x/2, b@x/1, r@y/7)", got, want)
	}
}

// deleteInbox acknowledges ids of a@x's device dev in a Write of its own
// and returns the messages it reports deleted.
func deleteInbox(t *testing.T, s *sqlite.Store, dev uint32, ids ...int64) []storage.InboxEntry {
	t.Helper()
	var deleted []storage.InboxEntry
	err := s.Write(context.Background(), func(tx storage.Tx) (err error) {
		deleted, err = tx.DeleteInbox("a@x", dev, ids)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return deleted
}

// expireOne runs the inbox expiry, which must find exactly one entry.
func expireOne(t *testing.T, s *sqlite.Store) {
	t.Helper()
	err := s.Write(context.Background(), func(tx storage.Tx) error {
		n, _, err := tx.ExpireInbox(time.Now(), 10)
		if err == nil && n != 1 {
			err = fmt.Errorf("expired %d entries, want 1", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
