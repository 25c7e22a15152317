// Command parley is Parley's command-line client: one device of one account,
// kept in a home directory (--home). It is meant for people and scripts
// alike: its output formats and exit status are a contract (see usageText
// and output.go).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/wire"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the server refused, the network failed, ...
	exitUsage = 2 // bad command line
)

// recvGrace bounds how long recv waits for the server to finish sending
// pending events (caught_up), beyond --wait, before giving up.
const recvGrace = 2 * time.Minute

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &environment{
		stdin:    os.Stdin,
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		getenv:   os.Getenv,
		terminal: isTerminal(os.Stdin),
	}
	os.Exit(run(ctx, os.Args[1:], env))
}

// environment is what a run of the CLI reads and writes, so that tests can
// supply their own.
type environment struct {
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	getenv   func(string) string
	terminal bool // stdin is a terminal: prompt for the password
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// run executes one command line and returns the exit status.
func run(ctx context.Context, argv []string, env *environment) int {
	inv, err := parseArgs(argv, env.getenv)
	if err != nil {
		if !errors.Is(err, errHelp) {
			fmt.Fprintf(env.stderr, "parley: %s\n", oneLine(err.Error()))
		}
		fmt.Fprint(env.stderr, usageText)
		return exitUsage
	}
	c := &cli{inv: inv, env: env}
	if err := c.dispatch(ctx); err != nil {
		fmt.Fprintf(env.stderr, "parley: %s\n", errorLine(err))
		var uerr *usageError
		if errors.As(err, &uerr) {
			return exitUsage
		}
		return exitError
	}
	return exitOK
}

// errorLine is the one-line message for err. A server refusal reads
// "CODE: MESSAGE" (the SDK returns *wire.Error unwrapped where it can);
// the SDK's "client: " prefix is dropped as noise for people.
func errorLine(err error) string {
	msg := strings.TrimPrefix(oneLine(err.Error()), "client: ")
	if errors.Is(err, client.ErrNoAccount) {
		msg += "; run parley register NAME or parley login NAME"
	}
	return msg
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

type cli struct {
	inv *invocation
	env *environment
}

func (c *cli) dispatch(ctx context.Context) error {
	switch c.inv.cmd {
	case "register", "login":
		return c.create(ctx)
	case "send":
		return c.send(ctx)
	case "recv":
		return c.recv(ctx)
	case "devices":
		return c.devices(ctx)
	case "whoami":
		return c.whoami(ctx)
	case "safety-number":
		return c.safetyNumber(ctx)
	case "logout":
		return c.logout(ctx)
	case "group":
		return c.group(ctx)
	}
	return usagef("unknown command %q", c.inv.cmd)
}

// warn prints an SDK warning on stderr, e.g. "parley: safety number with
// bob@example.org changed (...)".
func (c *cli) warn(w client.Warning) {
	fmt.Fprintf(c.env.stderr, "parley: %s\n", oneLine(w.Message))
}

// open opens the account in --home; --server or PARLEY_SERVER, when given,
// replace the server in account.json for this run.
func (c *cli) open() (*client.Account, error) {
	opts := []client.AccountOption{client.WithWarnings(c.warn)}
	if c.inv.serverExplicit {
		opts = append(opts, client.WithServer(c.inv.server))
	}
	return client.Open(c.inv.home, opts...)
}

// create is register and login.
func (c *cli) create(ctx context.Context) error {
	password, err := c.password()
	if err != nil {
		return err
	}
	name := c.inv.args[0]
	device := c.inv.deviceName
	if device == "" {
		device = defaultDeviceName()
	}
	f := client.Register
	if c.inv.cmd == "login" {
		f = client.Login
	}
	acct, err := f(ctx, c.inv.home, c.inv.server, name, password, device, client.WithWarnings(c.warn))
	if err != nil {
		return err
	}
	defer acct.Close()
	if c.inv.cmd == "register" {
		_, err = fmt.Fprintln(c.env.stdout, acct.UserID())
	} else {
		_, err = fmt.Fprintf(c.env.stdout, "%s %d\n", acct.UserID(), acct.DeviceID())
	}
	return err
}

// password returns --password or PARLEY_PASSWORD, else one line of stdin.
func (c *cli) password() (string, error) {
	if c.inv.passwordSet {
		return c.inv.password, nil
	}
	if c.env.terminal {
		fmt.Fprint(c.env.stderr, "Password: ")
	}
	line, err := bufio.NewReader(c.env.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("no password: give --password, set PARLEY_PASSWORD or write it on stdin")
	}
	return line, nil
}

func defaultDeviceName() string {
	name := "parley"
	if h, err := os.Hostname(); err == nil && h != "" {
		name = "parley on " + h
	}
	if len(name) > wire.MaxDeviceNameLen {
		name = name[:wire.MaxDeviceNameLen]
	}
	return name
}

func (c *cli) send(ctx context.Context) error {
	acct, err := c.open()
	if err != nil {
		return err
	}
	defer acct.Close()
	to := acct.QualifyUser(c.inv.args[0])
	text := strings.Join(c.inv.args[1:], " ")
	if text == "" {
		return usagef("usage: parley send USER|GROUP TEXT (TEXT must not be empty)")
	}
	res, err := acct.SendText(ctx, to, text)
	if err != nil {
		return err
	}
	if c.inv.json {
		return writeJSON(c.env.stdout, res)
	}
	return nil
}

func (c *cli) recv(ctx context.Context) error {
	acct, err := c.open()
	if err != nil {
		return err
	}
	defer acct.Close()
	opts := client.ReceiveOptions{MarkRead: true}
	if c.inv.wait > 0 {
		opts.Until = time.Now().Add(c.inv.wait)
	}
	rctx, cancel := context.WithTimeout(ctx, c.inv.wait+recvGrace)
	defer cancel()
	p := &printer{w: c.env.stdout, json: c.inv.json}
	err = acct.Receive(rctx, opts, p.print)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		// Interrupted (SIGINT, SIGTERM): what was printed is acknowledged.
		return nil
	case errors.Is(err, context.DeadlineExceeded) && rctx.Err() != nil:
		return errors.New("timed out waiting for the server to send pending events")
	}
	return err
}

func (c *cli) devices(ctx context.Context) error {
	acct, err := c.open()
	if err != nil {
		return err
	}
	defer acct.Close()
	list, err := acct.API().Devices(ctx)
	if err != nil {
		return err
	}
	if c.inv.json {
		return writeJSON(c.env.stdout, list)
	}
	for _, d := range list.Devices {
		if _, err := fmt.Fprintln(c.env.stdout, deviceLine(d)); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) whoami(ctx context.Context) error {
	acct, err := c.open()
	if err != nil {
		return err
	}
	defer acct.Close()
	w, err := acct.API().WhoAmI(ctx)
	if err != nil {
		return err
	}
	if c.inv.json {
		return writeJSON(c.env.stdout, w)
	}
	_, err = fmt.Fprintf(c.env.stdout, "%s %d\n", w.UserID, w.DeviceID)
	return err
}

func (c *cli) safetyNumber(ctx context.Context) error {
	acct, err := c.open()
	if err != nil {
		return err
	}
	defer acct.Close()
	n, err := acct.SafetyNumber(ctx, c.inv.args[0])
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.env.stdout, n)
	return err
}

func (c *cli) logout(ctx context.Context) error {
	acct, err := c.open()
	if err != nil {
		return err
	}
	if err := acct.Logout(ctx); err != nil {
		acct.Close()
		return err
	}
	return nil
}

// writeJSON writes v as one line of JSON, without HTML escaping (a "<" in
// a message stays "<").
func writeJSON(w io.Writer, v any) error {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}
