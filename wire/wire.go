// Package wire holds the JSON types of Parley's client protocol: the bodies of
// the REST endpoints under /v1 and the frames on the per-device WebSocket.
// The homeserver (clientapi/) and every client (client/, the CLI, the load
// tool) import it, so both ends agree on one definition. docs/protocol.md
// describes the endpoints and events these types travel in.
//
// Binary values (keys, signatures, ciphertexts) are []byte and so travel as
// standard base64, which is what encoding/json produces.
package wire

import "time"

// APIVersion prefixes every REST path.
const APIVersion = "/v1"

// Limits a client must respect; the server refuses requests over them.
const (
	MaxPreKeysPerUpload = 200      // one-time prekeys in one PUT /v1/keys
	MaxPreKeysStored    = 1000     // one-time prekeys a device may hold
	MaxEnvelopes        = 4096     // ciphertexts in one send
	MaxEnvelopeBytes    = 64 << 10 // one ciphertext
	MaxRequestBytes     = 8 << 20  // one REST body or WebSocket frame
	MaxClientIDLen      = 64
	MaxDeviceNameLen    = 64
	MaxDisplayNameLen   = 128
	MinPasswordLen      = 8
	MaxPasswordLen      = 1024
	// PreKeyLowThreshold: a device whose one-time prekey count falls below
	// this is sent a prekeys_low event and should upload more.
	PreKeyLowThreshold = 20
)

// RegisterRequest creates an account and its first device (POST /v1/register).
// LoginRequest adds a device to an existing account (POST /v1/login).
type RegisterRequest struct {
	User       string `json:"user"` // local name, e.g. "alice"
	Password   string `json:"password"`
	DeviceName string `json:"device_name,omitempty"`
}

type LoginRequest = RegisterRequest

// Session answers register and login: the device now exists and the token
// authenticates it (Authorization: Bearer TOKEN).
type Session struct {
	UserID      string `json:"user_id"` // "alice@example.org"
	DeviceID    uint32 `json:"device_id"`
	AccessToken string `json:"access_token"`
}

// WhoAmI answers GET /v1/whoami.
type WhoAmI struct {
	UserID   string `json:"user_id"`
	DeviceID uint32 `json:"device_id"`
}

