package sqlstore

import (
	"database/sql"
	"time"

	"github.com/parleychat/parley/storage"
)

const messageColumns = `id, conversation, seq, sender, sender_device, client_id, sent_at, expires_at, body, body_type, event`

func scanMessage(row interface{ Scan(...any) error }) (storage.Message, error) {
	var m storage.Message
	var sent, expires int64
	err := row.Scan(&m.ID, &m.Conversation, &m.Seq, &m.Sender, &m.SenderDevice, &m.ClientID, &sent, &expires,
		&m.Body, &m.BodyType, &m.Event)
	m.SentAt, m.ExpiresAt = fromMS(sent), fromMS(expires)
	return m, err
}

func (t *Tx) InsertMessage(m storage.Message) (int64, error) {
	var id int64
	err := t.queryRow(`INSERT INTO messages (conversation, seq, sender, sender_device, client_id, sent_at, expires_at,
		body, body_type, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		m.Conversation, m.Seq, m.Sender, m.SenderDevice, m.ClientID, ms(m.SentAt), ms(m.ExpiresAt),
		m.Body, m.BodyType, m.Event).Scan(&id)
	return id, t.mapErr(err)
}

func (t *Tx) MessageByClientID(sender string, senderDevice uint32, clientID string) (storage.Message, error) {
	m, err := scanMessage(t.queryRow(`SELECT `+messageColumns+` FROM messages
		WHERE sender = ? AND sender_device = ? AND client_id = ?`, sender, senderDevice, clientID))
	return m, t.mapErr(err)
}

func (t *Tx) Message(id int64) (storage.Message, error) {
	m, err := scanMessage(t.queryRow(`SELECT `+messageColumns+` FROM messages WHERE id = ?`, id))
	return m, t.mapErr(err)
}

func (t *Tx) AddDelivered(messageID int64, n int) (int, error) {
	var total int
	err := t.queryRow(`UPDATE messages SET delivered = delivered + ? WHERE id = ? RETURNING delivered`, n, messageID).Scan(&total)
	return total, t.mapErr(err)
}

func (t *Tx) DeleteMessagesBefore(before time.Time) (int64, error) {
	return t.execCount(`DELETE FROM messages WHERE expires_at < ?`, ms(before))
}

func (t *Tx) InsertSend(s storage.Send) error {
	_, err := t.exec(`INSERT INTO sends (user_id, device_id, client_id, conversation, seq, sent_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, s.UserID, s.DeviceID, s.ClientID, s.Conversation, s.Seq, ms(s.SentAt), ms(s.ExpiresAt))
	return err
}

func (t *Tx) SendByClientID(userID string, deviceID uint32, clientID string) (storage.Send, error) {
	s := storage.Send{UserID: userID, DeviceID: deviceID, ClientID: clientID}
	var sent, expires int64
	err := t.queryRow(`SELECT conversation, seq, sent_at, expires_at FROM sends
		WHERE user_id = ? AND device_id = ? AND client_id = ?`, userID, deviceID, clientID).
		Scan(&s.Conversation, &s.Seq, &sent, &expires)
	s.SentAt, s.ExpiresAt = fromMS(sent), fromMS(expires)
	return s, t.mapErr(err)
}

func (t *Tx) DeleteSendsBefore(before time.Time) (int64, error) {
	return t.execCount(`DELETE FROM sends WHERE expires_at < ?`, ms(before))
}

func (t *Tx) LocalSendsExpiry() (time.Time, error) {
	var last sql.NullInt64
	err := t.queryRow(`SELECT MAX(s.expires_at) FROM sends s JOIN accounts a ON a.user_id = s.user_id`).Scan(&last)
	if err != nil || !last.Valid {
		return time.Time{}, t.mapErr(err)
	}
	return fromMS(last.Int64), nil
}
