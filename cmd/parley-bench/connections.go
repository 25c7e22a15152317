package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runConnections opens --sockets idle authenticated WebSockets, one per
// device, and reports how fast they connect (until the server's caught_up
// frame, i.e. authenticated and past the inbox read) and how much server
// memory each costs once idle.
//
// Every socket is its own account with one device: a login costs the
// same argon2id hash as a registration, and one account with thousands of
// devices would make every key upload announce itself to all the others.
// A self-started server is restarted after registration, so that the
// baseline is a fresh process, not a heap grown by thousands of argon2id
// hashes; against --server the baseline is whatever it holds.
func runConnections(ctx context.Context, e *env) (*result, error) {
	o := e.o
	srv, err := e.target(ctx)
	if err != nil {
		return nil, err
	}
	devs, err := e.devices(ctx, srv, "c", o.sockets, true)
	if err != nil {
		return nil, err
	}
	if srv.cmd != nil {
		e.logf("restarting the homeserver for a fresh heap")
		if err := srv.restart(ctx); err != nil {
			return nil, err
		}
		for _, d := range devs {
			d.api = e.api(srv, d.sess.AccessToken)
		}
	}
	// Let the fresh process settle (startup jobs, first GC) before the
	// baseline.
	time.Sleep(time.Second)
	base := serverRSS(srv)

	e.logf("connecting %d sockets, %d at a time, from %d source addresses", len(devs), o.dialConc, min(len(devs), sourceAddrs))
	tl := newTimeline(time.Now(), 100*time.Millisecond, 10*time.Minute)
	hists := make([]*hist, o.dialConc)
	for i := range hists {
		hists[i] = newHist()
	}
	snapA := takeSnapshot(pids(srv))
	began := time.Now()
	err = parallelWorkers(ctx, len(devs), o.dialConc, func(ctx context.Context, w, i int) error {
		took, err := e.connect(ctx, devs[i], i, 4)
		if err != nil {
			return err
		}
		hists[w].record(took)
		tl.add(time.Now(), 1)
		return nil
	})
	elapsed := time.Since(began)
	snapB := takeSnapshot(pids(srv))
	if err != nil {
		closeAll(devs)
		return nil, err
	}
	// Keep reading (pings, prekeys_low) so every socket stays healthy
	// while idle.
	var pumps sync.WaitGroup
	for _, d := range devs {
		pumps.Add(1)
		go func() { defer pumps.Done(); pump(d.conn, nil) }()
	}
	e.logf("%d sockets connected in %.2fs; idle for %s", len(devs), elapsed.Seconds(), o.idle)
	sleepUntil(ctx, time.Now().Add(o.idle))
	after := serverRSS(srv)
	if !srv.alive() {
		return nil, fmt.Errorf("homeserver exited while holding the sockets")
	}
	// Every socket still open?
	open := 0
	for _, d := range devs {
		if d.conn.Err() == nil {
			open++
		}
	}
	closeAll(devs)
	pumps.Wait()

	h := newHist()
	for _, x := range hists {
		h.merge(x)
	}
	n := len(devs)
	res := &result{
		Sockets:        ptr(open),
		ConnectsPerSec: ptr(round3(float64(n) / elapsed.Seconds())),
		ConnectMs:      summarize(h),
		Settings:       settings{Server: serverNames([]*server{srv}), Sockets: n},
		hist:           h,
		histTitle:      "authenticated connect time (dial → caught_up)",
		series:         []series{{"connects/s", tl.rates(began.Add(elapsed))}},
		seriesDt:       100 * time.Millisecond,
	}
	if open < n {
		res.Errors = int64(n - open)
		res.FirstError = fmt.Sprintf("%d of %d sockets closed while idle", n-open, n)
	}
	if srv.pid != 0 {
		res.ServerRSSBytes = ptr(after)
		res.ServerBaseRSSBytes = ptr(base)
		res.RSSPerSocketBytes = ptr(round3(float64(after-base) / float64(n)))
	}
	// CPU per message here is CPU per connect.
	res.setUsage(between(snapA, snapB), int64(n))
	return res, nil
}
