// Package federation is Parley's server-to-server layer: discovery of a
// domain's federation endpoint through DNS, the server signing key and its
// published document, and signed requests.
//
// The text between the rulers is written to be moved into
// docs/federation.md as it stands.
//
// ---------------------------------------------------------------------
//
// # Discovery
//
// A homeserver is named by its domain (the part after "@" in a user id).
// To reach domain D, a server looks up the DNS SRV record
// `_parley._tcp.D`:
//
//	_parley._tcp.example.org. 3600 IN SRV 10 5 8448 fed1.example.org.
//	_parley._tcp.example.org. 3600 IN SRV 10 1 8448 fed2.example.org.
//	_parley._tcp.example.org. 3600 IN SRV 20 0 443  backup.example.net.
//
// Targets are tried by priority (lowest first) and, within a priority, in
// RFC 2782 weighted random order. The target host is resolved to A and
// AAAA records (IPv4 first) through the same resolver. Without an SRV
// record (NXDOMAIN, or the name has no SRV records) the endpoint is
// `D:8448`. A domain written with a port (`example.org:9000`) or an IP
// literal skips the SRV lookup. An SRV record whose target is "." says the
// domain runs no federation endpoint. A DNS timeout or server failure is
// an error, not a reason to fall back to port 8448; a cached answer up to
// an hour past its expiry is used instead when there is one.
//
// Lookups go to the resolver given by `--dns-resolver HOST:PORT`, or to
// the name servers in /etc/resolv.conf. Answers, positive and negative,
// are cached for their TTL (for negative answers, the SOA's, RFC 2308),
// clamped to between 30 seconds and 1 hour by default. Concurrent lookups
// of one name share one query.
//
// Outbound connections only go to public addresses: loopback, private,
// link-local, CGNAT, documentation and other special-purpose ranges are
// refused after resolution and again when the socket connects, unless an
// operator allows them (for tests and closed deployments). No HTTP proxy
// from the environment is used.
//
// Federation traffic is HTTPS. The certificate must be valid for the
// domain D itself (not for the SRV target host), and the Host header is D,
// so one certificate per domain suffices whatever the SRV records say.
//
// # Server keys
//
// Each homeserver has an Ed25519 signing key, created at first start and
// kept in the data directory as `federation_key.pem` (PKCS#8 PEM, mode
// 0600; a key file readable by others is refused). Its key id is
// `ed25519:` followed by the first 8 characters of the unpadded base64url
// SHA-256 of the public key; receivers treat key ids as opaque.
//
// The public key is published, without authentication, at
//
//	GET /v1/federation/key
//
//	{"keys":[{"key_id":"ed25519:Ab3dE_9x",
//	          "public_key":"<standard base64 of the 32-byte key>",
//	          "valid_until":"2025-06-01T12:00:00Z"}],
//	 "server":"example.org",
//	 "signature":{"key_id":"ed25519:Ab3dE_9x","value":"<standard base64>"}}
//
// `signature` is an Ed25519 signature, by one of the listed keys, over
// the canonical JSON of the document without its `signature` member:
// object members sorted by key, no insignificant whitespace, strings
// escaped as JSON requires (no HTML escaping). Older keys may be listed
// too, so requests signed before a key rotation still verify.
//
// A receiver fetches this document from the origin's discovered address,
// checks the signature and that `server` is the domain it expected, and
// caches each key until its `valid_until` (at most 24 hours). A request
// naming a key id it does not know makes it fetch the document again, but
// at most once a minute per origin.
//
// # Request signing
//
// Every server-to-server request is signed with HTTP Message Signatures
// (RFC 9421) using Ed25519. The sender sets:
//
//	Parley-Origin: a.example
//	Parley-Destination: b.example
//	Content-Digest: sha-256=:<base64 SHA-256 of the body>:
//	Signature-Input: sig1=("@method" "@target-uri" "content-digest" \
//	    "parley-origin" "parley-destination");created=1718000000;\
//	    keyid="ed25519:Ab3dE_9x";alg="ed25519";nonce="<random>"
//	Signature: sig1=:<base64 Ed25519 signature>:
//
// (Signature-Input is one line on the wire.) Content-Digest follows RFC
// 9530 and is computed over the body even when it is empty. The signature
// covers the RFC 9421 signature base:
//
//	"@method": PUT
//	"@target-uri": https://b.example/v1/federation/send/txn1
//	"content-digest": sha-256=:...:
//	"parley-origin": a.example
//	"parley-destination": b.example
//	"@signature-params": ("@method" ... "parley-destination");created=...
//
// The target URI is scheme, Host (both lower case) and the request
// target exactly as sent. `nonce` is at least 16 characters of randomness
// (Parley sends 16 random bytes, base64url).
//
// The receiver refuses the request, with a distinct error each, when the
// signature headers are missing (unsigned) or malformed, when they do not
// cover all five components or alg is not "ed25519" (bad signature), when
// `created` is more than 5 minutes from its clock either way (stale),
// when Parley-Destination is not its own domain (wrong destination), when
// Content-Digest does not match the body (digest mismatch), when the
// origin has no such key (unknown key), when the signature does not
// verify (bad signature), and when the origin has sent the same nonce
// within the window (replay). Nonces are remembered until their
// signature would be stale anyway; under a flood the remembered window
// shrinks rather than a nonce being forgotten early.
//
// ---------------------------------------------------------------------
package federation
