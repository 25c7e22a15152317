package wire

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// TestErrorStatuses pins every error code to its HTTP status three ways:
// the constants in wire/codes.go, the table in this package, and the table
// in docs/protocol.md must all agree. A code's status never changes.
func TestErrorStatuses(t *testing.T) {
	pinned := map[string]int{
		"bad_json": 400, "invalid_param": 400, "too_large": 413, "missing_token": 401,
		"unknown_token": 401, "forbidden": 403, "bad_credentials": 403, "invalid_username": 400,
		"weak_password": 400, "user_in_use": 409, "unknown_user": 404, "unknown_device": 404,
		"not_found": 404, "bad_signature": 400, "bad_key": 400, "keys_required": 400,
		"too_many_prekeys": 400, "stale_devices": 409, "client_id_reused": 409, "unsupported": 501,
		"rate_limited": 429, "method_not_allowed": 405, "internal": 500, "unavailable": 503,
		"unknown_group": 404, "not_member": 403, "already_member": 409, "last_owner": 409,
		"group_full": 409, "not_invited": 403, "unauthenticated": 401, "replayed": 409,
		"wrong_destination": 421, "bad_digest": 400,
	}
	for code, status := range pinned {
		if got := HTTPStatus(code); got != status {
			t.Errorf("%s: status %d, pinned %d", code, got, status)
		}
	}
	if len(statusOf) != len(pinned) {
		t.Errorf("statusOf has %d codes, pinned %d: pin the new ones", len(statusOf), len(pinned))
	}

	// Every constant in wire/codes.go has a status.
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := 0
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok {
			for _, v := range vs.Values {
				if lit, ok := v.(*ast.BasicLit); ok {
					code, _ := strconv.Unquote(lit.Value)
					consts++
					if _, ok := pinned[code]; !ok {
						t.Errorf("wire code %q has no pinned status", code)
					}
				}
			}
		}
		return true
	})
	if consts != len(pinned) {
		t.Errorf("wire/codes.go has %d codes, pinned %d", consts, len(pinned))
	}

	// docs/protocol.md documents each code with the same status.
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([0-9]{3}) \\|").FindAllSubmatch(doc, -1)
	documented := map[string]int{}
	for _, r := range rows {
		documented[string(r[1])], _ = strconv.Atoi(string(r[2]))
	}
	for code, status := range pinned {
		if documented[code] != status {
			t.Errorf("docs/protocol.md gives %s status %d, want %d", code, documented[code], status)
		}
	}
	if len(documented) != len(pinned) {
		t.Errorf("docs/protocol.md documents %d codes, want %d", len(documented), len(pinned))
	}
}
