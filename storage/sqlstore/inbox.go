package sqlstore

import (
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parleychat/parley/storage"
)

// insertChunks are the row counts of the multi-row INSERTs InsertInbox
// uses: a fixed few, so the prepared statements can be cached, and at most
// 256 × 10 parameters, within every engine's limit.
var insertChunks = []int{256, 64, 16, 4, 1}

const inboxInsertColumns = 10

func (t *Tx) InsertInbox(entries []storage.InboxEntry) error {
	args := make([]any, 0, min(len(entries), insertChunks[0])*inboxInsertColumns)
	for len(entries) > 0 {
		n := insertChunks[len(insertChunks)-1]
		for _, c := range insertChunks {
			if c <= len(entries) {
				n = c
				break
			}
		}
		args = args[:0]
		for _, e := range entries[:n] {
			var msgID sql.NullInt64
			if e.MessageID != 0 {
				msgID = sql.NullInt64{Int64: e.MessageID, Valid: true}
			}
			payload := e.Payload
			if e.SharedBody != nil {
				payload = []byte{} // the message record holds it
			}
			args = append(args, e.UserID, e.DeviceID, e.Kind, e.Conversation, e.Seq, msgID, e.Sender, ms(e.ExpiresAt), payload,
				e.ClientID)
		}
		ids, err := t.insertInboxRows(n, args)
		if err != nil {
			return err
		}
		// Rows get ids in the order of the VALUES list; RETURNING need not
		// list them in that order.
		slices.Sort(ids)
		for i, e := range entries[:n] {
			e.ID = ids[i]
			t.added = append(t.added, e)
		}
		entries = entries[n:]
	}
	return nil
}

// insertInboxRows runs one multi-row INSERT of n entries and returns the
// ids of the new rows. Where the dialect promises consecutive ids (SQLite's
// single writer) the last one tells them all, without RETURNING rows to
// read.
func (t *Tx) insertInboxRows(n int, args []any) ([]int64, error) {
	ids := make([]int64, n)
	if t.dialect.ConsecutiveInsertIDs() {
		res, err := t.exec(insertInboxSQL(n, false), args...)
		if err != nil {
			return nil, err
		}
		last, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		for i := range ids {
			ids[i] = last - int64(n-1-i)
		}
		return ids, nil
	}
	rows, err := t.query(insertInboxSQL(n, true), args...)
	if err != nil {
		return nil, err
	}
	ids, err = collect(rows, func(r interface{ Scan(...any) error }) (id int64, err error) {
		return id, r.Scan(&id)
	})
	if err != nil {
		// An engine may report a unique violation while rows are read.
		return nil, t.mapErr(err)
	}
	if len(ids) != n {
		return nil, fmt.Errorf("sqlstore: inserting %d inbox entries returned %d ids", n, len(ids))
	}
	return ids, nil
}

var insertInboxQueries sync.Map // insertInboxKey -> query

type insertInboxKey struct {
	rows      int
	returning bool
}