// Device describes one of the caller's devices (GET /v1/devices).
type Device struct {
	DeviceID  uint32    `json:"device_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	HasKeys   bool      `json:"has_keys"` // identity key uploaded: others encrypt to it
	Current   bool      `json:"current"`  // the device making the request
}

type DeviceList struct {
	Devices []Device `json:"devices"`
}

// RemoveDeviceRequest is the body of DELETE /v1/devices/{id}. Removing any
// device other than the caller's own needs the account password.
type RemoveDeviceRequest struct {
	Password string `json:"password,omitempty"`
}

// UserDevices answers GET /v1/users/{user}/devices: the devices that have
// keys, i.e. the devices a sender must encrypt to, with their identity keys
// (for safety numbers; reading them claims no prekey).
type UserDevices struct {
	User    string       `json:"user"`
	Devices []DeviceKeys `json:"devices"`
}

type DeviceKeys struct {
	DeviceID    uint32 `json:"device_id"`
	IdentityKey []byte `json:"identity_key"`
}

// Profile is public per-user data (GET /v1/profile/{user}, PUT /v1/profile).
type Profile struct {
	UserID      string `json:"user_id,omitempty"`
	DisplayName string `json:"display_name"`
}

// SignedPreKey: PublicKey is 33 bytes (0x05 ‖ X25519), Signature the 64-byte
// XEdDSA signature of PublicKey by the device's identity key.
type SignedPreKey struct {
	ID        uint32 `json:"id"`
	PublicKey []byte `json:"public_key"`
	Signature []byte `json:"signature"`
}

// PreKey is a one-time prekey. ID 0 is reserved ("no prekey").
type PreKey struct {
	ID        uint32 `json:"id"`
	PublicKey []byte `json:"public_key"`
}

// KeyUpload is the body of PUT /v1/keys. The first upload of a device must
// carry IdentityKey, RegistrationID and SignedPreKey; later uploads may carry
// only PreKeys (replenishment) or a new SignedPreKey (rotation). Uploading a
// different IdentityKey replaces the device's keys and is announced to its
// contacts as a device-list change.
type KeyUpload struct {
	IdentityKey    []byte        `json:"identity_key,omitempty"`
	RegistrationID uint32        `json:"registration_id,omitempty"`
	SignedPreKey   *SignedPreKey `json:"signed_prekey,omitempty"`
	PreKeys        []PreKey      `json:"prekeys,omitempty"`
}

// PreKeyCount answers PUT /v1/keys and GET /v1/keys/count.
type PreKeyCount struct {
	Count int `json:"count"`
}

// ClaimRequest is the body of POST /v1/keys/claim: one bundle per device of
// User (or of the listed Devices only). Each one-time prekey is handed out
// at most once.
type ClaimRequest struct {
	User    string   `json:"user"`
	Devices []uint32 `json:"devices,omitempty"`
}

// Bundle is what a sender needs to start a Signal session with one device.
// PreKey is nil when the device has run out of one-time prekeys.
type Bundle struct {
	User           string       `json:"user"`
	DeviceID       uint32       `json:"device_id"`
	RegistrationID uint32       `json:"registration_id"`
	IdentityKey    []byte       `json:"identity_key"`
	SignedPreKey   SignedPreKey `json:"signed_prekey"`
	PreKey         *PreKey      `json:"prekey,omitempty"`
}

type ClaimResponse struct {
	Bundles []Bundle `json:"bundles"`
}

// DeviceAddress names one device of one user.
type DeviceAddress struct {
	User   string `json:"user"`
	Device uint32 `json:"device"`
}

// Ciphertext types (Envelope.Type, Event.CiphertextType).
const (
	CiphertextPreKey    = "prekey"    // Signal PreKeySignalMessage (starts a session)
	CiphertextWhisper   = "whisper"   // Signal SignalMessage
	CiphertextSenderKey = "senderkey" // Signal SenderKeyMessage (groups)
)

// Envelope is the ciphertext for one recipient device.
type Envelope struct {
	User   string `json:"user"`
	Device uint32 `json:"device"`
	Type   string `json:"type"`
	Body   []byte `json:"body"`
}

// SendRequest is the body of POST /v1/messages and of a "send" frame. To is
// a user id for a direct conversation, or a group id ("g-…"). The
// recipient devices are the devices with keys of the recipient (or of
// every member of the group) and the sender's other devices; each must get
// exactly one ciphertext: its own Envelope (pairwise Signal), or, in a
// group, the Shared sender-key ciphertext by being listed in
// Shared.Devices. Otherwise the send is refused with stale_devices,
// listing the devices to add (Missing) and remove (Extra). ClientID makes
// retries safe: a repeated ClientID from the same device returns the first
// send's result.
type SendRequest struct {
	ClientID  string     `json:"client_id"`
	To        string     `json:"to"`
	Envelopes []Envelope `json:"envelopes,omitempty"`
	Shared    *Shared    `json:"shared,omitempty"`
}

// Shared is one ciphertext for many devices of a group (a Signal
// SenderKeyMessage, type "senderkey"), stored once by the server.
type Shared struct {
	Type    string          `json:"type"`
	Body    []byte          `json:"body"`
	Devices []DeviceAddress `json:"devices"`
}

// SendResult answers a send once it is durable. Status "sent": the send
// is sequenced (Seq). Status "accepted": the conversation's hub is another
// homeserver; the send is queued for it, and a "sent" (or "error") inbox
// event with the ClientID follows once the hub has sequenced it.
type SendResult struct {
	ClientID     string    `json:"client_id"`
	Conversation string    `json:"conversation"`
	Seq          uint64    `json:"seq,omitempty"`
	SentAt       time.Time `json:"sent_at"`
	Status       string    `json:"status"`
	// Repeated: the client id was sent before; this is that send's answer
	// and nothing new was stored.
	Repeated bool `json:"repeated,omitempty"`
}

// SendResult statuses.
const (
	SendSent     = "sent"
	SendAccepted = "accepted"
)

// AckRequest acknowledges delivery of inbox events by id (POST /v1/inbox/ack,
// "ack" frame). Acknowledged events are deleted from the device's inbox.
type AckRequest struct {
	IDs []int64 `json:"ids"`
}

// ReadRequest marks a conversation read up to and including Seq
// (POST /v1/read, "read" frame).
type ReadRequest struct {
	Conversation string `json:"conversation"`
	Seq          uint64 `json:"seq"`
}

// InboxPage answers GET /v1/inbox?after=ID&limit=N: pending events in
// order. More is true when further events are pending after the last one.
type InboxPage struct {
	Events []Event `json:"events"`
	More   bool    `json:"more"`
}

// Receipt statuses.
const (
	StatusDelivered = "delivered"
	StatusRead      = "read"
)

// Event types sent by the server. Those with an ID are inbox events: durable,
// delivered in order, deleted when acknowledged. The others are live only.
const (
	EventMessage    = "message"     // inbox: an encrypted message for this device
	EventReceipt    = "receipt"     // inbox: delivered/read acknowledgement for a message this user sent
	EventDeviceList = "device_list" // inbox: User's device list changed; re-fetch it
	EventGroup      = "group_event" // inbox: a membership or metadata change, in the group's sequence
	EventExpired    = "expired"     // inbox: Conversation lost FromSeq..ToSeq unread to retention
	EventAccepted   = "accepted"    // live: the send with ClientID is durably queued for its conversation's remote hub
	EventSent       = "sent"        // inbox: the send with ClientID got Seq in Conversation (live, without ID, for a repeated send)
	EventError      = "error"       // live: a frame was refused (ClientID set for sends)
	EventPreKeysLow = "prekeys_low" // live: this device holds Count one-time prekeys; upload more
	EventCaughtUp   = "caught_up"   // live: every event pending at connect time has been sent
)

// Event is one server-to-client event: an inbox entry or a live notice. A
// flat struct keeps the encoding cheap; each type uses the fields its
// comment in docs/protocol.md lists.
type Event struct {
	Type string `json:"type"`
	ID   int64  `json:"id,omitempty"`

	Conversation string `json:"conversation,omitempty"`
	Seq          uint64 `json:"seq,omitempty"`

	// message, group_event: the group, when the conversation is one
	Group string `json:"group,omitempty"`

	// message
	From           string     `json:"from,omitempty"`
	FromDevice     uint32     `json:"from_device,omitempty"`
	CiphertextType string     `json:"ciphertext_type,omitempty"`
	Body           []byte     `json:"body,omitempty"`
	SentAt         *time.Time `json:"sent_at,omitempty"`

	// receipt
	Status   string `json:"status,omitempty"`
	By       string `json:"by,omitempty"`
	ByDevice uint32 `json:"by_device,omitempty"`

	// device_list; group_event: the member concerned
	User string `json:"user,omitempty"`

	// group_event
	Action string     `json:"action,omitempty"` // one of the Group* actions
	Actor  string     `json:"actor,omitempty"`  // who did it
	Role   string     `json:"role,omitempty"`   // the member's role after it
	Meta   *GroupMeta `json:"meta,omitempty"`   // created, metadata
	// created, added, invited: the members concerned, with their roles
	Members []Member `json:"members,omitempty"`

	// expired
	FromSeq uint64 `json:"from_seq,omitempty"`
	ToSeq   uint64 `json:"to_seq,omitempty"`

	// accepted, sent, error
	ClientID string `json:"client_id,omitempty"`

	// error
	Code    string          `json:"code,omitempty"`
	Message string          `json:"message,omitempty"`
	Missing []DeviceAddress `json:"missing,omitempty"`
	Extra   []DeviceAddress `json:"extra,omitempty"`

	// prekeys_low; receipt in a group: how many members (read) or member
	// devices (delivered) have reached Seq
	Count int `json:"count,omitempty"`
}

// Frame types a client sends on its WebSocket.
const (
	FrameSend = "send"
	FrameAck  = "ack"
	FrameRead = "read"
)

// ClientFrame is one client-to-server WebSocket frame. "send" uses the
// SendRequest fields, "ack" IDs, "read" Conversation and Seq.
type ClientFrame struct {
	Type string `json:"type"`

	ClientID  string     `json:"client_id,omitempty"`
	To        string     `json:"to,omitempty"`
	Envelopes []Envelope `json:"envelopes,omitempty"`
	Shared    *Shared    `json:"shared,omitempty"`

	IDs []int64 `json:"ids,omitempty"`

	Conversation string `json:"conversation,omitempty"`
	Seq          uint64 `json:"seq,omitempty"`
}

// Error is the body of every non-2xx REST response and the payload of an
// "error" event. Code is stable and machine-readable (docs/protocol.md lists
// them all); Message is for people.
type Error struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Field   string          `json:"field,omitempty"`   // the offending field, when one is
	Missing []DeviceAddress `json:"missing,omitempty"` // stale_devices: devices to add
	Extra   []DeviceAddress `json:"extra,omitempty"`   // stale_devices: devices to remove
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }
