package sqlite_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
)

// A device's unacknowledged answers are unique per client id; other
// entries, and answers without a client id (a remote hub's), are not
// checked. Once the answer is deleted (acknowledged), its id is free.
func TestSentAnswersAreUniqueWhileUnacknowledged(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	answer := func(device uint32, clientID string) storage.InboxEntry {
		return storage.InboxEntry{UserID: "a@x", DeviceID: device, Kind: storage.EntrySent, Conversation: "d-1", Seq: 7,
			ClientID: clientID, ExpiresAt: time.Now().Add(time.Hour), Payload: []byte(`{"type":"sent"}`)}
	}
	insert := func(entries ...storage.InboxEntry) error {
		return s.Write(ctx, func(tx storage.Tx) error { return tx.InsertInbox(entries) })
	}
	if err := insert(answer(1, "c1"), answer(2, "c1"), answer(1, ""), answer(1, "")); err != nil {
		t.Fatal(err)
	}
	if err := insert(answer(1, "c2"), answer(1, "c1")); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("a second answer for c1: %v, want ErrConflict", err)
	}
	msg := answer(1, "c1")
	msg.Kind = storage.EntryMessage
	if err := insert(msg); err != nil {
		t.Fatalf("a message entry naming the same client id: %v", err)
	}
	var found storage.InboxEntry
	read := func() error {
		return s.Read(ctx, func(tx storage.Tx) (err error) {
			found, err = tx.SentAnswer("a@x", 1, "c1")
			return err
		})
	}
	if err := read(); err != nil || found.Kind != storage.EntrySent || found.Seq != 7 || found.Conversation != "d-1" ||
		string(found.Payload) != `{"type":"sent"}` || found.ID == 0 {
		t.Fatalf("SentAnswer: %+v %v", found, err)
	}
	var c2 storage.InboxEntry
	err := s.Read(ctx, func(tx storage.Tx) (err error) { c2, err = tx.SentAnswer("a@x", 1, "c2"); return err })
	if c2.ID != 0 || !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("c2's answer was kept although its Write failed: %+v %v", c2, err)
	}
	if err := s.Write(ctx, func(tx storage.Tx) error {
		_, err := tx.DeleteInbox("a@x", 1, []int64{found.ID})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := read(); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SentAnswer after the ack: %+v %v, want ErrNotFound", found, err)
	}
	if err := insert(answer(1, "c1")); err != nil {
		t.Fatalf("c1 after its answer was acknowledged: %v", err)
	}
}

// A remote sender's direct message is remembered by client id until its
// record expires.
func TestSendsRecordsExpire(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	rec := storage.Send{UserID: "r@remote", DeviceID: 3, ClientID: "c1", Conversation: "d-9", Seq: 4,
		SentAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.Write(ctx, func(tx storage.Tx) error { return tx.InsertSend(rec) }); err != nil {
		t.Fatal(err)
	}
	again := rec
	again.Seq = 5
	if err := s.Write(ctx, func(tx storage.Tx) error { return tx.InsertSend(again) }); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("the same client id again: %v, want ErrConflict", err)
	}
	other := rec
	other.DeviceID = 4
	if err := s.Write(ctx, func(tx storage.Tx) error { return tx.InsertSend(other) }); err != nil {
		t.Fatalf("the same client id from another device: %v", err)
	}
	var got storage.Send
	lookup := func() error {
		return s.Read(ctx, func(tx storage.Tx) (err error) {
			got, err = tx.SendByClientID("r@remote", 3, "c1")
			return err
		})
	}
	if err := lookup(); err != nil || got != rec {
		t.Fatalf("SendByClientID: %+v %v, want %+v", got, err, rec)
	}
	var n int64
	if err := s.Write(ctx, func(tx storage.Tx) (err error) {
		n, err = tx.DeleteSendsBefore(now.Add(30 * time.Minute))
		return err
	}); err != nil || n != 0 {
		t.Fatalf("DeleteSendsBefore ahead of expiry: %d %v", n, err)
	}
	if err := s.Write(ctx, func(tx storage.Tx) (err error) {
		n, err = tx.DeleteSendsBefore(now.Add(2 * time.Hour))
		return err
	}); err != nil || n != 2 {
		t.Fatalf("DeleteSendsBefore after expiry: %d %v, want 2", n, err)
	}
	if err := lookup(); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SendByClientID after expiry: %v", err)
	}
}
