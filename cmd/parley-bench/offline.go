package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/wire"
)

// runOffline: --senders senders, each on its own socket with --window
// sends in flight, queue --messages messages for one device that is
// offline (accepted msgs/s: until the last "accepted"); then that device
// connects and the bench times its catch-up: from the dial until all K
// messages are in, acknowledging as it goes (catch-up msgs/s).
func runOffline(ctx context.Context, e *env) (*result, error) {
	o := e.o
	k := o.messages
	if k == 0 {
		k = 10000
	}
	srv, err := e.target(ctx)
	if err != nil {
		return nil, err
	}
	rcvs, err := e.devices(ctx, srv, "o", 1, true)
	if err != nil {
		return nil, err
	}
	rcv := rcvs[0]
	senders, err := e.devices(ctx, srv, "os", o.senders, true)
	if err != nil {
		return nil, err
	}
	if err := drainInbox(ctx, rcv); err != nil { // a kept account's leftovers
		return nil, err
	}
	if err := e.connectAll(ctx, senders, 256); err != nil {
		closeAll(senders)
		return nil, err
	}
	defer closeAll(senders)

	// Queue phase.
	var accepted atomic.Int64
	var errs errLog
	fail := errs.fail
	allDone := make(chan struct{})
	var doneOnce sync.Once
	finished := func() {
		if accepted.Load()+errs.n.Load() >= int64(k) {
			doneOnce.Do(func() { close(allDone) })
		}
	}
	var lastAccepted atomic.Int64 // ns since env.start
	share := func(i int) int { return k/len(senders) + btoi(i < k%len(senders)) }
	type senderState struct {
		window chan struct{}
		sentAt []atomic.Int64
		hist   *hist
	}
	states := make([]*senderState, len(senders))
	prefix := "o" + hexTag(e.tag) + "-"
	began := time.Now()
	// One time axis for both phases, from the first send.
	tl := newTimeline(began, 50*time.Millisecond, 30*time.Minute)
	caughtTL := newTimeline(began, 50*time.Millisecond, 30*time.Minute)
	var pumps sync.WaitGroup
	for i, d := range senders {
		st := &senderState{window: make(chan struct{}, o.window), sentAt: make([]atomic.Int64, share(i)), hist: newHist()}
		for range o.window {
			st.window <- struct{}{}
		}
		states[i] = st
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			pump(d.conn, func(ev *wire.Event) {
				switch ev.Type {
				case wire.EventSent, wire.EventError:
					if !strings.HasPrefix(ev.ClientID, prefix) {
						if ev.Type == wire.EventError {
							fail(ev.Code + ": " + ev.Message)
						}
						return
					}
					_, num, _ := strings.Cut(ev.ClientID[len(prefix):], "-")
					j, _ := strconv.Atoi(num)
					now := e.since()
					if ev.Type == wire.EventError {
						fail(ev.Code + ": " + ev.Message)
					} else {
						if j < len(st.sentAt) {
							st.hist.record(now - time.Duration(st.sentAt[j].Load()))
						}
						accepted.Add(1)
						tl.add(time.Now(), 1)
						lastAccepted.Store(int64(now))
					}
					select {
					case st.window <- struct{}{}:
					default:
					}
					finished()
				}
			})
		}()
	}
	e.logf("queueing %d messages for offline %s from %d senders", k, rcv.sess.UserID, len(senders))
	snapA := takeSnapshot(pids(srv))
	start := e.since()
	var sends sync.WaitGroup
	for i, d := range senders {
		st := states[i]
		sends.Add(1)
		go func() {
			defer sends.Done()
			for j := range len(st.sentAt) {
				select {
				case <-st.window:
				case <-ctx.Done():
					return
				}
				at := e.since()
				st.sentAt[j].Store(int64(at))
				f := wire.ClientFrame{Type: wire.FrameSend, ClientID: prefix + strconv.Itoa(i) + "-" + strconv.Itoa(j),
					To: rcv.sess.UserID, Envelopes: []wire.Envelope{{User: rcv.sess.UserID, Device: rcv.sess.DeviceID,
						Type: wire.CiphertextWhisper, Body: e.payload(o.size, at, uint64(i)<<32|uint64(j))}}}
				if err := d.conn.Send(ctx, f); err != nil {
					fail(err.Error())
					errs.n.Add(int64(len(st.sentAt) - j - 1)) // never sent
					finished()
					return
				}
			}
		}()
	}
	timeout := time.Duration(k)*10*time.Millisecond + time.Minute
	select {
	case <-allDone:
	case <-time.After(timeout):
		fail(fmt.Sprintf("only %d of %d accepted within %s", accepted.Load(), k, timeout))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	snapB := takeSnapshot(pids(srv))
	queueTook := time.Duration(lastAccepted.Load()) - start
	sends.Wait()
	closeAll(senders)
	pumps.Wait()
	acc := newHist()
	for _, st := range states {
		acc.merge(st.hist)
	}

	// Catch-up phase.
	time.Sleep(500 * time.Millisecond) // let the senders' disconnects settle
	e.logf("%d accepted in %.2fs; connecting the offline device", accepted.Load(), queueTook.Seconds())
	snapC := takeSnapshot(pids(srv))
	cuBegan := time.Now()
	got, took, conn, err := e.catchUp(ctx, rcv, k, caughtTL)
	if conn != nil {
		defer conn.Close()
	}
	if err != nil {
		return nil, err
	}
	// The device acknowledged as it went, but the server applies the acks
	// (deleting the events, queueing receipts) behind the delivery; the
	// catch-up's server CPU includes them.
	if err := awaitEmptyInbox(ctx, rcv, time.Minute); err != nil {
		fail(err.Error())
	}
	acked := time.Since(cuBegan)
	snapD := takeSnapshot(pids(srv))
	rss := serverRSS(srv)
	if got != k {
		fail(fmt.Sprintf("catch-up got %d of %d messages", got, k))
	}

	res := &result{
		AcceptedPerSec:  ptr(perSec(accepted.Load(), queueTook)),
		AcceptMs:        summarize(acc),
		CatchupPerSec:   ptr(perSec(int64(got), took)),
		CatchupSeconds:  ptr(round3(took.Seconds())),
		CatchupAckedSec: ptr(round3(acked.Seconds())),
		Sent:            ptr(accepted.Load()),
		Delivered:       ptr(int64(got)),
		Errors:          errs.n.Load(),
		FirstError:      errs.first,
		Settings: settings{Server: serverNames([]*server{srv}), Messages: k, Senders: len(senders), Window: o.window,
			Size: o.size, Crypto: "none"},
		hist:      acc,
		histTitle: "offline: send → accepted",
		series:    []series{{"accepted/s", tl.rates(time.Now())}, {"caught up/s", caughtTL.rates(time.Now())}},
		seriesDt:  50 * time.Millisecond,
	}
	if srv.pid != 0 {
		res.ServerRSSBytes = ptr(rss)
	}
	res.setUsage(between(snapA, snapB), accepted.Load())
	if cu := between(snapC, snapD); cu.known && got > 0 {
		res.CatchupCPUUsPerMsg = ptr(round3(float64(cu.server.Microseconds()) / float64(got)))
	}
	return res, nil
}

