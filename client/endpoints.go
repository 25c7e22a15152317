package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/parleychat/parley/wire"
)

// Register creates an account and its first device (POST /v1/register).
func (a *API) Register(ctx context.Context, req wire.RegisterRequest) (wire.Session, error) {
	var s wire.Session
	err := a.do(ctx, http.MethodPost, "/v1/register", nil, req, &s)
	return s, err
}

// Login adds a device to an existing account (POST /v1/login).
func (a *API) Login(ctx context.Context, req wire.LoginRequest) (wire.Session, error) {
	var s wire.Session
	err := a.do(ctx, http.MethodPost, "/v1/login", nil, req, &s)
	return s, err
}

// Logout removes the calling device and revokes its token (POST /v1/logout).
func (a *API) Logout(ctx context.Context) error {
	return a.do(ctx, http.MethodPost, "/v1/logout", nil, nil, nil)
}

// WhoAmI names the user and device the token belongs to (GET /v1/whoami).
func (a *API) WhoAmI(ctx context.Context) (wire.WhoAmI, error) {
	var w wire.WhoAmI
	err := a.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &w)
	return w, err
}

// Devices lists the caller's devices (GET /v1/devices).
func (a *API) Devices(ctx context.Context) (wire.DeviceList, error) {
	var l wire.DeviceList
	err := a.do(ctx, http.MethodGet, "/v1/devices", nil, nil, &l)
	return l, err
}

// RemoveDevice removes one of the caller's devices (DELETE
// /v1/devices/{id}). password is required unless id is the caller's own
// device.
func (a *API) RemoveDevice(ctx context.Context, id uint32, password string) error {
	path := "/v1/devices/" + strconv.FormatUint(uint64(id), 10)
	return a.do(ctx, http.MethodDelete, path, nil, wire.RemoveDeviceRequest{Password: password}, nil)
}

// UserDevices lists the devices of user that have keys, with their identity
// keys (GET /v1/users/{user}/devices). It claims no prekey.
func (a *API) UserDevices(ctx context.Context, user string) (wire.UserDevices, error) {
	var d wire.UserDevices
	err := a.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(user)+"/devices", nil, nil, &d)
	return d, err
}

// Profile returns user's public profile (GET /v1/profile/{user}).
func (a *API) Profile(ctx context.Context, user string) (wire.Profile, error) {
	var p wire.Profile
	err := a.do(ctx, http.MethodGet, "/v1/profile/"+url.PathEscape(user), nil, nil, &p)
	return p, err
}

// SetProfile replaces the caller's profile (PUT /v1/profile).
func (a *API) SetProfile(ctx context.Context, p wire.Profile) (wire.Profile, error) {
	var out wire.Profile
	err := a.do(ctx, http.MethodPut, "/v1/profile", nil, p, &out)
	return out, err
}

// UploadKeys uploads the device's keys (PUT /v1/keys) and returns how many
// one-time prekeys the server now holds for it.
func (a *API) UploadKeys(ctx context.Context, k wire.KeyUpload) (wire.PreKeyCount, error) {
	var c wire.PreKeyCount
	err := a.do(ctx, http.MethodPut, "/v1/keys", nil, k, &c)
	return c, err
}

// PreKeyCount returns how many one-time prekeys the server holds for the
// device (GET /v1/keys/count).
func (a *API) PreKeyCount(ctx context.Context) (wire.PreKeyCount, error) {
	var c wire.PreKeyCount
	err := a.do(ctx, http.MethodGet, "/v1/keys/count", nil, nil, &c)
	return c, err
}

// ClaimKeys claims one bundle per device of req.User, or of req.Devices
// only (POST /v1/keys/claim). Each one-time prekey is handed out once.
func (a *API) ClaimKeys(ctx context.Context, req wire.ClaimRequest) (wire.ClaimResponse, error) {
	var r wire.ClaimResponse
	err := a.do(ctx, http.MethodPost, "/v1/keys/claim", nil, req, &r)
	return r, err
}

// SendMessage sends envelopes (POST /v1/messages). A refusal because the
// envelopes do not match the device lists is a *wire.Error with code
// wire.CodeStaleDevices and its Missing and Extra lists.
func (a *API) SendMessage(ctx context.Context, req wire.SendRequest) (wire.SendResult, error) {
	var r wire.SendResult
	err := a.do(ctx, http.MethodPost, "/v1/messages", nil, req, &r)
	return r, err
}

// Inbox fetches pending events with ids above after (GET /v1/inbox), for
// clients that cannot hold a WebSocket. limit <= 0 lets the server choose.
func (a *API) Inbox(ctx context.Context, after int64, limit int) (wire.InboxPage, error) {
	q := url.Values{}
	q.Set("after", strconv.FormatInt(after, 10))
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p wire.InboxPage
	err := a.do(ctx, http.MethodGet, "/v1/inbox", q, nil, &p)
	return p, err
}

// Ack acknowledges delivery of inbox events, which deletes them from the
// device's inbox (POST /v1/inbox/ack). An empty ids is a no-op.
func (a *API) Ack(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	return a.do(ctx, http.MethodPost, "/v1/inbox/ack", nil, wire.AckRequest{IDs: ids}, nil)
}

// MarkRead marks conversation read up to and including seq (POST /v1/read).
func (a *API) MarkRead(ctx context.Context, conversation string, seq uint64) error {
	return a.do(ctx, http.MethodPost, "/v1/read", nil, wire.ReadRequest{Conversation: conversation, Seq: seq}, nil)
}
