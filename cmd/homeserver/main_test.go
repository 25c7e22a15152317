package main

import (
	"bufio"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary compiles the real homeserver binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "homeserver")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The binary logs its URL once ready, serves, and exits 0 on SIGTERM after
// a graceful shutdown; bad configuration stops it at once with the key.
func TestBinaryStartsServesAndStops(t *testing.T) {
	bin := buildBinary(t)
	data := t.TempDir()
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--data", data, "--domain", "chat.example")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stderr)
	urlRE := regexp.MustCompile(`msg="parley homeserver ready" url=(http://127\.0\.0\.1:\d+)`)
	var url string
	deadline := time.After(30 * time.Second)
	found := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if m := urlRE.FindStringSubmatch(lines.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case url = <-found:
	case <-deadline:
		t.Fatal("no ready line within 30s")
	}
	resp, err := http.Post(url+"/v1/register", "application/json", strings.NewReader(`{"user":"alice","password":"correct horse"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.Contains(string(body), `"alice@chat.example"`) {
		t.Fatalf("register: %d %s", resp.StatusCode, body)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20s of SIGTERM")
	}
}

func TestBinaryRefusesBadConfig(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--data", t.TempDir())
	cmd.Env = append(cmd.Environ(), "PARLEY_RETENTION=soon")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "config retention") {
		t.Fatalf("message does not name the key: %s", out)
	}
}
