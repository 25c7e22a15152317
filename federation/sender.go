package federation

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

// The sender drains the durable outbox, one goroutine per destination with
// queued items. Items go out in queue order, batched into transactions; a
// transaction is retried until the destination answers 200, with
// exponential backoff (capped, with jitter) while it is down. New items do
// not cut a backoff short (that would hammer a server that is down on
// every message), but any request from the destination does: it is up.
// Everything is in storage, so a restart resumes where it stopped.

// SenderOptions tune the sender; zero values mean the defaults.
type SenderOptions struct {
	BatchSize  int           // items per transaction (default 500)
	BatchBytes int           // and at most this much of them, unless one alone is more (default 4 MiB)
	MinBackoff time.Duration // first retry delay (default 1s)
	MaxBackoff time.Duration // cap (default 5m)
	Timeout    time.Duration // one transaction's deadline (default 30s)
}

// poster sends one transaction; Client implements it.
type poster interface {
	SendTransaction(ctx context.Context, dest, txnID string, items []json.RawMessage) (wire.TransactionResult, error)
}

// Sender is the outbound half of federation.
type Sender struct {
	hs   *homeserver.Server
	post poster
	log  *slog.Logger
	opts SenderOptions

	mu    sync.Mutex
	ctx   context.Context // set by Run
	dests map[string]*destination
	wg    sync.WaitGroup
}

type destination struct {
	name  string
	wake  chan struct{} // new items
	reset chan struct{} // the destination is up: retry now

	mu      sync.Mutex
	backoff time.Duration
	failing bool
}

// NewSender makes a sender; Run starts it.
func NewSender(hs *homeserver.Server, post poster, log *slog.Logger, opts SenderOptions) *Sender {
	if opts.BatchSize <= 0 {
		// 100 at a time capped a busy destination at 100 items per round
		// trip: federated direct messages went 25–30% faster at 500
		// (docs/performance.md).
		opts.BatchSize = 500
	}
	if opts.BatchSize > maxTxnItems {
		opts.BatchSize = maxTxnItems
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = 4 << 20
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	return &Sender{hs: hs, post: post, log: log, opts: opts, dests: map[string]*destination{}}
}

// Run resumes every destination with queued items and serves wake-ups
// until ctx ends; then it waits for the destination loops to stop.
func (s *Sender) Run(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	dests, err := s.hs.OutboxDestinations(ctx)
	if err != nil {
		s.log.ErrorContext(ctx, "listing federation queues", "err", err)
	}
	for _, d := range dests {
		s.Wake(d)
	}
	<-ctx.Done()
	s.wg.Wait()
}

// Wake tells the sender that dest has new items (called after commit).
func (s *Sender) Wake(dest string) {
	if d := s.destination(dest); d != nil {
		signal(d.wake)
	}
}

// Reset is called when a request from dest arrived: if we are backing off
// from it, retry at once.
func (s *Sender) Reset(dest string) {
	s.mu.Lock()
	d := s.dests[dest]
	s.mu.Unlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	failing := d.failing
	d.mu.Unlock()
	if failing {
		signal(d.reset)
	}
}

// Status is a destination's queue state (for operations and tests).
type Status struct {
	Destination string
	Failing     bool
	Backoff     time.Duration
}

func (s *Sender) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Status
	for _, d := range s.dests {
		d.mu.Lock()
		out = append(out, Status{Destination: d.name, Failing: d.failing, Backoff: d.backoff})
		d.mu.Unlock()
	}
	return out
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// destination returns dest's state, starting its loop if needed; nil
// before Run or after ctx ended.
func (s *Sender) destination(dest string) *destination {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil || s.ctx.Err() != nil {
		return nil
	}
	d := s.dests[dest]
	if d == nil {
		d = &destination{name: dest, wake: make(chan struct{}, 1), reset: make(chan struct{}, 1)}
		s.dests[dest] = d
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.loop(s.ctx, d)
		}()
	}
	return d
}

// loop sends dest's queue, oldest first, until ctx ends.
func (s *Sender) loop(ctx context.Context, d *destination) {
	for {
		entries, err := s.hs.Outbox(ctx, d.name, 0, s.opts.BatchSize)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.ErrorContext(ctx, "reading federation queue", "destination", d.name, "err", err)
			if !s.sleep(ctx, d, s.opts.MinBackoff) {
				return
			}
			continue
		}
		if len(entries) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-d.wake:
			case <-d.reset:
			}
			continue
		}
		entries = withinBytes(entries, s.opts.BatchBytes)
		if err := s.send(ctx, d, entries); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := d.fail(s.opts)
			s.log.WarnContext(ctx, "federation transaction failed; will retry", "destination", d.name,
				"items", len(entries), "retry_in", wait.Round(time.Millisecond), "err", err)
			if !s.sleep(ctx, d, wait) {
				return
			}
			continue
		}
		d.ok()
	}
}

// maxTxnItems is the most items a receiver takes in one transaction.
const maxTxnItems = 1000

// withinBytes is the longest prefix of entries whose items come to at
// most max bytes, and at least the first entry: a receiver refuses bodies
// over 16 MiB, and one item of a large send can be 8 MiB.
func withinBytes(entries []homeserver.OutboxEntry, max int) []homeserver.OutboxEntry {
	size := 0
	for i, e := range entries {
		size += len(e.Item)
		if size > max && i > 0 {
			return entries[:i]
		}
	}
	return entries
}

// send posts one transaction and, once the destination has it, drops its
// items from the queue. The transaction id is derived from the items'
// queue ids, so a retry of the same batch carries the same id.
func (s *Sender) send(ctx context.Context, d *destination, entries []homeserver.OutboxEntry) error {
	items := make([]json.RawMessage, len(entries))
	for i, e := range entries {
		items[i] = e.Item
	}
	last := entries[len(entries)-1].ID
	txnID := strconv.FormatInt(entries[0].ID, 10) + "-" + strconv.FormatInt(last, 10)
	tctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	res, err := s.post.SendTransaction(tctx, d.name, txnID, items)
	if err != nil {
		return err
	}
	for _, r := range res.Refused {
		s.log.WarnContext(ctx, "destination refused an item", "destination", d.name, "txn", txnID,
			"index", r.Index, "code", r.Code, "error", r.Error)
	}
	return s.hs.OutboxDone(ctx, d.name, last)
}

// sleep waits for the backoff, a reset, or the end; false when ctx ended.
func (s *Sender) sleep(ctx context.Context, d *destination, wait time.Duration) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-d.reset:
		s.log.InfoContext(ctx, "destination is back; retrying now", "destination", d.name)
	}
	return true
}

// fail doubles the backoff (within bounds) and returns the wait, with up
// to ±20% jitter so that many servers do not retry in lockstep.
func (d *destination) fail(o SenderOptions) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failing = true
	d.backoff = min(max(2*d.backoff, o.MinBackoff), o.MaxBackoff)
	jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(d.backoff))
	return d.backoff + jitter
}

func (d *destination) ok() {
	d.mu.Lock()
	d.failing, d.backoff = false, 0
	d.mu.Unlock()
}
