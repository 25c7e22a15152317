package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's utime and stime and
// of /proc/stat. It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the CPU time (user+system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start behind the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procRSS returns the resident set size (VmRSS) of process pid in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, err
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// loadAvg returns /proc/loadavg's 1, 5 and 15 minute load averages.
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// machineCPU returns the busy and total CPU time of all cores together
// (the "cpu" line of /proc/stat; idle and iowait are not busy).
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	var sum, idle int64
	for i, s := range f[1:] {
		if i >= 8 { // guest and guest_nice are already inside user and nice
			break
		}
		v, _ := strconv.ParseInt(s, 10, 64)
		sum += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	tick := time.Second / clockTicks
	return time.Duration(sum-idle) * tick, time.Duration(sum) * tick
}

// snapshot is the CPU state of the machine, the bench and the servers at
// one moment; two of them give the CPU each used in between.
type snapshot struct {
	at           time.Time
	machineBusy  time.Duration
	machineTotal time.Duration
	self         time.Duration
	servers      []time.Duration // one per server with a known pid
	// Pressure stall information: how long some task waited for a CPU,
	// and for I/O (cumulative; zero without /proc/pressure).
	psiCPU, psiIO time.Duration
}

func takeSnapshot(pids []int) snapshot {
	s := snapshot{at: time.Now()}
	s.machineBusy, s.machineTotal = machineCPU()
	s.self, _ = procCPU(os.Getpid())
	s.psiCPU, s.psiIO = pressure("cpu"), pressure("io")
	for _, pid := range pids {
		c, _ := procCPU(pid)
		s.servers = append(s.servers, c)
	}
	return s
}

// usage is what happened between two snapshots.
type usage struct {
	wall   time.Duration
	server time.Duration // all servers together
	bench  time.Duration
	other  time.Duration // every other process on the machine
	known  bool          // server CPU is known (self-started or --server-pid)
	// Share of the wall time in which some task was stalled waiting for
	// a CPU or for I/O (PSI "some"), in percent.
	cpuStall, ioStall float64
}

func between(a, b snapshot) usage {
	u := usage{wall: b.at.Sub(a.at), bench: b.self - a.self, known: len(a.servers) > 0}
	for i := range a.servers {
		u.server += b.servers[i] - a.servers[i]
	}
	if u.wall > 0 {
		u.cpuStall = 100 * float64(b.psiCPU-a.psiCPU) / float64(u.wall)
		u.ioStall = 100 * float64(b.psiIO-a.psiIO) / float64(u.wall)
	}
	u.other = (b.machineBusy - a.machineBusy) - u.server - u.bench
	if u.other < 0 { // tick rounding
		u.other = 0
	}
	return u
}

// cores turns CPU time into average cores busy over the wall time.
func (u usage) cores(d time.Duration) float64 {
	if u.wall <= 0 {
		return 0
	}
	return d.Seconds() / u.wall.Seconds()
}

// pressure returns the cumulative "some" stall time of /proc/pressure/KIND.
func pressure(kind string) time.Duration {
	b, err := os.ReadFile("/proc/pressure/" + kind)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n") // "some avg10=... total=N"
	i := strings.Index(line, "total=")
	if !strings.HasPrefix(line, "some ") || i < 0 {
		return 0
	}
	us, _ := strconv.ParseInt(strings.TrimSpace(line[i+len("total="):]), 10, 64)
	return time.Duration(us) * time.Microsecond
}
