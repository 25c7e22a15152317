// Package setup turns a configuration into a running homeserver: it opens
// storage, builds the domain and the client API, and owns listeners and
// background jobs. cmd/homeserver and the integration tests both use it, so
// the tests run exactly what operators run.
package setup

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/parleychat/parley/homeserver"
)

// Config is every setting of a homeserver. Each key is a YAML key, a flag
// --key-with-dashes and an environment variable PARLEY_KEY (upper case).
// Precedence: flag, then environment, then the --config file, then default.
type Config struct {
	Domain          string   `yaml:"domain"`
	Listen          string   `yaml:"listen"`
	Data            string   `yaml:"data"`
	Retention       Duration `yaml:"retention"`
	ExpiryInterval  Duration `yaml:"expiry_interval"`
	MaxGroupMembers int      `yaml:"max_group_members"`
	ClientTLSCert   string   `yaml:"client_tls_cert"`
	ClientTLSKey    string   `yaml:"client_tls_key"`
	LogLevel        string   `yaml:"log_level"`
	DebugListen     string   `yaml:"debug_listen"`

	// Federation
	FederationListen       string   `yaml:"federation_listen"`
	TLSCert                string   `yaml:"tls_cert"`
	TLSKey                 string   `yaml:"tls_key"`
	FederationCA           string   `yaml:"federation_ca"`
	FederationInsecure     bool     `yaml:"federation_insecure"`
	FederationAllowPrivate bool     `yaml:"federation_allow_private"`
	DNSResolver            string   `yaml:"dns_resolver"`
	FederationAllow        []string `yaml:"federation_allow"`
	FederationDeny         []string `yaml:"federation_deny"`
	LogFormat              string   `yaml:"log_format"`
}

// Defaults is the configuration of `go run ./cmd/homeserver` with nothing set.
func Defaults() Config {
	return Config{
		Domain:          "localhost",
		Listen:          "127.0.0.1:8080",
		Data:            "./data",
		Retention:       Duration(30 * 24 * time.Hour),
		ExpiryInterval:  Duration(time.Hour),
		MaxGroupMembers: 1024,
		LogLevel:        "info",
		LogFormat:       "text",

		FederationListen: ":8448",
	}
}

// FederationEnabled: a federation listener needs TLS, or the explicit
// insecure switch meant for local testing.
func (c Config) FederationEnabled() bool {
	return c.FederationListen != "" && (c.TLSCert != "" || c.FederationInsecure)
}

// Validate names every bad key at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !homeserver.ValidDomain(c.Domain) {
		bad("domain", "%q is not a valid domain name", c.Domain)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not HOST:PORT", c.Listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("listen", "%q has no valid port", c.Listen)
	}
	if strings.TrimSpace(c.Data) == "" {
		bad("data", "a data directory is required")
	}
	if c.Retention < Duration(time.Minute) {
		bad("retention", "%s is too short (at least 1m)", c.Retention)
	}
	if c.ExpiryInterval < Duration(time.Second) {
		bad("expiry_interval", "%s is too short (at least 1s)", c.ExpiryInterval)
	}
	if c.MaxGroupMembers < 2 || c.MaxGroupMembers > 100000 {
		bad("max_group_members", "%d is outside 2..100000", c.MaxGroupMembers)
	}
	if c.FederationListen != "" {
		if _, _, err := net.SplitHostPort(c.FederationListen); err != nil {
			bad("federation_listen", "%q is not HOST:PORT (or :PORT)", c.FederationListen)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls_cert", "tls_cert and tls_key go together")
	}
	if c.DNSResolver != "" {
		if _, _, err := net.SplitHostPort(c.DNSResolver); err != nil {
			bad("dns_resolver", "%q is not HOST:PORT", c.DNSResolver)
		}
	}
	for _, l := range []struct {
		key string
		ds  []string
	}{{"federation_allow", c.FederationAllow}, {"federation_deny", c.FederationDeny}} {
		for _, d := range l.ds {
			if !homeserver.ValidDomain(d) {
				bad(l.key, "%q is not a domain", d)
			}
		}
	}
	if c.DebugListen != "" {
		if _, _, err := net.SplitHostPort(c.DebugListen); err != nil {
			bad("debug_listen", "%q is not HOST:PORT", c.DebugListen)
		}
	}
	if (c.ClientTLSCert == "") != (c.ClientTLSKey == "") {
		bad("client_tls_cert", "client_tls_cert and client_tls_key go together")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log_format", "%q is not text or json", c.LogFormat)
	}
	return errors.Join(errs...)
}

// Duration is a time.Duration that reads "90s", "720h" and also "30d".
type Duration time.Duration

func (d Duration) String() string {
	t := time.Duration(d)
	if t%(24*time.Hour) == 0 && t != 0 {
		return strconv.FormatInt(int64(t/(24*time.Hour)), 10) + "d"
	}
	return t.String()
}

func (d *Duration) Set(s string) error {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return fmt.Errorf("%q is not a duration", s)
		}
		*d = Duration(n * float64(24*time.Hour))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 90s, 12h, 30d)", s)
	}
	*d = Duration(v)
	return nil
}

func (d *Duration) UnmarshalYAML(n *yaml.Node) error { return d.Set(n.Value) }

// option describes one key for flags and the environment.
type option struct {
	key  string
	help string
	val  flag.Value
}