func insertInboxSQL(rows int, returning bool) string {
	key := insertInboxKey{rows, returning}
	if q, ok := insertInboxQueries.Load(key); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO inbox (user_id, device_id, kind, conversation, seq, message_id, sender, expires_at, payload,
		client_id) VALUES `)
	row := "(" + placeholders(inboxInsertColumns) + ")"
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	if returning {
		b.WriteString(` RETURNING id`)
	}
	q := b.String()
	insertInboxQueries.Store(key, q)
	return q
}

// Inbox joins the shared body of group messages, stored once in messages.
func (t *Tx) Inbox(userID string, deviceID uint32, after int64, limit int) ([]storage.InboxEntry, error) {
	rows, err := t.query(`SELECT i.id, i.user_id, i.device_id, i.kind, i.conversation, i.seq, i.message_id,
		i.sender, i.expires_at, i.payload, i.client_id, m.body, m.event FROM inbox i LEFT JOIN messages m ON m.id = i.message_id
		WHERE i.user_id = ? AND i.device_id = ? AND i.id > ? ORDER BY i.id LIMIT ?`, userID, deviceID, after, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (storage.InboxEntry, error) {
		var e storage.InboxEntry
		var msgID sql.NullInt64
		var expires int64
		var event []byte
		err := r.Scan(&e.ID, &e.UserID, &e.DeviceID, &e.Kind, &e.Conversation, &e.Seq, &msgID, &e.Sender, &expires,
			&e.Payload, &e.ClientID, &e.SharedBody, &event)
		e.MessageID, e.ExpiresAt = msgID.Int64, fromMS(expires)
		e.Payload = sharedPayload(e.Payload, event)
		return e, err
	})
}

func (t *Tx) InboxEvents(userID string, deviceID uint32, after int64, limit int) ([]storage.InboxEntry, error) {
	rows, err := t.query(`SELECT i.id, i.payload, m.body, m.event FROM inbox i LEFT JOIN messages m ON m.id = i.message_id
		WHERE i.user_id = ? AND i.device_id = ? AND i.id > ? ORDER BY i.id LIMIT ?`, userID, deviceID, after, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (storage.InboxEntry, error) {
		var e storage.InboxEntry
		var event []byte
		err := r.Scan(&e.ID, &e.Payload, &e.SharedBody, &event)
		e.Payload = sharedPayload(e.Payload, event)
		return e, err
	})
}

// sharedPayload is an entry's event: its own payload, or, for a device of
// a shared ciphertext, the message's (rows written before messages held
// it have their own).
func sharedPayload(payload, event []byte) []byte {
	if len(payload) == 0 && event != nil {
		return event
	}
	return payload
}

func (t *Tx) SentAnswer(userID string, deviceID uint32, clientID string) (storage.InboxEntry, error) {
	e := storage.InboxEntry{UserID: userID, DeviceID: deviceID, Kind: storage.EntrySent, ClientID: clientID}
	var expires int64
	// The conditions repeat the partial index's, so the planner may use it.
	err := t.queryRow(`SELECT id, conversation, seq, expires_at, payload FROM inbox
		WHERE user_id = ? AND device_id = ? AND client_id = ? AND kind = 'sent' AND client_id != ''`,
		userID, deviceID, clientID).Scan(&e.ID, &e.Conversation, &e.Seq, &expires, &e.Payload)
	e.ExpiresAt = fromMS(expires)
	return e, t.mapErr(err)
}

func (t *Tx) ReplaceSummary(userID string, deviceID uint32, kind, conversationID string, seq uint64) (bool, error) {
	if kind != storage.EntryDeliveredSummary && kind != storage.EntryReadSummary {
		return false, fmt.Errorf("sqlstore: ReplaceSummary of %q: only summaries are indexed by kind", kind)
	}
	// The IN lists repeat the partial index's condition, so the planner
	// may use it.
	rows, err := t.query(`DELETE FROM inbox WHERE user_id = ? AND device_id = ? AND kind = ? AND conversation = ?
		AND kind IN ('delivered_summary', 'read_summary') AND seq <= ? RETURNING id`, userID, deviceID, kind, conversationID, seq)
	if err != nil {
		return false, err
	}
	ids, err := collect(rows, func(r interface{ Scan(...any) error }) (id int64, err error) {
		return id, r.Scan(&id)
	})
	if err != nil {
		return false, err
	}
	t.removed = append(t.removed, ids...)
	if len(ids) > 0 {
		return false, nil // one pending at most: nothing newer is left
	}
	var n int
	err = t.queryRow(`SELECT COUNT(*) FROM inbox WHERE user_id = ? AND device_id = ? AND kind = ? AND conversation = ?
		AND kind IN ('delivered_summary', 'read_summary') AND seq > ?`, userID, deviceID, kind, conversationID, seq).Scan(&n)
	return n > 0, t.mapErr(err)
}

// inListSizes are the lengths DeleteInbox pads its IN list to (repeating
// the last id, which changes nothing): a handful of statement texts stay
// in the per-connection statement cache, where one text per batch size
// would evict the hot statements and make SQLite prepare them again.
var inListSizes = []int{1, 4, 16, 64, 256, 1024}

func (t *Tx) DeleteInbox(userID string, deviceID uint32, ids []int64) ([]storage.InboxEntry, error) {
	var out []storage.InboxEntry
	if t.entries != nil {
		var plain, unknown []int64
		msgs := map[int64]cachedEntry{}
		for _, id := range ids {
			e, ok := t.entries.take(userID, deviceID, id)
			switch {
			case !ok:
				unknown = append(unknown, id)
			case e.kind != storage.EntryMessage:
				plain = append(plain, id) // gone or not, nothing follows from it
			default:
				msgs[id] = e
			}
		}
		// A message's deletion is told to its sender: only if its row was
		// still there. One or two are deleted one by one (the row count
		// tells); more are looked up once and deleted with the rest.
		var present []int64
		if len(msgs) <= 2 {
			for id := range msgs {
				n, err := t.execCount(`DELETE FROM inbox WHERE user_id = ? AND device_id = ? AND id = ?`, userID, deviceID, id)
				if err != nil {
					return nil, err
				}
				if n == 1 {
					present = append(present, id)
				}
			}
		} else {
			err := inLists(userID, deviceID, slices.Collect(maps.Keys(msgs)), func(size int, args []any) error {
				rows, err := t.query(`SELECT id FROM inbox WHERE user_id = ? AND device_id = ? AND id IN (`+placeholders(size)+`)`, args...)
				if err != nil {
					return err
				}
				ids, err := collect(rows, func(r interface{ Scan(...any) error }) (id int64, err error) {
					return id, r.Scan(&id)
				})
				present = append(present, ids...)
				return err
			})
			if err != nil {
				return nil, err
			}
			plain = append(plain, present...)
		}
		for _, id := range present {
			e := msgs[id]
			out = append(out, storage.InboxEntry{ID: id, UserID: userID, DeviceID: deviceID, Kind: e.kind,
				Conversation: e.conversation, Seq: e.seq, MessageID: e.messageID, Sender: e.sender})
		}
		err := inLists(userID, deviceID, plain, func(size int, args []any) error {
			_, err := t.exec(`DELETE FROM inbox WHERE user_id = ? AND device_id = ? AND id IN (`+placeholders(size)+`)`, args...)
			return err
		})
		if err != nil {
			return nil, err
		}
		ids = unknown
	}
	err := inLists(userID, deviceID, ids, func(size int, args []any) error {
		rows, err := t.query(`DELETE FROM inbox WHERE user_id = ? AND device_id = ? AND id IN (`+placeholders(size)+`)
		RETURNING id, kind, conversation, seq, message_id, sender`, args...)
		if err != nil {
			return err
		}
		deleted, err := collect(rows, func(r interface{ Scan(...any) error }) (storage.InboxEntry, error) {
			e := storage.InboxEntry{UserID: userID, DeviceID: deviceID}
			var msgID sql.NullInt64
			err := r.Scan(&e.ID, &e.Kind, &e.Conversation, &e.Seq, &msgID, &e.Sender)
			e.MessageID = msgID.Int64
			return e, err
		})
		for _, e := range deleted {
			if e.Kind == storage.EntryMessage {
				out = append(out, e)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// inLists calls fn with the arguments of statements about one device's
// ids: the user, the device and an IN list of the ids, at most 1,024 to a
// statement, padded to one of inListSizes by repeating the last id.
func inLists(userID string, deviceID uint32, ids []int64, fn func(size int, args []any) error) error {
	for len(ids) > 0 {
		n := min(len(ids), inListSizes[len(inListSizes)-1])
		size := inListSizes[len(inListSizes)-1]
		for _, sz := range inListSizes {
			if sz >= n {
				size = sz
				break
			}
		}
		args := make([]any, 0, size+2)
		args = append(args, userID, deviceID)
		for i := range size {
			args = append(args, ids[min(i, n-1)])
		}
		if err := fn(size, args); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

func (t *Tx) ExpireInbox(before time.Time, limit int) (int, []storage.InboxEntry, error) {
	rows, err := t.query(`DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE expires_at > 0 AND expires_at < ?
		ORDER BY expires_at LIMIT ?) RETURNING id, user_id, device_id, kind, conversation, seq`, ms(before), limit)
	if err != nil {
		return 0, nil, err
	}
	all, err := collect(rows, func(r interface{ Scan(...any) error }) (e storage.InboxEntry, err error) {
		return e, r.Scan(&e.ID, &e.UserID, &e.DeviceID, &e.Kind, &e.Conversation, &e.Seq)
	})
	if err != nil {
		return 0, nil, err
	}
	n := len(all)
	msgs := all[:0]
	for _, e := range all {
		if e.Kind == storage.EntryMessage {
			msgs = append(msgs, e)
		}
	}
	return n, msgs, nil
}
