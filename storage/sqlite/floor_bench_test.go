package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/proccpu"
)

// BenchmarkDirectSQLFloor runs only the SQL that the durable delivery of
// one direct message needs (docs/performance.md, "the floor"), on Parley's
// schema, with prepared statements on one connection and no Go code of
// ours around it: the conversation's next seq, the recipient's entry and
// the sender's answer inserted; the recipient's acknowledgement deleting
// its entry and inserting the delivered receipt; the sender's
// acknowledgement deleting the answer and the receipt. Each transaction
// holds `batch` messages' sends and the acknowledgements of the messages
// of the transactions before (as a group commit does), synchronous=FULL.
// It reports the process's CPU per message: what no implementation on
// this schema and driver can go below.
func BenchmarkDirectSQLFloor(b *testing.B) {
	for _, batch := range []int{1, 4, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchSQLFloor(b, batch) })
	}
}

func benchSQLFloor(b *testing.B, batch int) {
	const pairs = 256
	dir := b.TempDir()
	ctx := context.Background()
	st, err := Open(ctx, dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_mutex", "no")
	q.Set("_cache_size", "-32768")
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, FileName)+"?"+q.Encode())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY`); err != nil {
		b.Fatal(err)
	}
	user := func(i int) string { return fmt.Sprintf("@floor-%04d:floor.test", i) }
	conv := func(p int) string { return fmt.Sprintf("d-%032x", p) }
	for p := range pairs {
		if _, err := conn.ExecContext(ctx, `INSERT INTO conversations (id, kind, hub, last_seq, created_at)
			VALUES (?, 'direct', 'floor.test', 0, 0)`, conv(p)); err != nil {
			b.Fatal(err)
		}
	}
	prep := func(query string) *sql.Stmt {
		s, err := conn.PrepareContext(ctx, query)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	const cols = `(user_id, device_id, kind, conversation, seq, message_id, sender, expires_at, payload, client_id)`
	nextSeq := prep(`UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq`)
	insert2 := prep(`INSERT INTO inbox ` + cols + ` VALUES (?, 1, 'message', ?, ?, NULL, ?, ?, ?, ''),
		(?, 1, 'sent', ?, ?, NULL, '', ?, ?, ?)`)
	insert1 := prep(`INSERT INTO inbox ` + cols + ` VALUES (?, 1, 'receipt', ?, ?, NULL, '', ?, ?, '')`)
	delete1 := prep(`DELETE FROM inbox WHERE user_id = ? AND device_id = 1 AND id = ?`)
	delete2 := prep(`DELETE FROM inbox WHERE user_id = ? AND device_id = 1 AND id IN (?, ?)`)
	message := []byte(`{"type":"message","id":0,"conversation":"` + conv(0) + `","seq":1,"from":"` + user(0) +
		`","from_device":1,"ciphertext_type":"whisper","body":"` + strings.Repeat("A", 216) +
		`","sent_at":"2026-11-27T18:00:00.000Z"}`)
	answer := []byte(`{"type":"sent","conversation":"` + conv(0) + `","seq":1,"sent_at":"2026-11-27T18:00:00.000Z","client_id":"b1234-5"}`)
	receipt := []byte(`{"type":"receipt","conversation":"` + conv(0) + `","seq":1,"status":"delivered","by":"` + user(1) + `","by_device":1}`)
	expires := time.Now().Add(30 * 24 * time.Hour).UnixMilli()

	// A message's rows: pair p's sender is user 2p, its receiver 2p+1.
	type sent struct {
		p                 int
		seq               int64
		entry, ans, recpt int64
	}
	var acked1, acked2 []sent // waiting for the recipient's, then the sender's ack
	ckpt := time.Now()
	b.ReportAllocs()
	cpu0 := proccpu.Used()
	b.ResetTimer()
	for done := 0; done < b.N; {
		// Statements prepared on conn run on it: BEGIN and COMMIT are
		// issued on it as the writer does (tx.Stmt would prepare again).
		if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			b.Fatal(err)
		}
		st := func(s *sql.Stmt) *sql.Stmt { return s }
		// The senders' acknowledgements of the answers and receipts.
		for _, m := range acked2 {
			if _, err := st(delete2).ExecContext(ctx, user(2*m.p), m.ans, m.recpt); err != nil {
				b.Fatal(err)
			}
		}
		acked2 = acked2[:0]
		// The recipients' acknowledgements, each queueing a receipt.
		for _, m := range acked1 {
			if _, err := st(delete1).ExecContext(ctx, user(2*m.p+1), m.entry); err != nil {
				b.Fatal(err)
			}
			res, err := st(insert1).ExecContext(ctx, user(2*m.p), conv(m.p), m.seq, expires, receipt)
			if err != nil {
				b.Fatal(err)
			}
			if m.recpt, err = res.LastInsertId(); err != nil {
				b.Fatal(err)
			}
			acked2 = append(acked2, m)
		}
		acked1 = acked1[:0]
		// This transaction's sends.
		for range min(batch, b.N-done) {
			m := sent{p: done % pairs}
			if err := st(nextSeq).QueryRowContext(ctx, conv(m.p)).Scan(&m.seq); err != nil {
				b.Fatal(err)
			}
			res, err := st(insert2).ExecContext(ctx, user(2*m.p+1), conv(m.p), m.seq, user(2*m.p), expires, message,
				user(2*m.p), conv(m.p), m.seq, expires, answer, fmt.Sprint("b-", done))
			if err != nil {
				b.Fatal(err)
			}
			last, err := res.LastInsertId()
			if err != nil {
				b.Fatal(err)
			}
			m.entry, m.ans = last-1, last
			acked1 = append(acked1, m)
			done++
		}
		if _, err := conn.ExecContext(ctx, `COMMIT`); err != nil {
			b.Fatal(err)
		}
		// The checkpointer's work, every 100 ms as in the server (which
		// does it on another connection).
		if time.Since(ckpt) >= checkpointInterval {
			if _, err := conn.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
				b.Fatal(err)
			}
			ckpt = time.Now()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((proccpu.Used()-cpu0).Microseconds())/float64(b.N), "cpu-µs/msg")
}
