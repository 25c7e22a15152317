package homeserver

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/parleychat/parley/wire"
)

// FuzzClientInput feeds arbitrary JSON through the decoders and validators
// of client input that run before any storage access: they must refuse or
// accept, never panic, and accepted ids must be normalised.
func FuzzClientInput(f *testing.F) {
	f.Add([]byte(`{"client_id":"x","to":"bob@example.org","envelopes":[{"user":"bob@example.org","device":1,"type":"whisper","body":"AA=="}]}`))
	f.Add([]byte(`{"client_id":"x","to":"g-00","shared":{"type":"senderkey","body":"AA==","devices":[{"user":"a@b","device":2}]}}`))
	f.Add([]byte(`{"name":"` + strings.Repeat("n", 300) + `"}`))
	f.Add([]byte(`{"to":"ALICE@Example.ORG:8448"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var req wire.SendRequest
		if json.Unmarshal(data, &req) == nil {
			_ = checkSend(req)
			if id, name, domain, ok := ParseUserID(req.To); ok {
				if id != name+"@"+domain || strings.ToLower(id) != id || !ValidName(name) || !ValidDomain(domain) {
					t.Fatalf("ParseUserID(%q) = %q", req.To, id)
				}
			}
			_ = IsGroupID(req.To)
		}
		var meta wire.GroupMeta
		if json.Unmarshal(data, &meta) == nil {
			_ = checkMeta(meta)
		}
		var up wire.KeyUpload
		if json.Unmarshal(data, &up) == nil {
			_, _ = deviceName(string(data))
		}
	})
}
