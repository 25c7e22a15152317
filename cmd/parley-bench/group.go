package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/wire"
)

// runGroup: one group of --members members (the sender, its owner,
// included), created with all of them in one call, every member device
// online. The sender sends --messages messages one after the other, each
// a shared sender-key ciphertext for every other member device (stored
// once, as docs/protocol.md describes); for each it measures the time from
// the send until the last member device has it. Sends go over REST
// (POST /v1/messages), as measured for docs/performance.md.
func runGroup(ctx context.Context, e *env) (*result, error) {
	o := e.o
	k := o.messages
	if k == 0 {
		k = 100
	}
	srv, err := e.target(ctx)
	if err != nil {
		return nil, err
	}
	devs, err := e.devices(ctx, srv, "gm", o.members, true)
	if err != nil {
		return nil, err
	}
	owner, members := devs[0], devs[1:]
	users := make([]string, len(members))
	for i, d := range members {
		users[i] = d.sess.UserID
	}
	g, err := owner.api.CreateGroup(ctx, wire.CreateGroupRequest{GroupMeta: wire.GroupMeta{Name: "parley-bench"}, Members: users})
	if err != nil {
		return nil, fmt.Errorf("create group of %d: %w", o.members, err)
	}
	gd, err := owner.api.GroupDevices(ctx, g.ID)
	if err != nil {
		return nil, err
	}
	var shared []wire.DeviceAddress
	for _, d := range gd.Devices {
		if d.User != owner.sess.UserID || d.DeviceID != owner.sess.DeviceID {
			shared = append(shared, wire.DeviceAddress{User: d.User, Device: d.DeviceID})
		}
	}
	if len(shared) != len(members) {
		return nil, fmt.Errorf("group %s lists %d member devices, want %d", g.ID, len(shared), len(members))
	}
	e.logf("group %s of %d members; connecting their sockets", g.ID, o.members)
	if err := e.connectAll(ctx, devs, 256); err != nil {
		closeAll(devs)
		return nil, err
	}
	defer closeAll(devs)

	// Per message: how many member devices still lack it, and when the
	// last one got it.
	type msgState struct {
		remaining atomic.Int64
		last      atomic.Int64 // ns since env.start
		done      chan struct{}
	}
	msgs := make([]*msgState, k)
	for i := range msgs {
		msgs[i] = &msgState{done: make(chan struct{})}
		msgs[i].remaining.Store(int64(len(members)))
	}
	got := make([]atomic.Int64, len(members))
	hists := make([]*hist, len(members))
	var errs errLog
	fail := errs.fail
	began := time.Now()
	tl := newTimeline(began, 100*time.Millisecond, time.Duration(k)*30*time.Second+time.Minute)
	var receipts atomic.Int64
	var pumps sync.WaitGroup
	for i, d := range members {
		hists[i] = newHist()
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			pump(d.conn, func(ev *wire.Event) {
				if ev.Type == wire.EventError {
					fail(ev.Code + ": " + ev.Message)
				}
				if ev.Type != wire.EventMessage || ev.Group != g.ID {
					return
				}
				now := e.since()
				sent, idx, ok := e.parsePayload(ev.Body)
				if !ok || idx >= uint64(k) {
					return
				}
				hists[i].record(now - sent)
				got[i].Add(1)
				tl.add(time.Now(), 1)
				m := msgs[idx]
				for { // last = max(last, now)
					l := m.last.Load()
					if int64(now) <= l || m.last.CompareAndSwap(l, int64(now)) {
						break
					}
				}
				if m.remaining.Add(-1) == 0 {
					close(m.done)
				}
			})
		}()
	}
	pumps.Add(1)
	go func() {
		defer pumps.Done()
		pump(owner.conn, func(ev *wire.Event) {
			if ev.Type == wire.EventReceipt {
				receipts.Add(1)
			}
		})
	}()

	e.logf("sending %d group messages to %d member devices", k, len(shared))
	fan, acc := newHist(), newHist()
	prefix := "g" + hexTag(e.tag) + "-"
	snapA := takeSnapshot(pids(srv))
	for i := range k {
		at := e.since()
		req := wire.SendRequest{ClientID: prefix + strconv.Itoa(i), To: g.ID,
			Shared: &wire.Shared{Type: wire.CiphertextSenderKey, Body: e.payload(o.size, at, uint64(i)), Devices: shared}}
		if _, err := owner.api.SendMessage(ctx, req); err != nil {
			fail(err.Error())
			break
		}
		acc.record(e.since() - at)
		select {
		case <-msgs[i].done:
			fan.record(time.Duration(msgs[i].last.Load()) - at)
		case <-time.After(30 * time.Second):
			fail(fmt.Sprintf("message %d: %d member devices still lack it after 30s", i, msgs[i].remaining.Load()))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	snapB := takeSnapshot(pids(srv))
	rss := serverRSS(srv)
	elapsed := time.Since(began)
	// Stragglers (after a timeout) get --drain to arrive before counting.
	deadline := time.Now().Add(o.drain)
	for _, m := range msgs {
		select {
		case <-m.done:
		case <-time.After(time.Until(deadline)):
		}
	}
	closeAll(devs)
	pumps.Wait()

	all := newHist()
	var deliveries int64
	for i, h := range hists {
		all.merge(h)
		n := got[i].Load()
		deliveries += n
		if n != int64(k) {
			fail(fmt.Sprintf("member %s got %d of %d messages", members[i].sess.UserID, n, k))
		}
	}
	res := &result{
		FanoutMs:         &fanout{P50: ms(fan.quantile(0.5)), P99: ms(fan.quantile(0.99)), Max: ms(fan.max)},
		MemberLatencyMs:  summarize(all),
		AcceptMs:         summarize(acc),
		DeviceDeliveries: ptr(round3(float64(deliveries) / elapsed.Seconds())),
		Sent:             ptr(int64(acc.n)), // sent, whether or not every member got it
		Delivered:        ptr(deliveries),
		Receipts:         ptr(receipts.Load()),
		Errors:           errs.n.Load(),
		FirstError:       errs.first,
		Settings:         settings{Server: serverNames([]*server{srv}), Members: o.members, Messages: k, Size: o.size, Crypto: "none"},
		hist:             fan,
		histTitle:        "group fan-out: send → last member device",
		series:           []series{{"member-device deliveries/s", tl.rates(began.Add(elapsed))}},
		seriesDt:         100 * time.Millisecond,
	}
	if srv.pid != 0 {
		res.ServerRSSBytes = ptr(rss)
	}
	res.setUsage(between(snapA, snapB), int64(acc.n))
	return res, nil
}
