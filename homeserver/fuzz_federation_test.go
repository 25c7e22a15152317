package homeserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/storage/sqlite"
	"github.com/parleychat/parley/wire"
)

// Fuzz targets for what other homeservers and devices send that the
// domain decodes and checks: federation transactions, key uploads and key
// bundles claimed from another server. Each runs against a real SQLite
// store in a temporary directory; the oracle is that nothing panics, that
// no input reaches the database unchecked (a storage failure would come
// back as "internal"), and that whatever is accepted is served back
// well-formed.

// fuzzRemote stands in for the other homeservers: bob@b.test has one
// device; claims return whatever the current input says.
type fuzzRemote struct {
	mu      sync.Mutex
	bundles []wire.Bundle
	bobKey  []byte
}

func (r *fuzzRemote) Devices(_ context.Context, user string) (wire.RemoteDevices, error) {
	if user != "bob@b.test" {
		return wire.RemoteDevices{}, &wire.Error{Code: wire.CodeUnknownUser, Message: "no such user"}
	}
	return wire.RemoteDevices{User: user, StreamPos: 1, Devices: []wire.DeviceKeys{{DeviceID: 1, IdentityKey: r.bobKey}}}, nil
}

func (r *fuzzRemote) Claim(_ context.Context, user string, devices []uint32) ([]wire.Bundle, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bundles), nil
}

func (r *fuzzRemote) Profile(context.Context, string) (wire.Profile, error) {
	return wire.Profile{}, errors.New("unreachable")
}

func (r *fuzzRemote) GroupDevices(context.Context, string, string, string) (wire.GroupDevices, error) {
	return wire.GroupDevices{}, errors.New("unreachable")
}

func (r *fuzzRemote) GroupOp(context.Context, string, string, wire.GroupOp) error {
	return errors.New("unreachable")
}

// fuzzEnv is a homeserver for a.test with alice (two devices) and carol,
// a direct conversation alice–bob@b.test (a.test is its hub) and a group
// of alice's with bob and carol.
type fuzzEnv struct {
	hs            *homeserver.Server
	store         *sqlite.Store
	remote        *fuzzRemote
	alice, alice2 homeserver.Caller
	carol         homeserver.Caller
	direct, group string
	upload        wire.KeyUpload // a valid first upload (of another identity)
	bob           wire.Bundle    // a valid bundle for bob@b.test/1
}

