// Package federation is Parley's server-to-server layer: discovery of a
// domain's federation endpoint through DNS SRV (discovery.go, dialer.go),
// the server signing key and its published document (keys.go), RFC 9421
// request signatures (signing.go), the signed client (client.go), the
// durable outbound sender (sender.go) and the inbound API (server.go).
// docs/federation.md describes the protocol.
package federation
