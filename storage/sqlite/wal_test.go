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

// Under a steady stream of commits SQLite never starts a WAL over by
// itself (it does so only when a write begins with every frame copied
// back), so the log would hold a frame or more for every commit made; the
// store makes it start over once it passes WALRestartPages, although a
// reader keeps taking snapshots all along. Frames in the log at the end
// are those since the last start-over.
func TestWALStartsOverUnderLoad(t *testing.T) {
	const commits = 8000
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sqlite.Open(ctx, dir, sqlite.Options{WALRestartPages: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	readerDone := make(chan struct{})
	go func() { // snapshots taken all the time, as sockets catching up do
		defer close(readerDone)
		for ctx.Err() == nil {
			s.Read(ctx, func(tx storage.Tx) error {
				_, err := tx.Inbox("u@x", 1, 0, 10)
				return err
			})
			time.Sleep(time.Millisecond)
		}
	}()
	body := make([]byte, 200)
	for i := range commits {
		err := s.Write(ctx, func(tx storage.Tx) error {
			return tx.InsertInbox([]storage.InboxEntry{{UserID: "u@x", DeviceID: 1, Kind: storage.EntryMessage,
				Conversation: "c", Seq: uint64(i + 1), ExpiresAt: time.Now().Add(time.Hour), Payload: body}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-readerDone
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// -1 frames: the checkpoint could not read the log this time.
	busy, frames, copied := 0, -1, 0
	for try := 0; frames < 0 && try < 50; try++ {
		if err := db.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied); err != nil {
			t.Fatal(err)
		}
		if frames < 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if frames < 0 {
		t.Fatal("the WAL's length cannot be read")
	}
	t.Logf("%d frames in the WAL after %d commits (busy %d, copied %d)", frames, commits, busy, copied)
	if frames >= commits/2 {
		t.Fatalf("the WAL holds %d frames after %d commits: it did not start over", frames, commits)
	}
}
