package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// homeserverBin is built once for every scenario test.
var homeserverBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "parley-bench-test-")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		if !testing.Short() {
			bin, err := buildHomeserver(context.Background(), dir, os.Stderr)
			if err != nil {
				panic(err)
			}
			homeserverBin = bin
		}
		return m.Run()
	}())
}

// report is the JSON object a run prints.
type report struct {
	Scenario          string             `json:"scenario"`
	DeliveredPerSec   *float64           `json:"delivered_per_sec"`
	LatencyMs         map[string]float64 `json:"latency_ms"`
	ServerRSSBytes    *int64             `json:"server_rss_bytes"`
	Sockets           *int               `json:"sockets"`
	RSSPerSocketBytes *float64           `json:"rss_per_socket_bytes"`
	FanoutMs          map[string]float64 `json:"fanout_ms"`
	CatchupPerSec     *float64           `json:"catchup_per_sec"`
	CatchupAckedSec   *float64           `json:"catchup_acked_seconds"`
	ServerCPUUsPerMsg *float64           `json:"server_cpu_us_per_msg"`
	LoadAvg           []float64          `json:"load_avg"`
	ConnectsPerSec    *float64           `json:"connects_per_sec"`
	AcceptedPerSec    *float64           `json:"accepted_per_sec"`
	Sent              *int64             `json:"sent"`
	Delivered         *int64             `json:"delivered"`
	Undelivered       *int64             `json:"undelivered"`
	Receipts          *int64             `json:"receipts"`
	Errors            int64              `json:"errors"`
	FirstError        string             `json:"first_error"`
}

// bench runs parley-bench in-process against a homeserver subprocess and
// decodes its one JSON object.
func bench(t *testing.T, args ...string) report {
	t.Helper()
	if testing.Short() {
		t.Skip("starts homeservers")
	}
	var stdout, stderr bytes.Buffer
	all := append(args, "--json", "-q", "--homeserver-bin", homeserverBin, "--plot", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if code := run(ctx, all, &stdout, &stderr); code != 0 {
		t.Fatalf("parley-bench %v: exit %d\n%s", args, code, stderr.String())
	}
	var r report
	dec := json.NewDecoder(&stdout)
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", stdout.String())
	}
	if r.Scenario != args[0] {
		t.Errorf("scenario = %q, want %q", r.Scenario, args[0])
	}
	if len(r.LoadAvg) != 3 {
		t.Errorf("load_avg = %v, want three numbers", r.LoadAvg)
	}
	if r.Errors != 0 {
		t.Errorf("%d errors, first: %s", r.Errors, r.FirstError)
	}
	if r.ServerRSSBytes == nil || *r.ServerRSSBytes <= 0 {
		t.Errorf("server_rss_bytes missing for a self-started server")
	}
	if r.ServerCPUUsPerMsg == nil || *r.ServerCPUUsPerMsg < 0 {
		t.Errorf("server_cpu_us_per_msg missing")
	}
	return r
}

func checkLatency(t *testing.T, name string, l map[string]float64, keys ...string) {
	t.Helper()
	if l == nil {
		t.Fatalf("%s missing", name)
	}
	prev := 0.0
	for _, k := range keys {
		v, ok := l[k]
		if !ok {
			t.Fatalf("%s.%s missing: %v", name, k, l)
		}
		if v < prev {
			t.Errorf("%s not ordered: %v", name, l)
		}
		prev = v
	}
}

func checkDirect(t *testing.T, r report) {
	t.Helper()
	if r.DeliveredPerSec == nil || *r.DeliveredPerSec <= 0 {
		t.Errorf("delivered_per_sec = %v, want > 0", r.DeliveredPerSec)
	}
	checkLatency(t, "latency_ms", r.LatencyMs, "p50", "p99", "p999")
	if r.LatencyMs["p50"] <= 0 {
		t.Errorf("latency p50 = %v", r.LatencyMs["p50"])
	}
	if r.Undelivered == nil || *r.Undelivered != 0 || r.Sent == nil || *r.Sent == 0 {
		t.Errorf("sent %v, undelivered %v", r.Sent, r.Undelivered)
	}
	// Receipts flow back to the senders.
	if r.Receipts == nil || *r.Receipts == 0 {
		t.Errorf("no delivered receipts reached the senders")
	}
}

