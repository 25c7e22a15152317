package homeserver_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/storage"
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

// A retry, after the upgrade, of a direct send made before it (its record
// moved to sends by a migration) is recognised: the server reads at start
// until when such records may exist and checks them meanwhile.
func TestRetryOfSendFromBeforeTheUpgrade(t *testing.T) {
	e := newFuzzEnv(t)
	ctx := context.Background()
	conv := homeserver.DirectConversationID("alice@a.test", "carol@a.test")
	sentAt := time.Now().UTC().Truncate(time.Millisecond).Add(-time.Minute)
	err := e.store.Write(ctx, func(tx storage.Tx) error {
		return tx.InsertSend(storage.Send{UserID: "alice@a.test", DeviceID: 1, ClientID: "legacy", Conversation: conv,
			Seq: 5, SentAt: sentAt, ExpiresAt: sentAt.Add(time.Hour)})
	})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := homeserver.New(e.store, homeserver.Options{Domain: "a.test",
		Password: homeserver.PasswordParams{Memory: 1024, Time: 1, Threads: 1}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	send := func(id string) wire.SendResult {
		t.Helper()
		res, err := hs.Send(ctx, e.alice, wire.SendRequest{ClientID: id, To: "carol@a.test", Envelopes: []wire.Envelope{
			{User: "carol@a.test", Device: 1, Type: wire.CiphertextWhisper, Body: []byte("c")},
			{User: "alice@a.test", Device: 2, Type: wire.CiphertextWhisper, Body: []byte("a")}}})
		if err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
		return res
	}
	if res := send("legacy"); !res.Repeated || res.Seq != 5 || res.Conversation != conv || !res.SentAt.Equal(sentAt) {
		t.Fatalf("retry of a send from before the upgrade: %+v", res)
	}
	if res := send("new"); res.Repeated || res.Seq != 1 {
		t.Fatalf("a new send: %+v", res)
	}
	evs, _, err := hs.Inbox(ctx, e.carol, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, ev := range evs {
		var w wire.Event
		if err := json.Unmarshal(ev.JSON(), &w); err != nil {
			t.Fatal(err)
		}
		if w.Type == wire.EventMessage && w.Conversation == conv {
			seqs = append(seqs, w.Seq)
		}
	}
	if len(seqs) != 1 || seqs[0] != 1 {
		t.Fatalf("carol has alice's messages %v, want the new one only (seq 1)", seqs)
	}
}
