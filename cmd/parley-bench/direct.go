package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/wire"
)

// runDirectScenario: --pairs sender/receiver pairs on one homeserver.
func runDirectScenario(ctx context.Context, e *env) (*result, error) {
	srv, err := e.target(ctx)
	if err != nil {
		return nil, err
	}
	signal := e.o.crypto == "signal"
	senders, err := e.devices(ctx, srv, "s", e.o.pairs, true)
	if err != nil {
		return nil, err
	}
	// With real Signal sessions receivers upload their own keys.
	receivers, err := e.devices(ctx, srv, "r", e.o.pairs, !signal)
	if err != nil {
		return nil, err
	}
	return e.direct(ctx, senders, receivers, []*server{srv})
}

// pairState is one sender/receiver pair during a direct run.
type pairState struct {
	i      int
	s, r   *device
	window chan struct{} // closed loop: tokens for messages whose receipt is not back
	sig    *signalPair   // --crypto=signal
	hist   *hist         // send->deliver, written by the receiver's pump only
	got    int           // this run's messages delivered, ditto
	// Sender's pump only: seq of the run's first message, so that
	// receipts for older messages (a kept account's leftovers) are not
	// counted.
	firstSeq uint64

	// Open loop: the schedule, and how many messages it held before tEnd.
	first, interval time.Duration
	scheduled       int
}

// directRun is the shared state of one direct run.
type directRun struct {
	e                *env
	tStart, tWarm    time.Duration // since env.start
	tEnd             time.Duration
	closed           bool // closed loop
	sent, delivered  atomic.Int64
	receipts         atomic.Int64
	inWindow         atomic.Int64 // delivered within [tWarm, tEnd]
	receiptsInWindow atomic.Int64
	errLog
	sentTL, delTL *timeline
	recTL         *timeline
}

