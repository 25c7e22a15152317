package e2ee

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/protocol"

	"github.com/parleychat/parley/wire"
)

func senderKeyName(group string, a Address) *protocol.SenderKeyName {
	return protocol.NewSenderKeyName(group, a.signal())
}

// The sender key store round-trips what libsignal's group cipher needs,
// across restarts (the group API itself comes later).
func TestSenderKeyStore(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	name := senderKeyName("group-1", alice.addr)

	var dist []byte
	alice.signal(func(ps *signalStore) error {
		m, err := groups.NewGroupSessionBuilder(ps, ps.ser).Create(ctx, name)
		if err != nil {
			return err
		}
		dist = m.Serialize()
		return nil
	})
	bob.signal(func(ps *signalStore) error {
		m, err := protocol.NewSenderKeyDistributionMessageFromBytes(dist, ps.ser.SenderKeyDistributionMessage)
		if err != nil {
			return err
		}
		return groups.NewGroupSessionBuilder(ps, ps.ser).Process(ctx, name, m)
	})

	var sent [][]byte
	for _, text := range []string{"one", "two", "three"} {
		alice.reopen()
		alice.signal(func(ps *signalStore) error {
			c := groups.NewGroupCipher(groups.NewGroupSessionBuilder(ps, ps.ser), name, ps)
			m, err := c.Encrypt(ctx, []byte(text))
			if err != nil {
				return err
			}
			sent = append(sent, m.SignedSerialize())
			return nil
		})
	}
	for _, i := range []int{2, 0, 1} {
		bob.reopen()
		bob.signal(func(ps *signalStore) error {
			m, err := protocol.NewSenderKeyMessageFromBytes(sent[i], ps.ser.SenderKeyMessage)
			if err != nil {
				return err
			}
			c := groups.NewGroupCipher(groups.NewGroupSessionBuilder(ps, ps.ser), name, ps)
			pt, err := c.Decrypt(ctx, m)
			if err != nil {
				return err
			}
			if want := []string{"one", "two", "three"}[i]; string(pt) != want {
				t.Errorf("decrypted %q, want %q", pt, want)
			}
			return nil
		})
	}
	if n := bob.count("sender_keys"); n != 1 {
		t.Fatalf("%d sender keys stored, want 1", n)
	}
}

const group = "group-1"

