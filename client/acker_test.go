package client

import (
	"fmt"
	"testing"
	"time"

	"github.com/parleychat/parley/wire"
)

// The Acker acknowledges a message as soon as it is handled (its sender's
// receipt depends on it) and holds answers and receipts until a message's
// acknowledgement takes them along or LazyAckDelay has passed.
func TestAckerHoldsWhatHasNoConsequence(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	bob := newAccount(t, srv, "bob", false, nil)
	dial := func(a *Account) (*Conn, *Acker) {
		c, err := a.API().Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		next(t, c, wire.EventCaughtUp)
		return c, NewAcker(c)
	}
	ca, acksA := dial(alice)
	cb, acksB := dial(bob)
	send := func(i int) {
		f := wire.ClientFrame{Type: wire.FrameSend, ClientID: fmt.Sprint("c", i), To: "bob@localhost",
			Envelopes: []wire.Envelope{{User: "bob@localhost", Device: 1, Type: wire.CiphertextWhisper, Body: []byte("x")}}}
		if err := ca.Send(ctx, f); err != nil {
			t.Fatal(err)
		}
	}

	// Alice's answer is held: it stays in her inbox.
	send(0)
	answer := next(t, ca, wire.EventSent)
	held := time.Now()
	if err := acksA.Add(ctx, &answer); err != nil {
		t.Fatal(err)
	}
	// Bob's message is acknowledged at once, which sends alice a receipt.
	msg := next(t, cb, wire.EventMessage)
	if err := acksB.Add(ctx, &msg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob's inbox to empty", func() bool { return len(pending(t, bob)) == 0 })
	receipt := next(t, ca, wire.EventReceipt)
	if err := acksA.Add(ctx, &receipt); err != nil {
		t.Fatal(err)
	}
	if p := pending(t, alice); len(p) != 2 && time.Since(held) < LazyAckDelay {
		t.Fatalf("alice's inbox holds %d events within %s, want her answer and receipt", len(p), LazyAckDelay)
	}
	// Due fires once the oldest has waited LazyAckDelay; Tick sends both.
	select {
	case <-acksA.Due():
	case <-ctx.Done():
		t.Fatal("Due never fired")
	}
	if waited := time.Since(held); waited < LazyAckDelay {
		t.Fatalf("Due fired after %s", waited)
	}
	if err := acksA.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice's inbox to empty", func() bool { return len(pending(t, alice)) == 0 })
	if acksA.Due() != nil {
		t.Fatal("Due with nothing held")
	}

	// Held events ride along with a message's acknowledgement.
	send(1)
	answer = next(t, ca, wire.EventSent)
	acksA.Add(ctx, &answer)
	if err := cb.Send(ctx, wire.ClientFrame{Type: wire.FrameSend, ClientID: "b1", To: "alice@localhost",
		Envelopes: []wire.Envelope{{User: "alice@localhost", Device: 1, Type: wire.CiphertextWhisper, Body: []byte("y")}}}); err != nil {
		t.Fatal(err)
	}
	reply := next(t, ca, wire.EventMessage)
	acksA.Add(ctx, &reply)
	eventually(t, "alice's answer to go with her message's acknowledgement", func() bool {
		return len(pending(t, alice)) == 0
	})

	// Flush sends whatever is held.
	acksB.Add(ctx, ptr(next(t, cb, wire.EventMessage)))
	send(2)
	answer = next(t, ca, wire.EventSent)
	acksA.Add(ctx, &answer)
	if err := acksA.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the flushed answer to leave alice's inbox", func() bool {
		for _, ev := range pending(t, alice) {
			if ev.ID == answer.ID {
				return false
			}
		}
		return true
	})

	// A group message's acknowledgement is held as well (its sender sees
	// an aggregated count); a direct message's is due at once and takes
	// it along (ids the server does not know are ignored).
	acksA.Add(ctx, &wire.Event{Type: wire.EventMessage, ID: 1 << 40, Group: "g-x", Conversation: "g-x"})
	if acksA.urgent || len(acksA.ids) != 1 || acksA.Due() == nil {
		t.Fatalf("a group message's acknowledgement: urgent %v, held %v", acksA.urgent, acksA.ids)
	}
	acksA.Add(ctx, &wire.Event{Type: wire.EventMessage, ID: 1<<40 + 1, Conversation: "d-x"})
	if len(acksA.ids) != 0 && !acksA.urgent {
		t.Fatalf("a direct message's acknowledgement is not due: held %v", acksA.ids)
	}
}

func ptr[T any](v T) *T { return &v }

// next returns c's next event of type typ, skipping others (receipts
// and answers of earlier steps).
func next(t *testing.T, c *Conn, typ string) wire.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("connection ended waiting for %s: %v", typ, c.Err())
			}
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event", typ)
		}
	}
}
