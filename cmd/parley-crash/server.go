package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is the system under test: something that serves Parley's client
// API at one fixed URL from a data directory that outlives it. The harness
// only ever starts it, kills it and stops it, so another storage engine (a
// homeserver on PostgreSQL, a cluster behind a proxy) plugs in as another
// Server, or simply as another --server command line.
type Server interface {
	// Start launches the server on the same address and data as before
	// and returns once it answers HTTP requests.
	Start(ctx context.Context) error
	// Kill ends it at once (SIGKILL): no shutdown, no flush.
	Kill() error
	// Stop ends it gracefully.
	Stop() error
	// URL is the client API's base URL; it does not change across restarts.
	URL() string
}

// processServer runs a command line in which {addr} and {data} stand for
// the listen address and the data directory.
type processServer struct {
	argv []string // the template
	addr string
	data string
	log  *os.File // every run's stderr and stdout, appended

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// newProcessServer picks a free loopback port once, so that every restart
// listens where the clients already point.
func newProcessServer(template, data, logPath string) (*processServer, error) {
	argv := strings.Fields(template)
	if len(argv) == 0 {
		return nil, errors.New("empty server command")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &processServer{argv: argv, addr: addr, data: data, log: log}, nil
}

func (p *processServer) URL() string { return "http://" + p.addr }

func (p *processServer) Start(ctx context.Context) error {
	args := make([]string, len(p.argv))
	for i, a := range p.argv {
		args[i] = strings.NewReplacer("{addr}", p.addr, "{data}", p.data).Replace(a)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = p.log, p.log
	fmt.Fprintf(p.log, "--- parley-crash: starting %s\n", strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", args[0], err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	// Ready means answering HTTP: any status will do (whoami without a
	// token is a 401), so this works for any implementation of the API.
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(p.URL() + "/v1/whoami")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("server exited before it was ready: %v (see %s)", cmd.ProcessState, p.log.Name())
		case <-ctx.Done():
			p.Kill()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("server not ready within 60s (see %s)", p.log.Name())
		}
	}
}

func (p *processServer) Kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	err := cmd.Process.Signal(syscall.SIGKILL)
	<-done
	fmt.Fprintf(p.log, "--- parley-crash: killed (%v)\n", cmd.ProcessState)
	if errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	return err
}

func (p *processServer) Stop() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		return p.Kill()
	}
	if !cmd.ProcessState.Success() {
		return fmt.Errorf("server exit after SIGTERM: %v", cmd.ProcessState)
	}
	return nil
}

// cleanEnv is the environment without PARLEY_* variables, which the
// homeserver would read as configuration.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			out = append(out, kv)
		}
	}
	return out
}

// buildHomeserver compiles cmd/homeserver into dir.
func buildHomeserver(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"github.com/parleychat/parley/cmd/homeserver")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "homeserver"), nil
}