// distribute sends from's current sender key for g to each of to, as a
// client would, and marks it distributed.
func distribute(t testing.TB, g string, epoch uint64, from *device, to ...*device) {
	t.Helper()
	skdm, err := from.s.SenderKeyDistribution(context.Background(), g, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range to {
		deliverKey(t, g, skdm, from, d)
	}
}

// deliverKey carries a sender key distribution message from one device to
// another over their pairwise session, and marks it distributed.
func deliverKey(t testing.TB, g string, skdm []byte, from, to *device) {
	t.Helper()
	ctx := context.Background()
	if ok, _ := from.s.HasSession(ctx, to.addr); !ok {
		connect(from, to)
	}
	got, err := to.decrypt(from, from.encrypt(to, string(skdm)))
	if err != nil {
		t.Fatalf("%s decrypting the sender key from %s: %v", to.addr.User, from.addr.User, err)
	}
	if err := to.s.ProcessSenderKeyDistribution(ctx, g, from.addr, []byte(got)); err != nil {
		t.Fatal(err)
	}
	if err := from.s.MarkDistributed(ctx, g, []Address{to.addr}); err != nil {
		t.Fatal(err)
	}
}

func (d *device) groupEncrypt(g, text string) []byte {
	d.t.Helper()
	body, err := d.s.GroupEncrypt(context.Background(), g, []byte(text))
	if err != nil {
		d.t.Fatal(err)
	}
	return body
}

func (d *device) groupDecrypt(g string, from *device, body []byte) (string, error) {
	pt, err := d.s.GroupDecrypt(context.Background(), g, from.addr, body)
	if err == nil && pt == nil {
		pt = []byte{} // a nil plaintext on success would be a bug; keep it visible as ""
	}
	return string(pt), err
}

func (d *device) mustGroupDecrypt(g string, from *device, body []byte, want string) {
	d.t.Helper()
	got, err := d.groupDecrypt(g, from, body)
	if err != nil {
		d.t.Fatalf("%s decrypting group message from %s: %v", d.addr.User, from.addr.User, err)
	}
	if got != want {
		d.t.Fatalf("%s decrypted %q, want %q", d.addr.User, got, want)
	}
}

func (d *device) epoch(g string) (uint64, bool) {
	d.t.Helper()
	e, ok, err := d.s.SenderKeyEpoch(context.Background(), g)
	if err != nil {
		d.t.Fatal(err)
	}
	return e, ok
}

func flipAt(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x01
	return b
}

func TestGroupMessages(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	carol := newDevice(t, "carol@example.org", 1)

	if _, err := alice.s.GroupEncrypt(ctx, group, []byte("x")); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("GroupEncrypt without a sender key: %v, want ErrNoSenderKey", err)
	}
	if _, ok := alice.epoch(group); ok {
		t.Fatal("SenderKeyEpoch reports a key before there is one")
	}
	// A message that overtakes the sender key fails, then decrypts once
	// the key is there.
	skdm, err := alice.s.SenderKeyDistribution(ctx, group, 7)
	if err != nil {
		t.Fatal(err)
	}
	early := alice.groupEncrypt(group, "early")
	if pt, err := bob.groupDecrypt(group, alice, early); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("before distribution: %q, %v; want ErrNoSenderKey", pt, err)
	}
	deliverKey(t, group, skdm, alice, bob)
	bob.mustGroupDecrypt(group, alice, early, "early")
	distribute(t, group, 99, alice, carol) // epoch ignored: the key exists
	if e, ok := alice.epoch(group); !ok || e != 7 {
		t.Fatalf("epoch = %d, %v; want 7", e, ok)
	}
	// carol got the key after "early": it is not hers to read.
	if _, err := carol.groupDecrypt(group, alice, early); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("message from before carol's key: %v, want ErrDuplicate", err)
	}

	var sent [][]byte
	for i := range 10 {
		sent = append(sent, alice.groupEncrypt(group, fmt.Sprintf("m%d", i)))
	}
	for i, body := range sent {
		bob.mustGroupDecrypt(group, alice, body, fmt.Sprintf("m%d", i))
	}
	for _, i := range []int{9, 3, 0, 8, 1, 2, 7, 4, 6, 5} {
		carol.mustGroupDecrypt(group, alice, sent[i], fmt.Sprintf("m%d", i))
	}
	for _, d := range []*device{bob, carol} {
		for range 2 {
			if _, err := d.groupDecrypt(group, alice, sent[4]); !errors.Is(err, ErrDuplicate) {
				t.Fatalf("%s decrypting a message again: %v, want ErrDuplicate", d.addr.User, err)
			}
		}
	}
	next := alice.groupEncrypt(group, "next")
	bob.mustGroupDecrypt(group, alice, next, "next")

	m := alice.groupEncrypt(group, "tamper with me")
	n := len(m)
	forged := bytes.Clone(m)
	forged[0] = 0x3a // same version 3 to libsignal, which ignores the low nibble
	tests := []struct {
		name string
		from *device
		body []byte
		want error
	}{
		{"flipped ciphertext bit", alice, flipAt(m, n-64-3), ErrInvalidMessage},
		{"flipped signature bit", alice, flipAt(m, n-1), ErrInvalidMessage},
		{"other version nibble", alice, forged, ErrInvalidMessage},
		{"protobuf field repeated", alice, append(append([]byte{m[0]}, 0x08, 0x01), m[1:]...), ErrInvalidMessage},
		{"truncated", alice, m[:n-9], ErrInvalidMessage},
		{"signature cut off", alice, m[:n-64], ErrInvalidMessage},
		{"empty", alice, nil, ErrInvalidMessage},
		{"one byte", alice, []byte{0x33}, ErrInvalidMessage},
		{"garbage", alice, bytes.Repeat([]byte{0x33, 0xff}, 50), ErrInvalidMessage},
		{"claimed by another sender", carol, m, ErrNoSenderKey},
		{"other group", alice, m, ErrNoSenderKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := group
			if tt.name == "other group" {
				g = "group-2"
			}
			pt, err := bob.s.GroupDecrypt(ctx, g, tt.from.addr, tt.body)
			if !errors.Is(err, tt.want) || pt != nil {
				t.Fatalf("GroupDecrypt = %q, %v; want %v", pt, err, tt.want)
			}
		})
	}
	// None of that changed bob's state, nor m.
	bob.mustGroupDecrypt(group, alice, m, "tamper with me")
	carol.mustGroupDecrypt(group, alice, m, "tamper with me")
	bob.mustGroupDecrypt(group, alice, alice.groupEncrypt(group, "after"), "after")

	// Keys are per sender: carol has none from bob.
	if _, err := carol.s.GroupDecrypt(ctx, group, bob.addr, m); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("from a sender without key: %v", err)
	}
}

