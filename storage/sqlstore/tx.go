// Package sqlstore holds the table code shared by Parley's SQL engines. The
// SQL is written once with ? placeholders in the dialect both SQLite and
// PostgreSQL/CockroachDB accept; an engine supplies its Dialect (placeholder
// rewriting and driver-error mapping) and runs transactions its own way.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/storage"
)

// Dialect is what differs between engines.
type Dialect interface {
	// Rebind rewrites ? placeholders into the engine's own form.
	Rebind(query string) string
	// IsUniqueViolation reports whether err is a unique-constraint failure.
	IsUniqueViolation(err error) bool
	// ConsecutiveInsertIDs reports whether a multi-row INSERT gives its
	// rows consecutive ids in the order of its VALUES, the last one being
	// the result's LastInsertId (true of SQLite, whose one writer assigns
	// AUTOINCREMENT ids one after the other; not of CockroachDB).
	ConsecutiveInsertIDs() bool
}

// Conn is where a Tx's statements run: a *sql.Tx, or a *sql.Conn on which
// the engine has begun a transaction itself (database/sql starts a
// goroutine for every query inside a *sql.Tx, to watch its context; a
// single writer that owns its connection need not pay that).
type Conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx implements storage.Tx on one transaction.
type Tx struct {
	ctx     context.Context
	tx      Conn
	dialect Dialect
	added   []storage.InboxEntry // inserted by InsertInbox, IDs set
	removed []int64              // deleted by ReplaceSummary
	devices *DeviceCache         // nil: no cache (reads, multi-writer engines)
	entries *EntryCache          // likewise
	finally []finisher           // registered by Finally, for the engine's Finishers
}

type finisher struct {
	key string
	fn  func(storage.Tx) error
}

// Finally implements storage.Tx: it records fn; the engine collects the
// records of each Write that succeeded (Finishers.Add) and runs them
// before the commit (Finishers.Run).
func (t *Tx) Finally(key string, fn func(storage.Tx) error) {
	t.finally = append(t.finally, finisher{key, fn})
}

// Finishers gathers the Finally functions of one commit's Writes.
type Finishers struct {
	keys []string                          // in order of first registration
	fns  map[string]func(storage.Tx) error // the last registered per key
}

// Add takes the registrations of a Write that succeeded.
func (f *Finishers) Add(t *Tx) {
	for _, r := range t.finally {
		if f.fns == nil {
			f.fns = map[string]func(storage.Tx) error{}
		}
		if _, ok := f.fns[r.key]; !ok {
			f.keys = append(f.keys, r.key)
		}
		f.fns[r.key] = r.fn
	}
}

// Run runs each key's function in t, in the order keys were first
// registered, and forgets them.
func (f *Finishers) Run(t *Tx) error {
	defer func() { f.keys, f.fns = f.keys[:0], nil }()
	for _, k := range f.keys {
		if err := f.fns[k](t); err != nil {
			return fmt.Errorf("sqlstore: finishing %s: %w", k, err)
		}
	}
	return nil
}

// NewTx wraps tx, inside a transaction, for the duration of one storage
// transaction.
func NewTx(ctx context.Context, tx Conn, d Dialect) *Tx {
	return &Tx{ctx: ctx, tx: tx, dialect: d}
}

var _ storage.Tx = (*Tx)(nil)

// UseDeviceCache makes KeyedDevices answer from c where it can, and device
// changes keep c exact. Only for write transactions of a single-writer
// engine, which calls c.EndTx when the transaction ends.
func (t *Tx) UseDeviceCache(c *DeviceCache) { t.devices = c }

// UseEntryCache makes DeleteInbox delete the entries c remembers without
// reading them back. Only for write transactions of a single-writer
// engine, which adds each commit's new entries to c.
func (t *Tx) UseEntryCache(c *EntryCache) { t.entries = c }

// Added returns the inbox entries this transaction inserted, in id order:
// what the engine hands its OnInboxAdded listener after the commit.
func (t *Tx) Added() []storage.InboxEntry { return t.added }

// Removed returns the ids of superseded entries this transaction deleted
// (ReplaceSummary): an entry added and removed by one commit is not
// handed to listeners.
func (t *Tx) Removed() []int64 { return t.removed }

// rebound caches rewritten queries: the set of query strings is fixed.
var rebound sync.Map // reboundKey -> string

type reboundKey struct {
	dialect Dialect
	query   string
}

func (t *Tx) q(query string) string {
	key := reboundKey{t.dialect, query}
	if s, ok := rebound.Load(key); ok {
		return s.(string)
	}
	s := t.dialect.Rebind(query)
	rebound.Store(key, s)
	return s
}

func (t *Tx) exec(query string, args ...any) (sql.Result, error) {
	res, err := t.tx.ExecContext(t.ctx, t.q(query), args...)
	return res, t.mapErr(err)
}

// execCount runs a statement and returns how many rows it changed.
func (t *Tx) execCount(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *Tx) query(query string, args ...any) (*sql.Rows, error) {
	rows, err := t.tx.QueryContext(t.ctx, t.q(query), args...)
	return rows, t.mapErr(err)
}

func (t *Tx) queryRow(query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(t.ctx, t.q(query), args...)
}

func (t *Tx) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	case t.dialect.IsUniqueViolation(err):
		return fmt.Errorf("%w: %w", storage.ErrConflict, err)
	}
	return err
}

// mustAffect turns "no row changed" into ErrNotFound.
func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// Times are stored as Unix milliseconds: one integer type in every dialect.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// RebindDollar turns ? into $1, $2, ... (PostgreSQL, CockroachDB).
func RebindDollar(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// placeholders returns "?,?,?" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}
