package sqlstore

import (
	"time"

	"github.com/parleychat/parley/storage"
)

func (t *Tx) EnqueueOutbox(items []storage.OutboxItem) error {
	for _, it := range items {
		if _, err := t.exec(`INSERT INTO outbox (destination, payload, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			it.Destination, it.Payload, ms(it.CreatedAt), ms(it.ExpiresAt)); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) Outbox(destination string, after int64, limit int) ([]storage.OutboxItem, error) {
	rows, err := t.query(`SELECT id, destination, payload, created_at, expires_at FROM outbox
		WHERE destination = ? AND id > ? ORDER BY id LIMIT ?`, destination, after, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (storage.OutboxItem, error) {
		var it storage.OutboxItem
		var created, expires int64
		err := r.Scan(&it.ID, &it.Destination, &it.Payload, &created, &expires)
		it.CreatedAt, it.ExpiresAt = fromMS(created), fromMS(expires)
		return it, err
	})
}

func (t *Tx) DeleteOutbox(destination string, upTo int64) error {
	_, err := t.exec(`DELETE FROM outbox WHERE destination = ? AND id <= ?`, destination, upTo)
	return err
}

func (t *Tx) OutboxDestinations() ([]string, error) {
	rows, err := t.query(`SELECT DISTINCT destination FROM outbox ORDER BY destination`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanString)
}

func (t *Tx) ExpireOutbox(before time.Time) (int64, error) {
	return t.execCount(`DELETE FROM outbox WHERE expires_at < ?`, ms(before))
}

func (t *Tx) RecordInboundTxn(origin, txnID string, at time.Time) (bool, error) {
	res, err := t.exec(`INSERT INTO inbound_txns (origin, txn_id, received_at) VALUES (?, ?, ?)
		ON CONFLICT (origin, txn_id) DO NOTHING`, origin, txnID, ms(at))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t *Tx) PruneInboundTxns(before time.Time) error {
	_, err := t.exec(`DELETE FROM inbound_txns WHERE received_at < ?`, ms(before))
	return err
}

func (t *Tx) RemoteDeviceList(userID string) (storage.RemoteList, error) {
	l := storage.RemoteList{UserID: userID}
	var fetched int64
	err := t.queryRow(`SELECT stream_pos, fetched_at FROM remote_device_lists WHERE user_id = ?`, userID).
		Scan(&l.StreamPos, &fetched)
	if err != nil {
		return l, t.mapErr(err)
	}
	l.FetchedAt = fromMS(fetched)
	rows, err := t.query(`SELECT user_id, device_id, identity_key FROM remote_devices WHERE user_id = ? ORDER BY device_id`, userID)
	if err != nil {
		return l, err
	}
	l.Devices, err = collect(rows, func(r interface{ Scan(...any) error }) (storage.GroupDevice, error) {
		var d storage.GroupDevice
		return d, r.Scan(&d.UserID, &d.DeviceID, &d.IdentityKey)
	})
	return l, err
}

func (t *Tx) PutRemoteDeviceList(l storage.RemoteList) error {
	if _, err := t.exec(`INSERT INTO remote_device_lists (user_id, stream_pos, fetched_at) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET stream_pos = excluded.stream_pos, fetched_at = excluded.fetched_at`,
		l.UserID, l.StreamPos, ms(l.FetchedAt)); err != nil {
		return err
	}
	if _, err := t.exec(`DELETE FROM remote_devices WHERE user_id = ?`, l.UserID); err != nil {
		return err
	}
	for _, d := range l.Devices {
		if _, err := t.exec(`INSERT INTO remote_devices (user_id, device_id, identity_key) VALUES (?, ?, ?)`,
			l.UserID, d.DeviceID, d.IdentityKey); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) BumpDeviceStream(userID string) (uint64, uint64, error) {
	var next uint64
	err := t.queryRow(`UPDATE accounts SET device_stream = device_stream + 1 WHERE user_id = ? RETURNING device_stream`,
		userID).Scan(&next)
	if err != nil {
		return 0, 0, t.mapErr(err)
	}
	return next - 1, next, nil
}

func (t *Tx) DeviceStream(userID string) (uint64, error) {
	var pos uint64
	err := t.queryRow(`SELECT device_stream FROM accounts WHERE user_id = ?`, userID).Scan(&pos)
	return pos, t.mapErr(err)
}

func (t *Tx) InsertForward(f storage.Forward) error {
	_, err := t.exec(`INSERT INTO forwards (sender, sender_device, client_id, conversation, created_at) VALUES (?, ?, ?, ?, ?)`,
		f.Sender, f.SenderDevice, f.ClientID, f.Conversation, ms(f.CreatedAt))
	return err
}

func (t *Tx) Forward(sender string, senderDevice uint32, clientID string) (storage.Forward, error) {
	f := storage.Forward{Sender: sender, SenderDevice: senderDevice, ClientID: clientID}
	var created int64
	err := t.queryRow(`SELECT conversation, created_at FROM forwards WHERE sender = ? AND sender_device = ? AND client_id = ?`,
		sender, senderDevice, clientID).Scan(&f.Conversation, &created)
	f.CreatedAt = fromMS(created)
	return f, t.mapErr(err)
}

func (t *Tx) DeleteForwardsBefore(before time.Time) error {
	_, err := t.exec(`DELETE FROM forwards WHERE created_at < ?`, ms(before))
	return err
}

func (t *Tx) RaiseLastSeq(conversationID string, seq uint64) error {
	_, err := t.exec(`UPDATE conversations SET last_seq = CASE WHEN last_seq < ? THEN ? ELSE last_seq END WHERE id = ?`,
		seq, seq, conversationID)
	return err
}
