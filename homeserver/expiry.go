package homeserver

import (
	"context"
	"slices"
	"time"

	"github.com/parleychat/parley/storage"
	"github.com/parleychat/parley/wire"
)

const expiryBatch = 5000

// Expire deletes every inbox entry older than the retention period as of
// now and, for each device that lost messages unread, queues an "expired"
// event naming the conversation and the sequence ranges lost, so that a gap
// is never silent. It returns how many entries it removed.
func (s *Server) Expire(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		var n int
		err := s.store.Write(ctx, func(tx storage.Tx) error {
			deleted, msgs, err := tx.ExpireInbox(now, expiryBatch)
			if err != nil {
				return err
			}
			n = deleted
			if err := tx.InsertInbox(expiredNotices(msgs)); err != nil {
				return err
			}
			if deleted < expiryBatch {
				if _, err := tx.DeleteMessagesBefore(now); err != nil {
					return err
				}
				if _, err := tx.DeleteSendsBefore(now); err != nil {
					return err
				}
				if _, err := tx.ExpireOutbox(now); err != nil {
					return err
				}
				// Transaction ids and forwarded client ids are remembered as
				// long as their items could still be retried.
				if err := tx.DeleteForwardsBefore(now.Add(-s.opts.Retention)); err != nil {
					return err
				}
				return tx.PruneInboundTxns(now.Add(-s.opts.Retention))
			}
			return nil
		})
		if err != nil {
			return total, internal(ctx, err)
		}
		total += n
		if n < expiryBatch {
			return total, nil
		}
	}
}

// expiredNotices groups expired message entries per device and conversation
// into runs of consecutive sequence numbers.
func expiredNotices(msgs []storage.InboxEntry) []storage.InboxEntry {
	type key struct {
		user string
		dev  uint32
		conv string
	}
	seqs := map[key][]uint64{}
	var order []key
	for _, m := range msgs {
		k := key{m.UserID, m.DeviceID, m.Conversation}
		if _, ok := seqs[k]; !ok {
			order = append(order, k)
		}
		seqs[k] = append(seqs[k], m.Seq)
	}
	var notices []storage.InboxEntry
	for _, k := range order {
		ss := seqs[k]
		slices.Sort(ss)
		for i := 0; i < len(ss); {
			j := i
			for j+1 < len(ss) && ss[j+1] <= ss[j]+1 {
				j++
			}
			notices = append(notices, storage.InboxEntry{UserID: k.user, DeviceID: k.dev, Kind: storage.EntryExpired,
				Conversation: k.conv, Seq: ss[j], Payload: mustEvent(wire.Event{Type: wire.EventExpired,
					Conversation: k.conv, FromSeq: ss[i], ToSeq: ss[j]})})
			i = j + 1
		}
	}
	return notices
}

// RunExpiry calls Expire every interval until ctx ends.
func (s *Server) RunExpiry(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.Expire(ctx, s.now()); err != nil {
			if ctx.Err() == nil {
				s.log.ErrorContext(ctx, "expiring inboxes", "err", err)
			}
		} else if n > 0 {
			s.log.InfoContext(ctx, "expired undelivered events", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
