package homeserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"unicode/utf8"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// Register creates an account and its first device.
func (s *Server) Register(ctx context.Context, req wire.RegisterRequest) (wire.Session, error) {
	userID, err := s.newUserID(req.User)
	if err != nil {
		return wire.Session{}, err
	}
	if err := checkPasswordPolicy(req.Password); err != nil {
		return wire.Session{}, err
	}
	name, err := deviceName(req.DeviceName)
	if err != nil {
		return wire.Session{}, err
	}
	hash, err := hashPassword(s.opts.Password, req.Password)
	if err != nil {
		return wire.Session{}, internal(ctx, err)
	}
	token, tokenHash := newToken()
	now := s.now()
	var devID uint32
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		if err := tx.InsertAccount(storage.Account{UserID: userID, PasswordHash: hash, CreatedAt: now}); err != nil {
			if conflict(err) {
				return refuse(wire.CodeUserInUse, "%s is already registered", userID)
			}
			return err
		}
		devID, err = tx.NextDeviceID(userID)
		if err != nil {
			return err
		}
		return tx.InsertDevice(storage.Device{UserID: userID, DeviceID: devID, Name: name, TokenHash: tokenHash, CreatedAt: now})
	})
	if err != nil {
		return wire.Session{}, internal(ctx, err)
	}
	s.log.InfoContext(ctx, "account registered", "user", userID, "device", devID)
	return wire.Session{UserID: userID, DeviceID: devID, AccessToken: token}, nil
}

// Login checks the password and adds a new device to the account.
func (s *Server) Login(ctx context.Context, req wire.LoginRequest) (wire.Session, error) {
	userID, err := s.existingUserID(req.User)
	if err != nil {
		return wire.Session{}, err
	}
	name, err := deviceName(req.DeviceName)
	if err != nil {
		return wire.Session{}, err
	}
	var acct storage.Account
	err = s.store.Read(ctx, func(tx storage.Tx) error {
		acct, err = tx.Account(userID)
		return err
	})
	if err != nil && !notFound(err) {
		return wire.Session{}, internal(ctx, err)
	}
	if notFound(err) {
		// Spend the same time as a real check so that timing does not tell
		// which user names exist.
		checkPassword(s.dummyHash(), req.Password)
		return wire.Session{}, refuse(wire.CodeBadCredentials, "wrong user name or password")
	}
	if !checkPassword(acct.PasswordHash, req.Password) {
		return wire.Session{}, refuse(wire.CodeBadCredentials, "wrong user name or password")
	}
	token, tokenHash := newToken()
	var devID uint32
	err = s.store.Write(ctx, func(tx storage.Tx) error {
		devID, err = tx.NextDeviceID(userID)
		if err != nil {
			return err
		}
		return tx.InsertDevice(storage.Device{UserID: userID, DeviceID: devID, Name: name, TokenHash: tokenHash, CreatedAt: s.now()})
	})
	if err != nil {
		return wire.Session{}, internal(ctx, err)
	}
	s.log.InfoContext(ctx, "device logged in", "user", userID, "device", devID)
	return wire.Session{UserID: userID, DeviceID: devID, AccessToken: token}, nil
}

// Authenticate maps an access token to its device.
func (s *Server) Authenticate(ctx context.Context, token string) (Caller, error) {
	if token == "" {
		return Caller{}, refuse(wire.CodeMissingToken, "an access token is required")
	}
	// Lookup is by the token's hash: the comparison happens on a digest in
	// the database index, so response time does not leak token prefixes.
	h := sha256.Sum256([]byte(token))
	var d storage.Device
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		d, err = tx.DeviceByToken(h[:])
		return err
	})
	if notFound(err) {
		return Caller{}, refuse(wire.CodeUnknownToken, "unknown or revoked access token")
	}
	if err != nil {
		return Caller{}, internal(ctx, err)
	}
	return Caller{UserID: d.UserID, DeviceID: d.DeviceID}, nil
}

// Devices lists the caller's devices.
func (s *Server) Devices(ctx context.Context, c Caller) ([]wire.Device, error) {
	var devs []storage.Device
	err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
		devs, err = tx.Devices(c.UserID)
		return err
	})
	if err != nil {
		return nil, internal(ctx, err)
	}
	out := make([]wire.Device, 0, len(devs))
	for _, d := range devs {
		out = append(out, wire.Device{DeviceID: d.DeviceID, Name: d.Name, CreatedAt: d.CreatedAt,
			HasKeys: d.HasKeys(), Current: d.DeviceID == c.DeviceID})
	}
	return out, nil
}

