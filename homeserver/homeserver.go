// Package homeserver is Parley's domain: accounts, devices, the key
// directory, conversations, sequencing, inboxes and receipts. It knows
// nothing of HTTP (clientapi/ calls it) and speaks to the database only
// through storage.Store. Every change that must happen together is one
// storage Write, so a refusal or a crash never leaves half of it behind.
package homeserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// Options configure the domain.
type Options struct {
	Domain    string
	Retention time.Duration // how long undelivered events are kept (default 30 days)
	Password  PasswordParams
	// MaxGroupMembers bounds a group's members and invitees (default 1024).
	MaxGroupMembers int
	Now             func() time.Time // clock; tests may move it
}

// Notifier is told about changes after they are committed. The socket layer
// implements it to hand new events to the sessions of the devices
// concerned; it must not block. InboxAdded calls come in commit order (ids
// only grow), one at a time: for every device, the events after any
// committed point arrive complete and in order.
type Notifier interface {
	InboxAdded(userID string, deviceID uint32, ev InboxEvent)
	PreKeysLow(userID string, deviceID uint32, count int)
	DeviceRemoved(userID string, deviceID uint32)
}

type nopNotifier struct{}

func (nopNotifier) InboxAdded(string, uint32, InboxEvent) {}
func (nopNotifier) PreKeysLow(string, uint32, int)        {}
func (nopNotifier) DeviceRemoved(string, uint32)          {}

// Server is the homeserver domain for one domain name.
type Server struct {
	store  storage.Store
	opts   Options
	log    *slog.Logger
	notify Notifier
	fed    *Federation // nil: federation disabled
	acks   acker
	// legacySends: until then, a local device's direct send is also
	// checked against sends, where an upgrade put the records of sends
	// made before answer entries recognised retries (LocalSendsExpiry).
	legacySends time.Time

	dummyOnce sync.Once
	dummy     string // a password hash for timing-safe refusals of unknown users
}

// New returns a Server over store. SetNotifier connects the socket layer.
func New(store storage.Store, opts Options, log *slog.Logger) (*Server, error) {
	if !ValidDomain(opts.Domain) {
		return nil, fmt.Errorf("homeserver: invalid domain %q", opts.Domain)
	}
	if opts.Retention <= 0 {
		opts.Retention = 30 * 24 * time.Hour
	}
	if opts.Password == (PasswordParams{}) {
		opts.Password = DefaultPasswordParams()
	}
	if opts.MaxGroupMembers <= 0 {
		opts.MaxGroupMembers = wire.DefaultMaxGroupMembers
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{store: store, opts: opts, log: log, notify: nopNotifier{}}
	err := store.Read(context.Background(), func(tx storage.Tx) (err error) {
		s.legacySends, err = tx.LocalSendsExpiry()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("homeserver: reading sends: %w", err)
	}
	store.OnInboxAdded(s.inboxAdded)
	return s, nil
}

// SetNotifier must be called before the server handles requests.
func (s *Server) SetNotifier(n Notifier) { s.notify = n }

// Domain is the domain this server is authoritative for.
func (s *Server) Domain() string { return s.opts.Domain }

func (s *Server) now() time.Time { return s.opts.Now().UTC() }

// Caller is an authenticated device.
type Caller struct {
	UserID   string
	DeviceID uint32
}

func (c Caller) String() string { return fmt.Sprintf("%s/%d", c.UserID, c.DeviceID) }

// isLocal reports whether a (valid) user id belongs to this server.
func (s *Server) isLocal(userID string) bool {
	_, _, domain, _ := ParseUserID(userID)
	return domain == s.opts.Domain
}

func notFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }

func conflict(err error) bool { return errors.Is(err, storage.ErrConflict) }

// devicesWithKeys returns the device numbers of user that others encrypt to.
func devicesWithKeys(tx storage.Tx, userID string) ([]storage.Device, error) {
	all, err := tx.Devices(userID)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, d := range all {
		if d.HasKeys() {
			out = append(out, d)
		}
	}
	return out, nil
}

type deviceAddr = wire.DeviceAddress

// internal wraps a storage failure for the transport to log and report as
// "internal".
func internal(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := AsError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &Error{Code: wire.CodeInternal, Message: "internal error", Cause: err}
}
