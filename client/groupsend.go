package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// WarnSenderKey: keeping a group sender key failed (storing one received
// from a member, or noting to whom this device's key went); group
// messages may not decrypt until the sender rotates its key, or the key
// goes out again with the next send.
const WarnSenderKey = "sender_key"

// skdmAllowance is room kept in a Content for the sender-key distribution
// message (about 90 bytes, more in base64) that a group send adds to the
// pairwise envelopes of devices lacking this device's key.
const skdmAllowance = 256

// senderKeyLocks orders, per home and group, what this process does with
// the device's own sender key: a send (from reading the key to marking it
// distributed) and a rotation must not interleave, or MarkDistributed
// could mark a key the devices never got. Other processes using the same
// home are not covered: at worst a device is marked for a key it lacks
// and cannot read that sender's messages until its next rotation.
var senderKeyLocks sync.Map // home + "\x00" + group → *sync.Mutex

func (a *Account) senderKeyLock(group string) *sync.Mutex {
	home := a.home
	if abs, err := filepath.Abs(home); err == nil {
		home = abs
	}
	m, _ := senderKeyLocks.LoadOrStore(home+"\x00"+group, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// rotateSenderKey discards this device's sender key for group: the next
// send makes a new one and gives it to every member device pairwise.
func (a *Account) rotateSenderKey(ctx context.Context, group string) error {
	if group == "" {
		return nil
	}
	mu := a.senderKeyLock(group)
	mu.Lock()
	defer mu.Unlock()
	return a.store.RotateSenderKey(ctx, group)
}

// SendGroup sends c to every device of every member of group and to this
// account's other devices (Send and SendText do this for a "g-…" id).
//
// It encrypts once with this device's sender key for the group: the
// devices that have the key get that one shared ciphertext; the others
// (new members, new devices, devices whose session or identity key
// changed) get a pairwise envelope whose content carries the text and the
// key's distribution message, and are noted as having the key once the
// server accepted the message. A key made before the group's latest
// removal or departure (removal_seq) is replaced first, so those who left
// cannot read what follows. A stale_devices refusal re-lists the group's
// devices and retries, at most 3 times, with the same client id; network
// errors and server faults are retried as by Send.
func (a *Account) SendGroup(ctx context.Context, group string, c Content) (wire.SendResult, error) {
	if c.V == 0 {
		c.V = ContentVersion
	}
	c.Group, c.SKDM = group, nil
	plaintext, err := c.Marshal()
	if err != nil {
		return wire.SendResult{}, err
	}
	if n := len(plaintext) + skdmAllowance; n > MaxContentBytes {
		return wire.SendResult{}, fmt.Errorf("%w: %d bytes of content with the sender key, at most %d", ErrTooLong, n, MaxContentBytes)
	}
	if err := a.uploadNewIdentity(ctx); err != nil {
		return wire.SendResult{}, err
	}
	mu := a.senderKeyLock(group)
	mu.Lock()
	defer mu.Unlock()

	req := wire.SendRequest{ClientID: NewClientID(), To: group}
	var stale *wire.Error
	for attempt := 0; ; attempt++ {
		devs, err := a.api.GroupDevices(ctx, group)
		if err != nil {
			return wire.SendResult{}, err
		}
		ts := a.groupTargets(devs, stale)
		skdm, err := a.currentSenderKey(ctx, group, devs.RemovalSeq)
		if err != nil {
			return wire.SendResult{}, err
		}
		pairwise, shared, err := a.splitBySenderKey(ctx, group, ts)
		if err != nil {
			return wire.SendResult{}, err
		}
		if pairwise, err = a.ensureSessions(ctx, pairwise); err != nil {
			return wire.SendResult{}, err
		}
		withKey := c
		withKey.SKDM = skdm
		pt, err := withKey.Marshal()
		if err != nil {
			return wire.SendResult{}, err
		}
		if req.Envelopes, err = a.encrypt(ctx, pairwise, pt); err != nil {
			return wire.SendResult{}, err
		}
		req.Shared = nil
		if len(shared) > 0 {
			body, err := a.store.GroupEncrypt(ctx, group, plaintext)
			if err != nil {
				return wire.SendResult{}, err
			}
			req.Shared = &wire.Shared{Type: wire.CiphertextSenderKey, Body: body, Devices: shared}
		}
		res, err := a.post(ctx, req)
		if err == nil {
			a.markDistributed(ctx, group, pairwise)
			return res, nil
		}
		var werr *wire.Error
		if !errors.As(err, &werr) || werr.Code != wire.CodeStaleDevices || attempt >= maxStaleRetries {
			return res, err
		}
		if err := a.dropStaleSessions(ctx, werr); err != nil {
			return wire.SendResult{}, err
		}
		stale = werr
	}
}

// groupTargets lists the devices a group message goes to: every member
// device the server lists but this one, corrected by the last
// stale_devices refusal (if any) in case the list changed again since.
func (a *Account) groupTargets(devs wire.GroupDevices, stale *wire.Error) []target {
	var ts []target
	for _, d := range devs.Devices {
		addr := e2ee.Address{User: d.User, Device: d.DeviceID}
		if addr != a.self() && !hasTarget(ts, addr) {
			ts = append(ts, target{addr: addr, key: d.IdentityKey})
		}
	}
	if stale == nil {
		return ts
	}
	return a.correctTargets(ts, stale)
}

// currentSenderKey returns the distribution message of this device's
// sender key for group, first replacing a key made for another removal
// sequence number than the group's current one (or making the first).
func (a *Account) currentSenderKey(ctx context.Context, group string, removalSeq uint64) ([]byte, error) {
	epoch, ok, err := a.store.SenderKeyEpoch(ctx, group)
	if err != nil {
		return nil, err
	}
	if !ok || epoch != removalSeq {
		// Someone left or was removed since the key was made (or there is
		// none yet; rotating then also forgets stale distribution records).
		if err := a.store.RotateSenderKey(ctx, group); err != nil {
			return nil, err
		}
	}
	return a.store.SenderKeyDistribution(ctx, group, removalSeq)
}

// splitBySenderKey divides the targets into those that need the sender
// key pairwise and the addresses of those that have it. A device without
// a session, or whose identity key is not the trusted one any more, gets
// it again whatever the records say: it is a new installation that lost
// the key (and the session).
func (a *Account) splitBySenderKey(ctx context.Context, group string, ts []target) (pairwise []target, shared []wire.DeviceAddress, err error) {
	addrs := make([]e2ee.Address, len(ts))
	for i, t := range ts {
		addrs[i] = t.addr
	}
	lacking, err := a.store.Undistributed(ctx, group, addrs)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range ts {
		need := slices.Contains(lacking, t.addr)
		if !need {
			if need, err = a.sessionReset(ctx, t); err != nil {
				return nil, nil, err
			}
		}
		if need {
			pairwise = append(pairwise, t)
		} else {
			shared = append(shared, wire.DeviceAddress{User: t.addr.User, Device: t.addr.Device})
		}
	}
	return pairwise, shared, nil
}

// sessionReset reports whether t has no session with this device or lists
// another identity key than the trusted one.
func (a *Account) sessionReset(ctx context.Context, t target) (bool, error) {
	has, err := a.store.HasSession(ctx, t.addr)
	if err != nil || !has {
		return !has, err
	}
	if t.key == nil {
		return false, nil
	}
	trusted, err := a.store.TrustedIdentity(ctx, t.addr)
	if err != nil {
		return false, err
	}
	return trusted != nil && !bytes.Equal(trusted, t.key), nil
}

// markDistributed notes that the pairwise targets got the current sender
// key. The message is sent whatever happens here: a failure only means
// the key goes pairwise again next time, so it is a warning.
func (a *Account) markDistributed(ctx context.Context, group string, ts []target) {
	if len(ts) == 0 {
		return
	}
	addrs := make([]e2ee.Address, len(ts))
	for i, t := range ts {
		addrs[i] = t.addr
	}
	err := a.store.MarkDistributed(context.WithoutCancel(ctx), group, addrs)
	if err != nil {
		a.warn(Warning{Kind: WarnSenderKey, Message: fmt.Sprintf("could not note to whom the sender key of %s went (it is sent again next time): %v", group, err)})
	}
}
