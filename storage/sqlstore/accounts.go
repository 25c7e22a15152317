package sqlstore

import "github.com/parleychat/parley/storage"

func (t *Tx) InsertAccount(a storage.Account) error {
	_, err := t.exec(`INSERT INTO accounts (user_id, password_hash, display_name, created_at, next_device)
		VALUES (?, ?, ?, ?, 1)`, a.UserID, a.PasswordHash, a.DisplayName, ms(a.CreatedAt))
	return err
}

func (t *Tx) Account(userID string) (storage.Account, error) {
	a := storage.Account{UserID: userID}
	var created int64
	err := t.queryRow(`SELECT password_hash, display_name, created_at FROM accounts WHERE user_id = ?`, userID).
		Scan(&a.PasswordHash, &a.DisplayName, &created)
	a.CreatedAt = fromMS(created)
	return a, t.mapErr(err)
}

func (t *Tx) SetDisplayName(userID, name string) error {
	return mustAffect(t.exec(`UPDATE accounts SET display_name = ? WHERE user_id = ?`, name, userID))
}

func (t *Tx) NextDeviceID(userID string) (uint32, error) {
	var id uint32
	err := t.queryRow(`UPDATE accounts SET next_device = next_device + 1 WHERE user_id = ?
		RETURNING next_device - 1`, userID).Scan(&id)
	return id, t.mapErr(err)
}
