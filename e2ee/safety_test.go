package e2ee

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Signal's published test vector (libsignal's NumericFingerprintGenerator
// tests: these two identity keys, stable ids "+14152222222" and
// "+14153333333", 5200 iterations). It checks the algorithm itself against
// an implementation other than ours.
func TestSafetyNumberSignalVector(t *testing.T) {
	alice := mustHex(t, "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
	bob := mustHex(t, "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
	const want = "300354477692869396892869876765458257569162576843440918079131"
	if got := SafetyNumber("+14152222222", [][]byte{alice}, "+14153333333", [][]byte{bob}); got != want {
		t.Errorf("alice's view %s, want %s", got, want)
	}
	if got := SafetyNumber("+14153333333", [][]byte{bob}, "+14152222222", [][]byte{alice}); got != want {
		t.Errorf("bob's view %s, want %s", got, want)
	}
}

// Pinned output for Parley-style user ids and several keys per user. The
// value was computed by this implementation (which matches Signal's vector
// above) when it was written; the test guards against accidental changes,
// e.g. to the key ordering, which would make every user's numbers change.
func TestSafetyNumberPinned(t *testing.T) {
	key := func(b byte) []byte { k := bytes.Repeat([]byte{b}, 33); k[0] = 0x05; return k }
	got := SafetyNumber(
		"alice@example.org", [][]byte{key(0x22), key(0x11)},
		"bob@example.net", [][]byte{key(0x33)})
	const want = "067963650938648267692068768678434721725561155000990547250407"
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestSafetyNumber(t *testing.T) {
	a1, a2 := newDevice(t, "alice@example.org", 1), newDevice(t, "alice@example.org", 2)
	b1 := newDevice(t, "bob@example.org", 1)
	k := func(d *device) []byte { key, _ := d.s.IdentityKey(t.Context()); return key }

	ab := SafetyNumber("alice@example.org", [][]byte{k(a1)}, "bob@example.org", [][]byte{k(b1)})
	ba := SafetyNumber("bob@example.org", [][]byte{k(b1)}, "alice@example.org", [][]byte{k(a1)})
	if ab != ba {
		t.Fatalf("not symmetric: %s vs %s", ab, ba)
	}
	if !regexp.MustCompile(`^[0-9]{60}$`).MatchString(ab) {
		t.Fatalf("not 60 digits: %q", ab)
	}

	// A changed key, an added device or another user id changes the number.
	b1new := newDevice(t, "bob@example.org", 1)
	for name, other := range map[string]string{
		"key changed":   SafetyNumber("alice@example.org", [][]byte{k(a1)}, "bob@example.org", [][]byte{k(b1new)}),
		"device added":  SafetyNumber("alice@example.org", [][]byte{k(a1), k(a2)}, "bob@example.org", [][]byte{k(b1)}),
		"other user id": SafetyNumber("alice@example.org", [][]byte{k(a1)}, "bob@example.com", [][]byte{k(b1)}),
	} {
		if other == ab {
			t.Errorf("%s: number unchanged", name)
		}
	}
	// Key order does not matter.
	x := SafetyNumber("alice@example.org", [][]byte{k(a1), k(a2)}, "bob@example.org", [][]byte{k(b1)})
	y := SafetyNumber("bob@example.org", [][]byte{k(b1)}, "alice@example.org", [][]byte{k(a2), k(a1)})
	if x != y {
		t.Fatal("depends on key order")
	}
}

func TestFormatSafetyNumber(t *testing.T) {
	for in, want := range map[string]string{
		"300354477692869396892869876765458257569162576843440918079131": "30035 44776 92869 39689 28698 76765 45825 75691 62576 84344 09180 79131",
		"":        "",
		"1234567": "12345 67",
	} {
		if got := FormatSafetyNumber(in); got != want {
			t.Errorf("FormatSafetyNumber(%q) = %q, want %q", in, got, want)
		}
	}
}
