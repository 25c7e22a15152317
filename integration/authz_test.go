package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/wire"
)

// The authorization matrix: every registered client and federation route
// is called as every kind of caller that must not get through, and each
// refusal must be exactly the documented status and code. The tables are
// keyed by the routes the servers actually register, so a new route
// without an entry here fails TestAuthorizationMatrix.
//
// Tokens never expire in Parley; they are revoked by logout or by removing
// the device. The "revoked" and "removed" callers cover that.

// authzFixture is the cast: on a.test (the client API under test) alice
// owns group G with erin as admin and bob as a plain member, dave is
// invited, carol is no member; b.test (the federation API under test) has
// bert, who owns group FG with alice@a.test as a member; c.test is a valid
// server of another domain whose key signs forgeries.
type authzFixture struct {
	a, b, c *fedServer

	alice, alice2, bob, carol, dave, erin *device
	revoked, removed                      string // tokens of alice's logged-out and removed devices
	group                                 string // G on a.test
	bert                                  *device
	fedGroup                              string // FG on b.test

	aKey, cKey *federation.SigningKey
	toB        *http.Client // reaches b.test's federation listener for URLs naming b.test
}

func newAuthzFixture(t *testing.T) *authzFixture {
	zone := testdns.Start(t)
	f := &authzFixture{}
	f.a = startFederated(t, zone, "a.test", "", nil)
	f.b = startFederated(t, zone, "b.test", "", nil)
	f.c = startFederated(t, zone, "c.test", "", nil)
	a := f.a
	f.alice = a.register("alice", 20)
	f.alice2 = a.login("alice", 20)
	f.bob = a.register("bob", 20)
	f.carol = a.register("carol", 20)
	f.dave = a.register("dave", 20)
	f.erin = a.register("erin", 20)

	gone := a.login("alice", 0)
	a.must("POST", "/v1/logout", gone.token(), nil, nil)
	f.revoked = gone.token()
	removed := a.login("alice", 0)
	a.must("DELETE", fmt.Sprintf("/v1/devices/%d", removed.session.DeviceID), f.alice.token(),
		wire.RemoveDeviceRequest{Password: "correct horse"}, nil)
	f.removed = removed.token()

	g := f.alice.createGroup("G", "bob@a.test", "erin@a.test")
	f.group = g.ID
	a.must("PUT", "/v1/groups/"+g.ID+"/members/erin@a.test/role", f.alice.token(), wire.RoleRequest{Role: wire.RoleAdmin}, nil)
	a.must("POST", "/v1/groups/"+g.ID+"/invites", f.alice.token(), wire.GroupUsersRequest{Users: []string{"dave@a.test"}}, nil)
	// Something in alice's inbox, for the acknowledgement checks.
	a.must("POST", "/v1/messages", f.carol.token(), sendReq("c-1", "alice@a.test", f.alice.addr(), f.alice2.addr()), nil)
	// A direct conversation between alice and carol, which bob is not in.
	a.must("POST", "/v1/messages", f.alice.token(), sendReq("a-1", "carol@a.test", f.carol.addr(), f.alice2.addr()), nil)

	f.bert = f.b.register("bert", 20)
	f.fedGroup = f.bert.createGroup("FG", "alice@a.test").ID
	// alice administers FG, so that a.test may honestly change its metadata.
	f.b.must("PUT", "/v1/groups/"+f.fedGroup+"/members/alice@a.test/role", f.bert.token(), wire.RoleRequest{Role: wire.RoleAdmin}, nil)

	var err error
	if f.aKey, err = federation.LoadOrCreateKey(f.a.cfg.Data); err != nil {
		t.Fatal(err)
	}
	if f.cKey, err = federation.LoadOrCreateKey(f.c.cfg.Data); err != nil {
		t.Fatal(err)
	}
	baddr := f.b.addr
	f.toB = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, baddr)
	}}}
	return f
}

// ---- client routes ----

