// Package proccpu reads the CPU time the running process has used, for
// benchmarks that report CPU per operation including cgo (SQLite) and
// system time, which testing.B's wall-clock ns/op does not separate.
package proccpu

import (
	"syscall"
	"time"
)

// Used is the process's user and system CPU time so far.
func Used() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
