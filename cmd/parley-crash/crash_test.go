package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A short run against the real homeserver binary: a few kills at random
// moments, and every accepted message arrives once, in order. CI runs the
// command itself with 20 kills; docs/security.md gives the long form.
func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	bin, err := buildHomeserver(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := newProcessServer(bin+" --listen {addr} --data {data} --log-level warn",
		filepath.Join(dir, "data"), filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), srv, Config{Kills: 5, Pairs: 2, MinGap: 50 * time.Millisecond,
		MaxGap: 400 * time.Millisecond, Drain: 60 * time.Second, Seed: uint64(time.Now().UnixNano()), Dir: dir})
	t.Log(res)
	if err != nil || !res.OK() || res.Accepted == 0 || res.Kills != 5 {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("%v: %s\nserver log:\n%s", err, res.Problem, log)
	}
}
