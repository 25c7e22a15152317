// Package sqlite is Parley's embedded storage engine: one SQLite file in WAL
// mode with synchronous=FULL, so a commit is on disk before a send is
// acknowledged. All writes go through one writer goroutine that groups the
// Writes waiting at that moment into one transaction (group commit): many
// concurrent senders share one fsync instead of paying one each.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlstore"
)

// FileName is the database file inside the data directory.
const FileName = "parley.db"

// busyTimeout is how long a connection waits for a lock another holds.
const busyTimeout = 10 * time.Second

// Options tune the engine; the zero value is the default.
type Options struct {
	// MaxBatch caps how many Writes share one commit (default 256).
	MaxBatch int
	// WALRestartPages is the WAL length above which the writer makes the
	// log start over (default 16,384 pages, 64 MiB); see walRestartPages.
	WALRestartPages int
}

// Store is the SQLite storage.Store.
type Store struct {
	read   *sql.DB
	write  *sql.DB
	wconn  *sql.Conn // write's one connection, owned by the writer goroutine
	ckpt   *sql.DB   // the checkpointer's connection
	writes chan *writeReq
	low    chan *writeReq // WriteLowPriority
	done   chan struct{}
	opts   Options

	stopCkpt, ckptDone chan struct{}

	commits, writeCount atomic.Int64
	checkpoints         atomic.Int64
	restartWal          atomic.Bool // the checkpointer found the WAL long; see walRestartPages
	listener            atomic.Pointer[func([]storage.InboxEntry)]
	devices             *sqlstore.DeviceCache // owned by the writer goroutine
	entries             *sqlstore.EntryCache  // likewise
	finished            writeReq              // what the last commit's Finally functions did (writer-owned)
}

// Stats counts Writes and the commits that carried them (writes/commits is
// the group-commit factor), and the checkpointer's checkpoints.
type Stats struct {
	Writes, Commits, Checkpoints int64
}

func (s *Store) Stats() Stats {
	return Stats{Writes: s.writeCount.Load(), Commits: s.commits.Load(), Checkpoints: s.checkpoints.Load()}
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database in dir and migrates it.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.WALRestartPages <= 0 {
		opts.WALRestartPages = walRestartPages
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "on")
	q.Set("_txlock", "immediate")
	// Preparing costs more than running most of Parley's statements: keep
	// each connection's prepared statements (the set of queries is fixed).
	q.Set("_stmt_cache_size", "128")
	// Each connection is used by one goroutine at a time (database/sql
	// hands it out), so SQLite's own per-call mutexes are pure cost.
	q.Set("_mutex", "no")
	// 32 MiB of page cache for the writer (the default is 2 MiB): the
	// unique indexes of messages take inserts all over their trees, and a
	// miss is a read from the OS inside the single writer.
	q.Set("_cache_size", "-32768")
	dsn := "file:" + path + "?" + q.Encode()

	write, err := sql.Open(writerDriver(), dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// One connection: SQLite has one writer anyway, and the writer goroutine
	// orders the work instead of the busy-timeout lottery.
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)

	q.Set("_txlock", "deferred")
	q.Set("mode", "ro")
	q.Set("_cache_size", "-8192")
	read, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	n := max(4, 2*runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)

	q.Del("mode")
	ckpt, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		write.Close()
		read.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	ckpt.SetMaxOpenConns(1)

	s := &Store{read: read, write: write, ckpt: ckpt, writes: make(chan *writeReq, 4*opts.MaxBatch),
		low:  make(chan *writeReq, 4*opts.MaxBatch),
		done: make(chan struct{}), stopCkpt: make(chan struct{}), ckptDone: make(chan struct{}), opts: opts,
		devices: sqlstore.NewDeviceCache(1 << 16), entries: sqlstore.NewEntryCache(entryCacheSize)}
	err = s.migrate(ctx)
	if err == nil {
		// The writer keeps the one write connection for its lifetime.
		s.wconn, err = write.Conn(ctx)
	}
	if err != nil {
		write.Close()
		read.Close()
		ckpt.Close()
		return nil, err
	}
	go s.writer()
	go s.checkpointer()
	return s, nil
}

