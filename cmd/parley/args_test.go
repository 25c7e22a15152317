package main

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseArgs(t *testing.T) {
	base := map[string]string{"HOME": "/home/u"}
	tests := []struct {
		name string
		argv []string
		env  map[string]string
		want invocation
	}{
		{
			name: "defaults",
			argv: []string{"recv"},
			want: invocation{cmd: "recv", args: []string{}, home: "/home/u/.parley", server: defaultServer},
		},
		{
			name: "flags before the command",
			argv: []string{"--home", "/tmp/x", "recv", "--json"},
			want: invocation{cmd: "recv", args: []string{}, home: "/tmp/x", server: defaultServer, json: true},
		},
		{
			name: "flags after the command",
			argv: []string{"recv", "--home", "/tmp/x", "--json", "--wait", "2s"},
			want: invocation{cmd: "recv", args: []string{}, home: "/tmp/x", server: defaultServer, json: true, wait: 2 * time.Second},
		},
		{
			name: "single dash and = forms, between arguments",
			argv: []string{"send", "-home=/h", "bob@x", "--server=http://s:1", "hello", "world"},
			want: invocation{cmd: "send", args: []string{"bob@x", "hello", "world"}, home: "/h",
				server: "http://s:1", serverExplicit: true},
		},
		{
			name: "double dash ends the flags",
			argv: []string{"send", "bob@x", "--", "--json", "-x"},
			want: invocation{cmd: "send", args: []string{"bob@x", "--json", "-x"}, home: "/home/u/.parley", server: defaultServer},
		},
		{
			name: "environment",
			argv: []string{"register", "alice"},
			env:  map[string]string{"PARLEY_HOME": "/e/home", "PARLEY_SERVER": "https://chat.example", "PARLEY_PASSWORD": "pw-from-env"},
			want: invocation{cmd: "register", args: []string{"alice"}, home: "/e/home", server: "https://chat.example",
				serverExplicit: true, password: "pw-from-env", passwordSet: true},
		},
		{
			name: "flags beat the environment",
			argv: []string{"login", "alice", "--home", "/f", "--server", "http://f:2", "--password", "pw-flag", "--device-name", "phone"},
			env:  map[string]string{"PARLEY_HOME": "/e", "PARLEY_SERVER": "http://e:1", "PARLEY_PASSWORD": "pw-env"},
			want: invocation{cmd: "login", args: []string{"alice"}, home: "/f", server: "http://f:2", serverExplicit: true,
				password: "pw-flag", passwordSet: true, deviceName: "phone"},
		},
		{
			name: "tilde in --home",
			argv: []string{"whoami", "--home=~/alt"},
			want: invocation{cmd: "whoami", args: []string{}, home: "/home/u/alt", server: defaultServer},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			got, err := parseArgs(tt.argv, envFrom(env))
			if err != nil {
				t.Fatal(err)
			}
			if got.args == nil {
				got.args = []string{}
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestParseArgsUsageErrors(t *testing.T) {
	for _, argv := range [][]string{
		{},
		{"frobnicate"},
		{"send", "bob@x"},
		{"register"},
		{"register", "a", "b"},
		{"recv", "extra"},
		{"recv", "--wait", "soon"},
		{"recv", "--wait", "-1s"},
		{"send", "bob@x", "hi", "--wait", "1s"},
		{"devices", "--device-name", "x"},
		{"--bogus", "recv"},
		{"recv", "--server", "ftp://x"},
		{"safety-number"},
	} {
		_, err := parseArgs(argv, envFrom(nil))
		var uerr *usageError
		if !errors.As(err, &uerr) {
			t.Errorf("%q: err = %v, want a usage error", argv, err)
		}
	}
	for _, argv := range [][]string{{"help"}, {"-h"}, {"--help"}, {"recv", "-help"}} {
		if _, err := parseArgs(argv, envFrom(nil)); !errors.Is(err, errHelp) {
			t.Errorf("%q: err = %v, want errHelp", argv, err)
		}
	}
}
