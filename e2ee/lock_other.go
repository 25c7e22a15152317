//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || windows)

package e2ee

import (
	"context"
	"errors"
	"os"
)

// Without a file lock two processes could ratchet from the same state, so
// the store refuses to work rather than risk reusing message keys.
var errNoFileLock = errors.New("file locking is not supported on this system")

func lockFile(ctx context.Context, f *os.File) error { return errNoFileLock }

func unlockFile(f *os.File) error { return nil }