func (c *Config) options() []option {
	return []option{
		{"domain", "the domain users of this server live in (alice@DOMAIN)", (*stringValue)(&c.Domain)},
		{"listen", "HOST:PORT of the client API", (*stringValue)(&c.Listen)},
		{"data", "directory holding the SQLite database", (*stringValue)(&c.Data)},
		{"retention", "how long undelivered messages are kept", &c.Retention},
		{"expiry_interval", "how often expired messages are removed", &c.ExpiryInterval},
		{"max_group_members", "most members (and invitees) a group may have", (*intValue)(&c.MaxGroupMembers)},
		{"client_tls_cert", "PEM certificate for the client API (empty: plain HTTP, e.g. behind a TLS proxy)", (*stringValue)(&c.ClientTLSCert)},
		{"client_tls_key", "PEM private key for client_tls_cert", (*stringValue)(&c.ClientTLSKey)},
		{"federation_listen", "HOST:PORT of the federation listener (empty: no federation)", (*stringValue)(&c.FederationListen)},
		{"tls_cert", "PEM certificate of the federation listener, valid for the domain", (*stringValue)(&c.TLSCert)},
		{"tls_key", "PEM private key for tls_cert", (*stringValue)(&c.TLSKey)},
		{"federation_ca", "PEM file of an extra CA to trust for other homeservers (private deployments, tests)", (*stringValue)(&c.FederationCA)},
		{"federation_insecure", "federate over plain HTTP (local testing only)", (*boolValue)(&c.FederationInsecure)},
		{"federation_allow_private", "let federation reach private and loopback addresses", (*boolValue)(&c.FederationAllowPrivate)},
		{"dns_resolver", "HOST:PORT of the DNS server for discovery (empty: the system's)", (*stringValue)(&c.DNSResolver)},
		{"federation_allow", "comma-separated domains to federate with (empty: any)", (*listValue)(&c.FederationAllow)},
		{"federation_deny", "comma-separated domains never to federate with", (*listValue)(&c.FederationDeny)},
		{"log_level", "debug, info, warn or error", (*stringValue)(&c.LogLevel)},
		{"debug_listen", "HOST:PORT serving Go's pprof profiles (keep it on loopback; empty: off)", (*stringValue)(&c.DebugListen)},
		{"log_format", "text or json", (*stringValue)(&c.LogFormat)},
	}
}

type intValue int

func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v = intValue(n)
	return nil
}

type boolValue bool

func (v *boolValue) String() string { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v = boolValue(b)
	return nil
}

// IsBoolFlag lets "--federation-insecure" stand alone on the command line.
func (v *boolValue) IsBoolFlag() bool { return true }

type listValue []string

func (v *listValue) String() string { return strings.Join(*v, ",") }
func (v *listValue) Set(s string) error {
	*v = nil
	for _, d := range strings.Split(s, ",") {
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			*v = append(*v, d)
		}
	}
	return nil
}

type stringValue string

func (s *stringValue) String() string     { return string(*s) }
func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }

// Load builds the configuration from args (without the program name), the
// environment (getenv) and the file named by --config or PARLEY_CONFIG. It
// returns flag.ErrHelp for -h.
func Load(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	cfg := Defaults()
	// Flags are parsed into a scratch Config first: a flag must win over
	// the file, which is only known after parsing.
	var fromFlags Config
	fs := flag.NewFlagSet("homeserver", flag.ContinueOnError)
	fs.SetOutput(usage)
	configFile := fs.String("config", getenv("PARLEY_CONFIG"), "YAML configuration file (env PARLEY_CONFIG)")
	opts := fromFlags.options()
	for _, o := range opts {
		fs.Var(o.val, strings.ReplaceAll(o.key, "_", "-"), o.help+" (env PARLEY_"+strings.ToUpper(o.key)+")")
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *configFile != "" {
		if err := loadFile(&cfg, *configFile); err != nil {
			return cfg, err
		}
	}
	target := cfg.options()
	var errs []error
	for _, o := range target {
		if v := getenv("PARLEY_" + strings.ToUpper(o.key)); v != "" {
			if err := o.val.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("config %s (PARLEY_%s): %w", o.key, strings.ToUpper(o.key), err))
			}
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for i, o := range target {
		if set[strings.ReplaceAll(o.key, "_", "-")] {
			if err := o.val.Set(opts[i].val.String()); err != nil {
				errs = append(errs, fmt.Errorf("config %s: %w", o.key, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// loadFile reads a YAML mapping of keys to scalars. Each value goes through
// the same parser as its flag, so errors name the key the same way, and a
// misspelt key is an error rather than a silent default.
func loadFile(cfg *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	byKey := map[string]flag.Value{}
	for _, o := range cfg.options() {
		byKey[o.key] = o.val
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		n := raw[k]
		v, ok := byKey[k]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("config %s: unknown key in %s", k, path))
		case n.Kind == yaml.SequenceNode && isList(v):
			var items []string
			for _, it := range n.Content {
				items = append(items, it.Value)
			}
			if err := v.Set(strings.Join(items, ",")); err != nil {
				errs = append(errs, fmt.Errorf("config %s: %w", k, err))
			}
		case n.Kind != yaml.ScalarNode:
			errs = append(errs, fmt.Errorf("config %s: must be a single value", k))
		default:
			if err := v.Set(n.Value); err != nil {
				errs = append(errs, fmt.Errorf("config %s: %w", k, err))
			}
		}
	}
	return errors.Join(errs...)
}

func isList(v flag.Value) bool {
	_, ok := v.(*listValue)
	return ok
}

// Keys lists every configuration key, for docs and tests.
func Keys() []string {
	var c Config
	var keys []string
	for _, o := range c.options() {
		keys = append(keys, o.key)
	}
	sort.Strings(keys)
	return keys
}
