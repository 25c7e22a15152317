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
	ctx  context.Context
	fn   func(storage.Tx) error
	done chan error
}

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

func (s *Store) commit(batch []*writeReq) {
	results := make([]error, len(batch))
	ctx := context.Background()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range batch {
			r.done <- fmt.Errorf("sqlite: begin: %w", err)
		}
		return
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
			results[i] = err
			continue
		}
		err := runFn(r, sqlstore.NewTx(ctx, tx, dialect{}))
		if err != nil {
			if _, rbErr := tx.ExecContext(ctx, `ROLLBACK TO w`); rbErr != nil {
				// The transaction is unusable: fail the whole batch.
				tx.Rollback()
				for _, r := range batch {
					r.done <- fmt.Errorf("sqlite: rollback to savepoint: %w (after %w)", rbErr, err)
				}
				return
			}
		}
		if _, relErr := tx.ExecContext(ctx, `RELEASE w`); relErr != nil && err == nil {
			err = relErr
		}
		results[i] = err
	}
	if err := tx.Commit(); err != nil {
		for _, r := range batch {
			r.done <- fmt.Errorf("sqlite: commit: %w", err)
		}
		return
	}
	s.commits.Add(1)
	s.writeCount.Add(int64(len(batch)))
	for i, r := range batch {
		r.done <- results[i]
	}
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
