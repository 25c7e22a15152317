package homeserver

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/parleychat/parley/wire"
)

const maxNameLen = 64

// ValidName reports whether s is a valid local user name: 1–64 of a–z, 0–9,
// '.', '_', '-', starting with a letter or digit, and not starting with
// "g-" (group ids do). Names are compared in lower case; callers
// lower-case input first.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > maxNameLen || strings.HasPrefix(s, wire.GroupIDPrefix) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidDomain reports whether s looks like a DNS name, optionally with a
// port (a homeserver may serve "localhost:8080" in tests).
func ValidDomain(s string) bool {
	host, port, hasPort := strings.Cut(s, ":")
	if hasPort {
		if len(port) == 0 || len(port) > 5 {
			return false
		}
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return false
			}
		}
	}
	if len(host) == 0 || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// ParseUserID splits "name@domain" after lower-casing it.
func ParseUserID(s string) (id, name, domain string, ok bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	name, domain, found := strings.Cut(s, "@")
	if !found || !ValidName(name) || !ValidDomain(domain) {
		return "", "", "", false
	}
	return s, name, domain, true
}

// DirectConversationID derives the id of the direct conversation between
// two users from their ids alone, so that both sides (and both homeservers,
// once federated) agree on it without a handshake.
func DirectConversationID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return "d-" + hex.EncodeToString(h[:16])
}

// deviceSet is a set of device addresses.
type deviceSet map[wire.DeviceAddress]struct{}