// clientEntry says how to call one client route and who must be refused.
type clientEntry struct {
	public bool // register and login need no token
	path   func(f *authzFixture) string
	body   func(f *authzFixture) any
	// cross are attempts by authenticated callers on someone else's
	// account, device or group. A route without any acts only on the
	// caller's own account; selfOnly says so, and why nothing else applies.
	cross    []crossAttempt
	selfOnly string
}

// crossAttempt is one authenticated caller that must not get through.
type crossAttempt struct {
	as     string // other_user, other_device, non_member, member, admin, non_invitee
	token  func(f *authzFixture) string
	path   func(f *authzFixture) string // default: the entry's
	body   func(f *authzFixture) any    // default: the entry's
	status int
	code   string                              // "" for a 2xx answer
	after  func(t *testing.T, f *authzFixture) // checks that nothing of the victim's changed
}

func fixed(s string) func(*authzFixture) string { return func(*authzFixture) string { return s } }
func none(*authzFixture) any                    { return nil }

func groupPath(suffix string) func(*authzFixture) string {
	return func(f *authzFixture) string { return "/v1/groups/" + f.group + suffix }
}

func tok(d func(f *authzFixture) *device) func(*authzFixture) string {
	return func(f *authzFixture) string { return d(f).token() }
}

var (
	asBob    = tok(func(f *authzFixture) *device { return f.bob })
	asCarol  = tok(func(f *authzFixture) *device { return f.carol })
	asErin   = tok(func(f *authzFixture) *device { return f.erin })
	asAlice1 = tok(func(f *authzFixture) *device { return f.alice })
)

// groupRefusals: a non-member (carol) gets not_member; a plain member
// (bob) forbidden; extra adds more.
func groupRefusals(member bool, extra ...crossAttempt) []crossAttempt {
	out := []crossAttempt{{as: "non_member", token: asCarol, status: 403, code: wire.CodeNotMember}}
	if member {
		out = append(out, crossAttempt{as: "member", token: asBob, status: 403, code: wire.CodeForbidden})
	}
	return append(out, extra...)
}

// stillMember checks that G's member list is as the fixture made it.
func groupUnchanged(t *testing.T, f *authzFixture) {
	t.Helper()
	var g wire.Group
	f.a.must("GET", "/v1/groups/"+f.group, f.alice.token(), nil, &g)
	var got []string
	for _, m := range g.Members {
		got = append(got, m.User+":"+m.Role)
	}
	sort.Strings(got)
	if want := "alice@a.test:owner bob@a.test:member erin@a.test:admin"; strings.Join(got, " ") != want || g.Name != "G" ||
		len(g.Invited) != 1 {
		t.Fatalf("group G changed: %v invited %v name %q", got, g.Invited, g.Name)
	}
}

func aliceInboxKept(t *testing.T, f *authzFixture) {
	t.Helper()
	if n := len(byType(f.alice.inbox(), wire.EventMessage)); n != 1 {
		t.Fatalf("alice's inbox has %d messages, want the 1 she never acknowledged", n)
	}
}

