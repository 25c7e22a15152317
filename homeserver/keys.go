package homeserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// UploadKeys stores a device's identity key, signed prekey and one-time
// prekeys after checking every key and the signature. Nothing is stored if
// anything is wrong. The first upload (or a new identity key) makes the
// device visible to senders and is announced to the user's contacts.
func (s *Server) UploadKeys(ctx context.Context, c Caller, up wire.KeyUpload) (int, error) {
	if len(up.PreKeys) > wire.MaxPreKeysPerUpload {
		return 0, refuse(wire.CodeTooManyPreKeys, "at most %d one-time prekeys per upload", wire.MaxPreKeysPerUpload)
	}
	seen := make(map[uint32]bool, len(up.PreKeys))
	pre := make([]storage.PreKey, 0, len(up.PreKeys))
	for i, k := range up.PreKeys {
		field := fmt.Sprintf("prekeys[%d]", i)
		if k.ID == 0 {
			return 0, invalid(field+".id", "one-time prekey id 0 is reserved")
		}
		if seen[k.ID] {
			return 0, invalid(field+".id", "one-time prekey id %d appears twice", k.ID)
		}
		seen[k.ID] = true
		if err := e2ee.CheckPublicKey(k.PublicKey); err != nil {
			return 0, &Error{Code: wire.CodeBadKey, Field: field + ".public_key", Message: "not a 33-byte Curve25519 public key"}
		}
		pre = append(pre, storage.PreKey{ID: k.ID, PublicKey: k.PublicKey})
	}
	if up.IdentityKey != nil {
		if err := e2ee.CheckPublicKey(up.IdentityKey); err != nil {
			return 0, &Error{Code: wire.CodeBadKey, Field: "identity_key", Message: "not a 33-byte Curve25519 public key"}
		}
	}

	// Verify the signature against the identity key that will apply, before
	// taking the writer: the check costs far more than the write.
	var cur storage.Device
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		cur, err = tx.Device(c.UserID, c.DeviceID)
		return err
	})
	if err != nil {
		return 0, internal(ctx, err)
	}
	identity := up.IdentityKey
	if identity == nil {
		identity = cur.IdentityKey
	}
	newIdentity := up.IdentityKey != nil && !bytes.Equal(up.IdentityKey, cur.IdentityKey)
	if identity == nil || (newIdentity && (up.SignedPreKey == nil || up.RegistrationID == 0)) {
		return 0, refuse(wire.CodeKeysRequired, "a device's first upload (or a new identity key) needs identity_key, registration_id and signed_prekey")
	}
	if up.SignedPreKey != nil {
		if err := e2ee.VerifySignedPreKey(identity, *up.SignedPreKey); err != nil {
			if errors.Is(err, e2ee.ErrBadKey) {
				return 0, &Error{Code: wire.CodeBadKey, Field: "signed_prekey.public_key", Message: "not a 33-byte Curve25519 public key"}
			}
			return 0, &Error{Code: wire.CodeBadSignature, Field: "signed_prekey.signature",
				Message: "the signed prekey's signature does not verify against the identity key"}
		}
	}

	var count int
	var dests []string
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		d, err := tx.Device(c.UserID, c.DeviceID)
		if err != nil {
			return err
		}
		if !bytes.Equal(d.IdentityKey, cur.IdentityKey) {
			return refuse(wire.CodeForbidden, "the device's identity key changed during the upload; retry")
		}
		keys := d.DeviceKeys
		changed := false
		if newIdentity {
			keys = storage.DeviceKeys{IdentityKey: up.IdentityKey}
			changed = true
			// Old one-time prekeys belong to the old identity.
			if err := tx.DeletePreKeys(c.UserID, c.DeviceID); err != nil {
				return err
			}
		}
		if up.RegistrationID != 0 {
			keys.RegistrationID = up.RegistrationID
		}
		if up.SignedPreKey != nil {
			keys.SignedPreKey = storage.SignedPreKey{ID: up.SignedPreKey.ID, PublicKey: up.SignedPreKey.PublicKey,
				Signature: up.SignedPreKey.Signature}
		}
		if err := tx.SetDeviceKeys(c.UserID, c.DeviceID, keys); err != nil {
			return err
		}
		have, err := tx.CountPreKeys(c.UserID, c.DeviceID)
		if err != nil {
			return err
		}
		if have+len(pre) > wire.MaxPreKeysStored {
			return refuse(wire.CodeTooManyPreKeys, "a device holds at most %d one-time prekeys (it has %d)", wire.MaxPreKeysStored, have)
		}
		if err := tx.InsertPreKeys(c.UserID, c.DeviceID, pre); err != nil {
			return err
		}
		if count, err = tx.CountPreKeys(c.UserID, c.DeviceID); err != nil {
			return err
		}
		dests = nil
		if changed {
			dests, err = s.announceDeviceList(tx, c.UserID, c.DeviceID)
		}
		return err
	})
	if err != nil {
		return 0, internal(ctx, err)
	}
	s.wakeOutbox(dests)
	return count, nil
}

