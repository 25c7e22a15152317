package sqlstore

import "github.com/parleychat/parley/storage"

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

func (t *Tx) AdvanceReadMarker(userID, conversationID string, seq uint64) (bool, error) {
	res, err := t.exec(`INSERT INTO read_markers (user_id, conversation, seq) VALUES (?, ?, ?)
		ON CONFLICT (user_id, conversation) DO UPDATE SET seq = excluded.seq
		WHERE read_markers.seq < excluded.seq`, userID, conversationID, seq)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}
