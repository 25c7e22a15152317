package homeserver_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/parleychat/parley/wire"
)

// A send forwarded by a remote user's server is recognised by its client
// id when it comes again in another transaction (its server retried after
// losing the answer): the hub stores and sequences it once.
func TestForwardedSendRecognisedAgain(t *testing.T) {
	e := newFuzzEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	forward := []wire.FedItem{{Kind: wire.FedForward, Conversation: e.direct, Sender: "bob@b.test", SenderDevice: 1,
		ClientID: "f1", To: "alice@a.test", SentAt: &now, Envelopes: []wire.Envelope{
			{User: "alice@a.test", Device: 1, Type: wire.CiphertextWhisper, Body: []byte("one")},
			{User: "alice@a.test", Device: 2, Type: wire.CiphertextWhisper, Body: []byte("two")}}}}
	messages := func() (seqs []uint64) {
		evs, _, err := e.hs.Inbox(ctx, e.alice, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			var w wire.Event
			if err := json.Unmarshal(ev.JSON(), &w); err != nil {
				t.Fatal(err)
			}
			if w.Type == wire.EventMessage && w.From == "bob@b.test" {
				seqs = append(seqs, w.Seq)
			}
		}
		return seqs
	}
	for _, txn := range []string{"x1", "x2"} {
		res, err := e.hs.ReceiveTransaction(ctx, "b.test", txn, forward)
		if err != nil || len(res.Refused) != 0 {
			t.Fatalf("transaction %s: %+v %v", txn, res, err)
		}
		if seqs := messages(); len(seqs) != 1 || seqs[0] != 2 {
			t.Fatalf("after transaction %s alice has bob's messages %v, want one, seq 2", txn, seqs)
		}
	}
	// Another client id is another message.
	forward[0].ClientID = "f2"
	if _, err := e.hs.ReceiveTransaction(ctx, "b.test", "x3", forward); err != nil {
		t.Fatal(err)
	}
	if seqs := messages(); len(seqs) != 2 || seqs[1] != 3 {
		t.Fatalf("after f2 alice has bob's messages %v, want seqs 2 and 3", seqs)
	}
}
