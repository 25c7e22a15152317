package homeserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

// Acknowledgements that arrive together are written together: 200
// concurrent ones take far fewer than 200 Writes, and each is applied
// (its entry gone, its receipt queued) by the time Ack returns.
func TestConcurrentAcksAreCoalesced(t *testing.T) {
	e := newFuzzEnv(t)
	ctx := context.Background()
	const n = 200
	for i := range n {
		_, err := e.hs.Send(ctx, e.carol, wire.SendRequest{ClientID: fmt.Sprint("c", i), To: "alice@a.test",
			Envelopes: []wire.Envelope{{User: "alice@a.test", Device: 1, Type: wire.CiphertextWhisper, Body: []byte("x")},
				{User: "alice@a.test", Device: 2, Type: wire.CiphertextWhisper, Body: []byte("y")}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	events := func(c homeserver.Caller) []wire.Event {
		evs, _, err := e.hs.Inbox(ctx, c, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]wire.Event, len(evs))
		for i, ev := range evs {
			if err := json.Unmarshal(ev.JSON(), &out[i]); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	var ids []int64
	for _, ev := range events(e.alice) {
		if ev.Type == wire.EventMessage && ev.From == "carol@a.test" {
			ids = append(ids, ev.ID)
		}
	}
	if len(ids) != n {
		t.Fatalf("alice has %d messages from carol, want %d", len(ids), n)
	}
	before := e.store.Stats().Writes
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.hs.Ack(ctx, e.alice, []int64{id}); err != nil {
				t.Error(err)
				return
			}
			left, _, err := e.hs.Inbox(ctx, e.alice, id-1, 1)
			if err != nil || (len(left) > 0 && left[0].ID == id) {
				t.Errorf("entry %d still there after its Ack returned (%v)", id, err)
			}
		}()
	}
	wg.Wait()
	writes := e.store.Stats().Writes - before
	t.Logf("%d acknowledgements in %d Writes", n, writes)
	if writes > n/2 {
		t.Fatalf("%d acknowledgements took %d Writes: not coalesced", n, writes)
	}
	receipts := 0
	for _, ev := range events(e.carol) {
		if ev.Type == wire.EventReceipt && ev.Status == wire.StatusDelivered && ev.By == "alice@a.test" && ev.ByDevice == 1 {
			receipts++
		}
	}
	if receipts != n {
		t.Fatalf("carol has %d delivered receipts, want %d", receipts, n)
	}
}

// After Close, acknowledgements are refused as unavailable (the store may
// be closed next); Close itself returns once none is being written.
func TestAcksAfterClose(t *testing.T) {
	e := newFuzzEnv(t)
	ctx := context.Background()
	if err := e.hs.Ack(ctx, e.alice, []int64{1}); err != nil {
		t.Fatalf("an acknowledgement before Close: %v", err)
	}
	e.hs.Close()
	err := e.hs.Ack(ctx, e.alice, []int64{1})
	if werr, ok := homeserver.AsError(err); !ok || werr.Code != wire.CodeUnavailable {
		t.Fatalf("an acknowledgement after Close: %v, want %s", err, wire.CodeUnavailable)
	}
}
