package integration

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/parleychat/parley/federation"
	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/wire"
)

// Secrets never reach the logs: two federated servers log at debug level
// through registration, logins (good and bad), key uploads, sends in both
// directions, a socket authenticated in its URL, refused requests, an
// outage and logout; no access token, password, server private key or
// ciphertext may appear in anything they logged.
func TestSecretsNeverLogged(t *testing.T) {
	zone := testdns.Start(t)
	a := startFederated(t, zone, "a.test", "", nil)
	b := startFederated(t, zone, "b.test", "", nil)
	var secrets []string
	secret := func(what string, v string) {
		if len(v) < 8 {
			t.Fatalf("secret %s too short to search for: %q", what, v)
		}
		secrets = append(secrets, what+"\x00"+v)
	}

	alice := a.register("alice", 20)
	alice2 := a.login("alice", 20)
	bob := b.register("bob", 20)
	secret("password", "correct horse")
	// A password chosen to be found if logged, and a wrong one.
	var carol wire.Session
	a.must("POST", "/v1/register", "", wire.RegisterRequest{User: "carol", Password: "carol-canary-password-1"}, &carol)
	secret("password", "carol-canary-password-1")
	a.refused(403, wire.CodeBadCredentials, "POST", "/v1/login", "", wire.LoginRequest{User: "carol", Password: "wrong-canary-password-2"})
	secret("wrong password", "wrong-canary-password-2")
	a.refused(403, wire.CodeBadCredentials, "POST", "/v1/login", "", wire.LoginRequest{User: "nobody", Password: "unknown-user-canary-3"})
	secret("password of an unknown user", "unknown-user-canary-3")
	unknown := randomToken()
	a.refused(401, wire.CodeUnknownToken, "GET", "/v1/whoami", unknown, nil)
	secret("unknown token", unknown)

	// Messages both ways across the servers, a socket with its token in
	// the query, receipts.
	var bodies [][]byte
	send := func(srv *fedServer, d *device, clientID, to, text string, targets ...*device) {
		req := d.encryptFor(clientID, to, text, targets...)
		for _, e := range req.Envelopes {
			bodies = append(bodies, e.Body)
		}
		srv.must("POST", "/v1/messages", d.token(), req, nil)
	}
	send(a, alice, "s1", "bob@b.test", "secret plaintext one", bob, alice2)
	send(b, bob, "s2", "alice@a.test", "secret plaintext two", alice, alice2)
	u := "ws" + strings.TrimPrefix(b.url, "http") + "/v1/ws?access_token=" + bob.token()
	conn, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for {
		var ev wire.Event
		if err := conn.ReadJSON(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.ID > 0 {
			conn.WriteJSON(wire.ClientFrame{Type: wire.FrameAck, IDs: []int64{ev.ID}})
		}
		if ev.Type == wire.EventCaughtUp {
			break
		}
	}
	conn.Close()
	waitInbox(t, alice, "bob's message", countMessages(1))
	// A refused send and a federation outage make the servers log errors.
	a.refused(409, wire.CodeStaleDevices, "POST", "/v1/messages", alice.token(), alice.encryptFor("s3", "bob@b.test", "stale", bob))
	b.stop()
	send(a, alice, "s4", "bob@b.test", "secret plaintext four", bob, alice2)
	eventually(t, "a.test to notice b.test is down", func() bool {
		for _, st := range a.node.FederationStatus() {
			if st.Destination == "b.test" && st.Failing {
				return true
			}
		}
		return false
	})
	a.must("POST", "/v1/logout", alice2.token(), nil, nil)
	a.refused(401, wire.CodeUnknownToken, "GET", "/v1/whoami", alice2.token(), nil)

	for _, d := range []*device{alice, alice2, bob} {
		secret("access token", d.token())
	}
	secret("access token", carol.AccessToken)
	for _, body := range bodies {
		secret("ciphertext (base64)", base64.StdEncoding.EncodeToString(body)[:24])
		secret("ciphertext (hex)", hex.EncodeToString(body)[:32])
	}
	for _, s := range []*fedServer{a, b} {
		data, err := os.ReadFile(filepath.Join(s.cfg.Data, federation.KeyFileName))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		seed := k.(ed25519.PrivateKey).Seed()
		secret("federation key (PEM)", base64.StdEncoding.EncodeToString(block.Bytes)[20:60])
		secret("federation key seed", base64.StdEncoding.EncodeToString(seed)[:24])
		secret("federation key seed (base64url)", base64.RawURLEncoding.EncodeToString(seed)[:24])
		secret("federation key seed (hex)", hex.EncodeToString(seed)[:32])
	}

	for _, s := range []*fedServer{a, b} {
		logs := s.logs.String()
		if !strings.Contains(logs, "alice@a.test") && !strings.Contains(logs, "bob@b.test") {
			t.Fatalf("%s logged nothing useful; the check would prove nothing:\n%s", s.domain, logs)
		}
		for _, sec := range secrets {
			what, v, _ := strings.Cut(sec, "\x00")
			if strings.Contains(logs, v) {
				t.Errorf("%s logged a secret, %s: %q", s.domain, what, v)
			}
		}
	}
}