func TestGroupPersistence(t *testing.T) {
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	carol := newDevice(t, "carol@example.org", 1)
	distribute(t, group, 3, alice, bob, carol)
	first := alice.groupEncrypt(group, "before restart")
	bob.mustGroupDecrypt(group, alice, first, "before restart")
	late := alice.groupEncrypt(group, "late")
	skdm, err := alice.s.SenderKeyDistribution(context.Background(), group, 4)
	if err != nil {
		t.Fatal(err)
	}

	for _, d := range []*device{alice, bob, carol} {
		d.reopen()
	}
	if e, ok := alice.epoch(group); !ok || e != 3 {
		t.Fatalf("epoch after reopen = %d, %v; want 3", e, ok)
	}
	again, err := alice.s.SenderKeyDistribution(context.Background(), group, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, skdm) {
		t.Fatal("the sender key changed across reopen")
	}
	if left, _ := alice.s.Undistributed(context.Background(), group, []Address{bob.addr, carol.addr}); len(left) != 0 {
		t.Fatalf("Undistributed after reopen = %v", left)
	}
	after := alice.groupEncrypt(group, "after restart")
	bob.mustGroupDecrypt(group, alice, after, "after restart")
	bob.mustGroupDecrypt(group, alice, late, "late")
	if _, err := bob.groupDecrypt(group, alice, first); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("replay after reopen: %v, want ErrDuplicate", err)
	}
	carol.mustGroupDecrypt(group, alice, after, "after restart")
	carol.mustGroupDecrypt(group, alice, first, "before restart")
	carol.mustGroupDecrypt(group, alice, late, "late")
}

func TestSenderKeyRotation(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	carol := newDevice(t, "carol@example.org", 1)
	members := []Address{bob.addr, carol.addr}
	distribute(t, group, 1, alice, bob, carol)
	distribute(t, group, 1, bob, alice, carol)

	old := alice.groupEncrypt(group, "before")
	carol.mustGroupDecrypt(group, alice, old, "before")
	inFlight := alice.groupEncrypt(group, "in flight") // reaches bob after the rotation
	fromBob := bob.groupEncrypt(group, "bob before")   // reaches alice after the rotation

	// carol is removed.
	if err := alice.s.RotateSenderKey(ctx, group); err != nil {
		t.Fatal(err)
	}
	if _, ok := alice.epoch(group); ok {
		t.Fatal("a sender key is left after RotateSenderKey")
	}
	if left, err := alice.s.Undistributed(ctx, group, members); err != nil || len(left) != 2 {
		t.Fatalf("Undistributed after rotation = %v, %v; want both", left, err)
	}
	if _, err := alice.s.GroupEncrypt(ctx, group, []byte("x")); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("GroupEncrypt after rotation: %v, want ErrNoSenderKey", err)
	}
	distribute(t, group, 2, alice, bob)
	if e, ok := alice.epoch(group); !ok || e != 2 {
		t.Fatalf("epoch after rotation = %d, %v; want 2", e, ok)
	}
	if left, _ := alice.s.Undistributed(ctx, group, members); len(left) != 1 || left[0] != carol.addr {
		t.Fatalf("Undistributed = %v, want carol", left)
	}

	secret := alice.groupEncrypt(group, "after carol left")
	if pt, err := carol.groupDecrypt(group, alice, secret); err == nil || pt != "" {
		t.Fatalf("carol decrypted a message under the new key: %q, %v", pt, err)
	} else if !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("carol: %v, want ErrNoSenderKey", err)
	}
	bob.mustGroupDecrypt(group, alice, secret, "after carol left")
	bob.mustGroupDecrypt(group, alice, inFlight, "in flight") // old key kept for this
	bob.mustGroupDecrypt(group, alice, old, "before")

	// alice's rotation left the keys she received alone.
	alice.mustGroupDecrypt(group, bob, fromBob, "bob before")
	alice.mustGroupDecrypt(group, bob, bob.groupEncrypt(group, "bob after"), "bob after")

	// The message carol decrypted before stays decrypted, and she cannot be
	// fooled into taking the old key back.
	if _, err := carol.groupDecrypt(group, alice, old); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("carol decrypting again: %v", err)
	}
	if pt, err := carol.groupDecrypt(group, alice, alice.groupEncrypt(group, "later")); err == nil {
		t.Fatalf("carol decrypted %q", pt)
	}
}