var clientTable = map[string]clientEntry{
	"POST /v1/register": {public: true, path: fixed("/v1/register"),
		body: func(*authzFixture) any { return wire.RegisterRequest{User: "newcomer", Password: "correct horse"} }},
	"POST /v1/login": {public: true, path: fixed("/v1/login"),
		body: func(*authzFixture) any { return wire.LoginRequest{User: "carol", Password: "correct horse"} }},
	"POST /v1/logout": {path: fixed("/v1/logout"), body: none, selfOnly: "removes the calling device"},
	"GET /v1/whoami":  {path: fixed("/v1/whoami"), body: none, selfOnly: "names the caller"},
	"GET /v1/devices": {path: fixed("/v1/devices"), body: none, selfOnly: "lists the caller's devices"},
	"DELETE /v1/devices/:id": {path: fixed("/v1/devices/2"), body: none, cross: []crossAttempt{
		// Another device of the same user needs the password.
		{as: "other_device", token: asAlice1, status: 403, code: wire.CodeBadCredentials},
		{as: "other_device", token: asAlice1, status: 403, code: wire.CodeBadCredentials,
			body: func(*authzFixture) any { return wire.RemoveDeviceRequest{Password: "wrong horse"} }},
		// Device numbers are per user: bob's own password gets him nowhere
		// near alice's device 2.
		{as: "other_user", token: asBob, status: 404, code: wire.CodeUnknownDevice,
			body: func(*authzFixture) any { return wire.RemoveDeviceRequest{Password: "correct horse"} },
			after: func(t *testing.T, f *authzFixture) {
				f.a.must("GET", "/v1/whoami", f.alice2.token(), nil, nil)
			}},
	}},
	// The key directory and profiles are readable by every local user:
	// that is how senders find devices to encrypt to.
	"GET /v1/users/:user/devices": {path: fixed("/v1/users/alice@a.test/devices"), body: none, cross: []crossAttempt{
		{as: "other_user", token: asBob, status: 200}}},
	"GET /v1/profile/:user": {path: fixed("/v1/profile/alice@a.test"), body: none, cross: []crossAttempt{
		{as: "other_user", token: asBob, status: 200}}},
	"PUT /v1/profile": {path: fixed("/v1/profile"), body: func(*authzFixture) any { return wire.Profile{DisplayName: "x"} },
		selfOnly: "changes the caller's profile"},
	"PUT /v1/keys":       {path: fixed("/v1/keys"), body: func(*authzFixture) any { return wire.KeyUpload{} }, selfOnly: "uploads the caller's device keys"},
	"GET /v1/keys/count": {path: fixed("/v1/keys/count"), body: none, selfOnly: "counts the caller's prekeys"},
	"POST /v1/keys/claim": {path: fixed("/v1/keys/claim"), body: func(*authzFixture) any { return wire.ClaimRequest{User: "alice@a.test"} },
		cross: []crossAttempt{{as: "other_user", token: asBob, status: 200}}},
	"POST /v1/messages": {path: fixed("/v1/messages"),
		body: func(f *authzFixture) any {
			return groupSend("x-1", f.group, []wire.DeviceAddress{f.alice.addr(), f.alice2.addr(), f.bob.addr(), f.erin.addr()})
		},
		cross: []crossAttempt{{as: "non_member", token: asCarol, status: 403, code: wire.CodeNotMember}}},
	"GET /v1/inbox": {path: fixed("/v1/inbox"), body: none, selfOnly: "pages the caller's own inbox"},
	"POST /v1/inbox/ack": {path: fixed("/v1/inbox/ack"),
		body: func(f *authzFixture) any {
			var ids []int64
			for _, e := range f.alice.inbox() {
				ids = append(ids, e.ID)
			}
			return wire.AckRequest{IDs: ids}
		},
		// Another user's event ids are ignored, not acknowledged.
		cross: []crossAttempt{{as: "other_user", token: asBob, status: 204, after: aliceInboxKept}}},
	"POST /v1/read": {path: fixed("/v1/read"),
		body: func(*authzFixture) any {
			return wire.ReadRequest{Conversation: directID("alice@a.test", "carol@a.test"), Seq: 1}
		},
		// A conversation the caller is not in does not exist for it.
		cross: []crossAttempt{
			{as: "other_user", token: asBob, status: 404, code: wire.CodeNotFound},
			{as: "non_member", token: asCarol, status: 404, code: wire.CodeNotFound,
				body: func(f *authzFixture) any { return wire.ReadRequest{Conversation: f.group, Seq: 1} }},
		}},
	"GET /v1/ws":         {path: fixed("/v1/ws"), body: none, selfOnly: "the caller's own socket"},
	"POST /v1/groups":    {path: fixed("/v1/groups"), body: func(*authzFixture) any { return wire.CreateGroupRequest{} }, selfOnly: "creates a group owned by the caller"},
	"GET /v1/groups":     {path: fixed("/v1/groups"), body: none, selfOnly: "lists the caller's groups"},
	"GET /v1/groups/:id": {path: groupPath(""), body: none, cross: groupRefusals(false)},
	"PUT /v1/groups/:id": {path: groupPath(""), body: func(*authzFixture) any { return wire.GroupMeta{Name: "taken"} },
		cross: groupRefusals(true, crossAttempt{as: "non_member", token: asCarol, status: 403, code: wire.CodeNotMember, after: groupUnchanged})},
	"DELETE /v1/groups/:id": {path: groupPath(""), body: none,
		cross: groupRefusals(true, crossAttempt{as: "admin", token: asErin, status: 403, code: wire.CodeForbidden, after: groupUnchanged})},
	"GET /v1/groups/:id/devices": {path: groupPath("/devices"), body: none, cross: groupRefusals(false)},
	"POST /v1/groups/:id/members": {path: groupPath("/members"),
		body:  func(*authzFixture) any { return wire.GroupUsersRequest{Users: []string{"carol@a.test"}} },
		cross: groupRefusals(true, crossAttempt{as: "non_member", token: asCarol, status: 403, code: wire.CodeNotMember, after: groupUnchanged})},
	"DELETE /v1/groups/:id/members/:user": {path: groupPath("/members/erin@a.test"), body: none,
		cross: groupRefusals(true,
			// An admin removes members, but not the owner.
			crossAttempt{as: "admin", token: asErin, path: groupPath("/members/alice@a.test"), status: 409, code: wire.CodeLastOwner,
				after: groupUnchanged})},
	"PUT /v1/groups/:id/members/:user/role": {path: groupPath("/members/bob@a.test/role"),
		body:  func(*authzFixture) any { return wire.RoleRequest{Role: wire.RoleAdmin} },
		cross: groupRefusals(true, crossAttempt{as: "member", token: asBob, status: 403, code: wire.CodeForbidden, after: groupUnchanged})},
	"POST /v1/groups/:id/invites": {path: groupPath("/invites"),
		body:  func(*authzFixture) any { return wire.GroupUsersRequest{Users: []string{"carol@a.test"}} },
		cross: groupRefusals(true)},
	"POST /v1/groups/:id/join": {path: groupPath("/join"), body: none, cross: []crossAttempt{
		{as: "non_invitee", token: asCarol, status: 403, code: wire.CodeNotInvited, after: groupUnchanged}}},
	"POST /v1/groups/:id/decline": {path: groupPath("/decline"), body: none, cross: []crossAttempt{
		{as: "non_invitee", token: asCarol, status: 403, code: wire.CodeNotInvited}}},
	"POST /v1/groups/:id/owner": {path: groupPath("/owner"),
		body:  func(*authzFixture) any { return wire.OwnerRequest{User: "erin@a.test"} },
		cross: groupRefusals(true, crossAttempt{as: "admin", token: asErin, status: 403, code: wire.CodeForbidden, after: groupUnchanged})},
}