// RemoveDevice deletes one of the caller's devices with its token, keys and
// inbox, and tells the user's contacts. Removing another device than the
// calling one needs the password: a stolen token alone must not be able to
// sign the owner out everywhere.
func (s *Server) RemoveDevice(ctx context.Context, c Caller, deviceID uint32, password string) error {
	if deviceID != c.DeviceID {
		var acct storage.Account
		err := s.store.Read(ctx, func(tx storage.Tx) (err error) {
			acct, err = tx.Account(c.UserID)
			return err
		})
		if err != nil {
			return internal(ctx, err)
		}
		if !checkPassword(acct.PasswordHash, password) {
			return refuse(wire.CodeBadCredentials, "the account password is required to remove another device")
		}
	}
	var dests []string
	err := s.store.Write(ctx, func(tx storage.Tx) error {
		d, err := tx.Device(c.UserID, deviceID)
		if notFound(err) {
			return refuse(wire.CodeUnknownDevice, "device %d does not exist", deviceID)
		}
		if err != nil {
			return err
		}
		if err := tx.DeleteDevice(c.UserID, deviceID); err != nil {
			return err
		}
		dests = nil
		if d.HasKeys() {
			dests, err = s.announceDeviceList(tx, c.UserID, deviceID)
		}
		return err
	})
	if err != nil {
		return internal(ctx, err)
	}
	s.notify.DeviceRemoved(c.UserID, deviceID)
	s.wakeOutbox(dests)
	s.log.InfoContext(ctx, "device removed", "user", c.UserID, "device", deviceID)
	return nil
}

// Profile returns a user's public profile.
func (s *Server) Profile(ctx context.Context, rawUser string) (wire.Profile, error) {
	userID, local, err := s.user("user", rawUser)
	if err != nil {
		return wire.Profile{}, err
	}
	if !local {
		p, err := s.fed.Remote.Profile(ctx, userID)
		if err != nil {
			return wire.Profile{}, remoteError(DomainOf(userID), err)
		}
		if len(p.DisplayName) > wire.MaxDisplayNameLen {
			p.DisplayName = p.DisplayName[:wire.MaxDisplayNameLen]
		}
		return wire.Profile{UserID: userID, DisplayName: p.DisplayName}, nil
	}
	var a storage.Account
	err = s.store.Read(ctx, func(tx storage.Tx) (err error) {
		a, err = tx.Account(userID)
		return err
	})
	if notFound(err) {
		return wire.Profile{}, refuse(wire.CodeUnknownUser, "%s does not exist", userID)
	}
	if err != nil {
		return wire.Profile{}, internal(ctx, err)
	}
	return wire.Profile{UserID: userID, DisplayName: a.DisplayName}, nil
}

// SetDisplayName changes the caller's display name.
func (s *Server) SetDisplayName(ctx context.Context, c Caller, name string) (wire.Profile, error) {
	name = strings.TrimSpace(name)
	if len(name) > wire.MaxDisplayNameLen || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\n\r") {
		return wire.Profile{}, invalid("display_name", "a display name is at most %d bytes of UTF-8 on one line", wire.MaxDisplayNameLen)
	}
	err := s.store.Write(ctx, func(tx storage.Tx) error { return tx.SetDisplayName(c.UserID, name) })
	if err != nil {
		return wire.Profile{}, internal(ctx, err)
	}
	return wire.Profile{UserID: c.UserID, DisplayName: name}, nil
}

// newUserID validates a name given at registration.
func (s *Server) newUserID(raw string) (string, error) {
	name := strings.ToLower(strings.TrimSpace(raw))
	if n, domain, found := strings.Cut(name, "@"); found {
		if domain != s.opts.Domain {
			return "", refuse(wire.CodeInvalidUsername, "accounts on this server end in @%s", s.opts.Domain)
		}
		name = n
	}
	if !ValidName(name) {
		return "", refuse(wire.CodeInvalidUsername,
			"a user name is 1-%d characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit but not with \"g-\"", maxNameLen)
	}
	return name + "@" + s.opts.Domain, nil
}

func (s *Server) existingUserID(raw string) (string, error) {
	id, err := s.newUserID(raw)
	if e, ok := AsError(err); ok && e.Code == wire.CodeInvalidUsername {
		return "", refuse(wire.CodeBadCredentials, "wrong user name or password")
	}
	return id, err
}

func checkPasswordPolicy(p string) error {
	if len(p) < wire.MinPasswordLen || len(p) > wire.MaxPasswordLen {
		return refuse(wire.CodeWeakPassword, "a password is %d to %d bytes long", wire.MinPasswordLen, wire.MaxPasswordLen)
	}
	return nil
}

func deviceName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if len(n) > wire.MaxDeviceNameLen || !utf8.ValidString(n) || strings.ContainsAny(n, "\x00\n\r") {
		return "", invalid("device_name", "a device name is at most %d bytes of UTF-8 on one line", wire.MaxDeviceNameLen)
	}
	return n, nil
}

// newToken returns a random 256-bit token and its SHA-256, which is all the
// database ever holds.
func newToken() (string, []byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(token))
	return token, h[:]
}

func (s *Server) dummyHash() string {
	s.dummyOnce.Do(func() { s.dummy, _ = hashPassword(s.opts.Password, "parley-dummy-password") })
	return s.dummy
}
