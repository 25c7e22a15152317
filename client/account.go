package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// PreKeyBatch is how many one-time prekeys a device uploads at a time: at
// registration and whenever the server's count falls below
// wire.PreKeyLowThreshold.
const PreKeyBatch = 100

// Warning kinds (Warning.Kind).
const (
	// WarnIdentityChanged: a device of User now has another identity key
	// than the one trusted before; the new one is trusted from now on and
	// the safety number with User changed.
	WarnIdentityChanged = "identity_changed"
	// WarnIdentityMismatch: the server lists another identity key for a
	// device of User than the one this device trusts (SafetyNumber uses
	// the trusted one).
	WarnIdentityMismatch = "identity_mismatch"
	// WarnKeys: keeping this device's keys on the server failed (the
	// operation that noticed went on); it is retried next time.
	WarnKeys = "keys"
	// WarnDeviceList: refreshing User's device list after a device_list
	// event failed; the next send fetches it anyway.
	WarnDeviceList = "device_list"
)

// Warning is something the user should know that did not stop the
// operation in progress.
type Warning struct {
	Kind    string
	User    string
	Device  uint32
	Message string // one line, for people
}

func (w Warning) String() string { return w.Message }

type accountConfig struct {
	server  string
	apiOpts []Option
	warn    func(Warning)
}

// AccountOption configures Register, Login and Open.
type AccountOption func(*accountConfig)

// WithServer makes Open talk to server instead of the one in account.json
// (the file is not changed). Register and Login take the server explicitly.
func WithServer(server string) AccountOption {
	return func(c *accountConfig) { c.server = server }
}

// WithAPIOptions passes options to the account's API.
func WithAPIOptions(opts ...Option) AccountOption {
	return func(c *accountConfig) { c.apiOpts = append(c.apiOpts, opts...) }
}

// WithWarnings makes the account report warnings to fn (by default they
// are dropped). fn may be called from any goroutine using the account.
func WithWarnings(fn func(Warning)) AccountOption {
	return func(c *accountConfig) { c.warn = fn }
}

// Account is one device of one user, kept in a home directory: HOME/
// account.json (AccountFile) and HOME/signal.db (the device's Signal
// state, an e2ee.Store). Several processes may use the same home at once:
// the store serialises them.
//
// An Account is safe for concurrent use by goroutines.
type Account struct {
	home  string
	file  AccountFile
	api   *API
	store *e2ee.Store
	warnf func(Warning)

	closeOnce sync.Once
	closeErr  error

	mu          sync.Mutex
	preKeysLow  int  // count from the last prekeys_low event, -1 if none since the last check
	preKeysUsed bool // a prekey message consumed one of our one-time prekeys since the last check
	newIdentity bool // open created the identity: the server does not have it yet
}

// Register creates the account name on server with a first device called
// deviceName, keeps it in home and uploads the device's keys (identity,
// signed prekey and PreKeyBatch one-time prekeys). It refuses a home that
// already holds an account (ErrAccountExists).
//
// The server is asked first, so a refusal (user_in_use, weak_password)
// leaves home untouched. If the key upload fails after the account was
// created, the account is kept and the error says so; EnsureKeys (which
// Receive runs) uploads them later.
func Register(ctx context.Context, home, server, name, password, deviceName string, opts ...AccountOption) (*Account, error) {
	return create(ctx, home, server, opts, func(api *API) (wire.Session, error) {
		return api.Register(ctx, wire.RegisterRequest{User: name, Password: password, DeviceName: deviceName})
	})
}

// Login adds a new device called deviceName to the existing account name
// and keeps it in home, like Register.
func Login(ctx context.Context, home, server, name, password, deviceName string, opts ...AccountOption) (*Account, error) {
	return create(ctx, home, server, opts, func(api *API) (wire.Session, error) {
		return api.Login(ctx, wire.LoginRequest{User: name, Password: password, DeviceName: deviceName})
	})
}

