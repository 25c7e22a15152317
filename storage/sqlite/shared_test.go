package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlite"
)

// A shared ciphertext and its event are stored once, in the message
// record; the member devices' inbox rows hold neither, and every read
// fills both in. A row with a payload of its own keeps it.
func TestSharedEventStoredOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	event, body := []byte(`{"type":"message","seq":3}`), []byte("sender-key ciphertext")
	err := s.Write(ctx, func(tx storage.Tx) error {
		id, err := tx.InsertMessage(storage.Message{Conversation: "g-1", Seq: 3, Sender: "a@x", SenderDevice: 1, ClientID: "c",
			SentAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), Body: body, BodyType: "senderkey", Event: event})
		if err != nil {
			return err
		}
		var entries []storage.InboxEntry
		for _, u := range []string{"b@x", "c@x", "d@x"} {
			entries = append(entries, storage.InboxEntry{UserID: u, DeviceID: 1, Kind: storage.EntryMessage, Conversation: "g-1",
				Seq: 3, MessageID: id, Sender: "a@x", Payload: event, SharedBody: body})
		}
		entries = append(entries, storage.InboxEntry{UserID: "b@x", DeviceID: 1, Kind: storage.EntryReceipt,
			Conversation: "g-1", Seq: 2, Payload: []byte(`{"type":"receipt"}`)})
		return tx.InsertInbox(entries)
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, sqlite.FileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var stored int
	if err := db.QueryRow(`SELECT COUNT(*) FROM inbox WHERE kind = 'message' AND length(payload) = 0`).Scan(&stored); err != nil || stored != 3 {
		t.Fatalf("%d message rows with an empty payload (%v), want 3", stored, err)
	}
	err = s.Read(ctx, func(tx storage.Tx) error {
		full, err := tx.Inbox("b@x", 1, 0, 10)
		if err != nil {
			return err
		}
		served, err := tx.InboxEvents("b@x", 1, 0, 10)
		if err != nil {
			return err
		}
		if len(full) != 2 || len(served) != 2 {
			t.Fatalf("b@x has %d and %d entries, want 2", len(full), len(served))
		}
		for _, e := range []storage.InboxEntry{full[0], served[0]} {
			if string(e.Payload) != string(event) || string(e.SharedBody) != string(body) {
				t.Fatalf("shared entry read as %q + %q", e.Payload, e.SharedBody)
			}
		}
		for _, e := range []storage.InboxEntry{full[1], served[1]} {
			if string(e.Payload) != `{"type":"receipt"}` || e.SharedBody != nil {
				t.Fatalf("receipt read as %q + %q", e.Payload, e.SharedBody)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
