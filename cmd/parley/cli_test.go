package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/homeserver"
)

// These tests drive the real binaries: parley against a real homeserver
// process on loopback, as README.md's walkthrough does.

var (
	binDir    string // set by TestMain
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaries builds the parley and homeserver binaries once per test run and
// returns their paths.
func binaries(t *testing.T) (parley, hs string) {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator),
			"github.com/parleychat/parley/cmd/parley", "github.com/parleychat/parley/cmd/homeserver")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "parley"), filepath.Join(binDir, "homeserver")
}

// cleanEnv is the test's environment without PARLEY_* variables (which
// both binaries read), plus extra.
func cleanEnv(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PARLEY_") })
	return append(env, extra...)
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hsProcess is a running homeserver binary.
type hsProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, once done is closed
}

var readyRE = regexp.MustCompile(`msg="parley homeserver ready" url=(http://\S+)`)

// startHomeserver runs the homeserver binary on 127.0.0.1:0 with its data
// in dir and waits for its ready line. It is stopped when the test ends.
func startHomeserver(t *testing.T, dir string, args ...string) *hsProcess {
	t.Helper()
	_, bin := binaries(t)
	h := &hsProcess{t: t, stderr: &syncBuffer{}, done: make(chan struct{})}
	h.cmd = exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--data", dir}, args...)...)
	h.cmd.Env = cleanEnv()
	h.cmd.Stderr = h.stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("homeserver log:\n%s", h.stderr.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := readyRE.FindStringSubmatch(h.stderr.String()); m != nil {
			h.url = m[1]
			return h
		}
		select {
		case <-h.done:
			t.Fatalf("homeserver exited before it was ready (%v):\n%s", h.err, h.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("homeserver not ready within 30s:\n%s", h.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit; it is idempotent.
func (h *hsProcess) stop() {
	h.t.Helper()
	select {
	case <-h.done:
		return
	default:
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
		if h.err != nil {
			h.t.Errorf("homeserver exit after SIGTERM: %v", h.err)
		}
	case <-time.After(20 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
		h.t.Errorf("homeserver did not exit within 20s of SIGTERM")
	}
}

// user runs the parley binary for one --home against a server.
type user struct {
	t        *testing.T
	home     string
	server   *string // the current homeserver URL, shared by every user
	password string  // PARLEY_PASSWORD for register and login
}

func (u *user) command(ctx context.Context, args ...string) *exec.Cmd {
	parley, _ := binaries(u.t)
	argv := append([]string{"--home", u.home, "--server", *u.server}, args...)
	cmd := exec.CommandContext(ctx, parley, argv...)
	env := []string{"HOME=" + filepath.Dir(u.home)} // never the real ~/.parley
	if len(args) > 0 && (args[0] == "register" || args[0] == "login") {
		env = append(env, "PARLEY_PASSWORD="+u.password)
	}
	cmd.Env = cleanEnv(env...)
	return cmd
}

// run runs one parley command to its end.
func (u *user) run(args ...string) (code int, stdout, stderr string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := u.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		u.t.Fatalf("parley %q: %v", args, err)
	}
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed without a word on stderr and returns
// its stdout.
func (u *user) ok(args ...string) string {
	u.t.Helper()
	code, out, errOut := u.run(args...)
	if code != 0 || errOut != "" {
		u.t.Fatalf("parley %q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
	}
	return out
}

// lines splits output into lines; "" has none.
func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// jsonLines decodes recv --json output, one object per line.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, l := range lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("recv --json line %q: %v", l, err)
		}
		objs = append(objs, m)
	}
	return objs
}

func ofType(objs []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, o := range objs {
		if o["type"] == typ {
			out = append(out, o)
		}
	}
	return out
}

var safetyRE = regexp.MustCompile(`^\d{5}( \d{5}){11}\n$`)

func TestCLIWalkthrough(t *testing.T) {
	data := t.TempDir()
	hs := startHomeserver(t, data)
	server := hs.url
	dir := t.TempDir()
	alice := &user{t: t, home: filepath.Join(dir, "alice"), server: &server, password: "alice secret"}
	bob := &user{t: t, home: filepath.Join(dir, "bob"), server: &server, password: "bob secret"}
	laptop := &user{t: t, home: filepath.Join(dir, "bob-laptop"), server: &server, password: "bob secret"}
	conv := homeserver.DirectConversationID("alice@localhost", "bob@localhost")

	if out := alice.ok("register", "alice"); out != "alice@localhost\n" {
		t.Fatalf("register alice: %q", out)
	}
	if out := bob.ok("register", "bob"); out != "bob@localhost\n" {
		t.Fatalf("register bob: %q", out)
	}
	if st, err := os.Stat(filepath.Join(alice.home, "account.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("account.json: %v %v", st, err)
	}

	// Alice writes to Bob, who is not connected; the server keeps it, also
	// across a restart (same data, another port).
	if out := alice.ok("send", "bob@localhost", "Hi Bob!"); out != "" {
		t.Fatalf("send printed %q", out)
	}
	hs.stop()
	hs = startHomeserver(t, data)
	server = hs.url

	out := bob.ok("recv", "--json")
	msgs := jsonLines(t, out)
	if len(msgs) != 1 {
		t.Fatalf("bob recv --json: %q, want one line", out)
	}
	m := msgs[0]
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"conversation", "from", "from_device", "id", "sent_at", "seq", "text", "type"}; !slices.Equal(keys, want) {
		t.Fatalf("message fields %v, want %v", keys, want)
	}
	if m["type"] != "message" || m["conversation"] != conv || m["seq"] != 1.0 || m["from"] != "alice@localhost" ||
		m["from_device"] != 1.0 || m["text"] != "Hi Bob!" || m["id"].(float64) <= 0 {
		t.Fatalf("message %v", m)
	}
	if _, err := time.Parse(time.RFC3339, m["sent_at"].(string)); err != nil {
		t.Fatalf("sent_at: %v", err)
	}
	if out := bob.ok("recv", "--json"); out != "" {
		t.Fatalf("second recv printed %q", out)
	}

	// Alice learns the seq her message got, that it was delivered, then
	// read.
	out = alice.ok("recv", "--json")
	sent, rest, _ := strings.Cut(out, "\n")
	want := fmt.Sprintf(`{"type":"receipt","status":"delivered","conversation":"%s","seq":1,"by":"bob@localhost"}`+"\n"+
		`{"type":"receipt","status":"read","conversation":"%[1]s","seq":1,"by":"bob@localhost"}`+"\n", conv)
	var answer map[string]any
	if err := json.Unmarshal([]byte(sent), &answer); err != nil || answer["type"] != "sent" ||
		answer["conversation"] != conv || answer["seq"] != 1.0 || answer["client_id"] == "" || rest != want {
		t.Fatalf("alice recv --json:\n%s\nwant a sent line, then\n%s", out, want)
	}

	// Bob adds a second device; new messages go to both.
	if out := laptop.ok("login", "bob"); out != "bob@localhost 2\n" {
		t.Fatalf("login: %q", out)
	}
	alice.ok("send", "bob@localhost", "Hello, both of your devices")
	got := ofType(jsonLines(t, bob.ok("recv", "--json")), "message")
	if len(got) != 1 || got[0]["text"] != "Hello, both of your devices" || got[0]["seq"] != 2.0 {
		t.Fatalf("bob's first device got %v", got)
	}

	// The laptop gets it as pending, then, still waiting, a live one.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recv := laptop.command(ctx, "recv", "--wait", "3s")
	var recvOut, recvErr syncBuffer
	recv.Stdout, recv.Stderr = &recvOut, &recvErr
	start := time.Now()
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	recvDone := make(chan error, 1)
	go func() { recvDone <- recv.Wait() }()
	waitFor := func(what, text string) {
		t.Helper()
		for !strings.Contains(recvOut.String(), text) {
			select {
			case err := <-recvDone:
				t.Fatalf("recv --wait ended (%v) before %s; stdout %q, stderr %q", err, what, recvOut.String(), recvErr.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitFor("the pending message", " alice@localhost/1: Hello, both of your devices\n")
	alice.ok("send", "bob@localhost", "Are you there?")
	waitFor("the live message", " alice@localhost/1: Are you there?\n")
	if err := <-recvDone; err != nil || recvErr.String() != "" {
		t.Fatalf("recv --wait: %v, stderr %q", err, recvErr.String())
	}
	if took := time.Since(start); took < 3*time.Second {
		t.Fatalf("recv --wait 3s ended after %v", took)
	}
	var texts []string
	for _, l := range lines(recvOut.String()) {
		if strings.HasPrefix(l, "[") {
			texts = append(texts, l[strings.Index(l, "] ")+2:])
		}
	}
	if !slices.Equal(texts, []string{"alice@localhost/1: Hello, both of your devices", "alice@localhost/1: Are you there?"}) {
		t.Fatalf("recv --wait printed %q", recvOut.String())
	}
	// Bob's first device gets the live one too, and alice a read receipt
	// from the laptop.
	if got := ofType(jsonLines(t, bob.ok("recv", "--json")), "message"); len(got) != 1 || got[0]["text"] != "Are you there?" {
		t.Fatalf("bob's first device got %v", got)
	}
	read := fmt.Sprintf(`{"type":"receipt","status":"read","conversation":"%s","seq":3,"by":"bob@localhost"}`, conv)
	if out := alice.ok("recv", "--json"); !slices.Contains(lines(out), read) {
		t.Fatalf("alice recv --json:\n%s\nlacks %s", out, read)
	}

	if out := laptop.ok("whoami"); out != "bob@localhost 2\n" {
		t.Fatalf("whoami: %q", out)
	}
	devs := lines(laptop.ok("devices"))
	if len(devs) != 2 {
		t.Fatalf("devices: %q", devs)
	}
	for i, l := range devs {
		f := strings.Split(l, "\t")
		if len(f) < 3 || f[0] != fmt.Sprint(i+1) {
			t.Fatalf("device line %q", l)
		}
		if _, err := time.Parse(time.RFC3339, f[2]); err != nil {
			t.Fatalf("device line %q: %v", l, err)
		}
		if current := len(f) == 4 && f[3] == "*"; current != (i == 1) || len(f) > 4 {
			t.Fatalf("device line %q: only device 2 is current", l)
		}
	}

	// The safety number is the same on every side.
	sn := alice.ok("safety-number", "bob@localhost")
	if !safetyRE.MatchString(sn) {
		t.Fatalf("safety number %q", sn)
	}
	for _, u := range []*user{bob, laptop} {
		if theirs := u.ok("safety-number", "alice@localhost"); theirs != sn {
			t.Fatalf("%s sees %q, alice %q", u.home, theirs, sn)
		}
	}

	t.Run("errors", func(t *testing.T) {
		alice := &user{t: t, home: alice.home, server: &server}
		code, out, errOut := alice.run("send", "nobody@localhost", "hi")
		if code != 1 || out != "" || len(lines(errOut)) != 1 || !strings.HasPrefix(errOut, "parley: unknown_user:") {
			t.Errorf("send to nobody: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		code, out, errOut = alice.run("frobnicate")
		if code != 2 || out != "" || !strings.Contains(errOut, `unknown command "frobnicate"`) {
			t.Errorf("unknown command: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		wrong := &user{t: t, home: filepath.Join(t.TempDir(), "new"), server: &server, password: "not bob's"}
		code, out, errOut = wrong.run("login", "bob")
		if code != 1 || out != "" || len(lines(errOut)) != 1 || !strings.HasPrefix(errOut, "parley: bad_credentials:") {
			t.Errorf("wrong password: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if _, err := os.Stat(wrong.home); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused login left %s behind (%v)", wrong.home, err)
		}
		empty := &user{t: t, home: t.TempDir(), server: &server}
		code, out, errOut = empty.run("recv")
		if code == 0 || out != "" || len(lines(errOut)) != 1 || !strings.Contains(errOut, "no account") ||
			!strings.Contains(errOut, "parley register NAME") {
			t.Errorf("recv without account: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
}