// A sender key distribution message processed again (say, resent) must not
// rewind the key: the messages decrypted since would decrypt again.
func TestSenderKeyDistributionAgain(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	skdm, err := alice.s.SenderKeyDistribution(ctx, group, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.s.ProcessSenderKeyDistribution(ctx, group, alice.addr, skdm); err != nil {
		t.Fatal(err)
	}
	a, b, c := alice.groupEncrypt(group, "a"), alice.groupEncrypt(group, "b"), alice.groupEncrypt(group, "c")
	bob.mustGroupDecrypt(group, alice, a, "a")
	bob.mustGroupDecrypt(group, alice, c, "c")

	later, err := alice.s.SenderKeyDistribution(ctx, group, 1) // same key, at iteration 3
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range [][]byte{skdm, later, skdm} {
		if err := bob.s.ProcessSenderKeyDistribution(ctx, group, alice.addr, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range [][]byte{a, c} {
		if _, err := bob.groupDecrypt(group, alice, m); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("replay after the key was sent again: %v, want ErrDuplicate", err)
		}
	}
	bob.mustGroupDecrypt(group, alice, b, "b") // the skipped one is still there
	bob.mustGroupDecrypt(group, alice, alice.groupEncrypt(group, "d"), "d")
	var states int
	bob.signal(func(ps *signalStore) error {
		r, err := ps.LoadSenderKey(ctx, senderKeyName(group, alice.addr))
		states = len(r.Structure().SenderKeyStates)
		return err
	})
	if states != 1 {
		t.Fatalf("%d sender key states after the same key thrice, want 1", states)
	}

	// Rotations keep up to maxSenderKeyStates keys, newest first.
	var msgs [][]byte
	for i := range maxSenderKeyStates + 2 {
		if err := alice.s.RotateSenderKey(ctx, group); err != nil {
			t.Fatal(err)
		}
		distribute(t, group, uint64(i+2), alice, bob)
		msgs = append(msgs, alice.groupEncrypt(group, fmt.Sprint(i)))
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		got, err := bob.groupDecrypt(group, alice, msgs[i])
		if i >= len(msgs)-maxSenderKeyStates {
			if err != nil || got != fmt.Sprint(i) {
				t.Fatalf("message under key %d: %q, %v", i, got, err)
			}
		} else if !errors.Is(err, ErrNoSenderKey) {
			t.Fatalf("message under evicted key %d: %q, %v; want ErrNoSenderKey", i, got, err)
		}
	}
}

func TestProcessSenderKeyDistributionInvalid(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	skdm, err := alice.s.SenderKeyDistribution(ctx, group, 1)
	if err != nil {
		t.Fatal(err)
	}
	var st *protocol.SenderKeyDistributionMessageStructure
	bob.signal(func(ps *signalStore) error {
		st, err = ps.ser.SenderKeyDistributionMessage.Deserialize(skdm)
		return err
	})
	reencode := func(edit func(s protocol.SenderKeyDistributionMessageStructure) protocol.SenderKeyDistributionMessageStructure) []byte {
		s := edit(*st)
		return alice.s.ser.SenderKeyDistributionMessage.Serialize(&s)
	}
	tests := []struct {
		name string
		skdm []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0x33}},
		{"garbage", []byte("\x33garbage")},
		{"truncated", skdm[:len(skdm)-5]},
		{"version 2", append([]byte{0x23}, skdm[1:]...)},
		{"version 4", append([]byte{0x43}, skdm[1:]...)},
		{"empty signing key", reencode(func(s protocol.SenderKeyDistributionMessageStructure) protocol.SenderKeyDistributionMessageStructure {
			s.SigningKey = []byte{}
			return s
		})},
		{"short signing key", reencode(func(s protocol.SenderKeyDistributionMessageStructure) protocol.SenderKeyDistributionMessageStructure {
			s.SigningKey = []byte{0x05}
			return s
		})},
		{"short chain key", reencode(func(s protocol.SenderKeyDistributionMessageStructure) protocol.SenderKeyDistributionMessageStructure {
			s.ChainKey = s.ChainKey[:16]
			return s
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := bob.s.ProcessSenderKeyDistribution(ctx, group, alice.addr, tt.skdm)
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("ProcessSenderKeyDistribution = %v, want ErrInvalidMessage", err)
			}
		})
	}
	if n := bob.count("sender_keys"); n != 0 {
		t.Fatalf("%d sender keys stored from invalid messages", n)
	}
	if err := bob.s.ProcessSenderKeyDistribution(ctx, "", alice.addr, skdm); err == nil {
		t.Fatal("empty group id accepted")
	}
	if err := bob.s.ProcessSenderKeyDistribution(ctx, group, alice.addr, skdm); err != nil {
		t.Fatal(err)
	}
	bob.mustGroupDecrypt(group, alice, alice.groupEncrypt(group, "ok"), "ok")
}

