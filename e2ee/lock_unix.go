//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package e2ee

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock on f, waiting until ctx is done. flock
// rather than fcntl locks: flock locks belong to the open file, so two Stores
// in one process exclude each other as two processes do, and closing some
// other descriptor of the file does not drop the lock. It polls with
// LOCK_NB because a blocking flock cannot be cancelled.
func lockFile(ctx context.Context, f *os.File) error {
	delay := 100 * time.Microsecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}

func unlockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
