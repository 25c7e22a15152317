package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlstore"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("sqlite: store closed")

type writeReq struct {
	low     bool // WriteLowPriority
	ctx     context.Context
	fn      func(storage.Tx) error
	done    chan error
	added   []storage.InboxEntry // inbox entries fn inserted, if it succeeded
	removed []int64              // and superseded entries it deleted
}

// OnInboxAdded implements storage.Store: the writer calls fn after each
// commit, before it answers the batch's Writes and before it begins the
// next transaction, so calls are in commit order and ids only grow.
func (s *Store) OnInboxAdded(fn func([]storage.InboxEntry)) { s.listener.Store(&fn) }

// Write queues fn for the writer goroutine and waits until the commit that
// holds it is durable. If ctx ends while fn is still queued, Write returns
// ctx.Err() and fn will not run; once fn has started, Write waits for the
// commit, because the outcome must be reported truthfully.
func (s *Store) Write(ctx context.Context, fn func(storage.Tx) error) error {
	return s.enqueue(ctx, s.writes, &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// WriteLowPriority is Write through the low-priority queue; see writer.
func (s *Store) WriteLowPriority(ctx context.Context, fn func(storage.Tx) error) error {
	return s.enqueue(ctx, s.low, &writeReq{low: true, ctx: ctx, fn: fn, done: make(chan error, 1)})
}

func (s *Store) enqueue(ctx context.Context, q chan *writeReq, req *writeReq) (err error) {
	defer func() {
		// Sending on a closed channel panics: that is a Write after Close.
		if recover() != nil {
			err = ErrClosed
		}
	}()
	select {
	case q <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The one writer takes requests in queue order: this one's place is
	// fixed.
	if f := storage.Queued(ctx); f != nil {
		f()
	}
	return <-req.done
}

// restartWait bounds how long the writer waits for readers when it makes
// the WAL start over: every Write waits with it.
const restartWait = 20 * time.Millisecond

// restartWAL runs a RESTART checkpoint on the writer's connection with
// restartWait as its busy timeout, and puts the usual one back whatever
// happens. A checkpoint that cannot finish (a reader still busy) is not an
// error: the log just does not start over yet.
func (s *Store) restartWAL() {
	ctx := context.Background()
	if _, err := s.wconn.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, restartWait.Milliseconds())); err != nil {
		return
	}
	defer s.wconn.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, busyTimeout.Milliseconds()))
	s.wconn.ExecContext(ctx, `PRAGMA wal_checkpoint(RESTART)`)
}

// lowBudget is how long a batch that holds a normal Write may go on taking
// low-priority ones before it commits: the bound on how long a send waits
// behind a burst of acknowledgements.
const lowBudget = 2 * time.Millisecond

// writer owns the write connection. It waits for a request, then runs
// requests one after the other in one transaction, taking the next one
// from the queues as it goes (so a send that arrives mid-batch joins it),
// until none waits, the batch holds MaxBatch, or the batch holds a normal
// Write and has run low-priority ones for lowBudget since; then it commits
// once and answers them all.
func (s *Store) writer() {
	defer close(s.done)
	q := &queues{writes: s.writes, low: s.low}
	for {
		first := q.wait()
		if first == nil {
			return
		}
		s.commit(q, first)
	}
}

// queues takes requests from the normal and low-priority queues: normal
// ones first, except that a waiting low-priority one goes after every
// three normal ones, so neither queue starves.
type queues struct {
	writes, low chan *writeReq // nil once closed and drained
	inARow      int            // normal requests taken since a low one
}

// wait blocks until a request comes; nil when both queues are closed.
func (q *queues) wait() *writeReq {
	for q.writes != nil || q.low != nil {
		if r := q.poll(true); r != nil {
			return r
		}
		if q.writes == nil && q.low == nil {
			return nil // poll found both closed
		}
		select {
		case r, ok := <-q.writes:
			if !ok {
				q.writes = nil
				continue
			}
			q.inARow++
			return r
		case r, ok := <-q.low:
			if !ok {
				q.low = nil
				continue
			}
			q.inARow = 0
			return r
		}
	}
	return nil
}

// poll returns a waiting request, or nil; low-priority ones only if allowLow.
func (q *queues) poll(allowLow bool) *writeReq {
	if allowLow && q.inARow >= 3 {
		if r := recv(&q.low); r != nil {
			q.inARow = 0
			return r
		}
	}
	if r := recv(&q.writes); r != nil {
		q.inARow++
		return r
	}
	if allowLow {
		if r := recv(&q.low); r != nil {
			q.inARow = 0
			return r
		}
	}
	return nil
}

func recv(c *chan *writeReq) *writeReq {
	if *c == nil {
		return nil
	}
	select {
	case r, ok := <-*c:
		if !ok {
			*c = nil
			return nil
		}
		return r
	default:
		return nil
	}
}

