package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/parleychat/parley/wire"
)

func TestRegisterLoginAndDevices(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 5)
	if alice.session.UserID != "alice@localhost" || alice.session.DeviceID != 1 {
		t.Fatalf("register: %+v", alice.session)
	}
	second := s.login("alice", 5)
	if second.session.DeviceID != 2 {
		t.Fatalf("login gave device %d, want 2", second.session.DeviceID)
	}
	var who wire.WhoAmI
	s.must("GET", "/v1/whoami", second.token(), nil, &who)
	if who.UserID != "alice@localhost" || who.DeviceID != 2 {
		t.Fatalf("whoami: %+v", who)
	}
	var list wire.DeviceList
	s.must("GET", "/v1/devices", alice.token(), nil, &list)
	if len(list.Devices) != 2 || !list.Devices[0].Current || list.Devices[1].Current || !list.Devices[1].HasKeys {
		t.Fatalf("devices: %+v", list.Devices)
	}

	// Removing another device needs the password; removing one's own does not.
	s.refused(403, wire.CodeBadCredentials, "DELETE", "/v1/devices/2", alice.token(), nil)
	s.refused(404, wire.CodeUnknownDevice, "DELETE", "/v1/devices/9", alice.token(), wire.RemoveDeviceRequest{Password: "correct horse"})
	s.must("DELETE", "/v1/devices/2", alice.token(), wire.RemoveDeviceRequest{Password: "correct horse"}, nil)
	s.refused(401, wire.CodeUnknownToken, "GET", "/v1/whoami", second.token(), nil)

	// Logout removes the calling device; its token stops working at once.
	s.must("POST", "/v1/logout", alice.token(), nil, nil)
	s.refused(401, wire.CodeUnknownToken, "GET", "/v1/whoami", alice.token(), nil)
	third := s.login("alice", 1)
	if third.session.DeviceID != 3 {
		t.Fatalf("device numbers must never be reused: got %d, want 3", third.session.DeviceID)
	}

	var p wire.Profile
	s.must("PUT", "/v1/profile", third.token(), wire.Profile{DisplayName: "Alice A."}, &p)
	s.must("GET", "/v1/profile/alice@localhost", third.token(), nil, &p)
	if p.DisplayName != "Alice A." || p.UserID != "alice@localhost" {
		t.Fatalf("profile: %+v", p)
	}
}

// Every kind of bad input gets its documented code and status, and the
// server keeps serving.
func TestBadInput(t *testing.T) {
	s := startServer(t, "")
	alice := s.register("alice", 1)
	tok := alice.token()
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"malformed json", "POST", "/v1/register", "", `{"user":`, 400, wire.CodeBadJSON},
		{"empty body", "POST", "/v1/register", "", ``, 400, wire.CodeBadJSON},
		{"wrong type", "POST", "/v1/register", "", `{"user":5,"password":"correct horse"}`, 400, wire.CodeBadJSON},
		{"trailing data", "POST", "/v1/register", "", `{"user":"x","password":"correct horse"} {}`, 400, wire.CodeBadJSON},
		{"oversized body", "POST", "/v1/register", "", `{"user":"` + strings.Repeat("a", wire.MaxRequestBytes) + `"}`, 413, wire.CodeTooLarge},
		{"name with space", "POST", "/v1/register", "", wire.RegisterRequest{User: "al ice", Password: "correct horse"}, 400, wire.CodeInvalidUsername},
		{"name too long", "POST", "/v1/register", "", wire.RegisterRequest{User: strings.Repeat("a", 65), Password: "correct horse"}, 400, wire.CodeInvalidUsername},
		{"name of another domain", "POST", "/v1/register", "", wire.RegisterRequest{User: "bob@elsewhere.example", Password: "correct horse"}, 400, wire.CodeInvalidUsername},
		{"name like a group id", "POST", "/v1/register", "", wire.RegisterRequest{User: "g-team", Password: "correct horse"}, 400, wire.CodeInvalidUsername},
		{"empty name", "POST", "/v1/register", "", wire.RegisterRequest{Password: "correct horse"}, 400, wire.CodeInvalidUsername},
		{"short password", "POST", "/v1/register", "", wire.RegisterRequest{User: "bob", Password: "short"}, 400, wire.CodeWeakPassword},
		{"taken name", "POST", "/v1/register", "", wire.RegisterRequest{User: "ALICE", Password: "correct horse"}, 409, wire.CodeUserInUse},
		{"wrong password", "POST", "/v1/login", "", wire.LoginRequest{User: "alice", Password: "wrong horse"}, 403, wire.CodeBadCredentials},
		{"unknown user login", "POST", "/v1/login", "", wire.LoginRequest{User: "nobody", Password: "correct horse"}, 403, wire.CodeBadCredentials},
		{"no token", "GET", "/v1/whoami", "", nil, 401, wire.CodeMissingToken},
		{"bad token", "GET", "/v1/whoami", "not-a-token", nil, 401, wire.CodeUnknownToken},
		{"unknown route", "GET", "/v1/nothing", tok, nil, 404, wire.CodeNotFound},
		{"wrong method", "DELETE", "/v1/register", "", nil, 405, wire.CodeMethodNotAllowed},
		{"bad device id", "DELETE", "/v1/devices/zero", tok, nil, 400, wire.CodeInvalidParam},
		{"unknown profile", "GET", "/v1/profile/nobody@localhost", tok, nil, 404, wire.CodeUnknownUser},
		{"not a user id", "GET", "/v1/profile/nobody", tok, nil, 400, wire.CodeInvalidParam},
		{"remote user", "GET", "/v1/users/bob@elsewhere.example/devices", tok, nil, 501, wire.CodeUnsupported},
		{"display name with newline", "PUT", "/v1/profile", tok, wire.Profile{DisplayName: "a\nb"}, 400, wire.CodeInvalidParam},
		{"bad inbox cursor", "GET", "/v1/inbox?after=-1", tok, nil, 400, wire.CodeInvalidParam},
		{"bad inbox limit", "GET", "/v1/inbox?limit=5000", tok, nil, 400, wire.CodeInvalidParam},
		{"too many acks", "POST", "/v1/inbox/ack", tok, wire.AckRequest{IDs: make([]int64, 1001)}, 400, wire.CodeInvalidParam},
		{"read of unknown conversation", "POST", "/v1/read", tok, wire.ReadRequest{Conversation: "d-0", Seq: 1}, 404, wire.CodeNotFound},
		{"read of seq 0", "POST", "/v1/read", tok, wire.ReadRequest{Conversation: "d-0"}, 400, wire.CodeInvalidParam},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.t = t
			s.refused(c.status, c.code, c.method, c.path, c.token, c.body)
		})
	}
	s.t = t
	// Still serving, and nothing half-written: bob was never created.
	s.refused(404, wire.CodeUnknownUser, "GET", "/v1/profile/bob@localhost", tok, nil)
	var who wire.WhoAmI
	s.must("GET", "/v1/whoami", tok, nil, &who)
	_ = http.StatusOK
}