// entryCacheSize is how many recently committed inbox entries the writer
// remembers for acknowledgements (sqlstore.EntryCache): a few seconds of
// traffic at full speed, a group message to 1,024 members sixty times
// over, ~8 MiB at most.
const entryCacheSize = 1 << 16

// The writer's connections do not checkpoint the WAL themselves (SQLite's
// default is to do it inside the commit that crosses 1,000 pages, which
// stalls every Write queued behind it); the checkpointer goroutine does,
// on its own connection, concurrently with the writer.
var registerWriter sync.Once

func writerDriver() string {
	const name = "sqlite3-parley-writer"
	registerWriter.Do(func() {
		sql.Register(name, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
			// Temporary b-trees and statement journals (a multi-row
			// DELETE inside the batch's transaction) stay in memory
			// instead of files written in the middle of a commit.
			_, err := c.Exec(`PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY`, nil)
			return err
		}})
	})
	return name
}

// checkpointInterval is how often the checkpointer looks at the Writes
// committed since its last checkpoint (see checkpointWrites).
const checkpointInterval = 100 * time.Millisecond

// walRestartPages is the default WAL length (in pages) above which the
// writer makes the log start over. SQLite restarts a WAL from its
// beginning only when a write transaction begins with every frame copied
// back, which under a steady stream of commits never happens by itself:
// the log grew to a gigabyte in ten seconds of load, and every page read
// searched its ever longer index. Each start-over holds the writer for
// 3–35 ms (it copies what the checkpointer has not yet, and syncs the
// database file), so it should be rare: at 4,096 pages a 100-message
// group run had 12 of them, and its fan-out p99 showed it.
const walRestartPages = 16384

// checkpointWrites and checkpointLull space the checkpoints out when
// Writes are few: the checkpointer copies the log back once
// checkpointWrites Writes have committed since its last checkpoint (at
// the next tick), or checkpointLull after it if any has. Every checkpoint
// that copies the whole log back lets the next transaction start the WAL
// over, which writes and syncs its header: checkpointing after every lone
// commit added that sync (~0.3 ms) to a good part of the messages of a
// lightly used server. Writes, not commits, measure how much the log
// grew: at saturation a commit carries a hundred of them.
const (
	checkpointWrites = 256
	checkpointLull   = 2 * time.Second
)

// checkpointer runs passive checkpoints (they never block the writer or
// readers) while commits happen, so the WAL is reset and stays small.
func (s *Store) checkpointer() {
	defer close(s.ckptDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	var seen int64 // Writes committed at the last checkpoint
	last := time.Now()
	for {
		select {
		case <-s.stopCkpt:
			return
		case <-t.C:
		}
		if n := s.writeCount.Load(); n != seen && (n-seen >= checkpointWrites || time.Since(last) >= checkpointLull) {
			seen, last = n, time.Now()
			s.checkpoints.Add(1)
			// A failure (a reader holding an old snapshot, say) only
			// delays the checkpoint to the next tick.
			var busy, logFrames, done int
			if s.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logFrames, &done) == nil &&
				logFrames > s.opts.WALRestartPages {
				s.restartWal.Store(true)
			}
		}
	}
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite: migrations table: %w", err)
	}
	for _, m := range migrations {
		var n int
		if err := s.write.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
			return fmt.Errorf("sqlite: read migrations: %w", err)
		}
		if n > 0 {
			continue
		}
		tx, err := s.write.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %d (%s): %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMilli()); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %d: %w", m.version, err)
		}
	}
	return nil
}

// Read runs fn on a read-only connection inside a transaction, which in WAL
// mode is one consistent snapshot.
func (s *Store) Read(ctx context.Context, fn func(storage.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(sqlstore.NewTx(ctx, tx, dialect{}))
}

// Close stops the writer after the Writes already queued and closes the
// database.
func (s *Store) Close() error {
	close(s.writes)
	close(s.low)
	<-s.done
	close(s.stopCkpt)
	<-s.ckptDone
	return errors.Join(s.wconn.Close(), s.write.Close(), s.read.Close(), s.ckpt.Close())
}

type dialect struct{}

func (dialect) Rebind(q string) string { return q }

func (dialect) ConsecutiveInsertIDs() bool { return true }

func (dialect) IsUniqueViolation(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.Code == sqlite3.ErrConstraint &&
		(se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey)
}
