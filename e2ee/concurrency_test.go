package e2ee

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/wire"
)

// Two Store values on one file, used from many goroutines, encrypt to the
// same peer. Without the file lock they would ratchet from the same state and
// reuse message keys, and bob would reject messages as duplicates.
func TestConcurrentStores(t *testing.T) {
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	connect(alice, bob)
	exchange(t, alice, bob, "hi", wire.CiphertextPreKey)
	exchange(t, bob, alice, "hi", wire.CiphertextWhisper)

	second, err := OpenStore(alice.path)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()

	const goroutines, each = 8, 15
	var (
		mu   sync.Mutex
		sent = map[string]message{}
		wg   sync.WaitGroup
	)
	for g := range goroutines {
		s := alice.s
		if g%2 == 1 {
			s = second
		}
		wg.Go(func() {
			for i := range each {
				text := fmt.Sprintf("g%d m%d", g, i)
				typ, body, err := s.Encrypt(context.Background(), bob.addr, []byte(text))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				sent[text] = message{typ, body}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(sent) != goroutines*each {
		t.Fatalf("%d messages, want %d", len(sent), goroutines*each)
	}
	for text, m := range sent { // map order: out of order on purpose
		bob.mustDecrypt(alice, m, text)
	}
	exchange(t, bob, alice, "got them all", wire.CiphertextWhisper)
}

// helperEnv makes the test binary act as a second process: see
// TestTwoProcesses.
const helperEnv = "PARLEY_E2EE_HELPER"

type helperJob struct {
	Path  string  `json:"path"`
	To    Address `json:"to"`
	Count int     `json:"count"`
	Tag   string  `json:"tag"`
}

// TestTwoProcesses runs encryptions from two other processes and this one on
// the same store file at once; the peer must decrypt every message.
func TestTwoProcesses(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("helper process")
	}
	alice := newDevice(t, "alice@example.org", 1)
	bob := newDevice(t, "bob@example.org", 1)
	connect(alice, bob)
	exchange(t, alice, bob, "hi", wire.CiphertextPreKey)
	exchange(t, bob, alice, "hi", wire.CiphertextWhisper)

	const count = 25
	var procs []*exec.Cmd
	var outs []*bytes.Buffer
	for _, tag := range []string{"p1", "p2"} {
		job, _ := json.Marshal(helperJob{Path: alice.path, To: bob.addr, Count: count, Tag: tag})
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+string(job))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs, outs = append(procs, cmd), append(outs, out)
	}
	sent := map[string]message{}
	for i := range count {
		text := fmt.Sprint("parent ", i)
		sent[text] = alice.encrypt(bob, text)
	}
	for i, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v\n%s", err, outs[i])
		}
		sc := bufio.NewScanner(outs[i])
		for sc.Scan() {
			text, m, ok := parseHelperLine(sc.Text())
			if ok {
				sent[text] = m
			}
		}
	}
	if len(sent) != 3*count {
		t.Fatalf("%d messages, want %d", len(sent), 3*count)
	}
	for text, m := range sent {
		bob.mustDecrypt(alice, m, text)
	}
}

// TestHelperProcess is the body of a helper process; it does nothing in a
// normal test run.
func TestHelperProcess(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("only run as a helper process")
	}
	var job helperJob
	if err := json.Unmarshal([]byte(raw), &job); err != nil {
		t.Fatal(err)
	}
	s, err := OpenStore(job.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range job.Count {
		text := fmt.Sprint(job.Tag, " ", i)
		typ, body, err := s.Encrypt(context.Background(), job.To, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("MSG %s %s %s\n", typ, base64.StdEncoding.EncodeToString(body), strconv.Quote(text))
	}
}

func parseHelperLine(line string) (string, message, bool) {
	f := strings.SplitN(line, " ", 4)
	if len(f) != 4 || f[0] != "MSG" {
		return "", message{}, false
	}
	body, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		return "", message{}, false
	}
	text, err := strconv.Unquote(f[3])
	if err != nil {
		return "", message{}, false
	}
	return text, message{f[1], body}, true
}

// While another open file description holds the lock (as another process
// would), updates wait for it, and give up when their context ends.
func TestLockWaits(t *testing.T) {
	d := newDevice(t, "alice@example.org", 1)
	other, err := os.OpenFile(d.path+".lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := lockFile(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := d.s.KeyUpload(ctx, false, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("KeyUpload while locked: %v, want DeadlineExceeded", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := d.s.KeyUpload(context.Background(), false, 1)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("KeyUpload did not wait for the lock: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := unlockFile(other); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The timed-out upload left no trace: ids continue at 1.
	if got := preKeyIDs(d.upload(false, 1)); !equalIDs(got, 2) {
		t.Fatalf("next prekey id %v, want 2", got)
	}
}
