package sqlstore

import (
	"errors"

	"github.com/parleychat/parley/storage"
)

func (t *Tx) Conversation(id string) (storage.Conversation, error) {
	c := storage.Conversation{ID: id}
	var created int64
	err := t.queryRow(`SELECT kind, hub, last_seq, created_at FROM conversations WHERE id = ?`, id).
		Scan(&c.Kind, &c.Hub, &c.LastSeq, &created)
	c.CreatedAt = fromMS(created)
	return c, t.mapErr(err)
}

func (t *Tx) InsertConversation(c storage.Conversation, members []string) error {
	if _, err := t.exec(`INSERT INTO conversations (id, kind, hub, last_seq, created_at) VALUES (?, ?, ?, ?, ?)`,
		c.ID, c.Kind, c.Hub, c.LastSeq, ms(c.CreatedAt)); err != nil {
		return err
	}
	for _, m := range members {
		if _, err := t.exec(`INSERT INTO conversation_members (conversation, user_id) VALUES (?, ?)
			ON CONFLICT (conversation, user_id) DO NOTHING`, c.ID, m); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) NextSeq(conversationID string) (uint64, error) {
	var seq uint64
	err := t.queryRow(`UPDATE conversations SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq`,
		conversationID).Scan(&seq)
	return seq, t.mapErr(err)
}

func (t *Tx) Members(conversationID string) ([]string, error) {
	rows, err := t.query(`SELECT user_id FROM conversation_members WHERE conversation = ? ORDER BY user_id`, conversationID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanString)
}

func scanString(r interface{ Scan(...any) error }) (string, error) {
	var s string
	return s, r.Scan(&s)
}

func (t *Tx) Contacts(userID string) ([]string, error) {
	rows, err := t.query(`SELECT DISTINCT b.user_id FROM conversation_members a
		JOIN conversation_members b ON a.conversation = b.conversation
		WHERE a.user_id = ? AND b.user_id <> ? ORDER BY b.user_id`, userID, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanString)
}

func (t *Tx) AdvanceReadMarker(userID, conversationID string, seq uint64) (uint64, bool, error) {
	var prev uint64
	err := t.queryRow(`SELECT seq FROM read_markers WHERE user_id = ? AND conversation = ?`, userID, conversationID).Scan(&prev)
	if err != nil && !errors.Is(t.mapErr(err), storage.ErrNotFound) {
		return 0, false, t.mapErr(err)
	}
	if seq <= prev {
		return prev, false, nil
	}
	_, err = t.exec(`INSERT INTO read_markers (user_id, conversation, seq) VALUES (?, ?, ?)
		ON CONFLICT (user_id, conversation) DO UPDATE SET seq = excluded.seq`, userID, conversationID, seq)
	return prev, err == nil, err
}

func (t *Tx) CountReadersAtLeast(conversationID string, seq uint64, except string) (int, error) {
	var n int
	err := t.queryRow(`SELECT COUNT(*) FROM read_markers WHERE conversation = ? AND seq >= ? AND user_id <> ?`,
		conversationID, seq, except).Scan(&n)
	return n, t.mapErr(err)
}

func (t *Tx) SendersBetween(conversationID string, from, to uint64, except string) ([]storage.SenderSeq, error) {
	rows, err := t.query(`SELECT sender, MAX(seq) FROM messages WHERE conversation = ? AND seq > ? AND seq <= ?
		AND sender <> ? GROUP BY sender ORDER BY sender`, conversationID, from, to, except)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (storage.SenderSeq, error) {
		var s storage.SenderSeq
		return s, r.Scan(&s.Sender, &s.Seq)
	})
}

func (t *Tx) AddConversationMember(conversationID, userID string) error {
	_, err := t.exec(`INSERT INTO conversation_members (conversation, user_id) VALUES (?, ?)
		ON CONFLICT (conversation, user_id) DO NOTHING`, conversationID, userID)
	return err
}

func (t *Tx) RemoveConversationMember(conversationID, userID string) error {
	_, err := t.exec(`DELETE FROM conversation_members WHERE conversation = ? AND user_id = ?`, conversationID, userID)
	return err
}
