package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/wire"
)

func TestRecvJSONShape(t *testing.T) {
	sent := time.Date(2025, 3, 4, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		item client.Item
		want string
	}{
		{
			client.Item{Type: client.ItemMessage, ID: 7, Conversation: "c1", Seq: 3, From: "alice@dom", FromDevice: 2,
				Text: "hi \"there\" <b>&\n", SentAt: sent},
			`{"type":"message","id":7,"conversation":"c1","seq":3,"from":"alice@dom","from_device":2,"text":"hi \"there\" <b>&\n","sent_at":"2025-03-04T15:04:05Z"}`,
		},
		{
			client.Item{Type: client.ItemReceipt, ID: 8, Conversation: "c1", Seq: 3, Status: wire.StatusDelivered, By: "bob@dom", ByDevice: 1},
			`{"type":"receipt","status":"delivered","conversation":"c1","seq":3,"by":"bob@dom"}`,
		},
		{
			client.Item{Type: client.ItemReceipt, ID: 9, Conversation: "c1", Seq: 4, Status: wire.StatusRead, By: "bob@dom"},
			`{"type":"receipt","status":"read","conversation":"c1","seq":4,"by":"bob@dom"}`,
		},
		{
			client.Item{Type: client.ItemDeviceList, ID: 10, User: "bob@dom"},
			`{"type":"device_list","user":"bob@dom"}`,
		},
		{
			client.Item{Type: client.ItemExpired, ID: 11, Conversation: "c1", FromSeq: 4, ToSeq: 9},
			`{"type":"expired","conversation":"c1","from_seq":4,"to_seq":9}`,
		},
		{
			client.Item{Type: client.ItemDecryptError, ID: 12, Conversation: "c1", Seq: 5, From: "alice@dom", FromDevice: 1,
				SentAt: sent, Err: errors.New("e2ee: invalid message")},
			`{"type":"decrypt_error","id":12,"conversation":"c1","seq":5,"from":"alice@dom","from_device":1,"sent_at":"2025-03-04T15:04:05Z","error":"e2ee: invalid message"}`,
		},
		{
			client.Item{Type: "future_thing", ID: 13},
			`{"type":"future_thing","id":13}`,
		},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		p := &printer{w: &buf, json: true}
		if err := p.print(tt.item); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != tt.want+"\n" {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.item.Type, got, tt.want)
		}
	}
}

func TestRecvTextLines(t *testing.T) {
	sent := time.Date(2025, 3, 4, 15, 4, 5, 0, time.Local)
	tests := []struct {
		item client.Item
		want string
	}{
		{client.Item{Type: client.ItemMessage, Conversation: "c", Seq: 1, From: "alice@localhost", FromDevice: 1, Text: "hi", SentAt: sent},
			"[15:04:05] alice@localhost/1: hi"},
		{client.Item{Type: client.ItemMessage, From: "a@l", FromDevice: 1, Text: "two\nlines \x1b[31mred", SentAt: sent},
			"[15:04:05] a@l/1: two\n    lines \uFFFD[31mred"},
		{client.Item{Type: client.ItemReceipt, Conversation: "c", Seq: 3, Status: "delivered", By: "bob@localhost"},
			"✓ delivered c#3 by bob@localhost"},
		{client.Item{Type: client.ItemReceipt, Conversation: "c", Seq: 3, Status: "read", By: "bob@localhost"},
			"✓ read c#3 by bob@localhost"},
		{client.Item{Type: client.ItemDeviceList, User: "bob@localhost"}, "• devices of bob@localhost changed"},
		{client.Item{Type: client.ItemExpired, Conversation: "c", FromSeq: 4, ToSeq: 7}, "! c#4-7 expired unread"},
	}
	for _, tt := range tests {
		if got := textItem(tt.item); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	d := wire.Device{DeviceID: 2, Name: "my\tphone", CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Current: true}
	if got := deviceLine(d); got != "2\tmy\uFFFDphone\t2025-01-02T03:04:05Z\t*" {
		t.Errorf("device line %q", got)
	}
	d.Current = false
	if got := deviceLine(d); strings.HasSuffix(got, "*") {
		t.Errorf("device line %q marks a non-current device", got)
	}
}

func runCLI(t *testing.T, env map[string]string, stdin string, argv ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &environment{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: envFrom(env)}
	code = run(context.Background(), argv, e)
	return code, out.String(), errb.String()
}

func TestRunExitCodes(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"PARLEY_HOME": home}

	for _, argv := range [][]string{{"help"}, {}, {"nope"}, {"recv", "--bogus"}} {
		code, out, errOut := runCLI(t, env, "", argv...)
		if code != exitUsage || out != "" || !strings.Contains(errOut, "usage: parley") {
			t.Errorf("%q: code %d, stdout %q, stderr %q", argv, code, out, errOut)
		}
	}

	code, out, errOut := runCLI(t, env, "", "recv")
	if code != exitError || out != "" || !strings.HasPrefix(errOut, "parley: ") || strings.Count(errOut, "\n") != 1 ||
		!strings.Contains(errOut, "no account") {
		t.Errorf("recv without account: code %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Register with no password anywhere (empty stdin) is a usage error
	// that sends nothing.
	code, _, errOut = runCLI(t, env, "", "register", "alice", "--server", "http://127.0.0.1:1")
	if code != exitUsage || !strings.Contains(errOut, "no password") {
		t.Errorf("register without password: code %d, stderr %q", code, errOut)
	}

	// A server that cannot be reached is a runtime error on one line.
	code, _, errOut = runCLI(t, env, "pw-on-stdin\n", "register", "alice", "--server", "http://127.0.0.1:1")
	if code != exitError || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "parley: ") {
		t.Errorf("register against nothing: code %d, stderr %q", code, errOut)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("failed register left files in home: %v", entries)
	}

	// An existing account is refused before the server is asked.
	if err := client.SaveAccountFile(home, client.AccountFile{Server: "http://127.0.0.1:1", UserID: "a@l", DeviceID: 1, AccessToken: "t"}); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, env, "", "register", "alice", "--password", "x")
	if code != exitError || !strings.Contains(errOut, filepath.Join(home, "account.json")) {
		t.Errorf("register into used home: code %d, stderr %q", code, errOut)
	}
}
