package client

import (
	"context"
	"time"

	"github.com/parleychat/parley/wire"
)

// LazyAckDelay is how long an Acker may hold the acknowledgement of an
// event that has no consequence for anybody else.
const LazyAckDelay = 250 * time.Millisecond

// lazyAckMax is how many held acknowledgements make an Acker send them
// without waiting longer.
const lazyAckMax = 256

// Acker acknowledges the inbox events of a Conn in as few frames as it
// can without delaying anybody. Acknowledging a direct message is what
// tells its sender it was delivered, so its acknowledgement goes out as
// soon as no further event is waiting (events that arrived together share
// one frame). Every other event (group messages, whose senders see an
// aggregated count, the answers to this device's sends, receipts, group
// and key events) only has to leave the inbox: those are held up to
// LazyAckDelay (or lazyAckMax of them) and ride along with the next direct
// message's acknowledgement. The server then deletes a sender's
// answers and receipts a few at a time instead of one Write per frame.
//
// An Acker is used by the one goroutine that reads the Conn's events.
type Acker struct {
	conn   *Conn
	ids    []int64
	urgent bool      // a message is among ids
	since  time.Time // when the oldest held id arrived
	timer  *time.Timer
}

// NewAcker returns an Acker for c.
func NewAcker(c *Conn) *Acker { return &Acker{conn: c} }

// Add records that ev was handled, and acknowledges what is due. Call it
// for every event, in order, once the event is handled (events without an
// inbox id are ignored).
func (a *Acker) Add(ctx context.Context, ev *wire.Event) error {
	if ev.ID > 0 {
		if len(a.ids) == 0 {
			a.since = time.Now()
		}
		a.ids = append(a.ids, ev.ID)
		// A direct message's sender waits for its receipt; a group's
		// delivered count is a summary, which a later acknowledgement
		// updates as well.
		a.urgent = a.urgent || (ev.Type == wire.EventMessage && ev.Group == "")
	}
	return a.flushDue(ctx)
}

// Due delivers when held acknowledgements have waited LazyAckDelay: select
// on it beside the Conn's events and call Tick. Nil while nothing is held.
func (a *Acker) Due() <-chan time.Time {
	if len(a.ids) == 0 || a.urgent {
		return nil
	}
	wait := LazyAckDelay - time.Since(a.since)
	if a.timer == nil {
		a.timer = time.NewTimer(wait)
	} else {
		a.timer.Reset(wait)
	}
	return a.timer.C
}

// Tick acknowledges what is due after Due delivered.
func (a *Acker) Tick(ctx context.Context) error { return a.flushDue(ctx) }

// Flush acknowledges everything held (before closing the Conn, say).
func (a *Acker) Flush(ctx context.Context) error {
	if len(a.ids) == 0 {
		return nil
	}
	err := a.conn.Ack(ctx, a.ids)
	a.ids, a.urgent = a.ids[:0], false
	return err
}

func (a *Acker) flushDue(ctx context.Context) error {
	switch {
	case len(a.ids) == 0:
		return nil
	case len(a.ids) >= lazyAckMax,
		len(a.conn.Events()) == 0 && (a.urgent || time.Since(a.since) >= LazyAckDelay):
		return a.Flush(ctx)
	}
	return nil
}
