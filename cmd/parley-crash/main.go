// Command parley-crash checks that a homeserver keeps its delivery promise
// across crashes. It runs the real homeserver binary under a load of
// senders, kills it with SIGKILL at random moments, restarts it on the
// same data and port, and checks from the clients' side that every message
// the server accepted is handed to the receiving application exactly
// once, in order. The last line it prints is
//
//	crash: kills=N accepted=A delivered=D lost=0 duplicated=0 ...
//
// and it exits 1 unless lost, duplicated and every other problem counter
// are 0.
//
// Senders retry an unanswered send with the same client id (the server
// must store it once); half of them send over REST, half over their
// WebSocket. Receivers reconnect after each crash, de-duplicate by
// (conversation, seq) and acknowledge. The server is any command line
// (--server) with {addr} and {data} placeholders, so another storage
// engine or build can be put under the same load.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("parley-crash", flag.ContinueOnError)
	kills := fs.Int("kills", 20, "how many times to SIGKILL and restart the server")
	pairs := fs.Int("pairs", 4, "sender/receiver pairs (odd-numbered senders use the WebSocket)")
	minGap := fs.Duration("min-gap", 100*time.Millisecond, "shortest time the server runs before a kill")
	maxGap := fs.Duration("max-gap", time.Second, "longest time the server runs before a kill")
	drain := fs.Duration("drain", 60*time.Second, "how long delivery may take after the last restart")
	seed := fs.Uint64("seed", 0, "random seed for the kill times (0: from the clock)")
	homeserver := fs.String("homeserver", "", "homeserver binary for {bin} (default: go build ./cmd/homeserver)")
	server := fs.String("server", "{bin} --listen {addr} --data {data} --log-level warn",
		"server command line; {addr} is the listen address, {data} the data directory, {bin} the --homeserver binary")
	dir := fs.String("dir", "", "working directory for data, keys and the server log (default: a temporary one, removed on success)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *kills < 0 || *pairs < 1 || *maxGap < *minGap {
		fmt.Fprintln(os.Stderr, "parley-crash: need --kills >= 0, --pairs >= 1, --max-gap >= --min-gap")
		return 2
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work := *dir
	if work == "" {
		var err error
		if work, err = os.MkdirTemp("", "parley-crash-"); err != nil {
			fmt.Fprintln(os.Stderr, "parley-crash:", err)
			return 1
		}
	}
	bin := *homeserver
	if bin == "" && strings.Contains(*server, "{bin}") {
		var err error
		if bin, err = buildHomeserver(ctx, work); err != nil {
			fmt.Fprintln(os.Stderr, "parley-crash:", err)
			return 1
		}
	}
	template := strings.ReplaceAll(*server, "{bin}", bin)
	srv, err := newProcessServer(template, filepath.Join(work, "data"), filepath.Join(work, "server.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-crash:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "parley-crash: %s at %s, %d kills, %d pairs, seed %d, work dir %s\n",
		template, srv.URL(), *kills, *pairs, *seed, work)
	res, err := Run(ctx, srv, Config{Kills: *kills, Pairs: *pairs, MinGap: *minGap, MaxGap: *maxGap,
		Drain: *drain, Seed: *seed, Dir: work, Log: os.Stderr})
	fmt.Println(res)
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "parley-crash: %v (server log: %s)\n", err, filepath.Join(work, "server.log"))
		return 1
	case !res.OK():
		fmt.Fprintf(os.Stderr, "parley-crash: FAILED: %s (seed %d, server log: %s)\n", res.Problem, *seed,
			filepath.Join(work, "server.log"))
		return 1
	}
	if *dir == "" {
		os.RemoveAll(work)
	}
	return 0
}