// PreKeyCount is how many one-time prekeys the caller's device holds.
func (s *Server) PreKeyCount(ctx context.Context, c Caller) (int, error) {
	var n int
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		n, err = tx.CountPreKeys(c.UserID, c.DeviceID)
		return err
	})
	return n, internal(ctx, err)
}

// PreKeysLow reports whether a device with keys holds fewer one-time
// prekeys than wire.PreKeyLowThreshold, and how many. A device that never
// uploaded keys is not "low": it has to make its first upload anyway.
func (s *Server) PreKeysLow(ctx context.Context, c Caller) (int, bool, error) {
	var n int
	var keyed bool
	err := s.store.Read(ctx, func(tx storage.Tx) error {
		d, err := tx.Device(c.UserID, c.DeviceID)
		if err != nil {
			return err
		}
		keyed = d.HasKeys()
		n, err = tx.CountPreKeys(c.UserID, c.DeviceID)
		return err
	})
	return n, keyed && n < wire.PreKeyLowThreshold, internal(ctx, err)
}

// UserDevices lists the devices of a user that have keys, with their
// identity keys. It claims nothing.
func (s *Server) UserDevices(ctx context.Context, rawUser string) (wire.UserDevices, error) {
	userID, local, err := s.user("user", rawUser)
	if err != nil {
		return wire.UserDevices{}, err
	}
	out := wire.UserDevices{User: userID, Devices: []wire.DeviceKeys{}}
	if !local {
		l, err := s.remoteDevices(ctx, userID)
		for _, d := range l.Devices {
			out.Devices = append(out.Devices, wire.DeviceKeys{DeviceID: d.DeviceID, IdentityKey: d.IdentityKey})
		}
		return out, err
	}
	err = s.store.Read(ctx, func(tx storage.Tx) error {
		if _, err := tx.Account(userID); notFound(err) {
			return refuse(wire.CodeUnknownUser, "%s does not exist", userID)
		} else if err != nil {
			return err
		}
		devs, err := devicesWithKeys(tx, userID)
		for _, d := range devs {
			out.Devices = append(out.Devices, wire.DeviceKeys{DeviceID: d.DeviceID, IdentityKey: d.IdentityKey})
		}
		return err
	})
	return out, internal(ctx, err)
}

// Claim returns one bundle per device of a user (or per listed device),
// each with a one-time prekey taken for this claim alone, when one is left.
func (s *Server) Claim(ctx context.Context, c Caller, req wire.ClaimRequest) ([]wire.Bundle, error) {
	userID, local, err := s.user("user", req.User)
	if err != nil {
		return nil, err
	}
	if len(req.Devices) > wire.MaxEnvelopes {
		return nil, invalid("devices", "at most %d devices per claim", wire.MaxEnvelopes)
	}
	if !local {
		return s.claimRemote(ctx, userID, req.Devices)
	}
	return s.claimLocal(ctx, userID, req.Devices)
}

// RemoteClaim answers another homeserver's claim of a local user's bundles.
func (s *Server) RemoteClaim(ctx context.Context, req wire.ClaimRequest) ([]wire.Bundle, error) {
	userID, local, err := s.user("user", req.User)
	if err != nil {
		return nil, err
	}
	if !local {
		return nil, refuse(wire.CodeForbidden, "%s is not a user of this server", userID)
	}
	if len(req.Devices) > wire.MaxEnvelopes {
		return nil, invalid("devices", "at most %d devices per claim", wire.MaxEnvelopes)
	}
	return s.claimLocal(ctx, userID, req.Devices)
}

