// Command parley-bench is Parley's load tool. It drives a homeserver
// through the real client protocol (REST and the per-device WebSocket,
// via the Go client package) and reports throughput, latency, memory and
// the server's CPU per message:
//
//	parley-bench SCENARIO [--server URL] [--pairs N] [--rate R] [--duration D]
//	    [--sockets N] [--members M] [--messages K] [--json] [--plot DIR] ...
//
// Scenarios: connections, direct, group, offline, federation. Without
// --server it builds and starts its own homeserver as a subprocess on a
// temporary data directory and a free loopback port, and stops it at the
// end; only then (or with --server-pid) does it know the server's memory
// and CPU. See docs/performance.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

var scenarios = map[string]func(context.Context, *env) (*result, error){
	"connections": runConnections,
	"direct":      runDirectScenario,
	"group":       runGroup,
	"offline":     runOffline,
	"federation":  runFederation,
}

// options are the command line.
type options struct {
	scenario string

	server        string
	serverPID     int
	homeserverBin string
	keep          string
	serverLog     string
	serverFlags   stringList

	pairs    int
	rate     float64
	duration time.Duration
	warmup   time.Duration
	window   int
	sockets  int
	members  int
	messages int
	senders  int
	size     int
	crypto   string

	registerConc int
	dialConc     int
	idle         time.Duration
	drain        time.Duration
	maxTime      time.Duration

	json       bool
	plot       string
	quiet      bool
	cpuProfile string
}

const usageText = `usage: parley-bench SCENARIO [flags]

Scenarios:
  connections  open --sockets idle authenticated WebSockets; connects/s and
               server memory per socket
  direct       --pairs sender/receiver pairs online; delivered msgs/s and
               send->deliver latency, open loop (--rate) or closed loop (--rate 0)
  group        one group of --members members; --messages sender-key messages,
               time until every member device has each
  offline      queue --messages messages for an offline device from --senders
               senders (accepted msgs/s), then time its catch-up
  federation   direct across two homeservers (a.test, b.test) the bench starts,
               with its own DNS server for discovery

Flags:
`

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("parley-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.server, "server", "", "URL of a running homeserver on loopback (default: start one)")
	fs.IntVar(&o.serverPID, "server-pid", 0, "with --server: its process id, to report its memory and CPU")
	fs.StringVar(&o.homeserverBin, "homeserver-bin", "", "homeserver binary to start (default: go build ./cmd/homeserver)")
	fs.StringVar(&o.keep, "keep", "", "keep the started server's data and the bench accounts in this directory and reuse them next time")
	fs.Var(&o.serverFlags, "server-flag", "extra flag for the started homeserver, e.g. --server-flag=--debug-listen=127.0.0.1:6060 (repeatable)")
	fs.StringVar(&o.serverLog, "server-log", "", "write the started server's log here (default: a temp file, removed)")
	fs.IntVar(&o.pairs, "pairs", 500, "direct, federation: sender/receiver pairs, each device with its own socket")
	fs.Float64Var(&o.rate, "rate", 0, "direct, federation: total messages/s, open loop; 0: closed loop at max")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "direct, federation: measured sending time (after --warmup)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "direct, federation: sending time before measuring")
	fs.IntVar(&o.window, "window", 2, "closed loop: messages in flight (sent, delivered receipt not yet back) per pair")
	fs.IntVar(&o.sockets, "sockets", 1000, "connections: idle sockets to open (at most 19000)")
	fs.IntVar(&o.members, "members", 1024, "group: members, the sender included")
	fs.IntVar(&o.messages, "messages", 0, "group: messages (default 100); offline: messages queued (default 10000)")
	fs.IntVar(&o.senders, "senders", 64, "offline: concurrent senders")
	fs.IntVar(&o.size, "size", 160, "ciphertext bytes per message (--crypto=none)")
	fs.StringVar(&o.crypto, "crypto", "none", "none: pre-encrypted opaque envelopes (measures the server); signal: real Signal sessions (direct only)")
	fs.IntVar(&o.registerConc, "register-concurrency", 12, "concurrent account registrations (argon2 is costly)")
	fs.IntVar(&o.dialConc, "dial-concurrency", 64, "concurrent WebSocket connects")
	fs.DurationVar(&o.idle, "idle", 2*time.Second, "connections: how long the sockets stay idle before memory is read")
	fs.DurationVar(&o.drain, "drain", 15*time.Second, "after sending stops: longest wait for outstanding deliveries")
	fs.DurationVar(&o.maxTime, "max-time", 2*time.Hour, "stop everything after this long")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of a table")
	fs.StringVar(&o.plot, "plot", "", "write latency histogram and throughput-over-time plots (SVG) into this directory")
	fs.BoolVar(&o.quiet, "q", false, "no progress lines on stderr")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the bench's own CPU profile (pprof) for the whole run to this file")

	// SCENARIO comes first, but accept flags before it too.
	var rest []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.scenario, rest = args[0], args[1:]
	} else {
		rest = args
	}
	if err := fs.Parse(rest); err != nil {
		return nil, err
	}
	if o.scenario == "" && fs.NArg() > 0 {
		o.scenario = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return nil, err
		}
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.scenario == "" {
		fs.Usage()
		return nil, errors.New("no scenario given")
	}
	return o, o.validate()
}