func newFuzzEnv(f testing.TB) *fuzzEnv {
	ctx := context.Background()
	dir := f.TempDir()
	store, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { store.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hs, err := homeserver.New(store, homeserver.Options{Domain: "a.test",
		Password: homeserver.PasswordParams{Memory: 1024, Time: 1, Threads: 1}}, log)
	if err != nil {
		f.Fatal(err)
	}
	keys := func(name string, prekeys int) wire.KeyUpload {
		st, err := e2ee.OpenStore(filepath.Join(dir, name+".db"))
		if err != nil {
			f.Fatal(err)
		}
		defer st.Close()
		if err := st.CreateIdentity(ctx); err != nil {
			f.Fatal(err)
		}
		up, err := st.KeyUpload(ctx, true, prekeys)
		if err != nil {
			f.Fatal(err)
		}
		return up
	}
	bobUp := keys("bob", 1)
	e := &fuzzEnv{hs: hs, store: store, remote: &fuzzRemote{bobKey: bobUp.IdentityKey}, upload: keys("spare", 3),
		bob: wire.Bundle{User: "bob@b.test", DeviceID: 1, RegistrationID: bobUp.RegistrationID, IdentityKey: bobUp.IdentityKey,
			SignedPreKey: *bobUp.SignedPreKey, PreKey: &bobUp.PreKeys[0]}}
	hs.SetFederation(homeserver.Federation{Remote: e.remote, Wake: func(string) {}, Allowed: func(string) bool { return true }})

	device := func(login bool, name string) homeserver.Caller {
		req := wire.RegisterRequest{User: name, Password: "correct horse"}
		var s wire.Session
		if login {
			s, err = hs.Login(ctx, req)
		} else {
			s, err = hs.Register(ctx, req)
		}
		if err != nil {
			f.Fatal(err)
		}
		c, err := hs.Authenticate(ctx, s.AccessToken)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := hs.UploadKeys(ctx, c, keys(fmt.Sprintf("%s%d", name, c.DeviceID), 20)); err != nil {
			f.Fatal(err)
		}
		return c
	}
	e.alice, e.alice2, e.carol = device(false, "alice"), device(true, "alice"), device(false, "carol")

	res, err := hs.Send(ctx, e.alice, wire.SendRequest{ClientID: "seed-1", To: "bob@b.test", Envelopes: []wire.Envelope{
		{User: "bob@b.test", Device: 1, Type: wire.CiphertextPreKey, Body: []byte("to bob")},
		{User: "alice@a.test", Device: 2, Type: wire.CiphertextWhisper, Body: []byte("to alice 2")}}})
	if err != nil {
		f.Fatal(err)
	}
	e.direct = res.Conversation
	g, err := hs.CreateGroup(ctx, e.alice, wire.CreateGroupRequest{GroupMeta: wire.GroupMeta{Name: "g"},
		Members: []string{"bob@b.test", "carol@a.test"}})
	if err != nil {
		f.Fatal(err)
	}
	e.group = g.ID
	return e
}

// noInternal fails on an error that is not a refusal with a stable code.
func noInternal(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if e, ok := homeserver.AsError(err); ok && e.Code != wire.CodeInternal {
		return
	}
	t.Fatalf("%s: %v (an input reached storage unchecked, or a refusal lacks a code)", what, err)
}

// inboxesReadable reads every local device's inbox: whatever was stored
// must come back as valid events.
func (e *fuzzEnv) inboxesReadable(t *testing.T) {
	t.Helper()
	for _, c := range []homeserver.Caller{e.alice, e.alice2, e.carol} {
		evs, _, err := e.hs.Inbox(context.Background(), c, 0, 1000)
		if err != nil {
			t.Fatalf("inbox of %s: %v", c, err)
		}
		for _, ev := range evs {
			var w wire.Event
			if err := json.Unmarshal(ev.JSON(), &w); err != nil || w.Type == "" {
				t.Fatalf("inbox of %s holds a malformed event %q: %v", c, ev.JSON(), err)
			}
		}
		// Keep the inboxes small; acknowledging also exercises receipts.
		ids := make([]int64, 0, len(evs))
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
		noInternal(t, "ack", e.hs.Ack(context.Background(), c, ids))
	}
}

// FuzzReceiveTransaction feeds arbitrary transaction items, from b.test
// (a participant) or c.test (a stranger), through ReceiveTransaction.
func FuzzReceiveTransaction(f *testing.F) {
	e := newFuzzEnv(f)
	now := time.Unix(1_700_000_000, 0).UTC()
	item := func(it wire.FedItem) []byte {
		b, _ := json.Marshal([]wire.FedItem{it})
		return b
	}
	env := func(user string, dev uint32) []wire.Envelope {
		return []wire.Envelope{{User: user, Device: dev, Type: wire.CiphertextWhisper, Body: []byte("c")}}
	}
	f.Add(uint8(0), "t1", item(wire.FedItem{Kind: wire.FedForward, Conversation: e.direct, Sender: "bob@b.test", SenderDevice: 1,
		ClientID: "f1", To: "alice@a.test", SentAt: &now, Envelopes: append(env("alice@a.test", 1), env("alice@a.test", 2)...)}))
	f.Add(uint8(0), "t2", item(wire.FedItem{Kind: wire.FedReceipt, Status: wire.StatusRead, Conversation: e.direct, Seq: 1,
		By: "bob@b.test", User: "alice@a.test"}))
	f.Add(uint8(0), "t3", item(wire.FedItem{Kind: wire.FedDeviceList, User: "bob@b.test", StreamPos: 2, PrevPos: 1,
		Devices: []wire.DeviceKeys{{DeviceID: 1, IdentityKey: e.remote.bobKey}, {DeviceID: 2, IdentityKey: e.remote.bobKey}}}))
	f.Add(uint8(0), "t4", item(wire.FedItem{Kind: wire.FedForward, Conversation: e.group, Group: e.group, Sender: "bob@b.test",
		SenderDevice: 1, ClientID: "g1", SentAt: &now, Envelopes: append(env("alice@a.test", 1), env("carol@a.test", 1)...),
		Shared: &wire.Shared{Type: wire.CiphertextSenderKey, Body: []byte("s"), Devices: []wire.DeviceAddress{{User: "alice@a.test", Device: 2}}}}))
	f.Add(uint8(0), "t5", item(wire.FedItem{Kind: wire.FedMessage, Conversation: e.direct, Seq: 9, Sender: "bob@b.test",
		SenderDevice: 1, ClientID: "m1", SentAt: &now, Envelopes: env("alice@a.test", 1)}))
	f.Add(uint8(1), "t6", item(wire.FedItem{Kind: wire.FedForward, Conversation: e.direct, Sender: "bob@b.test", SenderDevice: 1,
		ClientID: "x1", To: "alice@a.test", SentAt: &now, Envelopes: env("alice@a.test", 1)}))
	f.Add(uint8(0), "t7", item(wire.FedItem{Kind: wire.FedForwardResult, Sender: "alice@a.test", SenderDevice: 1, ClientID: "seed-1",
		Conversation: e.direct, Seq: 1, SentAt: &now}))
	f.Add(uint8(0), "t8", item(wire.FedItem{Kind: wire.FedGroupEvent, Conversation: e.group, Seq: 5, Users: []string{"alice@a.test"},
		Event:   &wire.Event{Type: wire.EventGroup, Group: e.group, Conversation: e.group, Seq: 5, Action: wire.GroupLeft, User: "bob@b.test"},
		Members: []wire.Member{{User: "alice@a.test", Role: wire.RoleOwner}}}))
	f.Add(uint8(0), "t1", []byte(`[{"kind":"message","seq":18446744073709551615,"sent_at":"0001-01-01T00:00:00Z"}]`))
	f.Add(uint8(0), "t9", []byte(`[{"kind":"receipt","status":"delivered","by":"bob@b.test","user":"alice@a.test","conversation":"g-","seq":1}]`))
	f.Add(uint8(1), "", []byte(`[{}]`))
	f.Add(uint8(0), "t10", []byte(`[null,{"kind":"device_list","user":"bob@b.test","devices":[{"device_id":0}]}]`))

	origins := []string{"b.test", "c.test"}
	f.Fuzz(func(t *testing.T, origin uint8, txnID string, data []byte) {
		var items []wire.FedItem
		if json.Unmarshal(data, &items) != nil || len(items) > 1000 || txnID == "" || len(txnID) > 128 {
			return // the federation API refuses these before the domain sees them
		}
		res, err := e.hs.ReceiveTransaction(context.Background(), origins[int(origin)%len(origins)], txnID, items)
		noInternal(t, "transaction", err)
		for _, r := range res.Refused {
			if r.Index < 0 || r.Index >= len(items) || r.Code == "" || r.Code == wire.CodeInternal {
				t.Fatalf("refusal %+v of %d items", r, len(items))
			}
		}
		e.inboxesReadable(t)
	})
}

// FuzzKeyUpload feeds arbitrary key uploads to UploadKeys: a refusal
// stores nothing, and whatever is accepted is served in bundles that a
// sender's ProcessBundle will take.
func FuzzKeyUpload(f *testing.F) {
	e := newFuzzEnv(f)
	ctx := context.Background()
	add := func(up wire.KeyUpload) {
		b, _ := json.Marshal(up)
		f.Add(b)
	}
	add(e.upload)
	add(wire.KeyUpload{PreKeys: e.upload.PreKeys})
	add(wire.KeyUpload{SignedPreKey: e.upload.SignedPreKey})
	bad := e.upload
	spk := *bad.SignedPreKey
	spk.Signature = append([]byte{}, spk.Signature...)
	spk.Signature[0] ^= 1
	bad.SignedPreKey = &spk
	add(bad)
	add(wire.KeyUpload{PreKeys: []wire.PreKey{{ID: 0, PublicKey: e.upload.PreKeys[0].PublicKey}}})
	add(wire.KeyUpload{PreKeys: []wire.PreKey{e.upload.PreKeys[0], e.upload.PreKeys[0]}})
	add(wire.KeyUpload{IdentityKey: e.upload.IdentityKey[:32], RegistrationID: 1, SignedPreKey: e.upload.SignedPreKey})
	f.Add([]byte(`{"identity_key":"BQ==","prekeys":[{"id":4294967295,"public_key":""}]}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var up wire.KeyUpload
		if json.Unmarshal(data, &up) != nil {
			return
		}
		_, err := e.hs.UploadKeys(ctx, e.alice2, up)
		noInternal(t, "upload", err)
		bundles, err := e.hs.Claim(ctx, e.carol, wire.ClaimRequest{User: "alice@a.test"})
		noInternal(t, "claim", err)
		checkBundles(t, bundles, "alice@a.test", nil)
		if len(bundles) == 0 {
			t.Fatal("alice's devices vanished from the directory")
		}
	})
}

// FuzzRemoteBundles feeds arbitrary bundles, as another homeserver's
// answer to a claim, through Claim: only well-formed bundles of the user
// and devices asked for reach the client.
func FuzzRemoteBundles(f *testing.F) {
	e := newFuzzEnv(f)
	ctx := context.Background()
	add := func(devices []uint32, bs ...wire.Bundle) {
		b, _ := json.Marshal(bs)
		d, _ := json.Marshal(devices)
		f.Add(d, b)
	}
	good := e.bob
	add(nil, good)
	add([]uint32{1}, good, good)
	other := good
	other.User = "mallory@b.test"
	add(nil, other)
	noPre := good
	noPre.PreKey = nil
	add([]uint32{2}, noPre)
	zero := good
	zero.PreKey = &wire.PreKey{ID: 0, PublicKey: good.PreKey.PublicKey}
	add(nil, zero)
	badSig := good
	badSig.SignedPreKey.Signature = make([]byte, 64)
	add(nil, badSig)

	f.Fuzz(func(t *testing.T, devicesJSON, data []byte) {
		var bs []wire.Bundle
		var devices []uint32
		if json.Unmarshal(data, &bs) != nil || json.Unmarshal(devicesJSON, &devices) != nil {
			return
		}
		e.remote.mu.Lock()
		e.remote.bundles = bs
		e.remote.mu.Unlock()
		out, err := e.hs.Claim(ctx, e.alice, wire.ClaimRequest{User: "bob@b.test", Devices: devices})
		noInternal(t, "claim", err)
		checkBundles(t, out, "bob@b.test", devices)
	})
}

// checkBundles: every bundle is for user (and one of devices, if given),
// one per device, with keys and a signature a sender can use.
func checkBundles(t *testing.T, bs []wire.Bundle, user string, devices []uint32) {
	t.Helper()
	seen := map[uint32]bool{}
	for _, b := range bs {
		if b.User != user || (len(devices) > 0 && !slices.Contains(devices, b.DeviceID)) {
			t.Fatalf("bundle for %s/%d, asked for %s %v", b.User, b.DeviceID, user, devices)
		}
		if seen[b.DeviceID] {
			t.Fatalf("two bundles for %s/%d", user, b.DeviceID)
		}
		seen[b.DeviceID] = true
		if err := e2ee.VerifySignedPreKey(b.IdentityKey, b.SignedPreKey); err != nil {
			t.Fatalf("bundle %s/%d: %v", user, b.DeviceID, err)
		}
		if b.PreKey != nil && (b.PreKey.ID == 0 || e2ee.CheckPublicKey(b.PreKey.PublicKey) != nil) {
			t.Fatalf("bundle %s/%d: bad one-time prekey %+v", user, b.DeviceID, b.PreKey)
		}
	}
}
