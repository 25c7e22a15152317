package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// latency is a distribution summary in milliseconds.
type latency struct {
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// fanout is the group scenario's summary: p50 and p99 as the issue names
// them (there are only ~100 samples, so no p99.9).
type fanout struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarize(h *hist) *latency {
	return &latency{P50: ms(h.quantile(0.50)), P99: ms(h.quantile(0.99)), P999: ms(h.quantile(0.999)),
		Max: ms(h.max), Mean: round3(h.mean() / 1000)}
}

// result is one run's report. The fields the issue names come first;
// pointers are absent from the JSON where the scenario does not measure
// them (a measured zero is still printed).
type result struct {
	Scenario          string   `json:"scenario"`
	DeliveredPerSec   *float64 `json:"delivered_per_sec,omitempty"`
	LatencyMs         *latency `json:"latency_ms,omitempty"`
	ServerRSSBytes    *int64   `json:"server_rss_bytes,omitempty"`
	Sockets           *int     `json:"sockets,omitempty"`
	RSSPerSocketBytes *float64 `json:"rss_per_socket_bytes,omitempty"`
	FanoutMs          *fanout  `json:"fanout_ms,omitempty"`
	CatchupPerSec     *float64 `json:"catchup_per_sec,omitempty"`
	ServerCPUUsPerMsg *float64 `json:"server_cpu_us_per_msg,omitempty"`
	// 1, 5 and 15 minute load averages of the machine at the end.
	LoadAvg [3]float64 `json:"load_avg"`

	// Further figures.
	ConnectsPerSec     *float64 `json:"connects_per_sec,omitempty"`
	ConnectMs          *latency `json:"connect_ms,omitempty"`
	AcceptedPerSec     *float64 `json:"accepted_per_sec,omitempty"`
	AcceptMs           *latency `json:"accept_ms,omitempty"`
	ReceiptsPerSec     *float64 `json:"receipts_per_sec,omitempty"`
	MemberLatencyMs    *latency `json:"member_latency_ms,omitempty"`
	DeviceDeliveries   *float64 `json:"device_deliveries_per_sec,omitempty"`
	CatchupCPUUsPerMsg *float64 `json:"catchup_server_cpu_us_per_msg,omitempty"`
	CatchupSeconds     *float64 `json:"catchup_seconds,omitempty"`
	CatchupAckedSec    *float64 `json:"catchup_acked_seconds,omitempty"` // until the server applied every ack
	ServerBaseRSSBytes *int64   `json:"server_base_rss_bytes,omitempty"`
	Sent               *int64   `json:"sent,omitempty"`
	Delivered          *int64   `json:"delivered,omitempty"`
	Undelivered        *int64   `json:"undelivered,omitempty"`
	Receipts           *int64   `json:"receipts,omitempty"`
	Errors             int64    `json:"errors"`
	FirstError         string   `json:"first_error,omitempty"`
	// Open loop: messages never delivered are in latency_ms with the
	// latency they had reached at the end (so the figures are lower bounds).
	LatencyLowerBound bool `json:"latency_lower_bound,omitempty"`

	// Who used the machine during the measured window, in cores (of 2 here).
	ServerCores      *float64 `json:"server_cpu_cores,omitempty"`
	BenchCores       float64  `json:"bench_cpu_cores"`
	OtherCores       float64  `json:"other_cpu_cores"`
	BenchCPUUsPerMsg *float64 `json:"bench_cpu_us_per_msg,omitempty"`
	MeasuredSeconds  float64  `json:"measured_seconds"`
	// PSI: percent of the window in which some task waited for a CPU / for I/O.
	CPUStallPct float64 `json:"cpu_stall_pct"`
	IOStallPct  float64 `json:"io_stall_pct"`
	// Why the figures may not be the server's own: other work on the
	// machine, or the bench itself not getting the CPU on time.
	Disturbed string   `json:"disturbed,omitempty"`
	Settings  settings `json:"settings"`

	// For plots, not printed.
	hist      *hist
	histTitle string
	series    []series
	seriesDt  time.Duration
	window    [2]float64 // measured window within the series, seconds
}

// settings echo what was run.
type settings struct {
	Server   string  `json:"server"`
	Pairs    int     `json:"pairs,omitempty"`
	Rate     float64 `json:"rate,omitempty"`
	Mode     string  `json:"mode,omitempty"`
	Window   int     `json:"window,omitempty"`
	Duration float64 `json:"duration_s,omitempty"`
	Warmup   float64 `json:"warmup_s,omitempty"`
	Sockets  int     `json:"sockets,omitempty"`
	Members  int     `json:"members,omitempty"`
	Messages int     `json:"messages,omitempty"`
	Senders  int     `json:"senders,omitempty"`
	Size     int     `json:"size,omitempty"`
	Crypto   string  `json:"crypto,omitempty"`
}

// series is one line of a throughput-over-time plot.
type series struct {
	name  string
	rates []float64
}

func ptr[T any](v T) *T { return &v }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// setUsage fills in the CPU figures of a measured window in which msgs
// messages were handled.
func (r *result) setUsage(u usage, msgs int64) {
	r.MeasuredSeconds = round3(u.wall.Seconds())
	r.CPUStallPct, r.IOStallPct = round3(u.cpuStall), round3(u.ioStall)
	var why []string
	if oc := u.cores(u.other); oc > 0.25 {
		why = append(why, fmt.Sprintf("other processes used %.2f cores during the measured window", oc))
	}
	if u.ioStall > 20 {
		why = append(why, fmt.Sprintf("tasks waited for I/O %.0f%% of the time", u.ioStall))
	}
	r.Disturbed = strings.Join(why, "; ")
	r.BenchCores = round3(u.cores(u.bench))
	r.OtherCores = round3(u.cores(u.other))
	if u.known {
		r.ServerCores = ptr(round3(u.cores(u.server)))
	}
	if msgs > 0 {
		if u.known {
			r.ServerCPUUsPerMsg = ptr(round3(float64(u.server.Microseconds()) / float64(msgs)))
		}
		r.BenchCPUUsPerMsg = ptr(round3(float64(u.bench.Microseconds()) / float64(msgs)))
	}
}

func (r *result) writeJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func (r *result) writeTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, value string) { fmt.Fprintf(tw, "%s\t%s\n", name, value) }
	f := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	lat := func(name string, l *latency) {
		if l != nil {
			row(name, fmt.Sprintf("p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f", l.P50, l.P99, l.P999, l.Max))
		}
	}
	row("scenario", r.Scenario)
	row("settings", r.Settings.String())
	if r.Sockets != nil {
		row("sockets", fmt.Sprint(*r.Sockets))
	}
	if r.ConnectsPerSec != nil {
		row("connects/s (authenticated)", f(*r.ConnectsPerSec))
	}
	lat("connect ms", r.ConnectMs)
	if r.DeliveredPerSec != nil {
		row("delivered msgs/s", f(*r.DeliveredPerSec))
	}
	lat("send->deliver ms", r.LatencyMs)
	if r.LatencyLowerBound {
		row("", "(lower bounds: includes undelivered messages at their age when the run ended)")
	}
	if r.ReceiptsPerSec != nil {
		row("receipts/s", f(*r.ReceiptsPerSec))
	}
	if r.FanoutMs != nil {
		row("fan-out ms (all members)", fmt.Sprintf("p50 %.3f  p99 %.3f  max %.3f", r.FanoutMs.P50, r.FanoutMs.P99, r.FanoutMs.Max))
	}
	lat("per-member delivery ms", r.MemberLatencyMs)
	if r.DeviceDeliveries != nil {
		row("member-device deliveries/s", f(*r.DeviceDeliveries))
	}
	if r.AcceptedPerSec != nil {
		row("accepted msgs/s", f(*r.AcceptedPerSec))
	}
	lat("send->accepted ms", r.AcceptMs)
	if r.CatchupPerSec != nil {
		row("catch-up msgs/s", f(*r.CatchupPerSec))
	}
	if r.CatchupSeconds != nil {
		row("catch-up seconds", fmt.Sprintf("%.3f", *r.CatchupSeconds))
	}
	if r.CatchupAckedSec != nil {
		row("  until every ack applied", fmt.Sprintf("%.3f s", *r.CatchupAckedSec))
	}
	for _, c := range []struct {
		name string
		v    *int64
	}{{"sent", r.Sent}, {"delivered", r.Delivered}, {"undelivered", r.Undelivered}, {"receipts", r.Receipts}} {
		if c.v != nil {
			row(c.name, fmt.Sprint(*c.v))
		}
	}
	row("errors", fmt.Sprint(r.Errors))
	if r.FirstError != "" {
		row("first error", r.FirstError)
	}
	if r.ServerRSSBytes != nil {
		row("server RSS", fmt.Sprintf("%.1f MiB", float64(*r.ServerRSSBytes)/(1<<20)))
	}
	if r.ServerBaseRSSBytes != nil {
		row("server RSS before", fmt.Sprintf("%.1f MiB", float64(*r.ServerBaseRSSBytes)/(1<<20)))
	}
	if r.RSSPerSocketBytes != nil {
		row("server RSS per socket", fmt.Sprintf("%.0f bytes (%.2f KiB)", *r.RSSPerSocketBytes, *r.RSSPerSocketBytes/1024))
	}
	if r.ServerCPUUsPerMsg != nil {
		row("server CPU per msg", fmt.Sprintf("%.1f µs", *r.ServerCPUUsPerMsg))
	}
	if r.CatchupCPUUsPerMsg != nil {
		row("server CPU per caught-up msg", fmt.Sprintf("%.1f µs", *r.CatchupCPUUsPerMsg))
	}
	if r.BenchCPUUsPerMsg != nil {
		row("bench CPU per msg", fmt.Sprintf("%.1f µs", *r.BenchCPUUsPerMsg))
	}
	cores := fmt.Sprintf("bench %.2f  others %.2f", r.BenchCores, r.OtherCores)
	if r.ServerCores != nil {
		cores = fmt.Sprintf("server %.2f  ", *r.ServerCores) + cores
	}
	row("cores used (measured window)", cores)
	row("stalled (PSI some)", fmt.Sprintf("cpu %.0f%%  io %.0f%%", r.CPUStallPct, r.IOStallPct))
	row("measured seconds", fmt.Sprintf("%.2f", r.MeasuredSeconds))
	if r.Disturbed != "" {
		row("DISTURBED", r.Disturbed)
	}
	row("load average", fmt.Sprintf("%.2f %.2f %.2f", r.LoadAvg[0], r.LoadAvg[1], r.LoadAvg[2]))
	return tw.Flush()
}

