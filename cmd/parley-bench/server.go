package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a homeserver under test: one the bench started as a
// subprocess, or one given with --server (pid known only with
// --server-pid).
type server struct {
	url    string // client API, e.g. http://127.0.0.1:41234
	fedURL string // federation listener ("" without federation)
	domain string
	pid    int // 0: unknown, no RSS or CPU figures

	// Only for a subprocess.
	cmd     *exec.Cmd
	args    []string
	bin     string
	logPath string
	logFile *os.File
	exited  chan struct{}
	waitErr error
}

// serverSpec says how to start a homeserver subprocess.
type serverSpec struct {
	bin     string // the homeserver binary
	domain  string
	dataDir string
	logPath string
	// Federation, when dnsAddr is set: listen on loopback, plain HTTP,
	// discover peers through the bench's DNS server.
	dnsAddr string
	extra   []string // --server-flag
}

// findModuleRoot walks up from the working directory to Parley's go.mod.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/parleychat/parley\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Parley source tree: run from it, or give --homeserver-bin")
		}
		dir = parent
	}
}

// buildHomeserver compiles cmd/homeserver into dir and returns its path.
func buildHomeserver(ctx context.Context, dir string, progress io.Writer) (string, error) {
	root, err := findModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "homeserver")
	fmt.Fprintf(progress, "building homeserver (go build ./cmd/homeserver)...\n")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/homeserver")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ./cmd/homeserver: %v\n%s", err, out)
	}
	return bin, nil
}

// startServer runs the homeserver binary on a free loopback port and waits
// for its ready line. The process is stopped by stop (SIGTERM).
func startServer(ctx context.Context, spec serverSpec) (*server, error) {
	args := []string{
		"--domain", spec.domain,
		"--listen", "127.0.0.1:0",
		"--data", spec.dataDir,
		"--log-level", "info",
		"--log-format", "text",
	}
	if spec.dnsAddr != "" {
		args = append(args,
			"--federation-listen", "127.0.0.1:0",
			"--federation-insecure",
			"--federation-allow-private",
			"--dns-resolver", spec.dnsAddr)
	} else {
		args = append(args, "--federation-listen", "") // no federation listener
	}
	args = append(args, spec.extra...)
	s := &server{domain: spec.domain, bin: spec.bin, args: args, logPath: spec.logPath}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *server) start(ctx context.Context) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	// The environment must not configure it behind our back.
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	cmd.Stdout = logFile
	// Should the bench die without stopping it, the kernel stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	ready := make(chan error, 1)
	var once sync.Once
	signal := func(err error) { once.Do(func() { ready <- err }) }
	// exec copies stderr into lw until the process ends (a full pipe
	// would block the server's logger); Wait waits for the copy.
	cmd.Stderr = &lineWriter{w: logFile, line: func(line string) {
		if strings.Contains(line, `msg="federation ready"`) {
			s.fedURL = logField(line, "url")
		}
		if strings.Contains(line, `msg="parley homeserver ready"`) {
			if s.url = logField(line, "url"); s.url == "" {
				signal(fmt.Errorf("ready line without url: %q", line))
			} else {
				signal(nil)
			}
		}
	}}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.cmd, s.logFile, s.pid = cmd, logFile, cmd.Process.Pid
	s.exited = make(chan struct{})
	exited := s.exited
	go func() {
		s.waitErr = cmd.Wait()
		signal(errors.New("homeserver exited before it was ready"))
		close(exited)
	}()

	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	select {
	case err = <-ready:
	case <-timer.C:
		err = errors.New("homeserver not ready within 60s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.stop()
		return fmt.Errorf("%w (log: %s)\n%s", err, s.logPath, tailFile(s.logPath, 15))
	}
	return nil
}

// restart stops the process and starts it again on the same data: a
// fresh heap, e.g. before measuring memory per socket.
func (s *server) restart(ctx context.Context) error {
	if err := s.stop(); err != nil {
		return err
	}
	s.url, s.fedURL = "", ""
	return s.start(ctx)
}

// stop sends SIGTERM and waits up to 30 s for a clean shutdown, then
// kills the process. It only ever signals the process it started.
func (s *server) stop() error {
	if s.cmd == nil {
		return nil
	}
	defer func() {
		s.cmd = nil
		s.logFile.Close()
	}()
	select {
	case <-s.exited:
		return fmt.Errorf("homeserver exited early: %v", s.waitErr)
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("homeserver did not stop within 30s of SIGTERM; killed")
	}
}

// alive reports whether a subprocess server is still running.
func (s *server) alive() bool {
	if s.exited == nil {
		return true
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// logField extracts key=value (value possibly quoted) from a slog text
// line.
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
		return ""
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		v = v[:j]
	}
	return v
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// checkLoopback refuses a server URL that is not on 127.0.0.0/8 (or ::1,
// or "localhost"): the bench only ever sends traffic to this machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("--server %q: not a URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("--server %q: want http:// or https://", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--server %q: the bench only talks to loopback addresses (127.0.0.0/8, ::1, localhost)", raw)
	}
	return nil
}

// lineWriter passes each complete line written to it to line, and
// everything to w.
type lineWriter struct {
	w    io.Writer
	line func(string)
	mu   sync.Mutex
	buf  []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(p)
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 1<<20 { // a runaway line: drop it
		l.buf = l.buf[:0]
	}
	return len(p), nil
}
