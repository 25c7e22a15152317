package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/wire"
)

// runFederation is the direct scenario across two homeservers the bench
// starts, a.test and b.test, each with a federation listener on loopback
// (plain HTTP, private addresses allowed) and the bench's own DNS server
// as resolver: SRV _parley._tcp.DOMAIN -> fed.DOMAIN:PORT, A fed.DOMAIN ->
// 127.0.0.1. Senders live on a.test, receivers on b.test; a.test is the
// conversations' hub (the domain that sorts first), so every message
// crosses once to b.test and every delivered receipt once back.
func runFederation(ctx context.Context, e *env) (*result, error) {
	z, err := testdns.New()
	if err != nil {
		return nil, err
	}
	defer z.Close()
	var servers []*server
	for _, domain := range []string{"a.test", "b.test"} {
		s, err := e.startServer(ctx, domain, z.Addr)
		if err != nil {
			return nil, err
		}
		i := strings.LastIndexByte(s.fedURL, ':')
		port, err := strconv.Atoi(s.fedURL[i+1:])
		if i < 0 || err != nil {
			return nil, fmt.Errorf("%s: federation listener URL %q has no port", domain, s.fedURL)
		}
		z.Publish(domain, port)
		servers = append(servers, s)
	}
	a, b := servers[0], servers[1]
	senders, err := e.devices(ctx, a, "fs", e.o.pairs, true)
	if err != nil {
		return nil, err
	}
	receivers, err := e.devices(ctx, b, "fr", e.o.pairs, true)
	if err != nil {
		return nil, err
	}
	if err := e.warmFederation(ctx, senders, receivers); err != nil {
		return nil, err
	}
	return e.direct(ctx, senders, receivers, servers)
}

// warmFederation sends one untimed message per pair and waits until each
// receiver has it: a.test then holds b.test's server key and every
// receiver's device list, and the measured run does not include
// first-contact lookups (which the peer rate-limits, 100 requests/s).
func (e *env) warmFederation(ctx context.Context, senders, receivers []*device) error {
	e.logf("warming up: one message per pair across the federation")
	body := make([]byte, e.o.size) // all-zero header: not this run's tag, so never timed
	err := parallel(ctx, len(senders), 8, func(ctx context.Context, i int) error {
		s, r := senders[i], receivers[i]
		req := wire.SendRequest{ClientID: "w" + hexTag(e.tag) + "-" + strconv.Itoa(i), To: r.sess.UserID,
			Envelopes: []wire.Envelope{{User: r.sess.UserID, Device: r.sess.DeviceID, Type: wire.CiphertextWhisper, Body: body}}}
		return patiently(ctx, time.Minute, func() error { _, err := s.api.SendMessage(ctx, req); return err })
	})
	if err != nil {
		return fmt.Errorf("warm-up send: %w", err)
	}
	// The receiver acknowledges the message, then the sender its receipt,
	// so that neither is pending when the measured run starts.
	return parallel(ctx, len(receivers), 16, func(ctx context.Context, i int) error {
		if err := awaitEvent(ctx, receivers[i], wire.EventMessage); err != nil {
			return err
		}
		return awaitEvent(ctx, senders[i], wire.EventReceipt)
	})
}

// awaitEvent polls d's inbox over REST, acknowledging everything, until an
// event of type typ has come (at most a minute).
func awaitEvent(ctx context.Context, d *device, typ string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		page, err := d.api.Inbox(ctx, 0, 1000)
		if err != nil {
			return err
		}
		ids := make([]int64, 0, len(page.Events))
		found := false
		for _, ev := range page.Events {
			ids = append(ids, ev.ID)
			found = found || ev.Type == typ
		}
		if err := d.api.Ack(ctx, ids); err != nil {
			return err
		}
		if found {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("warm-up: no %s event for %s within a minute", typ, d.sess.UserID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// patiently retries fn while the refusal is transient (the peer
// unreachable or rate limiting), for up to max.
func patiently(ctx context.Context, max time.Duration, fn func() error) error {
	deadline := time.Now().Add(max)
	wait := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		transient := client.IsCode(err, wire.CodeUnavailable) || client.IsCode(err, wire.CodeRateLimited) ||
			client.IsCode(err, wire.CodeInternal)
		if !transient || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
