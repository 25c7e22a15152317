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
	// WriteLowPriority is Write for work that can wait behind Writes
	// queued after it, such as acknowledgements: an engine that queues
	// writes runs sends first, so a burst of 1,000 acknowledgements does
	// not delay the next message. It is never starved.
	WriteLowPriority(ctx context.Context, fn func(Tx) error) error
	// OnInboxAdded registers fn, called after every commit that inserted
	// inbox entries with those entries (IDs set, in id order), less those
	// the same commit deleted again (a summary superseded). Calls come
	// in commit order, one at a time, so that a listener holding the
	// entries after a device's cursor sees them complete and in order: this
	// is how a connected device gets its events without reading them back.
	// fn runs on the commit path and must not block. Register it before the
	// first Write.
	OnInboxAdded(fn func(added []InboxEntry))
	Close() error
}

// Tx is the table API. Methods return ErrNotFound or ErrConflict (wrapped)
// where the comment says so; any other error is a storage failure.
type Tx interface {
	// Finally registers fn to run once, in a write transaction, after all
	// the Writes that share its commit and just before the commit; of the
	// functions registered under one key in one commit, only the last
	// registered runs. Writes that each change one aggregate (a group
	// message's delivered count) thus write its summary once per commit,
	// not once each. Registrations of a Write that fails are dropped. An
	// error from fn fails every Write of the commit.
	Finally(key string, fn func(Tx) error)

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

	// Sends: the de-duplication record of a direct message, which has no
	// Message record.
	InsertSend(s Send) error                                                      // ErrConflict on a repeated (user, device, client id)
	SendByClientID(userID string, deviceID uint32, clientID string) (Send, error) // ErrNotFound
	// LocalSendsExpiry is the latest expiry of a sends record of a local
	// user (a direct send made before answer entries existed), zero if
	// none is left.
	LocalSendsExpiry() (time.Time, error)
	// DeleteSendsBefore forgets sends whose record expired before t.
	DeleteSendsBefore(t time.Time) (int64, error)

	// Messages: the record of each group message (its shared ciphertext,
	// delivered count and sender, for receipts), also de-duplicating it.
	InsertMessage(m Message) (int64, error) // ErrConflict on a repeated (sender, device, client id)
	MessageByClientID(senderUser string, senderDevice uint32, clientID string) (Message, error)
	Message(id int64) (Message, error)

	// Inbox. Entry ids grow monotonically and are never reused.
	InsertInbox(entries []InboxEntry) error
	// Inbox returns up to limit entries of one device with ID > after, in ID order.
	Inbox(userID string, deviceID uint32, after int64, limit int) ([]InboxEntry, error)
	// InboxEvents is Inbox for serving (Inbox reads whole entries, for
	// tests and tools): only ID, Payload and SharedBody are
	// read, which is what a socket sends.
	InboxEvents(userID string, deviceID uint32, after int64, limit int) ([]InboxEntry, error)
	// SentAnswer returns the device's unacknowledged "sent" entry
	// (EntrySent) for a client id: the answer to a send it made, which
	// also recognises a retry. ErrNotFound if there is none.
	SentAnswer(userID string, deviceID uint32, clientID string) (InboxEntry, error)
	// DeleteInbox deletes the listed entries of one device and returns the
	// deleted ones of kind EntryMessage (unknown ids are skipped), without
	// their payloads: what an acknowledgement needs to send receipts.
	DeleteInbox(userID string, deviceID uint32, ids []int64) ([]InboxEntry, error)
	// ExpireInbox deletes up to limit entries whose ExpiresAt is before t
	// and returns how many it deleted and the deleted message entries
	// (their ids, devices, conversations and seqs; no payloads).
	ExpireInbox(t time.Time, limit int) (int, []InboxEntry, error)
	// DeleteMessagesBefore deletes message records that expired before t.
	DeleteMessagesBefore(t time.Time) (int64, error)

	// AdvanceReadMarker records that userID read conversationID up to seq
	// and returns the marker before (0 if none) and whether it moved
	// forward.
	AdvanceReadMarker(userID, conversationID string, seq uint64) (prev uint64, advanced bool, err error)
	// CountReadersAtLeast counts users other than except whose read marker
	// in the conversation is at seq or beyond.
	CountReadersAtLeast(conversationID string, seq uint64, except string) (int, error)
	// SendersBetween returns, per sender other than except, the highest
	// seq of its messages in the conversation with from < seq <= to.
	SendersBetween(conversationID string, from, to uint64, except string) ([]SenderSeq, error)
	// AddDelivered counts n more deliveries of a message and returns the
	// new count.
	AddDelivered(messageID int64, n int) (int, error)
	// ReplaceSummary deletes one device's pending entries of a summary
	// kind (EntryDeliveredSummary, EntryReadSummary) in a conversation
	// whose seq is at most seq, superseded by a summary for seq, and
	// reports whether one for a later seq is pending, which the new one
	// must not replace. Other kinds are refused.
	ReplaceSummary(userID string, deviceID uint32, kind, conversationID string, seq uint64) (newer bool, err error)

	// Groups
	InsertGroup(g Group) error // ErrConflict if it exists
	Group(id string) (Group, error)
	UpdateGroup(g Group) error // metadata and removal seq
	DeleteGroup(id string) error
	GroupMembers(groupID string) ([]GroupMember, error) // joined and invited, by user id
	GroupMember(groupID, userID string) (GroupMember, error)
	PutGroupMember(m GroupMember) error // insert or replace
	DeleteGroupMember(groupID, userID string) error
	// UserGroups lists the groups userID is a member of or invited to.
	UserGroups(userID string) ([]UserGroup, error)
	// GroupDevices lists every device with keys of every joined member,
	// remote members' from the cached remote device lists.
	GroupDevices(groupID string) ([]GroupDevice, error)
	// GroupDeviceIDs is GroupDevices without the identity keys, in no
	// particular order: what a send's coverage check needs, on every
	// group send.
	GroupDeviceIDs(groupID string) ([]GroupDevice, error)
	// AddConversationMember and RemoveConversationMember keep a group's
	// conversation members (its joined members) in step.
	AddConversationMember(conversationID, userID string) error
	RemoveConversationMember(conversationID, userID string) error
	// RaiseLastSeq sets a conversation's last seq to seq if that is higher
	// (a participant learning the hub's sequence).
	RaiseLastSeq(conversationID string, seq uint64) error

	// Federation: the durable outbound queue, one ordered stream per
	// destination.
	EnqueueOutbox(items []OutboxItem) error
	// Outbox returns up to limit items for destination after id, in order.
	Outbox(destination string, after int64, limit int) ([]OutboxItem, error)
	// DeleteOutbox deletes destination's items with id <= upTo.
	DeleteOutbox(destination string, upTo int64) error
	// OutboxDestinations lists destinations with queued items.
	OutboxDestinations() ([]string, error)
	// ExpireOutbox drops items that expired before t; returns how many.
	ExpireOutbox(t time.Time) (int64, error)
	// RecordInboundTxn remembers a received transaction id and reports
	// whether it was new.
	RecordInboundTxn(origin, txnID string, at time.Time) (bool, error)
	PruneInboundTxns(before time.Time) error
	// RemoteDeviceList is the cached device list of a remote user.
	RemoteDeviceList(userID string) (RemoteList, error) // ErrNotFound if none cached
	PutRemoteDeviceList(l RemoteList) error
	// BumpDeviceStream advances a local user's device-list stream position
	// and returns the position before and after.
	BumpDeviceStream(userID string) (prev, next uint64, err error)
	DeviceStream(userID string) (uint64, error)
	// InsertForward records a send forwarded to a remote hub (ErrConflict
	// if this client id was forwarded before).
	InsertForward(f Forward) error
	Forward(sender string, senderDevice uint32, clientID string) (Forward, error)
	// DeleteForwardsBefore forgets forwards recorded before t.
	DeleteForwardsBefore(t time.Time) error
}

