package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/parleychat/parley/e2ee"
	"github.com/parleychat/parley/wire"
)

// freshUpload makes a valid first upload from a new Signal identity.
func freshUpload(t *testing.T, n int) wire.KeyUpload {
	t.Helper()
	st, err := e2ee.OpenStore(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.CreateIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	up, err := st.KeyUpload(ctx, true, n)
	if err != nil {
		t.Fatal(err)
	}
	return up
}

func TestKeyUploadValidation(t *testing.T) {
	s := startServer(t, "")
	var sess wire.Session
	s.must("POST", "/v1/register", "", wire.RegisterRequest{User: "alice", Password: "correct horse"}, &sess)
	tok := sess.AccessToken

	good := freshUpload(t, 3)
	flipped := good
	spk := *good.SignedPreKey
	spk.Signature = append([]byte(nil), spk.Signature...)
	spk.Signature[5] ^= 1
	flipped.SignedPreKey = &spk
	shortKey := good
	shortKey.IdentityKey = good.IdentityKey[:32]
	noSPK := good
	noSPK.SignedPreKey = nil
	zeroID := good
	zeroID.PreKeys = []wire.PreKey{{ID: 0, PublicKey: good.PreKeys[0].PublicKey}}
	dupID := good
	dupID.PreKeys = []wire.PreKey{good.PreKeys[0], good.PreKeys[0]}
	tooMany := good
	tooMany.PreKeys = make([]wire.PreKey, wire.MaxPreKeysPerUpload+1)
	badPre := good
	badPre.PreKeys = []wire.PreKey{{ID: 7, PublicKey: []byte("short")}}
	otherIdentity := freshUpload(t, 0) // signed by another identity key
	mixed := good
	mixed.SignedPreKey = otherIdentity.SignedPreKey

	for _, c := range []struct {
		name   string
		up     any
		status int
		code   string
	}{
		{"flipped signature bit", flipped, 400, wire.CodeBadSignature},
		{"signed by another identity", mixed, 400, wire.CodeBadSignature},
		{"identity key too short", shortKey, 400, wire.CodeBadKey},
		{"first upload without signed prekey", noSPK, 400, wire.CodeKeysRequired},
		{"prekey id 0", zeroID, 400, wire.CodeInvalidParam},
		{"prekey id twice", dupID, 400, wire.CodeInvalidParam},
		{"too many prekeys", tooMany, 400, wire.CodeTooManyPreKeys},
		{"malformed prekey", badPre, 400, wire.CodeBadKey},
		{"not base64", `{"identity_key":"%%%"}`, 400, wire.CodeBadJSON},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.t = t
			s.refused(c.status, c.code, "PUT", "/v1/keys", tok, c.up)
		})
	}
	s.t = t
	// Nothing of the refused uploads was stored: the device has no keys.
	var list wire.DeviceList
	s.must("GET", "/v1/devices", tok, nil, &list)
	if list.Devices[0].HasKeys {
		t.Fatal("a refused upload left keys behind")
	}
	var count wire.PreKeyCount
	s.must("PUT", "/v1/keys", tok, good, &count)
	if count.Count != 3 {
		t.Fatalf("count after upload = %d, want 3", count.Count)
	}
	// Replenishing needs no identity; the stored total is capped.
	more := wire.KeyUpload{}
	for i := range wire.MaxPreKeysPerUpload {
		more.PreKeys = append(more.PreKeys, wire.PreKey{ID: uint32(1000 + i), PublicKey: good.PreKeys[0].PublicKey})
	}
	for range 4 {
		s.must("PUT", "/v1/keys", tok, more, &count)
		for i := range more.PreKeys {
			more.PreKeys[i].ID += wire.MaxPreKeysPerUpload
		}
	}
	s.refused(400, wire.CodeTooManyPreKeys, "PUT", "/v1/keys", tok, more)
	s.must("GET", "/v1/keys/count", tok, nil, &count)
	if count.Count != 3+4*wire.MaxPreKeysPerUpload {
		t.Fatalf("count = %d after a refused upload", count.Count)
	}
}

// Concurrent claims never hand out one one-time prekey twice; once the
// device runs out, bundles come without one and the device is told to
// replenish.
func TestPreKeyExhaustionAndConcurrentClaims(t *testing.T) {
	s := startServer(t, "")
	bob := s.register("bob", 30)
	bobSock := bob.dial()
	bobSock.keepLow = true
	bobSock.until(wire.EventCaughtUp)

	const claimers = 8
	var claimersDevs []*device
	for i := range claimers {
		claimersDevs = append(claimersDevs, s.register(fmt.Sprintf("c%d", i), 1))
	}
	var mu sync.Mutex
	seen := map[uint32]int{}
	without := 0
	var wg sync.WaitGroup
	for _, c := range claimersDevs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				var res wire.ClaimResponse
				if status, e := s.call("POST", "/v1/keys/claim", c.token(), wire.ClaimRequest{User: "bob@localhost"}, &res); status != 200 {
					t.Errorf("claim: %d %s", status, e.Code)
					return
				}
				mu.Lock()
				for _, b := range res.Bundles {
					if b.PreKey == nil {
						without++
					} else {
						seen[b.PreKey.ID]++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 30 || without != claimers*5-30 {
		t.Fatalf("%d distinct prekeys and %d bundles without; want 30 and %d", len(seen), without, claimers*5-30)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("prekey %d handed out %d times", id, n)
		}
	}
	// A bundle without a one-time prekey still starts a session (X3DH
	// allows it).
	var res wire.ClaimResponse
	s.must("POST", "/v1/keys/claim", claimersDevs[0].token(), wire.ClaimRequest{User: "bob@localhost", Devices: []uint32{1}}, &res)
	if len(res.Bundles) != 1 || res.Bundles[0].PreKey != nil {
		t.Fatalf("bundle after exhaustion: %+v", res.Bundles)
	}
	if err := claimersDevs[0].store.ProcessBundle(context.Background(), res.Bundles[0]); err != nil {
		t.Fatalf("session from a bundle without one-time prekey: %v", err)
	}
	ev := bobSock.next()
	if ev.Type != wire.EventPreKeysLow || ev.Count >= wire.PreKeyLowThreshold {
		t.Fatalf("bob got %+v, want prekeys_low", ev)
	}
	s.refused(404, wire.CodeUnknownDevice, "POST", "/v1/keys/claim", bob.token(), wire.ClaimRequest{User: "bob@localhost", Devices: []uint32{9}})
	s.refused(404, wire.CodeUnknownUser, "POST", "/v1/keys/claim", bob.token(), wire.ClaimRequest{User: "zed@localhost"})
	s.refused(400, wire.CodeBadJSON, "POST", "/v1/keys/claim", bob.token(), `{"user":["x"]}`)

	// A new connection with a low count is told at once.
	bobSock.conn.Close()
	again := bob.dial()
	again.keepLow = true
	if ev := again.next(); ev.Type != wire.EventPreKeysLow {
		t.Fatalf("first event on reconnect: %+v, want prekeys_low", ev)
	}
	var ud wire.UserDevices
	s.must("GET", "/v1/users/bob@localhost/devices", bob.token(), nil, &ud)
	if len(ud.Devices) != 1 || len(ud.Devices[0].IdentityKey) != 33 {
		t.Fatalf("user devices: %+v", ud)
	}
}
