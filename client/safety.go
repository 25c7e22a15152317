package client

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// SafetyNumber returns the safety number of this account and user, as
// e2ee.FormatSafetyNumber formats it: both users compare it (in person, or
// over another channel) to rule out a server that hands out keys of its
// own. It covers every device with keys of both users, in device order.
//
// For each device the key this device trusts (from earlier sessions) is
// used rather than the one the server lists now, so a key swapped by the
// server shows up as a different number; a mismatch between the two is
// also reported as a WarnIdentityMismatch warning. This device's own key
// comes from its store.
func (a *Account) SafetyNumber(ctx context.Context, user string) (string, error) {
	user = a.QualifyUser(user)
	theirs, err := a.api.UserDevices(ctx, user)
	if err != nil {
		return "", err
	}
	if theirs.User != "" {
		user = theirs.User
	}
	mine := theirs
	if user != a.file.UserID {
		if mine, err = a.api.UserDevices(ctx, a.file.UserID); err != nil {
			return "", err
		}
	}
	localKeys, err := a.identityKeys(ctx, a.file.UserID, mine.Devices)
	if err != nil {
		return "", err
	}
	remoteKeys, err := a.identityKeys(ctx, user, theirs.Devices)
	if err != nil {
		return "", err
	}
	if len(remoteKeys) == 0 {
		return "", fmt.Errorf("client: %s has no device with keys", user)
	}
	return e2ee.FormatSafetyNumber(e2ee.SafetyNumber(a.file.UserID, localKeys, user, remoteKeys)), nil
}

// identityKeys returns the identity keys of user's devices in device order,
// preferring the store's (this device's own key, or a trusted one) over
// the server's.
func (a *Account) identityKeys(ctx context.Context, user string, devs []wire.DeviceKeys) ([][]byte, error) {
	devs = slices.Clone(devs)
	selfListed := false
	for _, d := range devs {
		selfListed = selfListed || (user == a.file.UserID && d.DeviceID == a.file.DeviceID)
	}
	if user == a.file.UserID && !selfListed {
		// Not uploaded yet: it is still this account's key.
		devs = append(devs, wire.DeviceKeys{DeviceID: a.file.DeviceID})
	}
	slices.SortFunc(devs, func(x, y wire.DeviceKeys) int { return cmp.Compare(x.DeviceID, y.DeviceID) })
	keys := make([][]byte, 0, len(devs))
	for i, d := range devs {
		if i > 0 && devs[i-1].DeviceID == d.DeviceID {
			continue
		}
		addr := e2ee.Address{User: user, Device: d.DeviceID}
		if addr == a.self() {
			ik, err := a.store.IdentityKey(ctx)
			if err != nil {
				return nil, err
			}
			keys = append(keys, ik)
			continue
		}
		trusted, err := a.store.TrustedIdentity(ctx, addr)
		if err != nil {
			return nil, err
		}
		switch {
		case trusted == nil:
			keys = append(keys, d.IdentityKey)
		case !bytes.Equal(trusted, d.IdentityKey):
			a.warn(Warning{Kind: WarnIdentityMismatch, User: user, Device: d.DeviceID,
				Message: fmt.Sprintf("the server lists another identity key for %s device %d than the one trusted here", user, d.DeviceID)})
			keys = append(keys, trusted)
		default:
			keys = append(keys, trusted)
		}
	}
	return keys, nil
}