func TestScenarios(t *testing.T) {
	t.Run("direct closed loop", func(t *testing.T) {
		r := bench(t, "direct", "--pairs", "4", "--duration", "1500ms", "--warmup", "300ms")
		checkDirect(t, r)
	})
	t.Run("direct open loop", func(t *testing.T) {
		r := bench(t, "direct", "--pairs", "4", "--rate", "200", "--duration", "1s", "--warmup", "200ms")
		checkDirect(t, r)
		// 200/s for 1 s: about 200 delivered per second.
		if v := *r.DeliveredPerSec; v < 100 || v > 300 {
			t.Errorf("open loop at 200/s delivered %v/s", v)
		}
	})
	t.Run("direct signal", func(t *testing.T) {
		r := bench(t, "direct", "--pairs", "2", "--crypto", "signal", "--duration", "1s", "--warmup", "200ms")
		checkDirect(t, r)
	})
	t.Run("group", func(t *testing.T) {
		r := bench(t, "group", "--members", "12", "--messages", "10")
		checkLatency(t, "fanout_ms", r.FanoutMs, "p50", "p99")
		// Every member device got every message (bench counts it as an
		// error otherwise), 11 members x 10 messages.
		if r.Delivered == nil || *r.Delivered != 110 {
			t.Errorf("delivered = %v, want 110", r.Delivered)
		}
	})
	t.Run("offline", func(t *testing.T) {
		r := bench(t, "offline", "--messages", "500", "--senders", "4")
		if r.AcceptedPerSec == nil || *r.AcceptedPerSec <= 0 {
			t.Errorf("accepted_per_sec = %v", r.AcceptedPerSec)
		}
		if r.CatchupPerSec == nil || *r.CatchupPerSec <= 0 {
			t.Errorf("catchup_per_sec = %v", r.CatchupPerSec)
		}
		if r.Delivered == nil || *r.Delivered != 500 {
			t.Errorf("caught up %v of 500", r.Delivered)
		}
		if r.CatchupAckedSec == nil || *r.CatchupAckedSec <= 0 {
			t.Errorf("catchup_acked_seconds = %v", r.CatchupAckedSec)
		}
	})
	t.Run("connections", func(t *testing.T) {
		r := bench(t, "connections", "--sockets", "60", "--idle", "300ms")
		if r.Sockets == nil || *r.Sockets != 60 {
			t.Errorf("sockets = %v, want 60", r.Sockets)
		}
		if r.RSSPerSocketBytes == nil || r.ConnectsPerSec == nil || *r.ConnectsPerSec <= 0 {
			t.Errorf("rss_per_socket_bytes %v, connects_per_sec %v", r.RSSPerSocketBytes, r.ConnectsPerSec)
		}
	})
	t.Run("federation", func(t *testing.T) {
		r := bench(t, "federation", "--pairs", "2", "--duration", "1500ms", "--warmup", "300ms")
		checkDirect(t, r)
		if *r.Receipts != *r.Delivered {
			t.Errorf("receipts %d for %d delivered", *r.Receipts, *r.Delivered)
		}
	})
}

func TestKeepReusesAccounts(t *testing.T) {
	keep := t.TempDir()
	r1 := bench(t, "direct", "--pairs", "2", "--duration", "500ms", "--warmup", "0s", "--keep", keep)
	checkDirect(t, r1)
	accounts := filepath.Join(keep, "accounts-bench.test.json")
	before, err := os.ReadFile(accounts)
	if err != nil {
		t.Fatal(err)
	}
	r2 := bench(t, "direct", "--pairs", "2", "--duration", "500ms", "--warmup", "0s", "--keep", keep)
	checkDirect(t, r2)
	// The second run used the kept accounts: it registered none, so the
	// file (users and their tokens) is as the first run left it.
	after, err := os.ReadFile(accounts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the second run changed the kept accounts: it did not reuse them")
	}
}

func TestHistogram(t *testing.T) {
	h := newHist()
	for v := 1; v <= 100000; v++ {
		h.record(time.Duration(v) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 50000}, {0.99, 99000}, {0.999, 99900}, {1, 100000}} {
		got := h.quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.016 {
			t.Errorf("q%v = %d, want %d within 1.6%%", c.q, got, c.want)
		}
	}
	for v := int64(0); v < 1<<20; v = v*3/2 + 1 {
		lo, hi := bucketRange(bucketOf(v))
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket [%d,%d]", v, lo, hi)
		}
	}
	o := newHist()
	o.record(time.Second)
	h.merge(o)
	if h.max != 1_000_000 || h.n != 100001 {
		t.Errorf("merge: max %d n %d", h.max, h.n)
	}
}

func TestOptions(t *testing.T) {
	var errOut bytes.Buffer
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"direct", "--pairs", "10", "--rate", "5000"}, true},
		{[]string{"--json", "group"}, true},
		{[]string{"bogus"}, false},
		{[]string{"direct", "--server", "http://192.0.2.1:8080"}, false},
		{[]string{"direct", "--server", "http://127.0.0.5:8080"}, true},
		{[]string{"connections", "--sockets", "19001"}, false},
		{[]string{"group", "--crypto", "signal"}, false},
		{[]string{"federation", "--server", "http://127.0.0.1:1"}, false},
	} {
		_, err := parseOptions(c.args, &errOut)
		if (err == nil) != c.ok {
			t.Errorf("%v: err = %v", c.args, err)
		}
	}
}

// TestPlots checks that the SVG plots are well-formed XML.
func TestPlots(t *testing.T) {
	h := newHist()
	for v := 1; v < 5000; v += 7 {
		h.record(time.Duration(v) * 37 * time.Microsecond)
	}
	r := &result{Scenario: "direct", hist: h, histTitle: "send→deliver <latency> & co",
		series: []series{{"sent/s", []float64{1, 5, 200, 180}}, {"delivered/s", []float64{0, 4, 190, 185}}}, seriesDt: 100 * time.Millisecond}
	dir := t.TempDir()
	if err := writePlots(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"direct-latency.svg", "direct-throughput.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		d := xml.NewDecoder(bytes.NewReader(b))
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if el, ok := tok.(xml.StartElement); ok { // XML forbids repeating one
				seen := map[string]bool{}
				for _, a := range el.Attr {
					if seen[a.Name.Local] {
						t.Fatalf("%s: <%s> repeats attribute %s", name, el.Name.Local, a.Name.Local)
					}
					seen[a.Name.Local] = true
				}
			}
		}
	}
}

func TestLogField(t *testing.T) {
	line := `time=2026-01-01T00:00:00Z level=INFO msg="parley homeserver ready" url=http://127.0.0.1:4242 domain=a.test data="/tmp/x y"`
	if got := logField(line, "url"); got != "http://127.0.0.1:4242" {
		t.Errorf("url = %q", got)
	}
	if got := logField(line, "data"); got != "/tmp/x y" {
		t.Errorf("data = %q", got)
	}
}
