package e2ee

import (
	"context"
	"database/sql"
	"time"
)

// The server recognises a retried client id only while the answer to its
// first send waits unacknowledged in the device's inbox. A process that
// receives (and acknowledges) while another, or another goroutine, is
// still retrying a send whose answer it lost would let the retry be stored
// twice; so a send is recorded here, in the file every process of the
// device shares, for as long as it may be retried, and receivers leave
// the answers of recorded sends unacknowledged.

// BeginSend records that a send with clientID is in flight.
func (s *Store) BeginSend(ctx context.Context, clientID string) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sends_in_flight (client_id, since) VALUES (?, ?)
			ON CONFLICT (client_id) DO UPDATE SET since = excluded.since`, clientID, time.Now().UnixMilli())
		return err
	})
}

// EndSend records that the send with clientID will not be retried (it
// was answered, or given up), and forgets sends recorded before
// time.Now()-stale that a process that died left behind.
func (s *Store) EndSend(ctx context.Context, clientID string, stale time.Duration) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sends_in_flight WHERE client_id = ? OR since < ?`,
			clientID, time.Now().Add(-stale).UnixMilli())
		return err
	})
}

// SendInFlight reports whether a send with clientID was recorded by
// BeginSend within the last maxAge and not ended.
func (s *Store) SendInFlight(ctx context.Context, clientID string, maxAge time.Duration) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sends_in_flight WHERE client_id = ? AND since >= ?`,
		clientID, time.Now().Add(-maxAge).UnixMilli()).Scan(&n)
	return n > 0, err
}
