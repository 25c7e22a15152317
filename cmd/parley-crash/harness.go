package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Config is one harness run.
type Config struct {
	Kills  int           // SIGKILLs (and restarts) in the run
	Pairs  int           // sender/receiver pairs; odd ones send on the WebSocket
	MinGap time.Duration // time the server runs between restarts and the next kill
	MaxGap time.Duration
	Drain  time.Duration // how long delivery may take after the last restart
	Seed   uint64
	Dir    string    // scratch space for the clients' keys
	Log    io.Writer // progress lines
}

// Result is what the clients saw. Lost and Duplicated must be 0, and so
// must every other problem counter.
type Result struct {
	Kills       int
	Accepted    int // messages the server answered "sent" for
	Delivered   int // distinct messages handed to the application on every receiving device
	Lost        int // accepted but missing on a device, or on one device and not the other
	Duplicated  int // handed to the application more than once
	Misordered  int // delivered out of seq or send order
	Mismatched  int // delivered with another seq than accepted, or accepted twice differently
	Phantom     int // a body nobody sent
	Redelivered int // copies the de-duplication dropped (expected after crashes)
	Retries     int // sends repeated with the same client id
	Reconnects  int
	Problem     string // the first problem, for people
}

// OK reports whether the run kept every promise.
func (r Result) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.Misordered == 0 && r.Mismatched == 0 && r.Phantom == 0
}

func (r Result) String() string {
	return fmt.Sprintf("crash: kills=%d accepted=%d delivered=%d lost=%d duplicated=%d misordered=%d mismatched=%d phantom=%d redelivered=%d retries=%d reconnects=%d",
		r.Kills, r.Accepted, r.Delivered, r.Lost, r.Duplicated, r.Misordered, r.Mismatched, r.Phantom,
		r.Redelivered, r.Retries, r.Reconnects)
}

// Run starts srv, registers the pairs, lets them send and receive while it
// kills and restarts srv cfg.Kills times at random moments, then stops the
// senders, waits for every accepted message to arrive and counts.
func Run(ctx context.Context, srv Server, cfg Config) (Result, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "parley-crash: "+format+"\n", args...)
		}
	}
	if err := srv.Start(ctx); err != nil {
		return Result{}, err
	}
	defer srv.Kill()

	hc := &http.Client{Timeout: 10 * time.Second}
	pairs := make([]*pair, cfg.Pairs)
	for i := range pairs {
		p := newPair(i)
		if err := p.register(ctx, srv.URL(), cfg.Dir, hc); err != nil {
			return Result{}, err
		}
		pairs[i] = p
	}

	clientCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	stopSending := make(chan struct{})
	var fatalOnce sync.Once
	var fatalErr error
	fatal := func(err error) {
		fatalOnce.Do(func() { fatalErr = err; stopClients() })
	}
	var senders, receivers sync.WaitGroup
	for _, p := range pairs {
		senders.Add(1)
		go func() { defer senders.Done(); p.sendLoop(clientCtx, stopSending, fatal) }()
		for _, r := range p.receivers {
			receivers.Add(1)
			go func() { defer receivers.Done(); p.receiveLoop(clientCtx, r) }()
		}
	}

	kills := 0
	for kills < cfg.Kills && clientCtx.Err() == nil {
		gap := cfg.MinGap
		if cfg.MaxGap > cfg.MinGap {
			gap += time.Duration(rng.Int64N(int64(cfg.MaxGap - cfg.MinGap)))
		}
		if !pause(clientCtx, gap) {
			break
		}
		if err := srv.Kill(); err != nil {
			fatal(fmt.Errorf("kill: %w", err))
			break
		}
		kills++
		logf("kill %d/%d after %s; accepted so far %d", kills, cfg.Kills, gap.Round(time.Millisecond), accepted(pairs))
		if err := srv.Start(ctx); err != nil {
			fatal(fmt.Errorf("restart after kill %d: %w", kills, err))
			break
		}
	}

	// No new messages; the ones in flight finish (with retries), then
	// every accepted one must arrive.
	close(stopSending)
	senders.Wait()
	deadline := time.Now().Add(cfg.Drain)
	for fatalErr == nil && time.Now().Before(deadline) && !allCaughtUp(pairs) {
		pause(ctx, 50*time.Millisecond)
	}
	stopClients()
	receivers.Wait()
	if err := srv.Stop(); err != nil {
		logf("stopping the server: %v", err)
	}

	res := Result{Kills: kills}
	for _, p := range pairs {
		p.mu.Lock()
		res.Accepted += len(p.accepted)
		for _, r := range p.receivers {
			for n, seq := range p.accepted {
				c := r.delivered[n]
				switch {
				case c == 0:
					res.Lost++
					p.problem("device %d: message %d (seq %d) accepted but never delivered", r.device, n, seq)
				case c > 1:
					res.Duplicated += c - 1
					p.problem("device %d: message %d delivered %d times", r.device, n, c)
				}
				if got, ok := r.seqOf[n]; ok && got != seq {
					p.mismatched++
					p.problem("device %d: message %d accepted as seq %d, delivered as seq %d", r.device, n, seq, got)
				}
			}
			for n := range r.delivered {
				if _, ok := p.accepted[n]; !ok && n < p.attempted {
					// Only the last message may be in doubt (its sender
					// gave up when the run ended); anything else arriving
					// unaccepted was stored without the sender being told.
					p.phantom++
					p.problem("device %d: message %d delivered but never accepted", r.device, n)
				}
				for _, other := range p.receivers {
					if _, ok := p.accepted[n]; !ok && other.delivered[n] == 0 {
						// Half-visible: one device has it, the other not.
						// (Accepted messages are counted as lost above.)
						res.Lost++
						p.problem("message %d reached device %d but not device %d", n, r.device, other.device)
					}
				}
			}
		}
	everywhere:
		for n := range p.receivers[0].delivered {
			for _, r := range p.receivers {
				if r.delivered[n] == 0 {
					continue everywhere
				}
			}
			res.Delivered++
		}
		res.Misordered += p.misordered
		res.Mismatched += p.mismatched
		res.Phantom += p.phantom
		res.Redelivered += p.redelivered
		res.Retries += p.retries
		res.Reconnects += p.reconnects
		if res.Problem == "" {
			res.Problem = p.firstProblem
		}
		p.mu.Unlock()
	}
	if fatalErr != nil {
		return res, fatalErr
	}
	if kills < cfg.Kills {
		return res, errors.New("the run ended before every kill")
	}
	return res, nil
}

func accepted(pairs []*pair) int {
	n := 0
	for _, p := range pairs {
		p.mu.Lock()
		n += len(p.accepted)
		p.mu.Unlock()
	}
	return n
}

func allCaughtUp(pairs []*pair) bool {
	for _, p := range pairs {
		if !p.caughtUp() {
			return false
		}
	}
	return true
}