func (s settings) String() string {
	var parts []string
	add := func(format string, v any) { parts = append(parts, fmt.Sprintf(format, v)) }
	add("server=%s", s.Server)
	if s.Pairs > 0 {
		add("pairs=%d", s.Pairs)
	}
	if s.Mode != "" {
		add("mode=%s", s.Mode)
	}
	if s.Rate > 0 {
		add("rate=%g/s", s.Rate)
	}
	if s.Window > 0 {
		add("window=%d", s.Window)
	}
	if s.Duration > 0 {
		add("duration=%gs", s.Duration)
	}
	if s.Warmup > 0 {
		add("warmup=%gs", s.Warmup)
	}
	if s.Sockets > 0 {
		add("sockets=%d", s.Sockets)
	}
	if s.Members > 0 {
		add("members=%d", s.Members)
	}
	if s.Messages > 0 {
		add("messages=%d", s.Messages)
	}
	if s.Senders > 0 {
		add("senders=%d", s.Senders)
	}
	if s.Size > 0 {
		add("size=%d", s.Size)
	}
	if s.Crypto != "" {
		add("crypto=%s", s.Crypto)
	}
	return strings.Join(parts, " ")
}

// errLog counts a scenario's errors and keeps the first, for the report.
type errLog struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (l *errLog) fail(msg string) {
	l.n.Add(1)
	l.mu.Lock()
	if l.first == "" {
		l.first = msg
	}
	l.mu.Unlock()
}
