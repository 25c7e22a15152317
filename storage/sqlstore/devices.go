package sqlstore

import (
	"database/sql"

	"github.com/parleychat/parley/storage"
)

const deviceColumns = `user_id, device_id, name, token_hash, created_at,
	identity_key, registration_id, spk_id, spk_public, spk_signature`

func scanDevice(row interface{ Scan(...any) error }) (storage.Device, error) {
	var d storage.Device
	var created int64
	err := row.Scan(&d.UserID, &d.DeviceID, &d.Name, &d.TokenHash, &created,
		&d.IdentityKey, &d.RegistrationID, &d.SignedPreKey.ID, &d.SignedPreKey.PublicKey, &d.SignedPreKey.Signature)
	d.CreatedAt = fromMS(created)
	return d, err
}

func (t *Tx) InsertDevice(d storage.Device) error {
	t.devicesChanged(d.UserID)
	_, err := t.exec(`INSERT INTO devices (`+deviceColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.UserID, d.DeviceID, d.Name, d.TokenHash, ms(d.CreatedAt),
		d.IdentityKey, d.RegistrationID, d.SignedPreKey.ID, d.SignedPreKey.PublicKey, d.SignedPreKey.Signature)
	return err
}

func (t *Tx) Device(userID string, deviceID uint32) (storage.Device, error) {
	d, err := scanDevice(t.queryRow(`SELECT `+deviceColumns+` FROM devices WHERE user_id = ? AND device_id = ?`,
		userID, deviceID))
	return d, t.mapErr(err)
}

func (t *Tx) DeviceByToken(tokenHash []byte) (storage.Device, error) {
	d, err := scanDevice(t.queryRow(`SELECT `+deviceColumns+` FROM devices WHERE token_hash = ?`, tokenHash))
	return d, t.mapErr(err)
}

func (t *Tx) Devices(userID string) ([]storage.Device, error) {
	rows, err := t.query(`SELECT `+deviceColumns+` FROM devices WHERE user_id = ? ORDER BY device_id`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanDevice)
}

// devicesChanged keeps the device cache exact; it is called before the
// change, so a failed statement costs a cache miss, never a stale answer.
func (t *Tx) devicesChanged(userID string) {
	if t.devices != nil {
		t.devices.changed(userID)
	}
}

func (t *Tx) KeyedDevices(userID string) ([]uint32, error) {
	if t.devices != nil {
		if devs, ok := t.devices.get(userID); ok {
			return devs, nil
		}
	}
	devs, err := t.keyedDevices(userID)
	if err == nil && t.devices != nil {
		t.devices.put(userID, devs)
	}
	return devs, err
}

func (t *Tx) keyedDevices(userID string) ([]uint32, error) {
	rows, err := t.query(`SELECT device_id FROM devices WHERE user_id = ? AND identity_key IS NOT NULL
		ORDER BY device_id`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (uint32, error) {
		var id uint32
		return id, r.Scan(&id)
	})
}

func (t *Tx) DeleteDevice(userID string, deviceID uint32) error {
	t.devicesChanged(userID)
	if err := mustAffect(t.exec(`DELETE FROM devices WHERE user_id = ? AND device_id = ?`, userID, deviceID)); err != nil {
		return err
	}
	if err := t.DeletePreKeys(userID, deviceID); err != nil {
		return err
	}
	_, err := t.exec(`DELETE FROM inbox WHERE user_id = ? AND device_id = ?`, userID, deviceID)
	return err
}

func (t *Tx) SetDeviceKeys(userID string, deviceID uint32, k storage.DeviceKeys) error {
	t.devicesChanged(userID)
	return mustAffect(t.exec(`UPDATE devices SET identity_key = ?, registration_id = ?, spk_id = ?, spk_public = ?,
		spk_signature = ? WHERE user_id = ? AND device_id = ?`,
		k.IdentityKey, k.RegistrationID, k.SignedPreKey.ID, k.SignedPreKey.PublicKey, k.SignedPreKey.Signature,
		userID, deviceID))
}

// collect scans every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
