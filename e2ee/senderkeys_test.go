package e2ee

import (
	"context"
	"testing"

	"go.mau.fi/libsignal/groups"
	"go.mau.fi/libsignal/protocol"
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