func create(ctx context.Context, home, server string, opts []AccountOption, session func(*API) (wire.Session, error)) (*Account, error) {
	cfg := configure(opts)
	if err := ValidateServerURL(server); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if err := checkFreshHome(home); err != nil {
		return nil, err
	}
	api := New(server, "", cfg.apiOpts...)
	sess, err := session(api)
	if err != nil {
		return nil, err
	}
	if sess.UserID == "" || sess.DeviceID == 0 || sess.AccessToken == "" {
		return nil, errors.New("client: server answered with an incomplete session")
	}
	// From here on the device exists on the server: keep its credentials
	// before anything else can fail, so that it is never orphaned.
	file := AccountFile{Server: api.Server(), UserID: sess.UserID, DeviceID: sess.DeviceID, AccessToken: sess.AccessToken}
	if err := SaveAccountFile(home, file); err != nil {
		return nil, err
	}
	a, err := open(home, file, cfg)
	if err != nil {
		return nil, err
	}
	if err := a.uploadFullKeys(ctx); err != nil {
		a.Close()
		return nil, fmt.Errorf("created %s device %d, but uploading its keys failed (retried by the next receive): %w", file.UserID, file.DeviceID, err)
	}
	return a, nil
}

// checkFreshHome refuses a home that holds an account or a signal.db (the
// keys of some device: never reuse or overwrite them).
func checkFreshHome(home string) error {
	for _, name := range []string{AccountFileName, SignalDBName} {
		_, err := os.Stat(filepath.Join(home, name))
		if err == nil {
			return fmt.Errorf("%w (%s exists)", ErrAccountExists, filepath.Join(home, name))
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("client: %w", err)
		}
	}
	return nil
}

// Open opens the account kept in home (ErrNoAccount if there is none).
// Close it when done.
func Open(home string, opts ...AccountOption) (*Account, error) {
	cfg := configure(opts)
	file, err := LoadAccountFile(home)
	if err != nil {
		return nil, err
	}
	return open(home, file, cfg)
}