// commit runs a batch in one transaction. It first runs every request
// straight, without savepoints (two statements saved per request), taking
// more from the queues as it goes: if all succeed, one commit answers them
// all. If any fails, the transaction is rolled back and the batch gathered
// so far run again with a savepoint per request, so the failed one is
// undone alone. Running a request twice is allowed: Write's contract says
// fn has no effects outside the transaction.
func (s *Store) commit(q *queues, first *writeReq) {
	var urgentSince time.Time // when the first normal Write joined
	if !first.low {
		urgentSince = time.Now()
	}
	next := func(n int) *writeReq {
		if n >= s.opts.MaxBatch {
			return nil
		}
		r := q.poll(urgentSince.IsZero() || time.Since(urgentSince) < lowBudget)
		if r != nil && !r.low && urgentSince.IsZero() {
			urgentSince = time.Now()
		}
		return r
	}
	batch, results, ok := s.run([]*writeReq{first}, next)
	if !ok {
		batch, results, _ = s.run(batch, nil)
	}
	if results == nil {
		return // answered already: the transaction failed as a whole
	}
	s.commits.Add(1)
	s.writeCount.Add(int64(len(batch)))
	added := committedEntries(batch, results, &s.finished)
	s.entries.Add(added)
	if fn := s.listener.Load(); fn != nil && len(added) > 0 {
		(*fn)(added)
	}
	for i, r := range batch {
		r.done <- results[i]
	}
	if s.restartWal.CompareAndSwap(true, false) {
		// The checkpointer has copied back all but the last moments'
		// frames; copy the rest while no transaction is open and wait for
		// the readers of older snapshots to finish (new ones read the
		// database file alone), so the next BEGIN starts the log over.
		// Readers take milliseconds; one holding a snapshot longer than
		// restartWait leaves the log as it is until the checkpointer asks
		// again.
		s.restartWAL()
	}
}

// committedEntries lists the inbox entries the batch's successful requests
// and its Finally functions (fin) inserted, less those it deleted again.
func committedEntries(batch []*writeReq, results []error, fin *writeReq) []storage.InboxEntry {
	var added []storage.InboxEntry
	var removed map[int64]struct{}
	take := func(r *writeReq) {
		added = append(added, r.added...)
		for _, id := range r.removed {
			if removed == nil {
				removed = map[int64]struct{}{}
			}
			removed[id] = struct{}{}
		}
	}
	for i, r := range batch {
		if results[i] == nil {
			take(r)
		}
	}
	take(fin)
	if removed == nil {
		return added
	}
	return slices.DeleteFunc(added, func(e storage.InboxEntry) bool {
		_, gone := removed[e.ID]
		return gone
	})
}

// run executes batch in one transaction. With next (the first pass) it
// runs without savepoints, appends the requests next hands it, and gives
// up (ok false, transaction rolled back) at the first request that fails,
// returning the batch gathered so far. Without next it runs each request
// in a savepoint, records each one's own result and commits. A failure of
// the transaction itself is reported to every request (results nil).
func (s *Store) run(batch []*writeReq, next func(n int) *writeReq) (_ []*writeReq, results []error, ok bool) {
	ctx := context.Background()
	fail := func(err error) ([]*writeReq, []error, bool) {
		for _, r := range batch {
			r.done <- err
		}
		return batch, nil, true
	}
	// The writer's own connection, on which it begins and ends
	// transactions itself (see sqlstore.Conn).
	tx := s.wconn
	rollback := func() { tx.ExecContext(ctx, `ROLLBACK`) }
	if _, err := tx.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		// A ROLLBACK that failed earlier may have left a transaction
		// open on the connection: end it and try once more.
		rollback()
		if _, err := tx.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			return fail(fmt.Errorf("sqlite: begin: %w", err))
		}
	}
	defer s.devices.EndTx()
	var fin sqlstore.Finishers
	s.finished = writeReq{}
	results = make([]error, 0, len(batch))
	for i := 0; i < len(batch); i++ {
		r := batch[i]
		r.added, r.removed = nil, nil
		stx := sqlstore.NewTx(ctx, tx, dialect{})
		stx.UseDeviceCache(s.devices)
		stx.UseEntryCache(s.entries)
		err := r.ctx.Err()
		switch {
		case err != nil: // given up while queued: not run
		case next != nil:
			if err := runFn(r, stx); err != nil {
				rollback()
				return batch, nil, false
			}
			r.added, r.removed = stx.Added(), stx.Removed()
			fin.Add(stx)
		default:
			if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
				rollback()
				return fail(fmt.Errorf("sqlite: savepoint: %w", err))
			}
			err = runFn(r, stx)
			if err == nil {
				r.added, r.removed = stx.Added(), stx.Removed()
				fin.Add(stx)
			} else if _, rbErr := tx.ExecContext(ctx, `ROLLBACK TO w`); rbErr != nil {
				rollback()
				return fail(fmt.Errorf("sqlite: rollback to savepoint: %w (after %w)", rbErr, err))
			}
			if _, relErr := tx.ExecContext(ctx, `RELEASE w`); relErr != nil {
				rollback()
				return fail(fmt.Errorf("sqlite: release savepoint: %w", relErr))
			}
		}
		results = append(results, err)
		if next != nil && i == len(batch)-1 {
			if n := next(len(batch)); n != nil {
				batch = append(batch, n)
			}
		}
	}
	ftx := sqlstore.NewTx(ctx, tx, dialect{})
	ftx.UseDeviceCache(s.devices)
	ftx.UseEntryCache(s.entries)
	if err := runFinally(&fin, ftx); err != nil {
		rollback()
		return fail(err)
	}
	s.finished.added, s.finished.removed = ftx.Added(), ftx.Removed()
	if _, err := tx.ExecContext(ctx, `COMMIT`); err != nil {
		rollback() // a failed COMMIT may leave the transaction open
		return fail(fmt.Errorf("sqlite: commit: %w", err))
	}
	return batch, results, true
}

// runFinally runs the batch's Finally functions, a panic becoming the
// error that fails the batch, as runFn does for a request.
func runFinally(fin *sqlstore.Finishers, tx *sqlstore.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlite: Finally function panicked: %v", p)
		}
	}()
	return fin.Run(tx)
}

// runFn runs one request, turning a panic into an error so that one bad
// request cannot take the writer (and every other caller) down.
func runFn(r *writeReq, tx storage.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sqlite: write panicked: %v", p)
		}
	}()
	return r.fn(tx)
}