// Every member signs their own group messages, so a modified client can
// sign what libsignal cannot handle: AES-CBC panics on a ciphertext that is
// not whole blocks. The other members must get an error, not a crash.
func TestGroupDecryptSignedGarbage(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	distribute(t, group, 1, alice, bob)

	signed := func(iteration uint32, ciphertext []byte) []byte {
		return signedSenderKeyMessage(alice, group, iteration, ciphertext)
	}
	for i, ct := range [][]byte{make([]byte, 17), make([]byte, 5), {}, make([]byte, 32)} {
		pt, err := bob.s.GroupDecrypt(ctx, group, alice.addr, signed(uint32(i), ct))
		if !errors.Is(err, ErrInvalidMessage) && !(len(ct) == 32 && err == nil) {
			t.Fatalf("signed ciphertext of %d bytes: %q, %v", len(ct), pt, err)
		}
	}
	if _, err := bob.s.GroupDecrypt(ctx, group, alice.addr, signed(5000, make([]byte, 16))); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("iteration far ahead: %v, want ErrInvalidMessage", err)
	}
}

// signedSenderKeyMessage is a sender key message from d in g with any
// iteration and ciphertext, signed with d's signing key: what a member with a
// modified client could send.
func signedSenderKeyMessage(d *device, g string, iteration uint32, ciphertext []byte) []byte {
	d.t.Helper()
	var body []byte
	d.signal(func(ps *signalStore) error {
		r, err := (&ownSenderKeys{tx: ps.tx, ser: ps.ser}).LoadSenderKey(context.Background(), ownName(g))
		if err != nil {
			return err
		}
		st, err := r.SenderKeyState()
		if err != nil {
			return err
		}
		body = protocol.NewSenderKeyMessage(st.KeyID(), iteration, ciphertext,
			st.SigningKey().PrivateKey(), ps.ser.SenderKeyMessage).SignedSerialize()
		return nil
	})
	return body
}

// Neither direction writes into the caller's slices: libsignal pads the
// plaintext by appending to it and decrypts AES-CBC in place.
func TestGroupBuffersUntouched(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	distribute(t, group, 1, alice, bob)

	buf := []byte("hello, world....................")
	orig := bytes.Clone(buf)
	body, err := alice.s.GroupEncrypt(ctx, group, buf[:5])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, orig) {
		t.Fatalf("GroupEncrypt wrote into the plaintext's array: %q", buf)
	}
	sent := bytes.Clone(body)
	bob.mustGroupDecrypt(group, alice, body, "hello")
	if !bytes.Equal(body, sent) {
		t.Fatal("GroupDecrypt changed the message bytes")
	}
	// Empty plaintexts work too.
	bob.mustGroupDecrypt(group, alice, alice.groupEncrypt(group, ""), "")
}

