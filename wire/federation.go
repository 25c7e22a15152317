package wire

import "time"

// Server-to-server types. Clients never see them; they are here because
// both the domain (homeserver/) and the transport (federation/) use them.

// FederationPrefix prefixes every federation path.
const FederationPrefix = "/v1/federation"

// Transaction is the body of PUT /v1/federation/send/{txn_id}: items queued
// for one destination, in queue order. A repeated txn_id from the same
// origin is answered as before and changes nothing.
type Transaction struct {
	Origin      string    `json:"origin"`
	Destination string    `json:"destination"`
	Items       []FedItem `json:"items"`
}

// Federation item kinds.
const (
	FedMessage       = "message"        // hub -> participant: a sequenced message for the destination's devices
	FedForward       = "forward"        // participant -> hub: a local user's send, to be sequenced
	FedForwardResult = "forward_result" // hub -> participant: the outcome of a forward (seq, or an error)
	FedReceipt       = "receipt"        // a delivered/read receipt for a user of the destination
	FedDeviceList    = "device_list"    // a user of the origin changed devices
	FedGroupEvent    = "group_event"    // hub -> member servers: a group event for Users' devices
)

// FedItem is one queued item. Which fields are set depends on Kind.
type FedItem struct {
	Kind string `json:"kind"`

	// message, forward, forward_result, receipt
	Conversation string     `json:"conversation,omitempty"`
	Seq          uint64     `json:"seq,omitempty"`
	Sender       string     `json:"sender,omitempty"`
	SenderDevice uint32     `json:"sender_device,omitempty"`
	ClientID     string     `json:"client_id,omitempty"`
	SentAt       *time.Time `json:"sent_at,omitempty"`
	To           string     `json:"to,omitempty"` // forward: the recipient (user id)
	Envelopes    []Envelope `json:"envelopes,omitempty"`
	Shared       *Shared    `json:"shared,omitempty"` // message: the group ciphertext, once, for Shared.Devices
	Group        string     `json:"group,omitempty"`
	Error        *Error     `json:"error,omitempty"` // forward_result: refused

	// receipt: Status of Seq in Conversation by By (ByDevice), for User
	Status   string `json:"status,omitempty"`
	By       string `json:"by,omitempty"`
	ByDevice uint32 `json:"by_device,omitempty"`

	// receipt: the user told; device_list: the user whose devices changed
	User string `json:"user,omitempty"`

	// device_list: the user's full list at StreamPos; PrevPos is the
	// position of the previous notice, so a receiver that missed one
	// (PrevPos ahead of what it has) fetches the list afresh.
	StreamPos uint64       `json:"stream_pos,omitempty"`
	PrevPos   uint64       `json:"prev_pos,omitempty"`
	Devices   []DeviceKeys `json:"devices,omitempty"`

	// group_event: Event is the event as devices receive it (without id),
	// for the destination's Users; Members, Invited and Meta are the whole
	// group after it, which member servers mirror.
	Event   *Event     `json:"event,omitempty"`
	Users   []string   `json:"users,omitempty"`
	Members []Member   `json:"members,omitempty"`
	Invited []Member   `json:"invited,omitempty"`
	Meta    *GroupMeta `json:"meta,omitempty"`
}

// Group operations a member server asks the group's hub to perform for one
// of its users (POST /v1/federation/groups/{id}/op).
const (
	OpAdd      = "add"
	OpInvite   = "invite"
	OpJoin     = "join"
	OpDecline  = "decline"
	OpRemove   = "remove" // User; the actor itself: leave
	OpRole     = "role"
	OpOwner    = "owner"
	OpMetadata = "metadata"
	OpDelete   = "delete"
)

// GroupOp is one group operation by Actor, a user of the origin server.
type GroupOp struct {
	Op    string     `json:"op"`
	Actor string     `json:"actor"`
	Users []string   `json:"users,omitempty"`
	User  string     `json:"user,omitempty"`
	Role  string     `json:"role,omitempty"`
	Meta  *GroupMeta `json:"meta,omitempty"`
}

// TransactionResult answers a transaction.
type TransactionResult struct {
	// Refused lists items (by index) the receiver refused for good (e.g. a
	// message for a conversation the origin is not the hub of); they are
	// not retried. A transaction as a whole is retried until it gets 200.
	Refused []RefusedItem `json:"refused,omitempty"`
}

type RefusedItem struct {
	Index int    `json:"index"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// RemoteDevices answers GET /v1/federation/users/{user}/devices.
type RemoteDevices struct {
	User      string       `json:"user"`
	StreamPos uint64       `json:"stream_pos"`
	Devices   []DeviceKeys `json:"devices"`
}
