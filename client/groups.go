package client

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/parleychat/parley/wire"
)

// IsGroupID reports whether s names a group ("g-…", without "@") rather
// than a user. A user whose name starts with "g-" must then be written in
// full (name@domain).
func IsGroupID(s string) bool {
	return strings.HasPrefix(s, wire.GroupIDPrefix) && !strings.Contains(s, "@")
}

func groupPath(id string, rest ...string) string {
	p := "/v1/groups/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreateGroup creates a group with the caller as owner and req.Members as
// members at once (POST /v1/groups).
func (a *API) CreateGroup(ctx context.Context, req wire.CreateGroupRequest) (wire.Group, error) {
	var g wire.Group
	err := a.do(ctx, http.MethodPost, "/v1/groups", nil, req, &g)
	return g, err
}

// Groups lists the caller's groups and pending invitations (GET /v1/groups).
func (a *API) Groups(ctx context.Context) (wire.GroupList, error) {
	var l wire.GroupList
	err := a.do(ctx, http.MethodGet, "/v1/groups", nil, nil, &l)
	return l, err
}

// Group describes a group to one of its members or invitees
// (GET /v1/groups/{id}).
func (a *API) Group(ctx context.Context, id string) (wire.Group, error) {
	var g wire.Group
	err := a.do(ctx, http.MethodGet, groupPath(id), nil, nil, &g)
	return g, err
}

// UpdateGroup replaces a group's metadata (PUT /v1/groups/{id}; owner and
// admins).
func (a *API) UpdateGroup(ctx context.Context, id string, meta wire.GroupMeta) (wire.Group, error) {
	var g wire.Group
	err := a.do(ctx, http.MethodPut, groupPath(id), nil, meta, &g)
	return g, err
}

// DeleteGroup ends a group (DELETE /v1/groups/{id}; owner). Every member
// gets a "deleted" event.
func (a *API) DeleteGroup(ctx context.Context, id string) error {
	return a.do(ctx, http.MethodDelete, groupPath(id), nil, nil, nil)
}

// GroupDevices lists every device with keys of every member, the caller's
// own included, with the group's seq and removal_seq
// (GET /v1/groups/{id}/devices; members).
func (a *API) GroupDevices(ctx context.Context, id string) (wire.GroupDevices, error) {
	var d wire.GroupDevices
	err := a.do(ctx, http.MethodGet, groupPath(id, "devices"), nil, nil, &d)
	return d, err
}

// AddMembers makes users members at once (POST /v1/groups/{id}/members;
// owner and admins) and returns the group as it is now. The server takes
// at most wire.MaxGroupUsersPerCall users per call.
func (a *API) AddMembers(ctx context.Context, id string, users []string) (wire.Group, error) {
	var g wire.Group
	err := a.do(ctx, http.MethodPost, groupPath(id, "members"), nil, wire.GroupUsersRequest{Users: users}, &g)
	return g, err
}

// Invite invites users; they become members when they accept
// (POST /v1/groups/{id}/invites; owner and admins).
func (a *API) Invite(ctx context.Context, id string, users []string) error {
	return a.do(ctx, http.MethodPost, groupPath(id, "invites"), nil, wire.GroupUsersRequest{Users: users}, nil)
}

// AcceptInvite accepts the caller's invitation (POST /v1/groups/{id}/join).
func (a *API) AcceptInvite(ctx context.Context, id string) error {
	return a.do(ctx, http.MethodPost, groupPath(id, "join"), nil, nil, nil)
}

// DeclineInvite declines the caller's invitation
// (POST /v1/groups/{id}/decline).
func (a *API) DeclineInvite(ctx context.Context, id string) error {
	return a.do(ctx, http.MethodPost, groupPath(id, "decline"), nil, nil, nil)
}

// RemoveMember removes user from the group (DELETE
// /v1/groups/{id}/members/{user}; owner and admins), or, when user is the
// caller, leaves it (see Account.LeaveGroup).
func (a *API) RemoveMember(ctx context.Context, id, user string) error {
	return a.do(ctx, http.MethodDelete, groupPath(id, "members", url.PathEscape(user)), nil, nil, nil)
}

// SetRole makes a member an admin or an admin a member (PUT
// /v1/groups/{id}/members/{user}/role; role is wire.RoleAdmin or
// wire.RoleMember).
func (a *API) SetRole(ctx context.Context, id, user, role string) error {
	return a.do(ctx, http.MethodPut, groupPath(id, "members", url.PathEscape(user), "role"), nil,
		wire.RoleRequest{Role: role}, nil)
}

// TransferOwner hands ownership to the member user; the caller becomes an
// admin (POST /v1/groups/{id}/owner; owner).
func (a *API) TransferOwner(ctx context.Context, id, user string) error {
	return a.do(ctx, http.MethodPost, groupPath(id, "owner"), nil, wire.OwnerRequest{User: user}, nil)
}

// LeaveGroup leaves the group (RemoveMember of this account's user) and
// drops this device's sender key for it, which nobody may use any more.
func (a *Account) LeaveGroup(ctx context.Context, id string) error {
	if err := a.api.RemoveMember(ctx, id, a.file.UserID); err != nil {
		return err
	}
	return a.rotateSenderKey(ctx, id)
}
