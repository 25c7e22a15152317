package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/testdns"
	"github.com/parleychat/parley/setup"
	"github.com/parleychat/parley/wire"
)

// testCA is a private certificate authority for federation over TLS.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	pemPath string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Parley test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return &testCA{cert: cert, key: key, pemPath: path}
}

// issue writes a certificate for domain (and its key) and returns their paths.
func (ca *testCA) issue(t *testing.T, domain string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: domain},
		DNSNames: []string{domain}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certPath, keyPath
}

// Federation over TLS, as in production: each listener has a certificate
// for its domain from a private CA that the other server trusts through
// federation_ca; no insecure switch.
func TestFederationOverTLS(t *testing.T) {
	zone := testdns.Start(t)
	ca := newTestCA(t)
	tlsFor := func(domain string) option {
		cert, key := ca.issue(t, domain)
		return func(c *setup.Config) {
			c.FederationInsecure = false
			c.TLSCert, c.TLSKey, c.FederationCA = cert, key, ca.pemPath
		}
	}
	a := startFederated(t, zone, "a.test", "", nil, tlsFor("a.test"))
	b := startFederated(t, zone, "b.test", "", nil, tlsFor("b.test"))
	if u := a.node.FederationURL(); u[:8] != "https://" {
		t.Fatalf("federation URL %s is not https", u)
	}
	alice := a.register("alice", 20)
	bob := b.register("bob", 20)
	a.must("POST", "/v1/messages", alice.token(), alice.encryptFor("tls1", "bob@b.test", "over TLS", bob), nil)
	msgs := byType(waitInbox(t, bob, "the message over TLS", countMessages(1)), wire.EventMessage)
	if bob.decrypt(msgs[0]) != "over TLS" {
		t.Fatalf("got %+v", msgs[0])
	}

	// A server whose certificate is not for its domain is not trusted.
	wrongCert, wrongKey := ca.issue(t, "elsewhere.test")
	m := startFederated(t, zone, "m.test", "", nil, func(c *setup.Config) {
		c.FederationInsecure = false
		c.TLSCert, c.TLSKey, c.FederationCA = wrongCert, wrongKey, ca.pemPath
	})
	mallory := m.register("mallory", 20)
	status, e := a.call("GET", "/v1/users/mallory@m.test/devices", alice.token(), nil, nil)
	if status != 503 || e.Code != wire.CodeUnavailable {
		t.Fatalf("a.test reached m.test despite a certificate for another name: %d %+v", status, e)
	}
	_ = mallory
}
