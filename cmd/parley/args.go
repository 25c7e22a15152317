package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley/client"
)

// Defaults of the global flags.
const (
	defaultServer = "http://127.0.0.1:8080"
	defaultHome   = "~/.parley"
)

// usageText is printed on stderr for help, an unknown command or bad
// arguments.
const usageText = `usage: parley [flags] COMMAND [flags] [ARGS]

commands:
  register NAME           create account NAME and this device; prints the user id
  login NAME              add this device to account NAME; prints "USER_ID DEVICE"
  send USER TEXT...       send TEXT to USER (NAME@DOMAIN, or NAME on your domain)
  send GROUP TEXT...      send TEXT to a group (group ids start with g-)
  recv [--wait D] [--json]
                          print pending events (then live ones until D has passed),
                          acknowledge them and mark printed messages read
  devices                 list this account's devices (* marks this one)
  whoami                  print "USER_ID DEVICE"
  safety-number USER      print the safety number with USER
  group create NAME [--member USER]...
                          create a group (you own it; the members join at once);
                          prints its id
  group list              one line per group: "GROUP_ID ROLE NAME" (ROLE is
                          "invited" for an invitation)
  group members GROUP     one line per member: "USER_ID ROLE"
  group add GROUP USER... add members at once (owner, admins)
  group invite GROUP USER...
                          invite users; they join or decline (owner, admins)
  group join GROUP        accept an invitation
  group decline GROUP     decline an invitation
  group remove GROUP USER remove a member (owner, admins)
  group leave GROUP       leave a group
  group role GROUP USER admin|member
                          change a member's role (owner, admins)
  group owner GROUP USER  hand ownership to a member (owner)
  group delete GROUP      delete the group (owner)
  logout                  remove this device from the server and from --home
  help                    show this text

flags (before or after the command):
  --home DIR              account directory (env PARLEY_HOME; default ~/.parley)
  --server URL            homeserver (env PARLEY_SERVER; default http://127.0.0.1:8080;
                          after register/login the server in DIR/account.json)
  --password PW           for register and login (env PARLEY_PASSWORD; else read
                          one line from stdin)
  --device-name NAME      name of the new device (register, login)
  --json                  JSON output, one object per line (send, recv, devices, whoami,
                          group create/list/members)
  --member USER           group create: a member to add (repeatable)
  --wait DURATION         recv: keep receiving live events this long (e.g. 30s)

Use -- before a TEXT that starts with "-". Exit status: 0 ok, 1 error, 2 usage.
`

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp: help was asked for (parley help, -h, --help).
var errHelp = errors.New("help requested")

// invocation is a parsed command line.
type invocation struct {
	cmd  string
	args []string

	home           string
	server         string
	serverExplicit bool // --server or PARLEY_SERVER: overrides account.json
	password       string
	passwordSet    bool // --password or PARLEY_PASSWORD
	deviceName     string
	json           bool
	wait           time.Duration
	members        []string // --member, repeatable (group create)
}

// commandSpec says which arguments and command-specific flags a command
// takes; --home, --server and --password go with every command.
type commandSpec struct {
	minArgs, maxArgs int // maxArgs < 0: no limit
	argsUsage        string
	flags            []string
}

var commands = map[string]commandSpec{
	"register":      {1, 1, "register NAME", []string{"device-name"}},
	"login":         {1, 1, "login NAME", []string{"device-name"}},
	"send":          {2, -1, "send USER|GROUP TEXT", []string{"json"}},
	"recv":          {0, 0, "recv [--wait DURATION] [--json]", []string{"json", "wait"}},
	"devices":       {0, 0, "devices [--json]", []string{"json"}},
	"whoami":        {0, 0, "whoami [--json]", []string{"json"}},
	"safety-number": {1, 1, "safety-number USER", nil},
	"logout":        {0, 0, "logout", nil},
	"group":         {1, -1, "group SUBCOMMAND [ARGS]", []string{"json", "member"}},
	"help":          {0, -1, "help", nil},
}

// globalFlags are valid with every command.
var globalFlags = []string{"home", "server", "password"}

// parseArgs parses argv (without the program name). Flags may come before
// or after the command and between its arguments; "--" ends the flags.
// getenv supplies PARLEY_HOME, PARLEY_SERVER, PARLEY_PASSWORD and HOME.
func parseArgs(argv []string, getenv func(string) string) (*invocation, error) {
	inv := &invocation{}
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&inv.home, "home", "", "")
	fs.StringVar(&inv.server, "server", "", "")
	fs.StringVar(&inv.password, "password", "", "")
	fs.StringVar(&inv.deviceName, "device-name", "", "")
	fs.BoolVar(&inv.json, "json", false, "")
	fs.DurationVar(&inv.wait, "wait", 0, "")
	fs.Func("member", "", func(v string) error { inv.members = append(inv.members, v); return nil })

	var positional []string
	rest := argv
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, &usageError{msg: err.Error()}
		}
		consumed := len(rest) - fs.NArg()
		left := fs.Args()
		if consumed > 0 && rest[consumed-1] == "--" {
			positional = append(positional, left...)
			break
		}
		if len(left) == 0 {
			break
		}
		positional = append(positional, left[0])
		rest = left[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if len(positional) == 0 {
		return nil, usagef("no command given")
	}
	inv.cmd, inv.args = positional[0], positional[1:]
	spec, ok := commands[inv.cmd]
	if !ok {
		return nil, usagef("unknown command %q", inv.cmd)
	}
	if inv.cmd == "help" {
		return nil, errHelp
	}
	for name := range set {
		if !slices.Contains(globalFlags, name) && !slices.Contains(spec.flags, name) {
			return nil, usagef("%s does not take --%s", inv.cmd, name)
		}
	}
	if len(inv.args) < spec.minArgs || (spec.maxArgs >= 0 && len(inv.args) > spec.maxArgs) {
		return nil, usagef("usage: parley %s", spec.argsUsage)
	}
	if inv.wait < 0 {
		return nil, usagef("--wait must not be negative")
	}
	if inv.cmd == "group" {
		if err := checkGroupArgs(inv, set); err != nil {
			return nil, err
		}
	}

	if !set["home"] {
		inv.home = getenv("PARLEY_HOME")
	}
	if inv.home == "" {
		inv.home = defaultHome
	}
	home, err := expandHome(inv.home, getenv)
	if err != nil {
		return nil, usagef("--home: %v", err)
	}
	inv.home = home

	switch {
	case set["server"]:
		inv.serverExplicit = true
	case getenv("PARLEY_SERVER") != "":
		inv.server, inv.serverExplicit = getenv("PARLEY_SERVER"), true
	default:
		inv.server = defaultServer
	}
	if err := client.ValidateServerURL(inv.server); err != nil {
		return nil, usagef("--server: %v", err)
	}

	switch {
	case set["password"]:
		inv.passwordSet = true
	case getenv("PARLEY_PASSWORD") != "":
		inv.password, inv.passwordSet = getenv("PARLEY_PASSWORD"), true
	}
	return inv, nil
}

// expandHome expands a leading "~" (as in the default ~/.parley, or a
// --home=~/x the shell did not expand) to the user's home directory.
func expandHome(p string, getenv func(string) string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	dir := getenv("HOME")
	if dir == "" {
		var err error
		if dir, err = os.UserHomeDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, strings.TrimPrefix(p, "~")), nil
}
