// Package e2ee is Parley's end-to-end encryption: the Signal protocol (X3DH
// and the Double Ratchet, message version 3) on top of go.mau.fi/libsignal.
//
// Clients use a Store, the persistent Signal state of one device. The
// homeserver never holds a Store: it only checks uploaded keys with
// CheckPublicKey and VerifySignedPreKey, then stores and relays ciphertext.
package e2ee

import (
	"errors"

	"go.mau.fi/libsignal/logger"
	"go.mau.fi/libsignal/protocol"
)

// Address names one device of one user ("alice@example.org", 1). In
// libsignal it is protocol.NewSignalAddress(User, Device).
type Address struct {
	User   string
	Device uint32
}

func (a Address) signal() *protocol.SignalAddress {
	return protocol.NewSignalAddress(a.User, a.Device)
}

// Errors returned (wrapped, test with errors.Is) by Store methods and the
// key checks.
var (
	// ErrBadKey: not a 33-byte 0x05-prefixed Curve25519 public key.
	ErrBadKey = errors.New("e2ee: invalid public key")
	// ErrBadSignature: the signed prekey's signature does not verify.
	ErrBadSignature = errors.New("e2ee: invalid signed prekey signature")
	// ErrIdentityChanged: a bundle or prekey message carries another
	// identity key than the one trusted for its address.
	ErrIdentityChanged = errors.New("e2ee: identity key changed")
	// ErrDuplicate: the message was already decrypted. For a group message
	// also: it is older than the sender key this device was given (a
	// device that joined later cannot read it); drop it either way.
	ErrDuplicate = errors.New("e2ee: message already decrypted")
	// ErrNoSession: a whisper message (or an Encrypt) for an address
	// without a session.
	ErrNoSession = errors.New("e2ee: no session")
	// ErrInvalidMessage: the message is tampered, truncated or cannot be
	// decrypted with any session state.
	ErrInvalidMessage = errors.New("e2ee: invalid message")
	// ErrNoSenderKey: a group message from a sender whose sender key
	// (or whose key with the message's key id) this device does not have;
	// it may decrypt once the sender's distribution message arrives.
	// GroupEncrypt returns it too when this device has no sender key for
	// the group.
	ErrNoSenderKey = errors.New("e2ee: no sender key")
)

// silentLogger drops libsignal's log lines. Its default logger writes them
// to stdout, some with raw message and key bytes: that would corrupt the
// CLI's output and leak material that must never be logged.
type silentLogger struct{}

func (silentLogger) Debug(caller, message string)   {}
func (silentLogger) Info(caller, message string)    {}
func (silentLogger) Warning(caller, message string) {}
func (silentLogger) Error(caller, message string)   {}
func (silentLogger) Configure(settings string)      {}

func init() {
	var l logger.Loggable = silentLogger{}
	logger.Setup(&l)
}
