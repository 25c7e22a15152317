package e2ee

import (
	"bytes"
	"crypto/sha512"
	"fmt"
	"slices"
	"strings"
)

// Signal's numeric fingerprint ("safety number"), version 0. libsignal-go
// only chunks key bytes and does not implement it; this follows Signal's
// NumericFingerprintGenerator, so numbers match those of the TypeScript
// client and of Signal's own libraries.
const (
	fingerprintVersion    = 0
	fingerprintIterations = 5200
)

// SafetyNumber returns the 60-digit safety number of two users: the
// 30-digit fingerprints of both, the numerically lower one first, so both
// sides compute the same string. Each user may have several identity keys
// (one per device); as in Signal's generator for key lists they are sorted
// bytewise and concatenated, so the number changes whenever a device is
// added, removed or re-keyed, and does not depend on the order given. With
// one key per user this is exactly Signal's one-to-one safety number.
func SafetyNumber(localUser string, localKeys [][]byte, remoteUser string, remoteKeys [][]byte) string {
	local := fingerprintDigits(localUser, localKeys)
	remote := fingerprintDigits(remoteUser, remoteKeys)
	if local <= remote {
		return local + remote
	}
	return remote + local
}

// fingerprintDigits: start from version ‖ keys ‖ stable id, then hash
// fingerprintIterations times as SHA-512(previous ‖ keys); the first 30
// bytes, as six 5-byte big-endian numbers mod 100000, give 30 digits.
func fingerprintDigits(user string, keys [][]byte) string {
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, bytes.Compare)
	keyBytes := bytes.Join(sorted, nil)

	hash := append([]byte{fingerprintVersion >> 8, fingerprintVersion & 0xff}, keyBytes...)
	hash = append(hash, user...)
	h := sha512.New()
	for range fingerprintIterations {
		h.Reset()
		h.Write(hash)
		h.Write(keyBytes)
		hash = h.Sum(hash[:0])
	}

	var b strings.Builder
	for i := 0; i < 30; i += 5 {
		var chunk uint64
		for _, c := range hash[i : i+5] {
			chunk = chunk<<8 | uint64(c)
		}
		fmt.Fprintf(&b, "%05d", chunk%100000)
	}
	return b.String()
}

// FormatSafetyNumber groups digits in blocks of five separated by spaces (12
// blocks for a safety number), the way Signal displays them.
func FormatSafetyNumber(digits string) string {
	var b strings.Builder
	for i := 0; i < len(digits); i += 5 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(digits[i:min(i+5, len(digits))])
	}
	return b.String()
}
