package setup

import "crypto/tls"

// modernCipherSuites are the TLS 1.2 suites both listeners offer: forward
// secret (ECDHE) and authenticated encryption (AES-GCM, ChaCha20-Poly1305)
// only; no CBC, no RSA key exchange, no 3DES or RC4. TLS 1.3 suites are
// not configurable in Go and are all modern.
var modernCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// serverTLS is the TLS configuration of the client and federation
// listeners: TLS 1.2 or later with modern suites only.
func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: modernCipherSuites,
		Certificates: []tls.Certificate{cert},
	}
}

// dialTLS is the TLS configuration for dialling other homeservers.
func dialTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: modernCipherSuites}
}
