package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/parleychat/parley/homeserver"
	"github.com/parleychat/parley/wire"
)

// Client makes signed requests to other homeservers: transactions for the
// Sender and the queries homeserver.Remote needs. The destination's
// endpoint is discovered by the http.Client's Transport (NewTransport).
type Client struct {
	origin string
	key    *SigningKey
	http   *http.Client
	scheme string
	now    func() time.Time
}

// maxResponse bounds what we read from another server.
const maxResponse = 16 << 20

// NewClient signs as origin with key. scheme is "https", or "http" for
// explicitly insecure local testing.
func NewClient(origin string, key *SigningKey, hc *http.Client, scheme string) *Client {
	if scheme == "" {
		scheme = "https"
	}
	return &Client{origin: origin, key: key, http: hc, scheme: scheme, now: time.Now}
}

// SendTransaction delivers queued items to dest as one transaction.
func (c *Client) SendTransaction(ctx context.Context, dest, txnID string, items []json.RawMessage) (wire.TransactionResult, error) {
	body, err := json.Marshal(struct {
		Origin      string            `json:"origin"`
		Destination string            `json:"destination"`
		Items       []json.RawMessage `json:"items"`
	}{c.origin, dest, items})
	if err != nil {
		return wire.TransactionResult{}, err
	}
	var res wire.TransactionResult
	err = c.do(ctx, http.MethodPut, dest, wire.FederationPrefix+"/send/"+url.PathEscape(txnID), body, &res)
	return res, err
}

// Devices asks a user's homeserver for the user's devices.
func (c *Client) Devices(ctx context.Context, user string) (wire.RemoteDevices, error) {
	var out wire.RemoteDevices
	err := c.do(ctx, http.MethodGet, homeserver.DomainOf(user), wire.FederationPrefix+"/users/"+url.PathEscape(user)+"/devices", nil, &out)
	return out, err
}

// Claim claims one-time prekey bundles of a user's devices.
func (c *Client) Claim(ctx context.Context, user string, devices []uint32) ([]wire.Bundle, error) {
	body, err := json.Marshal(wire.ClaimRequest{User: user, Devices: devices})
	if err != nil {
		return nil, err
	}
	var out wire.ClaimResponse
	err = c.do(ctx, http.MethodPost, homeserver.DomainOf(user), wire.FederationPrefix+"/keys/claim", body, &out)
	return out.Bundles, err
}

// Profile fetches a user's public profile.
func (c *Client) Profile(ctx context.Context, user string) (wire.Profile, error) {
	var out wire.Profile
	err := c.do(ctx, http.MethodGet, homeserver.DomainOf(user), wire.FederationPrefix+"/profile/"+url.PathEscape(user), nil, &out)
	return out, err
}

// GroupDevices asks a group's hub for the devices member must encrypt to.
func (c *Client) GroupDevices(ctx context.Context, hub, group, member string) (wire.GroupDevices, error) {
	var out wire.GroupDevices
	err := c.do(ctx, http.MethodGet, hub, wire.FederationPrefix+"/groups/"+url.PathEscape(group)+"/devices?member="+
		url.QueryEscape(member), nil, &out)
	return out, err
}

// GroupOp asks a group's hub to perform an operation for one of our users.
func (c *Client) GroupOp(ctx context.Context, hub, group string, op wire.GroupOp) error {
	body, err := json.Marshal(op)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, hub, wire.FederationPrefix+"/groups/"+url.PathEscape(group)+"/op", body, nil)
}

// do sends one signed request and decodes a 2xx answer into out; any
// other answer becomes a *wire.Error.
func (c *Client) do(ctx context.Context, method, dest, path string, body []byte, out any) error {
	req, err := NewSignedRequest(ctx, method, c.scheme+"://"+dest+path, body, c.origin, dest, c.key, c.now())
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("federation: %s %s: %w", method, dest, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("federation: reading %s's answer: %w", dest, err)
	}
	if resp.StatusCode/100 != 2 {
		var we wire.Error
		if json.Unmarshal(data, &we) != nil || we.Code == "" {
			we = wire.Error{Code: fmt.Sprintf("http_%d", resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
		}
		return &we
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("federation: %s sent malformed JSON: %w", dest, err)
	}
	return nil
}
