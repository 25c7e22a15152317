package wire

import "time"

// Group limits.
const (
	DefaultMaxGroupMembers = 1024
	MaxGroupNameLen        = 256  // bytes; clients may send it encrypted (base64)
	MaxGroupDescriptionLen = 4096 // bytes
	MaxGroupAvatarLen      = 256  // a media id
	MaxGroupUsersPerCall   = 1024 // users in one create/add/invite
	GroupIDPrefix          = "g-" // group ids start with it; user ids never do
)

// Roles, from most to least powerful. There is always exactly one owner.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// Group event actions (Event.Action).
const (
	GroupCreated  = "created"  // Actor created the group (Meta)
	GroupInvited  = "invited"  // Actor invited User
	GroupJoined   = "joined"   // User accepted an invite
	GroupDeclined = "declined" // User declined an invite
	GroupAdded    = "added"    // Actor added User as a member
	GroupRemoved  = "removed"  // Actor removed User
	GroupLeft     = "left"     // User left
	GroupRole     = "role"     // Actor gave User the Role
	GroupOwner    = "owner"    // Actor handed ownership to User
	GroupMetadata = "metadata" // Actor changed the metadata (Meta)
	GroupDeleted  = "deleted"  // Actor deleted the group
)

// GroupMeta is a group's public description. Clients may put ciphertext
// (base64) in it; the server only checks sizes.
type GroupMeta struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Avatar      string `json:"avatar,omitempty"` // media id
}

// CreateGroupRequest is the body of POST /v1/groups: the caller becomes the
// owner, Members become members at once.
type CreateGroupRequest struct {
	GroupMeta
	Members []string `json:"members,omitempty"`
}

// Group answers GET /v1/groups/{id} and create: Seq is the group's latest
// sequence number, RemovalSeq the sequence number of its latest removal or
// departure (a sender whose sender key is older rotates it first).
type Group struct {
	ID         string    `json:"id"`
	GroupMeta            // metadata
	Hub        string    `json:"hub"`
	CreatedAt  time.Time `json:"created_at"`
	Seq        uint64    `json:"seq"`
	RemovalSeq uint64    `json:"removal_seq"`
	Members    []Member  `json:"members"`
	Invited    []Member  `json:"invited,omitempty"`
}

type Member struct {
	User string `json:"user"`
	Role string `json:"role"`
}

// GroupList answers GET /v1/groups: the caller's groups and invitations.
type GroupList struct {
	Groups  []GroupSummary `json:"groups"`
	Invites []GroupSummary `json:"invites,omitempty"`
}

type GroupSummary struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Role string `json:"role"`
}

// GroupUsersRequest names users to add (POST /v1/groups/{id}/members) or
// invite (POST /v1/groups/{id}/invites).
type GroupUsersRequest struct {
	Users []string `json:"users"`
}

// RoleRequest is the body of PUT /v1/groups/{id}/members/{user}/role.
type RoleRequest struct {
	Role string `json:"role"`
}

// OwnerRequest is the body of POST /v1/groups/{id}/owner.
type OwnerRequest struct {
	User string `json:"user"`
}

// GroupDevices answers GET /v1/groups/{id}/devices: every device with keys
// of every member (the caller's own devices included), with the sequence
// numbers a sender needs to decide on sender-key rotation.
type GroupDevices struct {
	Group      string        `json:"group"`
	Seq        uint64        `json:"seq"`
	RemovalSeq uint64        `json:"removal_seq"`
	Devices    []GroupDevice `json:"devices"`
}

type GroupDevice struct {
	User        string `json:"user"`
	DeviceID    uint32 `json:"device_id"`
	IdentityKey []byte `json:"identity_key"`
}
