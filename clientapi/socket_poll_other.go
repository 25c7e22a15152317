//go:build !linux

package clientapi

import (
	"context"
	"log/slog"
)

// poller exists on Linux only; elsewhere an idle socket keeps its reader
// goroutine, waiting a few calls deep.
type poller struct{}

func newPoller(context.Context, *slog.Logger) *poller { return nil }

func (*poller) park(*session) bool { return false }

func (*poller) forget(*session) {}
