package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// One message to a 1,024-member group reaches every member device over its
// socket. The time is logged for the record (benchmarks, not this test,
// judge speed: see BenchmarkGroupFanout and docs).
func TestGroupFanout1024(t *testing.T) {
	if testing.Short() {
		t.Skip("registers 1,024 accounts")
	}
	const members = 1024
	s := startServer(t, "", func(c *setup.Config) { c.LogLevel = "info" })
	up := freshUpload(t, 0) // one identity for all: the server does not care
	devs := make([]*device, members)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range members {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := &device{srv: s}
			s.must("POST", "/v1/register", "", wire.RegisterRequest{User: fmt.Sprint("member", i), Password: "correct horse"}, &d.session)
			s.must("PUT", "/v1/keys", d.token(), up, nil)
			devs[i] = d
		}()
	}
	wg.Wait()
	var names []string
	var shared []wire.DeviceAddress
	for _, d := range devs[1:] {
		names = append(names, d.session.UserID)
		shared = append(shared, d.addr())
	}
	g := devs[0].createGroup("everyone", names...)
	if len(g.Members) != members {
		t.Fatalf("group has %d members", len(g.Members))
	}
	socks := make([]*socket, members)
	for i, d := range devs[1:] {
		socks[i+1] = d.dial()
	}
	for _, sk := range socks[1:] {
		sk.until(wire.EventCaughtUp) // the "created" event, then caught up
	}

	start := time.Now()
	var res wire.SendResult
	s.must("POST", "/v1/messages", devs[0].token(), groupSend("hello-all", g.ID, shared), &res)
	accepted := time.Since(start)
	var mu sync.Mutex
	var last time.Duration
	for i, sk := range socks[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := sk.next()
			if ev.Type != wire.EventMessage || ev.Group != g.ID || ev.Seq != res.Seq || string(ev.Body) != "sender-key ciphertext hello-all" {
				t.Errorf("member %d got %+v", i+1, ev)
			}
			mu.Lock()
			last = max(last, time.Since(start))
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("1,024-member group: accepted after %v, on all %d member devices after %v", accepted, members-1, last)
}