func (o *options) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, ok := scenarios[o.scenario]; !ok {
		bad("unknown scenario %q (connections, direct, group, offline, federation)", o.scenario)
	}
	if o.server != "" {
		if err := checkLoopback(o.server); err != nil {
			errs = append(errs, err)
		}
		if o.scenario == "federation" {
			bad("--server: the federation scenario starts its own two homeservers")
		}
		if o.keep != "" || len(o.serverFlags) > 0 {
			bad("--keep and --server-flag are for a homeserver the bench starts itself")
		}
	} else if o.serverPID != 0 {
		bad("--server-pid goes with --server")
	}
	if o.pairs < 1 || o.pairs > 9000 {
		bad("--pairs %d: want 1 to 9000", o.pairs)
	}
	if o.rate < 0 {
		bad("--rate %v: want >= 0", o.rate)
	}
	if o.duration <= 0 || o.warmup < 0 {
		bad("--duration must be positive and --warmup not negative")
	}
	if o.window < 1 {
		bad("--window %d: want >= 1", o.window)
	}
	if o.sockets < 1 || o.sockets > 19000 {
		bad("--sockets %d: want 1 to 19000 (20,000 open files per process, server and bench alike)", o.sockets)
	}
	if o.members < 2 || o.members > 1024 {
		bad("--members %d: want 2 to 1024 (the server's default max_group_members)", o.members)
	}
	if o.messages < 0 {
		bad("--messages %d: want >= 0", o.messages)
	}
	if o.senders < 1 || o.senders > 4096 {
		bad("--senders %d: want 1 to 4096", o.senders)
	}
	if o.size < payloadHeader || o.size > 64<<10 {
		bad("--size %d: want %d to 65536", o.size, payloadHeader)
	}
	switch o.crypto {
	case "none":
	case "signal":
		if o.scenario != "direct" {
			bad("--crypto=signal is implemented for the direct scenario only; %s sends pre-encrypted envelopes (--crypto=none)", o.scenario)
		}
	default:
		bad("--crypto %q: want none or signal", o.crypto)
	}
	if o.registerConc < 1 || o.dialConc < 1 {
		bad("concurrencies must be >= 1")
	}
	return errors.Join(errs...)
}

// run is main without os.Exit, so that tests can call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "parley-bench: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "parley-bench: cpu profile: %v\n", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	e, err := newEnv(o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "parley-bench: %v\n", err)
		return 1
	}
	defer e.close()

	res, err := scenarios[o.scenario](ctx, e)
	if err != nil {
		fmt.Fprintf(stderr, "parley-bench %s: %v\n", o.scenario, err)
		for _, s := range e.started {
			if s.logPath != "" {
				fmt.Fprintf(stderr, "--- end of %s's log (%s):\n%s\n", s.domain, s.logPath, tailFile(s.logPath, 10))
			}
		}
		return 1
	}
	res.Scenario = o.scenario
	res.LoadAvg = loadAvg()
	if o.plot != "" {
		if err := writePlots(o.plot, res); err != nil {
			fmt.Fprintf(stderr, "parley-bench: plots: %v\n", err)
			return 1
		}
	}
	if o.json {
		err = res.writeJSON(stdout)
	} else {
		err = res.writeTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "parley-bench: %v\n", err)
		return 1
	}
	return 0
}

// newRunTag returns 8 random bytes that mark this run's messages and
// names its accounts.
func newRunTag() [8]byte {
	var t [8]byte
	rand.Read(t[:])
	return t
}

func hexTag(t [8]byte) string { return hex.EncodeToString(t[:4]) }

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
