package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/storage/sqlstore"
)

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("sqlite: store closed")

type writeReq struct {
	ctx   context.Context
	fn    func(storage.Tx) error
	done  chan error
	added []storage.InboxEntry // inbox entries fn inserted, if it succeeded
}

// OnInboxAdded implements storage.Store: the writer calls fn after each
// commit, before it answers the batch's Writes and before it begins the
// next transaction, so calls are in commit order and ids only grow.
func (s *Store) OnInboxAdded(fn func([]storage.InboxEntry)) { s.listener.Store(&fn) }

// Write queues fn for the writer goroutine and waits until the commit that
// holds it is durable. If ctx ends while fn is still queued, Write returns
// ctx.Err() and fn will not run; once fn has started, Write waits for the
// commit, because the outcome must be reported truthfully.
func (s *Store) Write(ctx context.Context, fn func(storage.Tx) error) (err error) {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	defer func() {
		// Sending on a closed channel panics: that is a Write after Close.
		if recover() != nil {
			err = ErrClosed
		}
	}()
	select {
	case s.writes <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-req.done
}

// writer owns the write connection. It takes every request waiting (up to
// MaxBatch), runs each in its own savepoint so one failing request rolls
// back only itself, commits once, and then answers them all.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*writeReq, 0, s.opts.MaxBatch)
	for {
		req, ok := <-s.writes
		if !ok {
			return
		}
		batch = append(batch[:0], req)
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

// commit runs a batch in one transaction. It first runs every request
// straight, without savepoints (two statements saved per request): if all
// succeed, one commit answers them all. If any fails, the transaction is
// rolled back and the batch run again with a savepoint per request, so the
// failed one is undone alone. Running a request twice is allowed: Write's
// contract says fn has no effects outside the transaction.
func (s *Store) commit(batch []*writeReq) {
	results, ok := s.run(batch, false)
	if !ok {
		results, _ = s.run(batch, true)
	}
	if results == nil {
		return // answered already: the transaction failed as a whole
	}
	s.commits.Add(1)
	s.writeCount.Add(int64(len(batch)))
	if fn := s.listener.Load(); fn != nil {
		var added []storage.InboxEntry
		for i, r := range batch {
			if results[i] == nil {
				added = append(added, r.added...)
			}
		}
		if len(added) > 0 {
			(*fn)(added)
		}
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}

// run executes batch in one transaction. Without savepoints it gives up
// (ok false, transaction rolled back) at the first request that fails;
// with them it records each request's own result and commits. A failure
// of the transaction itself is reported to every request (results nil).
func (s *Store) run(batch []*writeReq, savepoints bool) (results []error, ok bool) {
	ctx := context.Background()
	fail := func(err error) ([]error, bool) {
		for _, r := range batch {
			r.done <- err
		}
		return nil, true
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fail(fmt.Errorf("sqlite: begin: %w", err))
	}
	defer s.devices.EndTx()
	results = make([]error, len(batch))
	for i, r := range batch {
		r.added = nil
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		stx := sqlstore.NewTx(ctx, tx, dialect{})
		stx.UseDeviceCache(s.devices)
		if !savepoints {
			if err := runFn(r, stx); err != nil {
				tx.Rollback()
				return nil, false
			}
			r.added = stx.Added()
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
			tx.Rollback()
			return fail(fmt.Errorf("sqlite: savepoint: %w", err))
		}
		err := runFn(r, stx)
		if err == nil {
			r.added = stx.Added()
		} else {
			if _, rbErr := tx.ExecContext(ctx, `ROLLBACK TO w`); rbErr != nil {
				tx.Rollback()
				return fail(fmt.Errorf("sqlite: rollback to savepoint: %w (after %w)", rbErr, err))
			}
		}
		if _, relErr := tx.ExecContext(ctx, `RELEASE w`); relErr != nil {
			tx.Rollback()
			return fail(fmt.Errorf("sqlite: release savepoint: %w", relErr))
		}
		results[i] = err
	}
	if err := tx.Commit(); err != nil {
		return fail(fmt.Errorf("sqlite: commit: %w", err))
	}
	return results, true
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
