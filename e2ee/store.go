package e2ee

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3"
	"go.mau.fi/libsignal/serialize"
)

// Store is the persistent Signal state of one device, in one SQLite file.
//
// It is safe for concurrent use by goroutines and by several processes on
// the same file. Every operation that changes state runs as one SQLite
// transaction while holding both s.sem (goroutines of this Store) and an
// exclusive flock on PATH+".lock" (other Stores and other processes), so no
// two callers ever ratchet from the same session state: two encryptions from
// one state would reuse a message key, and the peer would reject the second
// as a duplicate. The transaction also makes each operation all-or-nothing,
// which is how a failed decryption leaves the state unchanged.
type Store struct {
	db   *sql.DB
	ser  *serialize.Serializer
	lock *os.File

	// sem is a mutex that waits with a context: held for the whole of an
	// update, and by Close.
	sem    chan struct{}
	closed bool // guarded by sem
}

var errClosed = errors.New("e2ee: store is closed")

// migrations[i] brings a store file from schema version i to i+1, and ends
// by recording i+1 in PRAGMA user_version. A released step is never edited:
// a change is a new step. The statements are idempotent besides (IF NOT
// EXISTS), as version 1 always was.
var migrations = []string{schemaV1, schemaV2, schemaV3}

// schemaV1: identity, prekeys, sessions and received sender keys.
const schemaV1 = `
CREATE TABLE IF NOT EXISTS local_identity (
	id               INTEGER PRIMARY KEY CHECK (id = 1),
	public_key       BLOB    NOT NULL,
	private_key      BLOB    NOT NULL,
	registration_id  INTEGER NOT NULL,
	last_prekey_id   INTEGER NOT NULL,
	signed_prekey_id INTEGER NOT NULL,
	created_at       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS prekeys (
	id          INTEGER PRIMARY KEY,
	private_key BLOB    NOT NULL,
	public_key  BLOB    NOT NULL,
	created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS signed_prekeys (
	id          INTEGER PRIMARY KEY,
	private_key BLOB    NOT NULL,
	public_key  BLOB    NOT NULL,
	signature   BLOB    NOT NULL,
	timestamp   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trusted_identities (
	address      TEXT    PRIMARY KEY,
	name         TEXT    NOT NULL,
	device       INTEGER NOT NULL,
	identity_key BLOB    NOT NULL,
	updated_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
	address    TEXT    PRIMARY KEY,
	name       TEXT    NOT NULL,
	device     INTEGER NOT NULL,
	record     BLOB    NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_name ON sessions (name);
CREATE TABLE IF NOT EXISTS sender_keys (
	group_id   TEXT    NOT NULL,
	sender     TEXT    NOT NULL,
	record     BLOB    NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (group_id, sender)
);
PRAGMA user_version = 1;
`

// schemaV2: this device's own sender keys (the received ones are in
// sender_keys) and the devices each has been distributed to. epoch is a
// uint64 stored as the int64 with the same bits.
const schemaV2 = `
CREATE TABLE IF NOT EXISTS own_sender_keys (
	group_id   TEXT    PRIMARY KEY,
	epoch      INTEGER NOT NULL,
	record     BLOB    NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sender_key_recipients (
	group_id TEXT    NOT NULL,
	name     TEXT    NOT NULL,
	device   INTEGER NOT NULL,
	PRIMARY KEY (group_id, name, device)
);
PRAGMA user_version = 2;
`

// schemaV3: sends this device has made and not yet had answered, by
// client id (see BeginSend).
const schemaV3 = `
CREATE TABLE IF NOT EXISTS sends_in_flight (
	client_id TEXT    PRIMARY KEY,
	since     INTEGER NOT NULL
);
PRAGMA user_version = 3;
`

// OpenStore opens or creates the store at path. The file and its lock file
// are created readable by the owner only: they hold private keys.
func OpenStore(path string) (*Store, error) {
	// go-sqlite3 takes everything after the first '?' as options.
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("e2ee: invalid store path %q", path)
	}
	// SQLite would create the file 0644; create it first so that it (and
	// the -wal and -shm files, which SQLite gives the same mode) is 0600.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("e2ee: open store: %w", err)
	}
	f.Close()
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("e2ee: open store lock: %w", err)
	}
	// synchronous=FULL: losing a committed ratchet step on power failure
	// would make the next Encrypt reuse a message key.
	// txlock=immediate: take the write lock at BEGIN, so a transaction never
	// fails halfway on SQLITE_BUSY when upgrading from read to write.
	dsn := path + "?_journal_mode=WAL&_busy_timeout=10000&_synchronous=FULL&_txlock=immediate"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("e2ee: open store: %w", err)
	}
	s := &Store{
		db:   db,
		ser:  serialize.NewProtoBufSerializer(),
		lock: lock,
		sem:  make(chan struct{}, 1),
	}
	// Two processes may open a new file at once; the lock orders their
	// schema setup (which is idempotent anyway).
	err = s.update(context.Background(), func(tx *sql.Tx) error {
		return migrate(tx)
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("e2ee: initialise store: %w", err)
	}
	return s, nil
}

// migrate runs the steps the file has not had yet. It refuses a file from a
// newer release rather than write state that release cannot read back.
func migrate(tx *sql.Tx) error {
	var version int
	if err := tx.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("store has schema version %d; this build knows up to %d", version, len(migrations))
	}
	for _, step := range migrations[version:] {
		if _, err := tx.Exec(step); err != nil {
			return err
		}
	}
	return nil
}

// Close waits for a running update to finish, then closes the database.
// Closing a closed Store does nothing.
func (s *Store) Close() error {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if s.closed {
		return nil
	}
	s.closed = true
	return errors.Join(s.db.Close(), s.lock.Close())
}

// update runs fn in one IMMEDIATE transaction, holding s.sem and the file
// lock for its whole duration, and commits if fn returns nil. It is the only
// way state changes. fn must not call other Store methods.
func (s *Store) update(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	if s.closed {
		return errClosed
	}

	if err := lockFile(ctx, s.lock); err != nil {
		return fmt.Errorf("e2ee: lock store: %w", err)
	}
	defer func() {
		if uerr := unlockFile(s.lock); uerr != nil && err == nil {
			err = fmt.Errorf("e2ee: unlock store: %w", uerr)
		}
	}()

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("e2ee: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("e2ee: commit: %w", err)
	}
	return nil
}

// withSignal is update with a libsignal store over the transaction. It
// fails if the device has no identity yet.
func (s *Store) withSignal(ctx context.Context, fn func(ps *signalStore) error) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		ps, err := s.signalStore(ctx, tx)
		if err != nil {
			return err
		}
		return fn(ps)
	})
}

// querier is what both *sql.DB and *sql.Tx offer; reads that need no lock
// run on the DB directly (WAL readers see the last commit).
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func now() int64 { return time.Now().Unix() }