// claimRemote asks the user's homeserver and checks what comes back as
// strictly as an upload: a bundle with a bad signature never reaches a
// client.
func (s *Server) claimRemote(ctx context.Context, userID string, devices []uint32) ([]wire.Bundle, error) {
	bundles, err := s.fed.Remote.Claim(ctx, userID, devices)
	if err != nil {
		return nil, remoteError(DomainOf(userID), err)
	}
	out := bundles[:0]
	seen := make(map[uint32]bool, len(bundles))
	for _, b := range bundles {
		// One bundle per device asked for: a second one for the same
		// device (whose prekey the client would try too) is dropped.
		if b.User != userID || (len(devices) > 0 && !slices.Contains(devices, b.DeviceID)) || seen[b.DeviceID] {
			continue
		}
		if e2ee.VerifySignedPreKey(b.IdentityKey, b.SignedPreKey) != nil ||
			(b.PreKey != nil && (b.PreKey.ID == 0 || e2ee.CheckPublicKey(b.PreKey.PublicKey) != nil)) {
			s.log.WarnContext(ctx, "invalid bundle from another homeserver", "user", userID, "device", b.DeviceID)
			continue
		}
		seen[b.DeviceID] = true
		out = append(out, b)
	}
	return out, nil
}

func (s *Server) claimLocal(ctx context.Context, userID string, devices []uint32) ([]wire.Bundle, error) {
	req := wire.ClaimRequest{User: userID, Devices: devices}
	var err error
	type low struct {
		dev   uint32
		count int
	}
	var bundles []wire.Bundle
	var lows []low
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		bundles, lows = bundles[:0], lows[:0]
		if _, err := tx.Account(userID); notFound(err) {
			return refuse(wire.CodeUnknownUser, "%s does not exist", userID)
		} else if err != nil {
			return err
		}
		devs, err := devicesWithKeys(tx, userID)
		if err != nil {
			return err
		}
		if len(req.Devices) > 0 {
			byID := make(map[uint32]storage.Device, len(devs))
			for _, d := range devs {
				byID[d.DeviceID] = d
			}
			devs = devs[:0:0]
			for _, id := range req.Devices {
				d, ok := byID[id]
				if !ok {
					return refuse(wire.CodeUnknownDevice, "%s has no device %d with keys", userID, id)
				}
				devs = append(devs, d)
			}
		}
		for _, d := range devs {
			b := wire.Bundle{User: userID, DeviceID: d.DeviceID, RegistrationID: d.RegistrationID,
				IdentityKey: d.IdentityKey, SignedPreKey: wire.SignedPreKey{ID: d.SignedPreKey.ID,
					PublicKey: d.SignedPreKey.PublicKey, Signature: d.SignedPreKey.Signature}}
			k, err := tx.ClaimPreKey(userID, d.DeviceID)
			switch {
			case err == nil:
				b.PreKey = &wire.PreKey{ID: k.ID, PublicKey: k.PublicKey}
			case !notFound(err):
				return err
			}
			n, err := tx.CountPreKeys(userID, d.DeviceID)
			if err != nil {
				return err
			}
			if n < wire.PreKeyLowThreshold {
				lows = append(lows, low{d.DeviceID, n})
			}
			bundles = append(bundles, b)
		}
		return nil
	})
	if err != nil {
		return nil, internal(ctx, err)
	}
	for _, l := range lows {
		s.notify.PreKeysLow(userID, l.dev, l.count)
	}
	return bundles, nil
}

// announceDeviceList queues a device_list event for every device (with
// keys) of the user's contacts and of the user's other devices, so that
// their clients re-key. It runs inside the Write that changed the list, so
// the notice cannot be lost. It returns the destinations to wake.
func (s *Server) announceDeviceList(tx storage.Tx, userID string, except uint32) ([]string, error) {
	contacts, err := tx.Contacts(userID)
	if err != nil {
		return nil, err
	}
	dests, err := s.announceRemote(tx, userID, contacts)
	if err != nil {
		return nil, err
	}
	payload := mustEvent(wire.Event{Type: wire.EventDeviceList, User: userID})
	expires := s.now().Add(s.opts.Retention)
	var entries []storage.InboxEntry
	for _, u := range append(contacts, userID) {
		if !s.isLocal(u) {
			continue
		}
		devs, err := tx.KeyedDevices(u)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			if u == userID && d == except {
				continue
			}
			entries = append(entries, storage.InboxEntry{UserID: u, DeviceID: d, Kind: storage.EntryDeviceList,
				ExpiresAt: expires, Payload: payload})
		}
	}
	return dests, tx.InsertInbox(entries)
}