// rawCall makes one request with an arbitrary Authorization header (or
// query token) and returns the status and error body.
func rawCall(t *testing.T, base, method, path, authz, queryToken string, body any) (int, wire.Error) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	u := base + path
	if queryToken != "" {
		u += "?access_token=" + url.QueryEscape(queryToken)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e wire.Error
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("%s %s: %d with a body that is not an error: %q", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, e
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- federation routes ----

// fedEntry says how to call one federation route on b.test and what a
// valid server speaking for what is not its own must get.
type fedEntry struct {
	public bool // the key document is unsigned
	method string
	path   func(f *authzFixture) string
	body   func(f *authzFixture, origin string) []byte // nil: no body
	// forged are requests correctly signed by c.test (a valid server) for
	// a user or group that is not c.test's to speak for.
	forged []fedAttempt
}

type fedAttempt struct {
	what   string
	path   func(f *authzFixture) string // default: the entry's
	body   func(f *authzFixture, origin string) []byte
	status int
	code   string
	check  func(t *testing.T, f *authzFixture, data []byte) // for 200 answers
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func forwardFor(sender, to string) wire.FedItem {
	now := time.Now()
	return wire.FedItem{Kind: wire.FedForward, Conversation: directID(sender, to), Sender: sender, SenderDevice: 1,
		ClientID: "forged-" + sender, To: to, SentAt: &now,
		Envelopes: []wire.Envelope{{User: to, Device: 1, Type: wire.CiphertextWhisper, Body: []byte("forged")}}}
}

var fedTable = map[string]fedEntry{
	"GET " + federation.KeyPath: {public: true, method: "GET", path: fixed(federation.KeyPath)},
	"PUT /v1/federation/send/{txn}": {method: "PUT",
		path: func(*authzFixture) string { return "/v1/federation/send/" + randomToken()[:12] },
		body: func(_ *authzFixture, origin string) []byte {
			return jsonBody(wire.Transaction{Origin: origin, Destination: "b.test", Items: []wire.FedItem{}})
		},
		forged: []fedAttempt{
			{what: "an item speaking for a.test's user", status: 200,
				body: func(_ *authzFixture, origin string) []byte {
					return jsonBody(wire.Transaction{Origin: origin, Destination: "b.test",
						Items: []wire.FedItem{forwardFor("alice@a.test", "bert@b.test")}})
				},
				check: func(t *testing.T, f *authzFixture, data []byte) {
					var res wire.TransactionResult
					json.Unmarshal(data, &res)
					if len(res.Refused) != 1 || res.Refused[0].Code != wire.CodeForbidden {
						t.Fatalf("forged item not refused: %s", data)
					}
					if n := len(byType(f.bert.inbox(), wire.EventMessage)); n != 0 {
						t.Fatalf("bert got %d forged messages", n)
					}
				}},
			{what: "a transaction naming a.test as its origin", status: 403, code: wire.CodeForbidden,
				body: func(*authzFixture, string) []byte {
					return jsonBody(wire.Transaction{Origin: "a.test", Destination: "b.test",
						Items: []wire.FedItem{forwardFor("alice@a.test", "bert@b.test")}})
				}},
		}},
	"GET /v1/federation/users/{user}/devices": {method: "GET", path: fixed("/v1/federation/users/bert@b.test/devices"),
		forged: []fedAttempt{{what: "another domain's user", path: fixed("/v1/federation/users/alice@a.test/devices"),
			status: 403, code: wire.CodeForbidden}}},
	"POST /v1/federation/keys/claim": {method: "POST", path: fixed("/v1/federation/keys/claim"),
		body: func(*authzFixture, string) []byte { return jsonBody(wire.ClaimRequest{User: "bert@b.test"}) },
		forged: []fedAttempt{{what: "another domain's user", status: 403, code: wire.CodeForbidden,
			body: func(*authzFixture, string) []byte { return jsonBody(wire.ClaimRequest{User: "alice@a.test"}) }}}},
	"GET /v1/federation/profile/{user}": {method: "GET", path: fixed("/v1/federation/profile/bert@b.test"),
		forged: []fedAttempt{{what: "another domain's user", path: fixed("/v1/federation/profile/alice@a.test"),
			status: 403, code: wire.CodeForbidden}}},
	"GET /v1/federation/groups/{group}/devices": {method: "GET",
		path: func(f *authzFixture) string {
			return "/v1/federation/groups/" + f.fedGroup + "/devices?member=" + url.QueryEscape("alice@a.test")
		},
		forged: []fedAttempt{
			{what: "asking as a.test's member", status: 403, code: wire.CodeForbidden},
			{what: "for its own user, who is no member", status: 403, code: wire.CodeNotMember,
				path: func(f *authzFixture) string {
					return "/v1/federation/groups/" + f.fedGroup + "/devices?member=" + url.QueryEscape("carl@c.test")
				}},
		}},
	"POST /v1/federation/groups/{group}/op": {method: "POST",
		path: func(f *authzFixture) string { return "/v1/federation/groups/" + f.fedGroup + "/op" },
		body: func(*authzFixture, string) []byte {
			return jsonBody(wire.GroupOp{Op: wire.OpMetadata, Actor: "alice@a.test", Meta: &wire.GroupMeta{Name: "FG"}})
		},
		forged: []fedAttempt{
			{what: "acting as a.test's member", status: 403, code: wire.CodeForbidden},
			{what: "for its own user, who is no member", status: 403, code: wire.CodeNotMember,
				body: func(*authzFixture, string) []byte {
					return jsonBody(wire.GroupOp{Op: wire.OpMetadata, Actor: "carl@c.test", Meta: &wire.GroupMeta{Name: "taken"}})
				}},
		}},
}

// fedDo sends one request to b.test's federation listener; sign (if not
// nil) signs it. It returns the status, the error body and the raw body.
func (f *authzFixture) fedDo(t *testing.T, method, path string, body []byte, sign func(*http.Request, []byte)) (int, wire.Error, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://b.test"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if sign != nil {
		sign(req, body)
	}
	resp, err := f.toB.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e wire.Error
	if resp.StatusCode >= 300 {
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("%s %s: %d with a body that is not an error: %q", method, path, resp.StatusCode, data)
		}
	}
	return resp.StatusCode, e, data
}

// signer signs as origin with key for destination at time at.
func signer(t *testing.T, origin, destination string, key *federation.SigningKey, at time.Time) func(*http.Request, []byte) {
	return func(req *http.Request, body []byte) {
		if err := federation.Sign(req, body, origin, destination, key, at); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAuthorizationMatrix(t *testing.T) {
	f := newAuthzFixture(t)

	// Every registered route has an entry, and every entry a route.
	routes := map[string]bool{}
	for _, r := range f.a.node.ClientRoutes() {
		routes[r.String()] = true
		if _, ok := clientTable[r.String()]; !ok {
			t.Errorf("client route %s has no entry in the authorization matrix", r)
		}
	}
	for k := range clientTable {
		if !routes[k] {
			t.Errorf("authorization matrix entry %s: no such client route", k)
		}
	}
	fedRoutes := map[string]bool{}
	for _, p := range f.b.node.FederationRoutes() {
		fedRoutes[p] = true
		if _, ok := fedTable[p]; !ok {
			t.Errorf("federation route %s has no entry in the authorization matrix", p)
		}
	}
	for k := range fedTable {
		if !fedRoutes[k] {
			t.Errorf("authorization matrix entry %s: no such federation route", k)
		}
	}
	if len(routes) == 0 || len(fedRoutes) == 0 {
		t.Fatal("no routes registered")
	}
	if t.Failed() {
		return
	}

	for _, r := range f.a.node.ClientRoutes() {
		e := clientTable[r.String()]
		t.Run("client "+r.String(), func(t *testing.T) {
			path, body := e.path(f), e.body(f)
			if e.public {
				// No token needed; a revoked one changes nothing.
				if st, errb := rawCall(t, f.a.url, r.Method, path, "Bearer "+f.revoked, "", body); st == 401 {
					t.Fatalf("public route refused a request: %d %+v", st, errb)
				}
				return
			}
			if len(e.cross) == 0 && e.selfOnly == "" {
				t.Fatal("an authenticated route needs cross-caller attempts or a selfOnly reason")
			}
			for _, c := range []struct {
				as, authz, query string
				code             string
			}{
				{"no token", "", "", wire.CodeMissingToken},
				{"not a bearer token", "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:correct horse")), "", wire.CodeMissingToken},
				{"empty bearer token", "Bearer ", "", wire.CodeMissingToken},
				{"unknown token", "Bearer " + randomToken(), "", wire.CodeUnknownToken},
				{"revoked token (logged out)", "Bearer " + f.revoked, "", wire.CodeUnknownToken},
				{"revoked token (device removed)", "Bearer " + f.removed, "", wire.CodeUnknownToken},
				{"revoked token in the query", "", f.revoked, wire.CodeUnknownToken},
				{"another token's prefix", "Bearer " + f.alice.token()[:20], "", wire.CodeUnknownToken},
			} {
				if st, errb := rawCall(t, f.a.url, r.Method, path, c.authz, c.query, body); st != 401 || errb.Code != c.code {
					t.Errorf("%s: got %d %q (%s), want 401 %q", c.as, st, errb.Code, errb.Message, c.code)
				}
			}
			for _, c := range e.cross {
				p, b := path, body
				if c.path != nil {
					p = c.path(f)
				}
				if c.body != nil {
					b = c.body(f)
				}
				st, errb := rawCall(t, f.a.url, r.Method, p, "Bearer "+c.token(f), "", b)
				if st != c.status || errb.Code != c.code {
					t.Errorf("%s: got %d %q (%s), want %d %q", c.as, st, errb.Code, errb.Message, c.status, c.code)
				}
				if c.after != nil {
					c.after(t, f)
				}
			}
		})
	}

	stranger, err := federation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.b.node.FederationRoutes() {
		e := fedTable[p]
		t.Run("federation "+p, func(t *testing.T) {
			path := e.path(f)
			var body []byte
			if e.body != nil {
				body = e.body(f, "a.test")
			}
			now := time.Now()
			if e.public {
				if st, errb, _ := f.fedDo(t, e.method, path, nil, nil); st != 200 {
					t.Fatalf("public route: %d %+v", st, errb)
				}
				return
			}
			// The honest request works, once.
			req, err := http.NewRequest(e.method, "http://b.test"+path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			signer(t, "a.test", "b.test", f.aKey, now)(req, body)
			honest := req.Header.Clone()
			if st, errb, data := f.fedDo(t, e.method, path, body, func(r *http.Request, _ []byte) { r.Header = honest.Clone() }); st != 200 {
				t.Fatalf("honest request: %d %+v %s", st, errb, data)
			}
			tampered := append(bytes.Clone(body), ' ')
			for _, c := range []struct {
				as     string
				body   []byte
				sign   func(*http.Request, []byte)
				status int
				code   string
			}{
				{"unsigned", body, nil, 401, wire.CodeUnauthenticated},
				{"replayed", body, func(r *http.Request, _ []byte) { r.Header = honest.Clone() }, 409, wire.CodeReplayed},
				{"signed with a key that is not a.test's", body, signer(t, "a.test", "b.test", stranger, now), 401, wire.CodeUnauthenticated},
				{"stale signature", body, signer(t, "a.test", "b.test", f.aKey, now.Add(-10*time.Minute)), 401, wire.CodeUnauthenticated},
				{"signature from the future", body, signer(t, "a.test", "b.test", f.aKey, now.Add(10*time.Minute)), 401, wire.CodeUnauthenticated},
				{"signed for another destination", body, signer(t, "a.test", "c.test", f.aKey, now), 421, wire.CodeWrongDestination},
				{"body changed after signing", tampered, func(r *http.Request, _ []byte) {
					signer(t, "a.test", "b.test", f.aKey, now)(r, body)
				}, 400, wire.CodeBadDigest},
				{"c.test's valid key claiming to be a.test", body, signer(t, "a.test", "b.test", f.cKey, now), 401, wire.CodeUnauthenticated},
			} {
				if st, errb, _ := f.fedDo(t, e.method, path, c.body, c.sign); st != c.status || errb.Code != c.code {
					t.Errorf("%s: got %d %q (%s), want %d %q", c.as, st, errb.Code, errb.Message, c.status, c.code)
				}
			}
			if len(e.forged) == 0 {
				t.Fatal("a signed route needs attempts by a valid server speaking for others")
			}
			for _, c := range e.forged {
				fp, fb := path, []byte(nil)
				if e.body != nil {
					fb = e.body(f, "c.test")
				}
				if c.path != nil {
					fp = c.path(f)
				}
				if c.body != nil {
					fb = c.body(f, "c.test")
				}
				st, errb, data := f.fedDo(t, e.method, fp, fb, signer(t, "c.test", "b.test", f.cKey, time.Now()))
				if st != c.status || errb.Code != c.code {
					t.Errorf("c.test %s: got %d %q (%s), want %d %q", c.what, st, errb.Code, errb.Message, c.status, c.code)
				}
				if c.check != nil {
					c.check(t, f, data)
				}
			}
		})
	}
	// After every refusal, G is as it was and alice still has her devices.
	groupUnchanged(t, f)
	aliceInboxKept(t, f)
	var devs wire.DeviceList
	f.a.must("GET", "/v1/devices", f.alice2.token(), nil, &devs)
	if len(devs.Devices) != 2 {
		t.Fatalf("alice's devices after the matrix: %+v", devs)
	}
}