// catchUp connects d and reads until it has k of this run's messages,
// acknowledging as it goes. It returns how many it got (distinct), how
// long from the dial until the k-th, and the socket, still open: closing
// it while the server has acks unread would reset the connection and lose
// them. Arrivals are counted in tl.
func (e *env) catchUp(ctx context.Context, d *device, k int, tl *timeline) (int, time.Duration, *client.Conn, error) {
	api := e.api(d.srv, d.sess.AccessToken, client.WithDialer(e.dialer(d.srv, 0)), client.WithEventBuffer(1024))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(k)*10*time.Millisecond+time.Minute)
	defer cancel()
	began := time.Now()
	conn, err := api.Dial(ctx)
	if err != nil {
		return 0, 0, nil, err
	}

	seen := make(map[int64]bool, k)
	var took time.Duration
	ids := make([]int64, 0, 256)
	caughtUp := false
	for len(seen) < k || !caughtUp {
		var ev wire.Event
		var ok bool
		select {
		case ev, ok = <-conn.Events():
			if !ok {
				return len(seen), time.Since(began), conn, fmt.Errorf("catch-up socket closed: %v", conn.Err())
			}
		case <-ctx.Done():
			return len(seen), time.Since(began), conn, nil
		}
		if ev.Type == wire.EventCaughtUp {
			caughtUp = true
		}
		if ev.Type == wire.EventMessage && !seen[ev.ID] {
			if _, _, mine := e.parsePayload(ev.Body); mine {
				seen[ev.ID] = true
				tl.add(time.Now(), 1)
				if len(seen) == k {
					took = time.Since(began)
				}
			}
		}
		if ev.ID > 0 {
			ids = append(ids, ev.ID)
		}
		if len(ids) > 0 && (len(ids) >= 256 || len(conn.Events()) == 0) {
			if err := conn.Ack(ctx, ids); err != nil {
				return len(seen), time.Since(began), conn, err
			}
			ids = ids[:0]
		}
	}
	if err := conn.Ack(ctx, ids); err != nil {
		return len(seen), took, conn, err
	}
	go func() { // keep reading until the caller closes it
		for range conn.Events() {
		}
	}()
	return len(seen), took, conn, nil
}

// drainInbox acknowledges everything pending for d over REST.
func drainInbox(ctx context.Context, d *device) error {
	for {
		page, err := d.api.Inbox(ctx, 0, 1000)
		if err != nil {
			return err
		}
		if len(page.Events) == 0 {
			return nil
		}
		ids := make([]int64, len(page.Events))
		for i, ev := range page.Events {
			ids[i] = ev.ID
		}
		if err := d.api.Ack(ctx, ids); err != nil {
			return err
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// perSec is n per second of d, rounded; 0 when d is not positive.
func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round3(float64(n) / d.Seconds())
}
