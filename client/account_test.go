package client

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

const testPassword = "correct horse"

type warnings struct {
	mu   sync.Mutex
	list []Warning
}

func (w *warnings) add(x Warning) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, x)
}

func (w *warnings) all() []Warning {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Warning(nil), w.list...)
}

func (w *warnings) kinds() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, x := range w.list {
		out = append(out, x.Kind)
	}
	return out
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newAccount registers (or, with login, adds a device to) name on srv in a
// fresh home.
func newAccount(t *testing.T, srv *testServer, name string, login bool, w *warnings, opts ...AccountOption) *Account {
	t.Helper()
	create := Register
	if login {
		create = Login
	}
	if w != nil {
		opts = append(opts, WithWarnings(w.add))
	}
	a, err := create(testCtx(t), t.TempDir(), srv.URL(), name, testPassword, "test", opts...)
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// receiveAll receives pending events until caught_up.
func receiveAll(t *testing.T, a *Account) []Item {
	t.Helper()
	var items []Item
	err := a.Receive(testCtx(t), ReceiveOptions{MarkRead: true}, func(it Item) error {
		items = append(items, it)
		return nil
	})
	if err != nil {
		t.Fatalf("receive for %s/%d: %v", a.UserID(), a.DeviceID(), err)
	}
	return items
}

func messages(items []Item) []Item {
	var out []Item
	for _, it := range items {
		if it.Type == ItemMessage || it.Type == ItemDecryptError {
			out = append(out, it)
		}
	}
	return out
}

// pending returns the device's unacknowledged inbox events, as the server
// holds them (asking with an API of its own, like preKeys).
func pending(t *testing.T, a *Account) []wire.Event {
	t.Helper()
	page, err := New(a.Server(), a.API().Token()).Inbox(testCtx(t), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return page.Events
}

// preKeys returns how many one-time prekeys the server holds for a. It
// asks with an API of its own, so that a's hooks see only a's requests.
func preKeys(t *testing.T, a *Account) int {
	t.Helper()
	c, err := New(a.Server(), a.API().Token()).PreKeyCount(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return c.Count
}

func TestSendReceiveAcrossDevices(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	bob := newAccount(t, srv, "bob", false, nil)
	bob2 := newAccount(t, srv, "bob", true, nil)
	alice2 := newAccount(t, srv, "alice", true, nil)
	if alice.UserID() != "alice@localhost" || alice2.DeviceID() != 2 || bob2.DeviceID() != 2 {
		t.Fatalf("ids: %s/%d %s/%d", alice.UserID(), alice.DeviceID(), bob2.UserID(), bob2.DeviceID())
	}
	if n := preKeys(t, bob); n != PreKeyBatch {
		t.Fatalf("bob holds %d prekeys on the server, want %d", n, PreKeyBatch)
	}
	conv := homeserver.DirectConversationID("alice@localhost", "bob@localhost")

	res, err := alice.SendText(ctx, "bob", "hi bob")
	if err != nil {
		t.Fatal(err)
	}
	if res.Seq != 1 || res.Conversation != conv || res.ClientID == "" || res.SentAt.IsZero() {
		t.Fatalf("send result %+v", res)
	}
	// Both of bob's devices, and alice's other device, get it.
	for _, dev := range []*Account{bob, bob2, alice2} {
		got := messages(receiveAll(t, dev))
		if len(got) != 1 || got[0].Type != ItemMessage || got[0].Text != "hi bob" ||
			got[0].From != "alice@localhost" || got[0].FromDevice != 1 ||
			got[0].Conversation != conv || got[0].Seq != 1 || !got[0].SentAt.Equal(res.SentAt) {
			t.Fatalf("%s/%d got %+v", dev.UserID(), dev.DeviceID(), got)
		}
		if p := pending(t, dev); len(p) != 0 {
			t.Fatalf("%s/%d still has %d inbox events after receiving: %+v", dev.UserID(), dev.DeviceID(), len(p), p)
		}
	}

	// A second message uses the sessions, a reply goes back to both of
	// alice's devices and to bob's other device.
	if _, err := alice.SendText(ctx, "bob@localhost", "second"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendText(ctx, "alice@localhost", "hi alice"); err != nil {
		t.Fatal(err)
	}
	if got := messages(receiveAll(t, bob2)); len(got) != 2 || got[0].Text != "second" ||
		got[1].Text != "hi alice" || got[1].From != "bob@localhost" || got[1].FromDevice != 1 || got[1].Seq != 3 {
		t.Fatalf("bob2 got %+v", got)
	}
	if got := messages(receiveAll(t, alice2)); len(got) != 2 || got[0].Text != "second" || got[1].Text != "hi alice" {
		t.Fatalf("alice2 got %+v", got)
	}
	items := receiveAll(t, alice)
	var texts []string
	receipts := map[string]bool{}
	for _, it := range items {
		switch it.Type {
		case ItemMessage:
			texts = append(texts, it.Text)
		case ItemReceipt:
			if it.Conversation != conv || it.By != "bob@localhost" {
				t.Errorf("receipt %+v", it)
			}
			receipts[it.Status] = true
		}
	}
	if len(texts) != 1 || texts[0] != "hi alice" {
		t.Fatalf("alice got messages %q", texts)
	}
	if !receipts[wire.StatusDelivered] || !receipts[wire.StatusRead] {
		t.Fatalf("alice got receipts %v, want delivered and read: %+v", receipts, items)
	}

	// Established sessions claim no prekeys.
	before := []int{preKeys(t, bob), preKeys(t, bob2), preKeys(t, alice2)}
	if _, err := alice.SendText(ctx, "bob@localhost", "third"); err != nil {
		t.Fatal(err)
	}
	if after := []int{preKeys(t, bob), preKeys(t, bob2), preKeys(t, alice2)}; !slices.Equal(before, after) {
		t.Fatalf("sending with established sessions claimed prekeys: %v -> %v", before, after)
	}
	if got := messages(receiveAll(t, bob)); len(got) != 2 || got[0].Text != "second" || got[1].Text != "third" {
		t.Fatalf("bob got %+v", got)
	}
	if got := receiveAll(t, bob); len(got) != 0 {
		t.Fatalf("second receive got %+v", got)
	}
}

func TestSendToUnknownUser(t *testing.T) {
	srv := startServer(t)
	alice := newAccount(t, srv, "alice", false, nil)
	_, err := alice.SendText(testCtx(t), "nobody@localhost", "hi")
	var werr *wire.Error
	if !errors.As(err, &werr) || werr.Code != wire.CodeUnknownUser {
		t.Fatalf("err = %v, want unknown_user", err)
	}
}

func TestSendSizeLimit(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	bob := newAccount(t, srv, "bob", false, nil)
	longest := strings.Repeat("x", MaxContentBytes-len(`{"v":1,"text":""}`))
	if _, err := alice.SendText(ctx, "bob@localhost", longest); err != nil {
		t.Fatalf("longest message: %v", err)
	}
	if _, err := alice.SendText(ctx, "bob@localhost", longest+"x"); !errors.Is(err, ErrTooLong) {
		t.Fatalf("too long: %v", err)
	}
	if got := messages(receiveAll(t, bob)); len(got) != 1 || got[0].Text != longest {
		t.Fatalf("bob got %d messages", len(got))
	}
}

// A device added or removed after the sender listed the devices makes the
// server refuse the send with stale_devices; the client fixes the targets
// and retries.
func TestSendRetriesStaleDevices(t *testing.T) {
	type setup struct {
		srv   *testServer
		alice *Account
		bob   *Account
	}
	tests := []struct {
		name string
		// prepare runs before the send; change runs in the window between
		// alice listing bob's devices and posting the message. check runs
		// after the send.
		prepare func(t *testing.T, s *setup) *Account
		change  func(t *testing.T, s *setup, other *Account) *Account
		check   func(t *testing.T, s *setup, other *Account)
	}{
		{
			name:    "device added",
			prepare: func(t *testing.T, s *setup) *Account { return nil },
			change: func(t *testing.T, s *setup, _ *Account) *Account {
				return newAccount(t, s.srv, "bob", true, nil)
			},
			check: func(t *testing.T, s *setup, bob2 *Account) {
				if got := messages(receiveAll(t, bob2)); len(got) != 1 || got[0].Text != "hello" {
					t.Fatalf("bob2 got %+v", got)
				}
			},
		},
		{
			name: "device removed",
			prepare: func(t *testing.T, s *setup) *Account {
				bob2 := newAccount(t, s.srv, "bob", true, nil)
				if _, err := s.alice.SendText(testCtx(t), "bob@localhost", "before"); err != nil {
					t.Fatal(err)
				}
				return bob2
			},
			change: func(t *testing.T, s *setup, bob2 *Account) *Account {
				if err := bob2.Logout(testCtx(t)); err != nil {
					t.Fatal(err)
				}
				return bob2
			},
			check: func(t *testing.T, s *setup, bob2 *Account) {
				has, err := s.alice.Store().HasSession(testCtx(t), e2ee.Address{User: "bob@localhost", Device: 2})
				if err != nil || has {
					t.Fatalf("alice still has a session with the removed device (%v)", err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &setup{srv: startServer(t)}
			var (
				armed atomic.Bool
				once  sync.Once
				stale atomic.Int32
				other *Account
			)
			hook := func(req *http.Request, resp *http.Response) {
				if req.URL.Path == "/v1/messages" && resp.StatusCode == http.StatusConflict {
					stale.Add(1)
				}
				if armed.Load() && req.Method == http.MethodGet && req.URL.Path == "/v1/users/bob@localhost/devices" {
					// RoundTrip runs on the goroutine of the send, the test's.
					once.Do(func() { other = tt.change(t, s, other) })
				}
			}
			s.alice = newAccount(t, s.srv, "alice", false, nil, withHook(hook))
			s.bob = newAccount(t, s.srv, "bob", false, nil)
			other = tt.prepare(t, s)
			stale.Store(0)
			armed.Store(true)
			if _, err := s.alice.SendText(testCtx(t), "bob@localhost", "hello"); err != nil {
				t.Fatal(err)
			}
			if n := stale.Load(); n != 1 {
				t.Fatalf("stale_devices refusals: %d, want 1", n)
			}
			tt.check(t, s, other)
			got := messages(receiveAll(t, s.bob))
			if len(got) == 0 || got[len(got)-1].Text != "hello" {
				t.Fatalf("bob got %+v", got)
			}
		})
	}
}

// A device that loses its Signal state re-keys. The peer trusts the new key
// with a warning, whether it notices when sending or when receiving, and
// the safety number changes (and still agrees on both sides).
func TestIdentityChangeIsTrustedAndReported(t *testing.T) {
	for _, noticed := range []string{"when sending", "when receiving"} {
		t.Run(noticed, func(t *testing.T) {
			srv := startServer(t)
			ctx := testCtx(t)
			var w warnings
			alice := newAccount(t, srv, "alice", false, &w)
			bob := newAccount(t, srv, "bob", false, nil)
			if _, err := alice.SendText(ctx, "bob@localhost", "one"); err != nil {
				t.Fatal(err)
			}
			receiveAll(t, bob)
			before, err := alice.SafetyNumber(ctx, "bob@localhost")
			if err != nil {
				t.Fatal(err)
			}

			// Bob loses his Signal state: the device gets a new identity
			// and uploads it.
			home := bob.Home()
			oldKey, _ := bob.Store().IdentityKey(ctx)
			bob.Close()
			for _, suffix := range []string{"", "-wal", "-shm", ".lock"} {
				os.Remove(filepath.Join(home, SignalDBName+suffix))
			}
			bob, err = Open(home)
			if err != nil {
				t.Fatal(err)
			}
			defer bob.Close()
			receiveAll(t, bob) // uploads the new identity first
			ud, err := alice.API().UserDevices(ctx, "bob@localhost")
			if err != nil || len(ud.Devices) != 1 || string(ud.Devices[0].IdentityKey) == string(oldKey) {
				t.Fatalf("the server does not list bob's new key: %+v %v", ud, err)
			}

			if noticed == "when receiving" {
				if _, err := bob.SendText(ctx, "alice@localhost", "back"); err != nil {
					t.Fatal(err)
				}
				got := messages(receiveAll(t, alice))
				if len(got) != 1 || got[0].Type != ItemMessage || got[0].Text != "back" {
					t.Fatalf("alice got %+v", got)
				}
			}
			if _, err := alice.SendText(ctx, "bob@localhost", "two"); err != nil {
				t.Fatal(err)
			}
			if k := w.kinds(); len(k) != 1 || k[0] != WarnIdentityChanged {
				t.Fatalf("warnings %v, want one %s", k, WarnIdentityChanged)
			}
			if got := messages(receiveAll(t, bob)); len(got) != 1 || got[0].Text != "two" {
				t.Fatalf("bob got %+v", got)
			}
			after, err := alice.SafetyNumber(ctx, "bob@localhost")
			if err != nil {
				t.Fatal(err)
			}
			if before == after {
				t.Fatal("safety number did not change with bob's identity key")
			}
			if theirs, err := bob.SafetyNumber(ctx, "alice"); err != nil || theirs != after {
				t.Fatalf("bob sees %q (%v), alice %q", theirs, err, after)
			}
			if k := w.kinds(); len(k) != 1 {
				t.Fatalf("warnings after the change: %v", k)
			}
		})
	}
}

func TestSafetyNumberAgrees(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	bob := newAccount(t, srv, "bob", false, nil)
	bob2 := newAccount(t, srv, "bob", true, nil)
	a, err := alice.SafetyNumber(ctx, "bob@localhost")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\d{5}( \d{5}){11}$`).MatchString(a) {
		t.Fatalf("safety number %q is not 12 groups of 5 digits", a)
	}
	for _, dev := range []*Account{bob, bob2} {
		b, err := dev.SafetyNumber(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatalf("alice sees %q, bob/%d sees %q", a, dev.DeviceID(), b)
		}
	}
	// It covers every device: bob's third device changes it.
	newAccount(t, srv, "bob", true, nil)
	if c, err := alice.SafetyNumber(ctx, "bob"); err != nil || c == a {
		t.Fatalf("with a third device of bob: %q %v", c, err)
	}
}

// Messages that cannot be read, replayed or garbage or tampered with, are
// acknowledged like any other, so that they cannot block the inbox; the
// session survives them.
func TestUnreadableMessagesDoNotBlockTheInbox(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	bob := newAccount(t, srv, "bob", false, nil)
	conv := homeserver.DirectConversationID("alice@localhost", "bob@localhost")
	if _, err := alice.SendText(ctx, "bob@localhost", "once"); err != nil {
		t.Fatal(err)
	}
	evs := pending(t, bob)
	if len(evs) != 1 || evs[0].Type != wire.EventMessage {
		t.Fatalf("bob's inbox: %+v", evs)
	}
	ev := evs[0]
	it, ok, err := bob.Process(ctx, ev)
	if err != nil || !ok || it.Text != "once" {
		t.Fatalf("first: %+v %v %v", it, ok, err)
	}
	if it, ok, err := bob.Process(ctx, ev); err != nil || ok {
		t.Fatalf("replay: %+v %v %v, want nothing", it, ok, err)
	}
	// Process does not acknowledge; Receive acknowledges the replay too.
	if got := receiveAll(t, bob); len(got) != 0 {
		t.Fatalf("receiving the replay: %+v", got)
	}
	if p := pending(t, bob); len(p) != 0 {
		t.Fatalf("replayed event still pending: %+v", p)
	}

	// Bob answers, so that alice's session sends whisper messages, whose
	// last 8 bytes are the MAC. (In a prekey message the last bytes are
	// unauthenticated ids that an existing session ignores.)
	if _, err := bob.SendText(ctx, "alice@localhost", "reply"); err != nil {
		t.Fatal(err)
	}
	if got := messages(receiveAll(t, alice)); len(got) != 1 || got[0].Text != "reply" {
		t.Fatalf("alice got %+v", got)
	}

	// Raw sends through the real server, with bodies no session can read.
	content, _ := TextContent("tampered").Marshal()
	typ, good, err := alice.Store().Encrypt(ctx, e2ee.Address{User: "bob@localhost", Device: 1}, content)
	if err != nil || typ != wire.CiphertextWhisper {
		t.Fatalf("encrypt: %s %v", typ, err)
	}
	flipped := slices.Clone(good)
	flipped[len(flipped)-1] ^= 1 // the MAC
	bad := []wire.Envelope{
		{Type: wire.CiphertextWhisper, Body: []byte("garbage")},
		{Type: wire.CiphertextPreKey, Body: []byte("garbage")},
		{Type: typ, Body: flipped},
		{Type: typ, Body: good[:len(good)/2]},
	}
	for _, env := range bad {
		env.User, env.Device = "bob@localhost", 1
		_, err := alice.API().SendMessage(ctx, wire.SendRequest{ClientID: NewClientID(), To: "bob@localhost",
			Envelopes: []wire.Envelope{env}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := alice.SendText(ctx, "bob@localhost", "after"); err != nil {
		t.Fatal(err)
	}
	got := messages(receiveAll(t, bob))
	if len(got) != len(bad)+1 {
		t.Fatalf("bob got %d items, want %d: %+v", len(got), len(bad)+1, got)
	}
	for i, it := range got[:len(bad)] {
		if it.Type != ItemDecryptError || it.Err == nil || it.ID == 0 || it.From != "alice@localhost" ||
			it.FromDevice != 1 || it.Conversation != conv || it.Seq != uint64(i+3) || it.SentAt.IsZero() {
			t.Errorf("bad message %d: %+v, want a decrypt_error item", i, it)
		}
	}
	if last := got[len(bad)]; last.Type != ItemMessage || last.Text != "after" {
		t.Fatalf("after the bad ones: %+v", last)
	}
	if p := pending(t, bob); len(p) != 0 {
		t.Fatalf("unreadable messages still pending: %+v", p)
	}
}

// Claims that leave a device with fewer than wire.PreKeyLowThreshold
// one-time prekeys make the server send prekeys_low; the client uploads
// PreKeyBatch more, by hand (Process, MaintainKeys), at caught_up and on a
// live event.
func TestPreKeysReplenished(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	caughtUp := make(chan struct{}, 1)
	bob := newAccount(t, srv, "bob", false, nil, withHook(func(req *http.Request, resp *http.Response) {
		if req.URL.Path == "/v1/keys/count" { // EnsureKeys runs at caught_up
			select {
			case caughtUp <- struct{}{}:
			default:
			}
		}
	}))
	low := wire.PreKeyLowThreshold - 1
	drain := func(to int) {
		t.Helper()
		for n := preKeys(t, bob); n > to; n-- {
			if _, err := alice.API().ClaimKeys(ctx, wire.ClaimRequest{User: "bob@localhost", Devices: []uint32{1}}); err != nil {
				t.Fatal(err)
			}
		}
		if n := preKeys(t, bob); n != to {
			t.Fatalf("bob holds %d prekeys after the claims, want %d", n, to)
		}
	}
	drain(low)

	// The server says so on connect.
	conn, err := bob.API().Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lowEv *wire.Event
	for ev := range conn.Events() {
		if ev.Type == wire.EventPreKeysLow {
			lowEv = &ev
		}
		if ev.Type == wire.EventCaughtUp {
			break
		}
	}
	conn.Close()
	if lowEv == nil || lowEv.Count != low {
		t.Fatalf("prekeys_low event %+v, want count %d", lowEv, low)
	}
	if _, ok, err := bob.Process(ctx, *lowEv); ok || err != nil {
		t.Fatalf("prekeys_low: %v %v", ok, err)
	}
	if err := bob.MaintainKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if n := preKeys(t, bob); n != low+PreKeyBatch {
		t.Fatalf("server holds %d prekeys, want %d", n, low+PreKeyBatch)
	}
	// Nothing noted since: no upload.
	if err := bob.MaintainKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if n := preKeys(t, bob); n != low+PreKeyBatch {
		t.Fatalf("server holds %d prekeys after a no-op, want %d", n, low+PreKeyBatch)
	}

	// Receive does it at caught_up...
	drain(low)
	receiveAll(t, bob)
	if n := preKeys(t, bob); n != low+PreKeyBatch {
		t.Fatalf("after receive: server holds %d prekeys, want %d", n, low+PreKeyBatch)
	}

	// ... and on a live prekeys_low.
	for len(caughtUp) > 0 {
		<-caughtUp
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- bob.Receive(rctx, ReceiveOptions{Until: time.Now().Add(20 * time.Second)}, func(Item) error { return nil })
	}()
	select {
	case <-caughtUp:
	case err := <-done:
		t.Fatalf("receive ended early: %v", err)
	case <-ctx.Done():
		t.Fatal("bob never caught up")
	}
	drain(low)
	eventually(t, "a live upload of prekeys", func() bool { return preKeys(t, bob) == low+PreKeyBatch })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("receive: %v, want context.Canceled", err)
	}
}

func TestRegisterRefusals(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	if _, err := Register(ctx, alice.Home(), srv.URL(), "other", testPassword, ""); !errors.Is(err, ErrAccountExists) {
		t.Fatalf("register into a used home: %v", err)
	}
	home := filepath.Join(t.TempDir(), "new")
	for _, tt := range []struct {
		name, user, password, code string
		login                      bool
	}{
		{"taken name", "alice", testPassword, wire.CodeUserInUse, false},
		{"weak password", "carol", "short", wire.CodeWeakPassword, false},
		{"invalid name", "Carol Smith", testPassword, wire.CodeInvalidUsername, false},
		{"wrong password", "alice", "wrong password", wire.CodeBadCredentials, true},
		{"unknown user", "nobody", testPassword, wire.CodeBadCredentials, true},
	} {
		create := Register
		if tt.login {
			create = Login
		}
		if _, err := create(ctx, home, srv.URL(), tt.user, tt.password, ""); !IsCode(err, tt.code) {
			t.Errorf("%s: %v, want %s", tt.name, err, tt.code)
		}
		if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: refusal left %s behind (%v)", tt.name, home, err)
		}
	}
	if _, err := Open(home); !errors.Is(err, ErrNoAccount) {
		t.Fatalf("open empty home: %v", err)
	}
}

func TestLogoutRemovesDevice(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a := newAccount(t, srv, "alice", false, nil)
	home, token := a.Home(), a.API().Token()
	// What register kept: the credentials, readable by the owner only.
	if st, err := os.Stat(filepath.Join(home, AccountFileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("account.json: %v %v", st, err)
	}
	want := AccountFile{Server: srv.URL(), UserID: "alice@localhost", DeviceID: 1, AccessToken: token}
	if f, err := LoadAccountFile(home); err != nil || f != want || token == "" {
		t.Fatalf("account.json holds %+v (%v), want %+v", f, err, want)
	}
	if err := a.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(home, "*"))
	if len(left) != 0 {
		t.Fatalf("logout left %v", left)
	}
	if _, err := New(srv.URL(), token).WhoAmI(ctx); !IsCode(err, wire.CodeUnknownToken) {
		t.Fatalf("token still works: %v", err)
	}
	// The home can take a new device, which gets a new number.
	b, err := Login(ctx, home, srv.URL(), "alice", testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	list, err := b.API().Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.DeviceID() != 2 || len(list.Devices) != 1 || list.Devices[0].DeviceID != 2 || !list.Devices[0].Current {
		t.Fatalf("after logout and login: device %d, list %+v", b.DeviceID(), list.Devices)
	}
}

func TestReceiveWaitsForLiveEvents(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	caughtUp := make(chan struct{}, 1)
	bob := newAccount(t, srv, "bob", false, nil, withHook(func(req *http.Request, resp *http.Response) {
		if req.URL.Path == "/v1/keys/count" { // EnsureKeys runs at caught_up
			select {
			case caughtUp <- struct{}{}:
			default:
			}
		}
	}))
	got := make(chan Item, 10)
	done := make(chan error, 1)
	until := time.Now().Add(2 * time.Second)
	go func() {
		done <- bob.Receive(ctx, ReceiveOptions{Until: until, MarkRead: true},
			func(it Item) error { got <- it; return nil })
	}()
	select {
	case <-caughtUp:
	case err := <-done:
		t.Fatalf("receive ended before caught_up: %v", err)
	case <-ctx.Done():
		t.Fatal("bob never caught up")
	}
	if _, err := alice.SendText(ctx, "bob@localhost", "live"); err != nil {
		t.Fatal(err)
	}
	select {
	case it := <-got:
		if it.Type != ItemMessage || it.Text != "live" || it.Seq != 1 {
			t.Fatalf("got %+v", it)
		}
	case <-ctx.Done():
		t.Fatal("no live message")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(until) {
		t.Fatal("receive returned before its Until")
	}
	if p := pending(t, bob); len(p) != 0 {
		t.Fatalf("live message not acknowledged: %+v", p)
	}
	// Bob's read marker produced a read receipt for alice.
	var read bool
	for _, it := range receiveAll(t, alice) {
		read = read || (it.Type == ItemReceipt && it.Status == wire.StatusRead && it.Seq == 1 && it.By == "bob@localhost")
	}
	if !read {
		t.Fatal("alice got no read receipt")
	}
}

// Messages a device did not fetch within the retention period are replaced
// by an expired item.
func TestReceiveReportsExpired(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	alice := newAccount(t, srv, "alice", false, nil)
	bob := newAccount(t, srv, "bob", false, nil)
	for _, text := range []string{"one", "two"} {
		if _, err := alice.SendText(ctx, "bob@localhost", text); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := srv.node.Homeserver().Expire(ctx, time.Now().Add(31*24*time.Hour)); err != nil || n == 0 {
		t.Fatalf("expire: %d %v", n, err)
	}
	got := receiveAll(t, bob)
	conv := homeserver.DirectConversationID("alice@localhost", "bob@localhost")
	if len(got) != 1 || got[0].Type != ItemExpired || got[0].Conversation != conv || got[0].FromSeq != 1 || got[0].ToSeq != 2 {
		t.Fatalf("bob got %+v, want one expired item for seq 1-2", got)
	}
	if p := pending(t, bob); len(p) != 0 {
		t.Fatalf("expired event still pending: %+v", p)
	}
}

// The answer to a send that may still be retried stays unacknowledged,
// so that the server recognises the retry: Receive neither yields nor
// acknowledges it while the send is recorded in flight (here as if Send
// had lost the HTTP answer and were about to retry), and does once it is
// not.
func TestAnswerOfSendInFlightStaysUnacknowledged(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t)
	alice := newAccount(t, srv, "alice", false, nil)
	newAccount(t, srv, "bob", false, nil)
	if _, err := alice.SendText(ctx, "bob", "first"); err != nil {
		t.Fatal(err)
	}
	req := wire.SendRequest{ClientID: "x1", To: "bob@localhost", Envelopes: []wire.Envelope{
		{User: "bob@localhost", Device: 1, Type: wire.CiphertextWhisper, Body: []byte("opaque")}}}
	if err := alice.store.BeginSend(ctx, "x1"); err != nil {
		t.Fatal(err)
	}
	first, err := alice.API().SendMessage(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	answers := func() (ids []string) {
		for _, it := range receiveAll(t, alice) {
			if it.Type == ItemSent {
				ids = append(ids, it.ClientID)
			}
		}
		return ids
	}
	if got := answers(); len(got) != 1 || got[0] == "x1" {
		t.Fatalf("answers yielded while x1 is in flight: %q, want only the first send's", got)
	}
	again, err := alice.API().SendMessage(ctx, req)
	if err != nil || !again.Repeated || again.Seq != first.Seq {
		t.Fatalf("retry after a Receive: %+v %v, want the first answer (seq %d) repeated", again, err, first.Seq)
	}
	if err := alice.store.EndSend(ctx, "x1", sendInFlightFor); err != nil {
		t.Fatal(err)
	}
	if got := answers(); !slices.Equal(got, []string{"x1"}) {
		t.Fatalf("answers once x1 is no longer in flight: %q", got)
	}
	if got := answers(); len(got) != 0 {
		t.Fatalf("answers after they were acknowledged: %q", got)
	}
}