// direct runs the direct scenario between senders[i] and receivers[i],
// which may live on different homeservers (federation). servers are the
// homeservers whose CPU and memory are measured.
func (e *env) direct(ctx context.Context, senders, receivers []*device, servers []*server) (*result, error) {
	o := e.o
	pairs := make([]*pairState, len(senders))
	for i := range pairs {
		pairs[i] = &pairState{i: i, s: senders[i], r: receivers[i], hist: newHist()}
	}
	if o.crypto == "signal" {
		if err := e.setupSignal(ctx, pairs); err != nil {
			return nil, err
		}
		defer closeSignal(pairs)
	}
	all := append(append([]*device{}, senders...), receivers...)
	e.logf("connecting %d sockets", len(all))
	if err := e.connectAll(ctx, all, 256); err != nil {
		closeAll(all)
		return nil, err
	}
	defer closeAll(all)

	d := &directRun{e: e, closed: o.rate == 0}
	d.tStart = e.since() + 200*time.Millisecond
	d.tWarm = d.tStart + o.warmup
	d.tEnd = d.tWarm + o.duration
	origin := e.start.Add(d.tStart)
	span := d.tEnd - d.tStart + o.drain + time.Second
	d.sentTL = newTimeline(origin, 100*time.Millisecond, span)
	d.delTL = newTimeline(origin, 100*time.Millisecond, span)
	d.recTL = newTimeline(origin, 100*time.Millisecond, span)

	prefix := "b" + hexTag(e.tag) + "-" // client ids of this run
	var pumps sync.WaitGroup
	for _, p := range pairs {
		if d.closed {
			p.window = make(chan struct{}, o.window)
			for range o.window {
				p.window <- struct{}{}
			}
		}
		pumps.Add(2)
		go func() { defer pumps.Done(); pump(p.r.conn, func(ev *wire.Event) { d.onReceiverEvent(ctx, p, ev) }) }()
		go func() { defer pumps.Done(); pump(p.s.conn, func(ev *wire.Event) { d.onSenderEvent(p, ev, prefix) }) }()
	}

	mode := "closed loop"
	if !d.closed {
		mode = fmt.Sprintf("open loop at %g msgs/s", o.rate)
	}
	e.logf("sending: %d pairs, %s, warm-up %s, measuring %s", len(pairs), mode, o.warmup, o.duration)

	// CPU snapshots at the edges of the measured window.
	var snapA, snapB snapshot
	var rss int64
	var snaps sync.WaitGroup
	snaps.Add(1)
	go func() {
		defer snaps.Done()
		sleepUntil(ctx, e.start.Add(d.tWarm))
		snapA = takeSnapshot(pids(servers...))
		sleepUntil(ctx, e.start.Add(d.tEnd))
		snapB = takeSnapshot(pids(servers...))
		rss = serverRSS(servers...)
	}()

	// Closed loop stops sending at the end of the window. Open loop sends
	// every message scheduled before it, however late, for up to --drain
	// more: a server that fell behind must pay for its backlog in the
	// latency figures instead of having it dropped.
	stopAt := d.tEnd
	if !d.closed {
		stopAt += o.drain
	}
	stopCtx, stop := context.WithDeadline(ctx, e.start.Add(stopAt))
	defer stop()
	var sends sync.WaitGroup
	for _, p := range pairs {
		sends.Add(1)
		go func() { defer sends.Done(); d.sendLoop(stopCtx, ctx, p, len(pairs)) }()
	}
	sends.Wait()
	snaps.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Wait for what is in flight (and its receipts), until --drain after
	// the end of the window.
	deadline := e.start.Add(d.tEnd + o.drain)
	for time.Now().Before(deadline) {
		if d.delivered.Load() >= d.sent.Load() && d.receipts.Load() >= d.delivered.Load() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	drainEnd := time.Now()
	closeAll(all)
	pumps.Wait()

	lowerBound := d.countUndelivered(pairs, drainEnd)
	h := newHist()
	for _, p := range pairs {
		h.merge(p.hist)
	}
	res := d.result(h, lowerBound, servers, len(pairs), drainEnd)
	if len(pids(servers...)) > 0 {
		res.ServerRSSBytes = ptr(rss)
	}
	u := between(snapA, snapB)
	res.setUsage(u, d.inWindow.Load())
	if late := u.wall - o.duration; late > o.duration/10 || late < -o.duration/10 {
		res.Disturbed = strings.TrimPrefix(res.Disturbed+fmt.Sprintf("; the bench's window measured %.2fs instead of %s: it was starved of CPU",
			u.wall.Seconds(), o.duration), "; ")
	}
	return res, nil
}

// countUndelivered enters, in open loop, the messages scheduled in the
// window but never sent or never delivered, with the latency they had
// reached when the run ended (a lower bound), rather than not at all. Each
// pair's messages arrive in order (one conversation, one socket), so the
// first p.got of its schedule are the delivered ones. It reports whether
// there were any.
func (d *directRun) countUndelivered(pairs []*pairState, end time.Time) bool {
	any := false
	endAt := end.Sub(d.e.start)
	for _, p := range pairs {
		for k := p.got; k < p.scheduled; k++ {
			if at := p.first + time.Duration(k)*p.interval; at >= d.tWarm {
				p.hist.record(endAt - at)
				any = true
			}
		}
	}
	return any
}

// result is the report of a finished run whose latencies are in h.
func (d *directRun) result(h *hist, lowerBound bool, servers []*server, npairs int, end time.Time) *result {
	o := d.e.o
	measured := (d.tEnd - d.tWarm).Seconds()
	return &result{
		DeliveredPerSec:   ptr(round3(float64(d.inWindow.Load()) / measured)),
		LatencyMs:         summarize(h),
		ReceiptsPerSec:    ptr(round3(float64(d.receiptsInWindow.Load()) / measured)),
		Sent:              ptr(d.sent.Load()),
		Delivered:         ptr(d.delivered.Load()),
		Undelivered:       ptr(d.sent.Load() - d.delivered.Load()),
		Receipts:          ptr(d.receipts.Load()),
		Errors:            d.errLog.n.Load(),
		FirstError:        d.errLog.first,
		LatencyLowerBound: lowerBound,
		Settings: settings{Server: serverNames(servers), Pairs: npairs, Rate: o.rate, Window: windowIf(d.closed, o.window),
			Mode: map[bool]string{true: "closed", false: "open"}[d.closed], Duration: o.duration.Seconds(),
			Warmup: o.warmup.Seconds(), Size: o.size, Crypto: o.crypto},
		hist:      h,
		histTitle: "send→deliver latency",
		series: []series{{"sent/s", d.sentTL.rates(end)}, {"delivered/s", d.delTL.rates(end)},
			{"receipts/s", d.recTL.rates(end)}},
		seriesDt: 100 * time.Millisecond,
		window:   [2]float64{o.warmup.Seconds(), (o.warmup + o.duration).Seconds()},
	}
}

func windowIf(closed bool, w int) int {
	if closed {
		return w
	}
	return 0
}

func serverNames(servers []*server) string {
	s := ""
	for i, srv := range servers {
		if i > 0 {
			s += ","
		}
		if srv.logPath != "" { // started by the bench
			s += "started:" + srv.domain
		} else {
			s += srv.url
		}
	}
	return s
}

// sendLoop sends p's messages until stopCtx ends (the end of the measured
// window). Closed loop: whenever fewer than --window are in flight (a
// message is until its delivered receipt is back, so that receipts cannot
// fall behind the messages). Open
// loop: on a fixed schedule, each pair its share of --rate, staggered; a
// message's latency counts from its scheduled time, so a server that
// falls behind (and a bench that cannot keep up) shows in the latency
// instead of silently lowering the rate (no coordinated omission).
func (d *directRun) sendLoop(stopCtx, ctx context.Context, p *pairState, npairs int) {
	e, o := d.e, d.e.o
	sleepUntil(stopCtx, e.start.Add(d.tStart))
	var interval time.Duration
	var next time.Duration
	if !d.closed {
		interval = time.Duration(float64(npairs) / o.rate * float64(time.Second))
		next = d.tStart + time.Duration(p.i)*interval/time.Duration(npairs)
		p.first, p.interval = next, interval
		if next < d.tEnd {
			p.scheduled = int((d.tEnd - next + interval - 1) / interval)
		}
	}
	prefix := "b" + hexTag(e.tag) + "-"
	for k := uint64(0); ; k++ {
		var at time.Duration
		if d.closed {
			select {
			case <-p.window:
			case <-stopCtx.Done():
				return
			}
			at = e.since()
			if at >= d.tEnd {
				return
			}
		} else {
			at = next
			next += interval
			if at >= d.tEnd {
				return
			}
			if !sleepUntil(stopCtx, e.start.Add(at)) {
				return
			}
		}
		env, err := d.envelope(ctx, p, at, k)
		if err != nil {
			d.fail(err.Error())
			return
		}
		f := wire.ClientFrame{Type: wire.FrameSend, ClientID: prefix + strconv.FormatUint(k, 10),
			To: p.r.sess.UserID, Envelopes: []wire.Envelope{env}}
		if err := p.s.conn.Send(ctx, f); err != nil {
			d.fail(err.Error())
			return
		}
		d.sent.Add(1)
		d.sentTL.add(time.Now(), 1)
	}
}

// envelope is p's ciphertext for its receiver: opaque bytes, or a real
// Signal message with --crypto=signal.
func (d *directRun) envelope(ctx context.Context, p *pairState, at time.Duration, k uint64) (wire.Envelope, error) {
	body := d.e.payload(d.e.o.size, at, k)
	env := wire.Envelope{User: p.r.sess.UserID, Device: p.r.sess.DeviceID, Type: wire.CiphertextWhisper, Body: body}
	if p.sig != nil {
		var err error
		env.Type, env.Body, err = p.sig.encrypt(ctx, body)
		if err != nil {
			return env, err
		}
	}
	return env, nil
}

func (d *directRun) onReceiverEvent(ctx context.Context, p *pairState, ev *wire.Event) {
	switch ev.Type {
	case wire.EventMessage:
		now := d.e.since()
		body := ev.Body
		if p.sig != nil {
			var err error
			if body, err = p.sig.decrypt(ctx, ev); err != nil {
				d.fail(err.Error())
				return
			}
		}
		sent, _, ok := d.e.parsePayload(body)
		if !ok {
			return // warm-up or another run's
		}
		p.got++
		d.delivered.Add(1)
		d.delTL.add(time.Now(), 1)
		if now >= d.tWarm && now <= d.tEnd {
			d.inWindow.Add(1)
		}
		if sent >= d.tWarm && sent < d.tEnd {
			p.hist.record(now - sent)
		}
	case wire.EventError:
		d.fail(ev.Code + ": " + ev.Message)
	}
}

func (d *directRun) onSenderEvent(p *pairState, ev *wire.Event, prefix string) {
	switch ev.Type {
	case wire.EventSent:
		if p.firstSeq == 0 && strings.HasPrefix(ev.ClientID, prefix) {
			p.firstSeq = ev.Seq
		}
	case wire.EventReceipt:
		if ev.Status != wire.StatusDelivered || p.firstSeq == 0 || ev.Seq < p.firstSeq {
			return
		}
		if p.window != nil {
			select {
			case p.window <- struct{}{}:
			default:
			}
		}
		now := d.e.since()
		d.receipts.Add(1)
		d.recTL.add(time.Now(), 1)
		if now >= d.tWarm && now <= d.tEnd {
			d.receiptsInWindow.Add(1)
		}
	case wire.EventError:
		d.fail(ev.Code + ": " + ev.Message)
		if p.window != nil { // that message will never be delivered
			select {
			case p.window <- struct{}{}:
			default:
			}
		}
	}
}

// sleepUntil waits until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
