package homeserver_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/internal/proccpu"
	"github.com/parleychat/parley/storage/sqlite"
	"github.com/parleychat/parley/wire"
)

// benchServer is a homeserver on a real SQLite file with n users of one
// device each, keys uploaded.
func benchServer(b *testing.B, n int) (*homeserver.Server, []homeserver.Caller) {
	b.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, b.TempDir(), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	hs, err := homeserver.New(store, homeserver.Options{Domain: "bench.example",
		Password: homeserver.PasswordParams{Memory: 64, Time: 1, Threads: 1}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	keys, err := e2ee.OpenStore(filepath.Join(b.TempDir(), "k.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer keys.Close()
	if err := keys.CreateIdentity(ctx); err != nil {
		b.Fatal(err)
	}
	up, err := keys.KeyUpload(ctx, true, 0)
	if err != nil {
		b.Fatal(err)
	}
	var callers []homeserver.Caller
	for i := range n {
		s, err := hs.Register(ctx, wire.RegisterRequest{User: fmt.Sprint("u", i), Password: "bench password"})
		if err != nil {
			b.Fatal(err)
		}
		c := homeserver.Caller{UserID: s.UserID, DeviceID: s.DeviceID}
		if _, err := hs.UploadKeys(ctx, c, up); err != nil {
			b.Fatal(err)
		}
		callers = append(callers, c)
	}
	return hs, callers
}

// BenchmarkSend measures one durable, sequenced direct message (commit
// included), one sender at a time and many at once (group commit).
func BenchmarkSend(b *testing.B) {
	body := make([]byte, 200)
	for _, par := range []int{1, 64} {
		b.Run(fmt.Sprintf("senders=%d", par), func(b *testing.B) {
			hs, cs := benchServer(b, 2*par)
			ctx := context.Background()
			var next, id atomic.Int64
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.SetParallelism((par + 1) / 2) // RunParallel starts this × GOMAXPROCS goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				pair := int(next.Add(1)-1) % par
				from, to := cs[2*pair], cs[2*pair+1]
				for pb.Next() {
					_, err := hs.Send(ctx, from, wire.SendRequest{ClientID: fmt.Sprint(id.Add(1)), To: to.UserID,
						Envelopes: []wire.Envelope{{User: to.UserID, Device: to.DeviceID, Type: wire.CiphertextWhisper, Body: body}}})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchGroup creates a group of all the callers, the first its owner, and
// returns it with the other members' devices (a shared send's list).
func benchGroup(b *testing.B, hs *homeserver.Server, cs []homeserver.Caller) (string, []wire.DeviceAddress) {
	var names []string
	var shared []wire.DeviceAddress
	for _, c := range cs[1:] {
		names = append(names, c.UserID)
		shared = append(shared, wire.DeviceAddress{User: c.UserID, Device: c.DeviceID})
	}
	g, err := hs.CreateGroup(context.Background(), cs[0], wire.CreateGroupRequest{GroupMeta: wire.GroupMeta{Name: "bench"}, Members: names})
	if err != nil {
		b.Fatal(err)
	}
	return g.ID, shared
}

// BenchmarkGroupFanout sends one sender-key message to a group of 1,024
// members: one stored ciphertext and 1,023 inbox entries in one commit.
func BenchmarkGroupFanout(b *testing.B) {
	for _, members := range []int{64, 1024} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			hs, cs := benchServer(b, members)
			ctx := context.Background()
			groupID, shared := benchGroup(b, hs, cs)
			body := make([]byte, 200)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				_, err := hs.Send(ctx, cs[0], wire.SendRequest{ClientID: fmt.Sprint(i), To: groupID,
					Shared: &wire.Shared{Type: wire.CiphertextSenderKey, Body: body, Devices: shared}})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(members-1), "µs/recipient")
		})
	}
}

// BenchmarkGroupAck measures what follows a group message: every one of
// 1,023 member devices acknowledges it (concurrently, as their sockets
// would), each ack counting a delivery and updating the sender's
// delivered summary. Reported per acknowledgement.
func BenchmarkGroupAck(b *testing.B) {
	const members = 1024
	hs, cs := benchServer(b, members)
	ctx := context.Background()
	groupID, shared := benchGroup(b, hs, cs)
	body := make([]byte, 200)
	// The members' pending entries (the group's creation events), drained
	// first so each later read finds just the message.
	cursor := make([]int64, members)
	next := func(i int) int64 {
		evs, _, err := hs.Inbox(ctx, cs[i], cursor[i], 1000)
		if err != nil || len(evs) == 0 {
			b.Fatalf("inbox of member %d: %d events, %v", i, len(evs), err)
		}
		cursor[i] = evs[len(evs)-1].ID
		return cursor[i]
	}
	for i := 1; i < members; i++ {
		next(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		if _, err := hs.Send(ctx, cs[0], wire.SendRequest{ClientID: fmt.Sprint(n), To: groupID,
			Shared: &wire.Shared{Type: wire.CiphertextSenderKey, Body: body, Devices: shared}}); err != nil {
			b.Fatal(err)
		}
		ids := make([]int64, members)
		for i := 1; i < members; i++ {
			ids[i] = next(i)
		}
		b.StartTimer()
		var wg sync.WaitGroup
		for i := 1; i < members; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := hs.Ack(ctx, cs[i], []int64{ids[i]}); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(members-1), "µs/ack")
}

// BenchmarkInboxRead reads a device's pending events, encoded for the
// wire, 256 at a time (what a socket does on every wake-up).
func BenchmarkInboxRead(b *testing.B) {
	hs, cs := benchServer(b, 2)
	ctx := context.Background()
	body := make([]byte, 200)
	for i := range 1000 {
		_, err := hs.Send(ctx, cs[0], wire.SendRequest{ClientID: fmt.Sprint(i), To: cs[1].UserID,
			Envelopes: []wire.Envelope{{User: cs[1].UserID, Device: cs[1].DeviceID, Type: wire.CiphertextWhisper, Body: body}}})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		evs, _, err := hs.Inbox(ctx, cs[1], 0, 256)
		if err != nil || len(evs) != 256 {
			b.Fatal(len(evs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/event")
}

// BenchmarkClaim claims one bundle with a one-time prekey (a write: the
// prekey is taken for this claim alone).
func BenchmarkClaim(b *testing.B) {
	hs, cs := benchServer(b, 2)
	ctx := context.Background()
	keys, err := e2ee.OpenStore(filepath.Join(b.TempDir(), "k2.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer keys.Close()
	if err := keys.CreateIdentity(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%wire.MaxPreKeysPerUpload == 0 { // keep the device stocked, outside the timing
			b.StopTimer()
			up, err := keys.KeyUpload(ctx, i == 0, wire.MaxPreKeysPerUpload)
			if err != nil {
				b.Fatal(err)
			}
			if i == 0 {
				up.IdentityKey, up.RegistrationID = nil, 0 // the device keeps its identity
				up.SignedPreKey = nil
			}
			if _, err := hs.UploadKeys(ctx, cs[1], up); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		bs, err := hs.Claim(ctx, cs[0], wire.ClaimRequest{User: cs[1].UserID})
		if err != nil || len(bs) != 1 || bs[0].PreKey == nil {
			b.Fatal(bs, err)
		}
	}
}

// idRouter is a Notifier that hands each device's new inbox ids to it.
type idRouter struct {
	mu  sync.Mutex
	chs map[homeserver.Caller]chan int64
}

func (r *idRouter) ch(c homeserver.Caller) chan int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := r.chs[c]
	if ch == nil {
		ch = make(chan int64, 1024)
		r.chs[c] = ch
	}
	return ch
}

func (r *idRouter) InboxAdded(user string, dev uint32, ev homeserver.InboxEvent) {
	r.ch(homeserver.Caller{UserID: user, DeviceID: dev}) <- ev.ID
}
func (r *idRouter) PreKeysLow(string, uint32, int) {}
func (r *idRouter) DeviceRemoved(string, uint32)   {}

// BenchmarkDirectCycle runs the whole storage life of a direct message
// between online devices, as sockets drive it, for 256 pairs at once: the
// send, the recipient's acknowledgement (which queues the delivered
// receipt), the sender's acknowledgements of its answer and of the
// receipt. It reports the server's CPU per message (the process's, so
// the SQLite work in cgo is counted): the storage share of the direct
// scenario, without sockets.
func BenchmarkDirectCycle(b *testing.B) {
	const pairs = 256
	hs, cs := benchServer(b, 2*pairs)
	r := &idRouter{chs: map[homeserver.Caller]chan int64{}}
	hs.SetNotifier(r)
	ctx := context.Background()
	body := make([]byte, 200)
	var next, id atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(pairs / runtime.GOMAXPROCS(0))
	cpu0 := proccpu.Used()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		pair := int(next.Add(1)-1) % pairs
		from, to := cs[2*pair], cs[2*pair+1]
		fromIDs, toIDs := r.ch(from), r.ch(to)
		for pb.Next() {
			_, err := hs.Send(ctx, from, wire.SendRequest{ClientID: fmt.Sprint(id.Add(1)), To: to.UserID,
				Envelopes: []wire.Envelope{{User: to.UserID, Device: to.DeviceID, Type: wire.CiphertextWhisper, Body: body}}})
			if err == nil {
				err = hs.Ack(ctx, to, []int64{<-toIDs})
			}
			for range 2 { // the answer, then the receipt
				if err == nil {
					err = hs.Ack(ctx, from, []int64{<-fromIDs})
				}
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((proccpu.Used()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}
