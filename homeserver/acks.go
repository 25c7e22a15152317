package homeserver

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

// MaxAckIDs bounds one acknowledgement.
const MaxAckIDs = 1000

// maxAckGroup bounds how many acknowledgements share one Write: enough to
// spread a Write's bookkeeping and a group message's delivered-count
// update over many, few enough that a send queued behind them waits well
// under a millisecond (one Write of 1,000 made the group fan-out slower).
const maxAckGroup = 32

// maxAckWrites bounds the Writes of acknowledgements in flight; while that
// many wait for their commits, newer acknowledgements gather into groups.
// With a single one in flight, acknowledgements could not keep up with
// 5,000 direct messages/s (at most one group per commit).
const maxAckWrites = 8

// acker coalesces acknowledgements under load: each one gets a Write of
// its own while fewer than maxAckWrites are in flight, and those that
// arrive meanwhile wait and go together, maxAckGroup at a time.
type acker struct {
	mu       sync.Mutex
	pending  []*ackReq
	inFlight int
	closed   bool           // Close was called: no more Writes
	writes   sync.WaitGroup // Writes in flight, for Close
}

type ackReq struct {
	c    Caller
	ids  []int64
	done chan error // buffered: the writer never waits for a caller
}

// Ack deletes acknowledged entries from the caller's inbox and, for each
// message another user sent, tells the sender's devices, in the same
// commit: one "delivered" receipt per acknowledging device in a direct
// conversation; in a group, one aggregated receipt per sender device
// carrying how many devices have it. Acknowledgements are low-priority
// writes (sends queued behind a burst of them go first), several
// devices' at a time under load (see acker). Unknown ids are skipped, so
// a repeated acknowledgement changes nothing.
func (s *Server) Ack(ctx context.Context, c Caller, ids []int64) error {
	if len(ids) > MaxAckIDs {
		return invalid("ids", "at most %d ids per acknowledgement", MaxAckIDs)
	}
	if len(ids) == 0 {
		return nil
	}
	r := &ackReq{c: c, ids: ids, done: make(chan error, 1)}
	s.acks.mu.Lock()
	if s.acks.closed {
		s.acks.mu.Unlock()
		return errShuttingDown
	}
	s.acks.pending = append(s.acks.pending, r)
	s.startAcksLocked()
	s.acks.mu.Unlock()
	select {
	case err := <-r.done:
		return internal(ctx, err)
	case <-ctx.Done():
		return ctx.Err() // it may still be applied: acknowledging is idempotent
	}
}

// startAcksLocked starts Writes for the waiting acknowledgements while
// fewer than maxAckWrites are in flight. It requires s.acks.mu.
func (s *Server) startAcksLocked() {
	for !s.acks.closed && len(s.acks.pending) > 0 && s.acks.inFlight < maxAckWrites {
		n := min(len(s.acks.pending), maxAckGroup)
		batch := slices.Clone(s.acks.pending[:n])
		s.acks.pending = slices.Delete(s.acks.pending, 0, n)
		s.acks.inFlight++
		s.acks.writes.Add(1)
		go func() {
			defer s.acks.writes.Done()
			err := s.applyAcks(batch)
			for _, r := range batch {
				r.done <- err
			}
			s.acks.mu.Lock()
			s.acks.inFlight--
			s.startAcksLocked()
			s.acks.mu.Unlock()
		}()
	}
}

// errShuttingDown refuses work that Close has ended.
var errShuttingDown = &Error{Code: wire.CodeUnavailable, Message: "the server is shutting down"}

// Close ends the server's own background writes: acknowledgements still
// waiting are refused, and Close returns when those being written are
// committed. Call it before closing the store.
func (s *Server) Close() {
	s.acks.mu.Lock()
	s.acks.closed = true
	for _, r := range s.acks.pending {
		r.done <- errShuttingDown
	}
	s.acks.pending = nil
	s.acks.mu.Unlock()
	s.acks.writes.Wait()
}

// applyAcks applies a group of acknowledgements in one Write.
func (s *Server) applyAcks(batch []*ackReq) error {
	var dests []string
	err := s.store.WriteLowPriority(context.Background(), func(tx storage.Tx) error {
		dests = nil
		// Deliveries of group messages, counted once per message.
		type groupMsg struct {
			m storage.Message
			n int
		}
		var groups map[int64]*groupMsg
		var receipts []storage.InboxEntry
		for _, r := range batch {
			c := r.c
			deleted, err := tx.DeleteInbox(c.UserID, c.DeviceID, r.ids)
			if err != nil {
				return err
			}
			slices.SortFunc(deleted, func(a, b storage.InboxEntry) int { return cmp.Compare(a.ID, b.ID) })
			for _, e := range deleted {
				if e.Kind != storage.EntryMessage {
					continue
				}
				// Rows written before the sender column existed name no
				// sender: look the message up for those.
				m := storage.Message{ID: e.MessageID, Conversation: e.Conversation, Seq: e.Seq, Sender: e.Sender}
				if m.Sender == "" {
					if e.MessageID == 0 {
						continue
					}
					if m, err = tx.Message(e.MessageID); notFound(err) {
						continue // expired meanwhile: nobody to tell
					} else if err != nil {
						return err
					}
				}
				if m.Sender == c.UserID {
					continue // a copy of our own message on another device
				}
				switch {
				case IsGroupID(m.Conversation):
					if groups == nil {
						groups = map[int64]*groupMsg{}
					}
					g := groups[m.ID]
					if g == nil {
						g = &groupMsg{m: m}
						groups[m.ID] = g
					}
					g.n++
				case !s.isLocal(m.Sender):
					d := DomainOf(m.Sender)
					dests = append(dests, d)
					err = s.enqueue(tx, d, wire.FedItem{Kind: wire.FedReceipt, Status: wire.StatusDelivered,
						Conversation: m.Conversation, Seq: m.Seq, By: c.UserID, ByDevice: c.DeviceID, User: m.Sender})
					if err != nil {
						return err
					}
				default:
					payload := mustEvent(wire.Event{Type: wire.EventReceipt, Status: wire.StatusDelivered,
						Conversation: m.Conversation, Seq: m.Seq, By: c.UserID, ByDevice: c.DeviceID})
					r, err := s.receiptEntries(tx, m.Sender, m.Conversation, m.Seq, storage.EntryReceipt, payload)
					if err != nil {
						return err
					}
					receipts = append(receipts, r...)
				}
			}
		}
		// In message order, as each acknowledgement used to register them:
		// of one commit's summaries, the one registered first runs first,
		// so the newest message's is the one left.
		ordered := slices.SortedFunc(maps.Values(groups), func(a, b *groupMsg) int { return cmp.Compare(a.m.ID, b.m.ID) })
		for _, g := range ordered {
			n, err := tx.AddDelivered(g.m.ID, g.n)
			if err != nil {
				return err
			}
			m := g.m
			// The summary is written once per commit, by the last Write in
			// it (whose count is the latest).
			tx.Finally("delivered "+strconv.FormatInt(m.ID, 10), func(tx storage.Tx) error {
				payload := mustEvent(wire.Event{Type: wire.EventReceipt, Status: wire.StatusDelivered,
					Conversation: m.Conversation, Group: m.Conversation, Seq: m.Seq, Count: n})
				return s.replaceSummary(tx, m.Sender, m.Conversation, m.Seq, storage.EntryDeliveredSummary, payload)
			})
		}
		return tx.InsertInbox(receipts)
	})
	if err == nil {
		s.wakeOutbox(dests)
	}
	return err
}
