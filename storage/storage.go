// Package storage is the only part of Parley that speaks SQL. It offers one
// Store API, implemented by the embedded SQLite engine (storage/sqlite) and,
// later, by the CockroachDB engine, with the table code shared in
// storage/sqlstore so that the engines differ only in SQL dialect, error
// mapping and how they run transactions.
//
// The domain logic (homeserver/) composes the table operations of Tx inside
// Read and Write: what must change together is written in one Write, so a
// failure never leaves half of it behind.
package storage

import (
	"context"
	"errors"
	"time"
)

var (
	// ErrNotFound: the row asked for does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrConflict: a unique key is taken (user name, client message id, ...).
	ErrConflict = errors.New("storage: conflict")
)

// Store runs transactions.
type Store interface {
	// Read runs fn in a read-only transaction that sees one consistent
	// snapshot.
	Read(ctx context.Context, fn func(Tx) error) error
	// Write runs fn in a read-write transaction and returns once it is
	// durably committed (or failed). If fn returns an error nothing it did
	// is kept. Engines may group several callers' Writes into one commit
	// and may run fn more than once on retryable conflicts, so fn must have
	// no effects outside tx (collect results in variables it assigns anew
	// on each run).
	Write(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is the table API. Methods return ErrNotFound or ErrConflict (wrapped)
// where the comment says so; any other error is a storage failure.
type Tx interface {
	// Accounts
	InsertAccount(a Account) error // ErrConflict if the user exists
	Account(userID string) (Account, error)
	SetDisplayName(userID, name string) error // ErrNotFound

	// Devices. NextDeviceID allocates the next device number of a user;
	// numbers are never reused, so a removed device's sessions can never be
	// mistaken for a new device's.
	NextDeviceID(userID string) (uint32, error)
	InsertDevice(d Device) error
	Device(userID string, deviceID uint32) (Device, error)
	DeviceByToken(tokenHash []byte) (Device, error)
	Devices(userID string) ([]Device, error)
	// KeyedDevices lists the numbers of the user's devices that have keys:
	// the devices a sender encrypts to.
	KeyedDevices(userID string) ([]uint32, error)
	DeleteDevice(userID string, deviceID uint32) error // also its prekeys and inbox; ErrNotFound
	SetDeviceKeys(userID string, deviceID uint32, k DeviceKeys) error

	// One-time prekeys. InsertPreKeys ignores ids the device already holds.
	InsertPreKeys(userID string, deviceID uint32, keys []PreKey) error
	CountPreKeys(userID string, deviceID uint32) (int, error)
	// ClaimPreKey removes and returns the device's lowest-numbered one-time
	// prekey; ErrNotFound when it has none.
	ClaimPreKey(userID string, deviceID uint32) (PreKey, error)
	DeletePreKeys(userID string, deviceID uint32) error

	// Conversations
	Conversation(id string) (Conversation, error)
	InsertConversation(c Conversation, members []string) error // ErrConflict if it exists
	// NextSeq increments and returns the conversation's sequence number.
	NextSeq(conversationID string) (uint64, error)
	// Members lists the users of a conversation.
	Members(conversationID string) ([]string, error)
	// Contacts lists the users sharing a conversation with userID.
	Contacts(userID string) ([]string, error)

	// Messages: the sequencing and de-duplication record of each send.
	InsertMessage(m Message) (int64, error) // ErrConflict on a repeated (sender, device, client id)
	MessageByClientID(senderUser string, senderDevice uint32, clientID string) (Message, error)
	Message(id int64) (Message, error)

	// Inbox. Entry ids grow monotonically and are never reused.
	InsertInbox(entries []InboxEntry) error
	// Inbox returns up to limit entries of one device with ID > after, in ID order.
	Inbox(userID string, deviceID uint32, after int64, limit int) ([]InboxEntry, error)
	// DeleteInbox deletes the listed entries of one device and returns the
	// deleted ones (unknown ids are skipped).
	DeleteInbox(userID string, deviceID uint32, ids []int64) ([]InboxEntry, error)
	// ExpireInbox deletes up to limit entries whose ExpiresAt is before t
	// and returns how many it deleted and the deleted message entries.
	ExpireInbox(t time.Time, limit int) (int, []InboxEntry, error)
	// DeleteMessagesBefore deletes message records that expired before t.
	DeleteMessagesBefore(t time.Time) (int64, error)

	// AdvanceReadMarker records that userID read conversationID up to seq
	// and reports whether that moved the marker forward.
	AdvanceReadMarker(userID, conversationID string, seq uint64) (bool, error)
}

// Account is a local user.
type Account struct {
	UserID       string // "alice@example.org"
	PasswordHash string // argon2id, PHC string format
	DisplayName  string
	CreatedAt    time.Time
}

// Device is one device of a local user. Its keys are empty until the first
// key upload.
type Device struct {
	UserID    string
	DeviceID  uint32
	Name      string
	TokenHash []byte // SHA-256 of the access token
	CreatedAt time.Time
	DeviceKeys
}

// DeviceKeys is the long-lived part of a device's bundle.
type DeviceKeys struct {
	IdentityKey    []byte // nil until uploaded
	RegistrationID uint32
	SignedPreKey   SignedPreKey
}

func (d Device) HasKeys() bool { return len(d.IdentityKey) > 0 }

type SignedPreKey struct {
	ID        uint32
	PublicKey []byte
	Signature []byte
}

type PreKey struct {
	ID        uint32
	PublicKey []byte
}

// Conversation kinds.
const (
	KindDirect = "direct"
	KindGroup  = "group"
)

type Conversation struct {
	ID        string
	Kind      string
	Hub       string // domain of the homeserver that sequences it
	LastSeq   uint64
	CreatedAt time.Time
}

// Message records one sequenced send: enough to answer a retried client
// message id and to route receipts back to the sender. The ciphertexts live
// in the recipients' inbox entries.
type Message struct {
	ID           int64
	Conversation string
	Seq          uint64
	Sender       string
	SenderDevice uint32
	ClientID     string
	SentAt       time.Time
	ExpiresAt    time.Time
}

// Inbox entry kinds; they match the wire event types.
const (
	EntryMessage    = "message"
	EntryReceipt    = "receipt"
	EntryDeviceList = "device_list"
	EntryExpired    = "expired"
)

// InboxEntry is one pending event for one device. Payload is the event as
// the device will receive it, already encoded (JSON without its id), so
// serving the inbox copies bytes instead of rebuilding events.
type InboxEntry struct {
	ID           int64
	UserID       string
	DeviceID     uint32
	Kind         string
	Conversation string
	Seq          uint64
	MessageID    int64     // the Message it belongs to, for message entries
	ExpiresAt    time.Time // zero: never expires
	Payload      []byte
}
