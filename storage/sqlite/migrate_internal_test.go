package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/storage"
)

// A database from before migration 7 (direct sends recorded in messages)
// keeps recognising those sends after the upgrade: migration 10 copies
// their records into sends, where LocalSendsExpiry finds a local user's.
func TestUpgradeKeepsDirectSendRecords(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	all := migrations
	migrations = all[:6]
	s, err := Open(ctx, dir, Options{})
	migrations = all
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	expires := time.Now().Add(time.Hour).UnixMilli()
	for _, q := range []string{
		`INSERT INTO accounts (user_id, password_hash, created_at, next_device) VALUES ('alice@x', 'h', 0, 2)`,
		`INSERT INTO messages (conversation, seq, sender, sender_device, client_id, sent_at, expires_at)
			VALUES ('d-1', 7, 'alice@x', 1, 'old', 1000, ?)`,
		`INSERT INTO messages (conversation, seq, sender, sender_device, client_id, sent_at, expires_at)
			VALUES ('g-1', 3, 'alice@x', 1, 'grp', 1000, ?)`,
	} {
		args := []any{}
		if len(q) > 120 {
			args = append(args, expires)
		}
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err = Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Read(ctx, func(tx storage.Tx) error {
		rec, err := tx.SendByClientID("alice@x", 1, "old")
		if err != nil || rec.Conversation != "d-1" || rec.Seq != 7 || rec.SentAt.UnixMilli() != 1000 {
			t.Fatalf("the old direct send's record: %+v %v", rec, err)
		}
		if _, err := tx.SendByClientID("alice@x", 1, "grp"); err == nil {
			t.Fatal("a group message was copied into sends")
		}
		until, err := tx.LocalSendsExpiry()
		if err != nil || until.UnixMilli() != expires {
			t.Fatalf("LocalSendsExpiry %v %v, want %d", until, err, expires)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