// OutboxItem is one queued federation item (encoded wire.FedItem).
type OutboxItem struct {
	ID          int64
	Destination string
	Payload     []byte
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// RemoteList is a remote user's device list as last learnt.
type RemoteList struct {
	UserID    string
	StreamPos uint64
	FetchedAt time.Time
	Devices   []GroupDevice // UserID, DeviceID, IdentityKey
}

// Forward is a local send handed to a remote hub.
type Forward struct {
	Sender       string
	SenderDevice uint32
	ClientID     string
	Conversation string
	CreatedAt    time.Time
}

// SenderSeq is one sender's highest seq in a range.
type SenderSeq struct {
	Sender string
	Seq    uint64
}

// Group is a group conversation's record at its hub.
type Group struct {
	ID          string
	Name        string
	Description string
	Avatar      string
	Creator     string
	CreatedAt   time.Time
	RemovalSeq  uint64 // seq of the latest removal or departure
}

// Member states.
const (
	MemberJoined  = "joined"
	MemberInvited = "invited"
)

type GroupMember struct {
	GroupID  string
	UserID   string
	Role     string
	State    string
	SinceSeq uint64 // the group seq at which the user joined or was invited
}

type UserGroup struct {
	GroupID string
	Name    string
	Role    string
	State   string
}

type GroupDevice struct {
	UserID      string
	DeviceID    uint32
	IdentityKey []byte
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

// Send remembers a direct message's client id, to answer a retry as the
// first send was answered.
type Send struct {
	UserID       string
	DeviceID     uint32
	ClientID     string
	Conversation string
	Seq          uint64
	SentAt       time.Time
	ExpiresAt    time.Time
}

// Message records one sequenced group message (and the direct messages
// stored before Send existed): enough to answer a retried client message
// id, count deliveries and route receipts back to the sender. The
// ciphertexts live in the recipients' inbox entries.
type Message struct {
	ID int64
	// Body and BodyType: a group's shared sender-key ciphertext, stored
	// once for every device that gets it; empty for pairwise envelopes.
	// Event is the encoded event (without the body) those devices get,
	// also stored once: their inbox rows leave it out.
	Body         []byte
	BodyType     string
	Event        []byte
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
	EntryGroup      = "group_event"
	// The answer to a device's send: the seq its message got. Entries
	// with a ClientID are unique per device and client id (InsertInbox
	// fails with ErrConflict on a second one).
	EntrySent = "sent"
	// A group's aggregated receipts: at most one of each pending per
	// device and group.
	EntryDeliveredSummary = "delivered_summary"
	EntryReadSummary      = "read_summary"
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
	Sender       string    // the message's sender, for message entries: an ack needs no lookup
	ClientID     string    // the send's client id, for EntrySent entries
	ExpiresAt    time.Time // zero: never expires
	Payload      []byte
	// SharedBody is the message's shared ciphertext, which the payload
	// leaves out: filled in by Inbox, and set by the writer of a group
	// message so that OnInboxAdded listeners get it too. InsertInbox
	// stores neither it nor, for such an entry, the payload: the message
	// record holds both once (Body, Event), and Inbox fills them in.
	SharedBody []byte
}

type queuedKey struct{}

// WithQueued returns a context whose Write calls f once the Write has its
// place in the engine's order: Writes queued after that run after it
// (until then the caller cannot know). An engine that does not order
// Writes by arrival calls f when the Write has committed. A caller can
// then let its next Write go while this one waits for its commit.
func WithQueued(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, queuedKey{}, f)
}

// Queued returns the function WithQueued put in ctx, or nil: engines call
// it.
func Queued(ctx context.Context) func() {
	f, _ := ctx.Value(queuedKey{}).(func())
	return f
}
