package sqlite

import (
	"context"
	"fmt"
	"testing"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlstore"
)

// returningDialect is SQLite's dialect without the consecutive-ids
// promise: InsertInbox then reads the ids back with RETURNING, as on
// CockroachDB.
type returningDialect struct{ dialect }

func (returningDialect) ConsecutiveInsertIDs() bool { return false }

// Both ways of learning new inbox ids (the last id of a consecutive run,
// or RETURNING) give each entry the id its row got.
func TestInsertInboxIDs(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, d := range []sqlstore.Dialect{dialect{}, returningDialect{}} {
		t.Run(fmt.Sprintf("%T", d), func(t *testing.T) {
			// The writer's connection, borrowed in a Write that waits.
			held, release := make(chan struct{}), make(chan struct{})
			go s.Write(ctx, func(storage.Tx) error { close(held); <-release; return nil })
			<-held
			defer close(release)
			tx := s.wconn
			stx := sqlstore.NewTx(ctx, tx, d)
			var entries []storage.InboxEntry
			for i := range 21 { // chunks of 16, 4 and 1
				entries = append(entries, storage.InboxEntry{UserID: "u@x", DeviceID: uint32(i), Kind: "message",
					Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))})
			}
			if err := stx.InsertInbox(entries); err != nil {
				t.Fatal(err)
			}
			added := stx.Added()
			if len(added) != len(entries) {
				t.Fatalf("%d entries added, want %d", len(added), len(entries))
			}
			for i, e := range added {
				var payload string
				if err := tx.QueryRowContext(ctx, `SELECT payload FROM inbox WHERE id = ?`, e.ID).Scan(&payload); err != nil {
					t.Fatalf("entry %d, id %d: %v", i, e.ID, err)
				}
				if want := fmt.Sprintf(`{"n":%d}`, i); payload != want || string(e.Payload) != want {
					t.Fatalf("id %d holds %s; the entry says %s; want %s", e.ID, payload, e.Payload, want)
				}
				if i > 0 && e.ID <= added[i-1].ID {
					t.Fatalf("ids not increasing: %d after %d", e.ID, added[i-1].ID)
				}
			}
		})
	}
}
