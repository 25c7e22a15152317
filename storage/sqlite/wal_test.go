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
	const commits = 20000 // over ten checkpointer ticks on a fast machine
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

// A checkpoint that copies the whole log back makes the next transaction
// start the WAL over, with a synced header: so lone commits a few hundred
// milliseconds apart (a lightly used server) are not checkpointed one by
// one, while a burst of commits is checkpointed at the next tick.
func TestCheckpointsSpacedWhenCommitsAreFew(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(i int) {
		t.Helper()
		err := s.Write(ctx, func(tx storage.Tx) error {
			return tx.InsertInbox([]storage.InboxEntry{{UserID: "u@x", DeviceID: 1, Kind: storage.EntryMessage,
				Conversation: "c", Seq: uint64(i + 1), ExpiresAt: time.Now().Add(time.Hour), Payload: []byte("{}")}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 { // 0.9 s, each commit seen by a tick of its own
		write(i)
		time.Sleep(150 * time.Millisecond)
	}
	if n := s.Stats().Checkpoints; n > 1 {
		t.Fatalf("%d checkpoints for 6 commits 150 ms apart, want at most 1", n)
	}
	before := s.Stats().Checkpoints
	for i := range 200 {
		write(100 + i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Checkpoints == before {
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint after a burst of 200 commits")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
