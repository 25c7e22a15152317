package sqlstore

import "github.com/parleychat/parley/storage"

func (t *Tx) InsertPreKeys(userID string, deviceID uint32, keys []storage.PreKey) error {
	for _, k := range keys {
		if _, err := t.exec(`INSERT INTO prekeys (user_id, device_id, key_id, public_key) VALUES (?, ?, ?, ?)
			ON CONFLICT (user_id, device_id, key_id) DO NOTHING`, userID, deviceID, k.ID, k.PublicKey); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tx) CountPreKeys(userID string, deviceID uint32) (int, error) {
	var n int
	err := t.queryRow(`SELECT COUNT(*) FROM prekeys WHERE user_id = ? AND device_id = ?`, userID, deviceID).Scan(&n)
	return n, t.mapErr(err)
}

// ClaimPreKey selects and deletes in one transaction (as Dendrite's
// ClaimKeys does): the engine's transaction isolation makes a key go to
// exactly one claimer.
func (t *Tx) ClaimPreKey(userID string, deviceID uint32) (storage.PreKey, error) {
	var k storage.PreKey
	err := t.queryRow(`SELECT key_id, public_key FROM prekeys WHERE user_id = ? AND device_id = ?
		ORDER BY key_id LIMIT 1`, userID, deviceID).Scan(&k.ID, &k.PublicKey)
	if err != nil {
		return k, t.mapErr(err)
	}
	err = mustAffect(t.exec(`DELETE FROM prekeys WHERE user_id = ? AND device_id = ? AND key_id = ?`,
		userID, deviceID, k.ID))
	return k, err
}

func (t *Tx) DeletePreKeys(userID string, deviceID uint32) error {
	_, err := t.exec(`DELETE FROM prekeys WHERE user_id = ? AND device_id = ?`, userID, deviceID)
	return err
}