func TestDistributedSet(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	b1 := Address{"bob@example.org", 1}
	b2 := Address{"bob@example.org", 2}
	c1 := Address{"carol@example.org", 1}
	d7 := Address{"dave@example.org", 7}
	all := []Address{d7, b2, c1, b1}

	undistributed := func(g string, devs []Address) []Address {
		t.Helper()
		left, err := alice.s.Undistributed(ctx, g, devs)
		if err != nil {
			t.Fatal(err)
		}
		return left
	}
	if err := alice.s.MarkDistributed(ctx, group, []Address{b1}); !errors.Is(err, ErrNoSenderKey) {
		t.Fatalf("MarkDistributed without a key: %v, want ErrNoSenderKey", err)
	}
	if got := undistributed(group, all); !slices.Equal(got, all) {
		t.Fatalf("Undistributed without a key = %v", got)
	}
	if _, err := alice.s.SenderKeyDistribution(ctx, group, 1); err != nil {
		t.Fatal(err)
	}
	if err := alice.s.MarkDistributed(ctx, group, []Address{b2, d7}); err != nil {
		t.Fatal(err)
	}
	if err := alice.s.MarkDistributed(ctx, group, []Address{b2}); err != nil { // again: no-op
		t.Fatal(err)
	}
	if got, want := undistributed(group, all), []Address{c1, b1}; !slices.Equal(got, want) {
		t.Fatalf("Undistributed = %v, want %v", got, want)
	}
	if got, want := undistributed(group, []Address{b1, c1}), []Address{b1, c1}; !slices.Equal(got, want) {
		t.Fatalf("Undistributed = %v, want %v (the given order)", got, want)
	}
	if got := undistributed(group, []Address{d7}); got == nil || len(got) != 0 {
		t.Fatalf("Undistributed of a distributed device = %#v, want empty", got)
	}
	if got := undistributed(group, nil); len(got) != 0 {
		t.Fatalf("Undistributed(nil) = %v", got)
	}
	// Per group.
	if got := undistributed("group-2", all); !slices.Equal(got, all) {
		t.Fatalf("other group: Undistributed = %v", got)
	}
	alice.reopen()
	if got, want := undistributed(group, all), []Address{c1, b1}; !slices.Equal(got, want) {
		t.Fatalf("after reopen Undistributed = %v, want %v", got, want)
	}
	if err := alice.s.RotateSenderKey(ctx, group); err != nil {
		t.Fatal(err)
	}
	if err := alice.s.RotateSenderKey(ctx, group); err != nil { // without key: no-op
		t.Fatal(err)
	}
	if got := undistributed(group, all); !slices.Equal(got, all) {
		t.Fatalf("after rotation Undistributed = %v", got)
	}
}

// Sender keys ratchet in the store like sessions do: two Stores on one file
// encrypting at once must never reuse an iteration.
func TestConcurrentGroupEncrypt(t *testing.T) {
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	distribute(t, group, 1, alice, bob)
	second, err := OpenStore(alice.path)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()

	const goroutines, each = 6, 10
	var (
		mu   sync.Mutex
		sent = map[string][]byte{}
		wg   sync.WaitGroup
	)
	for g := range goroutines {
		s := alice.s
		if g%2 == 1 {
			s = second
		}
		wg.Go(func() {
			for i := range each {
				text := fmt.Sprintf("g%d m%d", g, i)
				body, err := s.GroupEncrypt(context.Background(), group, []byte(text))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sent[text] = body
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for text, body := range sent {
		bob.mustGroupDecrypt(group, alice, body, text)
	}
}

// A store written before sender keys (schema version 1) opens, gains the new
// tables and keeps what it had.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	key, _ := alice.s.IdentityKey(ctx)
	connect(bob, alice)
	exchange(t, bob, alice, "hi", wire.CiphertextPreKey)
	if _, err := alice.s.db.Exec(`DROP TABLE own_sender_keys; DROP TABLE sender_key_recipients; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	alice.reopen()
	var v int
	if err := alice.s.db.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("user_version = %d, %v; want %d", v, err, len(migrations))
	}
	if key2, _ := alice.s.IdentityKey(ctx); !bytes.Equal(key, key2) {
		t.Fatal("identity changed in migration")
	}
	exchange(t, alice, bob, "still there", wire.CiphertextWhisper)
	distribute(t, group, 1, alice, bob)
	bob.mustGroupDecrypt(group, alice, alice.groupEncrypt(group, "group"), "group")

	// A store from a newer release is refused, not downgraded.
	alice.s.db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations)+1))
	if err := alice.s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenStore(alice.path); err == nil {
		s.Close()
		t.Fatal("opened a store with a newer schema version")
	}
}