func configure(opts []AccountOption) accountConfig {
	var cfg accountConfig
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

func open(home string, file AccountFile, cfg accountConfig) (*Account, error) {
	server := file.Server
	if cfg.server != "" {
		server = cfg.server
	}
	if err := ValidateServerURL(server); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	store, err := e2ee.OpenStore(filepath.Join(home, SignalDBName))
	if err != nil {
		return nil, err
	}
	a := &Account{
		home:       home,
		file:       file,
		api:        New(server, file.AccessToken, cfg.apiOpts...),
		store:      store,
		warnf:      cfg.warn,
		preKeysLow: -1,
	}
	// A device without identity (a crash right after the server created
	// it, or a lost signal.db) gets one now; the first Send or Receive
	// uploads it.
	has, err := store.HasIdentity(context.Background())
	if err == nil && !has {
		err = store.CreateIdentity(context.Background())
		a.newIdentity = true
	}
	if err != nil {
		store.Close()
		return nil, err
	}
	return a, nil
}

// Close closes the device's Signal store. It is idempotent.
func (a *Account) Close() error {
	a.closeOnce.Do(func() { a.closeErr = a.store.Close() })
	return a.closeErr
}

// UserID returns the account's user id ("alice@example.org").
func (a *Account) UserID() string { return a.file.UserID }

// DeviceID returns this device's number.
func (a *Account) DeviceID() uint32 { return a.file.DeviceID }

// Home returns the account's home directory.
func (a *Account) Home() string { return a.home }

// Server returns the server URL the account talks to.
func (a *Account) Server() string { return a.api.Server() }

// API returns the account's authenticated API.
func (a *Account) API() *API { return a.api }

// Store returns the device's Signal store.
func (a *Account) Store() *e2ee.Store { return a.store }

// Domain returns the domain of the account's user id.
func (a *Account) Domain() string {
	_, domain, _ := strings.Cut(a.file.UserID, "@")
	return domain
}

// QualifyUser completes a bare user name with the account's domain
// ("bob" → "bob@example.org"); a full user id, or a group id ("g-…"), is
// returned as it is.
func (a *Account) QualifyUser(user string) string {
	if user == "" || strings.Contains(user, "@") || IsGroupID(user) {
		return user
	}
	return user + "@" + a.Domain()
}

// Logout removes this device from the server, then deletes account.json
// and signal.db from home. A token the server no longer knows (the device
// was already removed) is not an error. The account is closed afterwards.
func (a *Account) Logout(ctx context.Context) error {
	if err := a.api.Logout(ctx); err != nil && !IsCode(err, wire.CodeUnknownToken) {
		return err
	}
	return a.removeLocal()
}

// removeLocal closes the store and deletes the device's files: its keys
// are useless once the server forgot the device.
func (a *Account) removeLocal() error {
	errs := []error{a.Close()}
	matches, _ := filepath.Glob(filepath.Join(a.home, SignalDBName+"*"))
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(filepath.Join(a.home, AccountFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (a *Account) warn(w Warning) {
	if a.warnf != nil {
		a.warnf(w)
	}
}

func (a *Account) self() e2ee.Address {
	return e2ee.Address{User: a.file.UserID, Device: a.file.DeviceID}
}

// uploadNewIdentity uploads the device's keys if open had to create its
// identity, before anything is sent or received with it.
func (a *Account) uploadNewIdentity(ctx context.Context) error {
	a.mu.Lock()
	fresh := a.newIdentity
	a.mu.Unlock()
	if !fresh {
		return nil
	}
	return a.uploadFullKeys(ctx)
}

// uploadFullKeys uploads the identity key, the current signed prekey and
// PreKeyBatch one-time prekeys. The signed prekey is not rotated yet
// (e2ee.Store.RotateSignedPreKey exists; nothing calls it on a schedule).
func (a *Account) uploadFullKeys(ctx context.Context) error {
	up, err := a.store.KeyUpload(ctx, true, PreKeyBatch)
	if err != nil {
		return err
	}
	if _, err := a.api.UploadKeys(ctx, up); err != nil {
		return err
	}
	a.mu.Lock()
	a.newIdentity = false
	a.mu.Unlock()
	return nil
}

// EnsureKeys makes sure the server holds this device's keys: its identity
// key as the server lists it must be the store's (otherwise everything is
// uploaded again), and it must hold at least wire.PreKeyLowThreshold
// one-time prekeys (otherwise PreKeyBatch more are uploaded).
func (a *Account) EnsureKeys(ctx context.Context) error {
	ik, err := a.store.IdentityKey(ctx)
	if err != nil {
		return err
	}
	mine, err := a.api.UserDevices(ctx, a.file.UserID)
	if err != nil {
		return err
	}
	listed := false
	for _, d := range mine.Devices {
		if d.DeviceID == a.file.DeviceID {
			listed = bytes.Equal(d.IdentityKey, ik)
		}
	}
	a.resetPreKeyState()
	if !listed {
		return a.uploadFullKeys(ctx)
	}
	c, err := a.api.PreKeyCount(ctx)
	if err != nil {
		return err
	}
	return a.Replenish(ctx, c.Count)
}

// Replenish uploads PreKeyBatch one-time prekeys (fewer if the server would
// then hold more than wire.MaxPreKeysStored) when count, the number the
// server holds, is below wire.PreKeyLowThreshold.
func (a *Account) Replenish(ctx context.Context, count int) error {
	if count >= wire.PreKeyLowThreshold {
		return nil
	}
	n := min(PreKeyBatch, wire.MaxPreKeysStored-max(count, 0))
	up, err := a.store.KeyUpload(ctx, false, n)
	if err != nil {
		return err
	}
	_, err = a.api.UploadKeys(ctx, up)
	if IsCode(err, wire.CodeKeysRequired) {
		// The server never got this device's identity (a crash between
		// creating the device and uploading): send everything.
		return a.uploadFullKeys(ctx)
	}
	return err
}

// maintainKeys replenishes one-time prekeys if a prekeys_low event or the
// decryption of prekey messages since the last check says they may be low.
func (a *Account) maintainKeys(ctx context.Context) error {
	a.mu.Lock()
	low, used := a.preKeysLow, a.preKeysUsed
	a.mu.Unlock()
	if low < 0 && !used {
		return nil
	}
	a.resetPreKeyState()
	if low < 0 {
		c, err := a.api.PreKeyCount(ctx)
		if err != nil {
			return err
		}
		low = c.Count
	}
	return a.Replenish(ctx, low)
}

func (a *Account) resetPreKeyState() {
	a.mu.Lock()
	a.preKeysLow, a.preKeysUsed = -1, false
	a.mu.Unlock()
}
