package sqlstore

import "github.com/parleychat/parley/storage"

func (t *Tx) InsertGroup(g storage.Group) error {
	_, err := t.exec(`INSERT INTO groups (id, name, description, avatar, creator, created_at, removal_seq)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, g.ID, g.Name, g.Description, g.Avatar, g.Creator, ms(g.CreatedAt), g.RemovalSeq)
	return err
}

func (t *Tx) Group(id string) (storage.Group, error) {
	g := storage.Group{ID: id}
	var created int64
	err := t.queryRow(`SELECT name, description, avatar, creator, created_at, removal_seq FROM groups WHERE id = ?`, id).
		Scan(&g.Name, &g.Description, &g.Avatar, &g.Creator, &created, &g.RemovalSeq)
	g.CreatedAt = fromMS(created)
	return g, t.mapErr(err)
}

func (t *Tx) UpdateGroup(g storage.Group) error {
	return mustAffect(t.exec(`UPDATE groups SET name = ?, description = ?, avatar = ?, removal_seq = ? WHERE id = ?`,
		g.Name, g.Description, g.Avatar, g.RemovalSeq, g.ID))
}

// DeleteGroup removes the group, its members and its conversation record.
// Inbox entries already queued stay until their devices take them.
func (t *Tx) DeleteGroup(id string) error {
	if err := mustAffect(t.exec(`DELETE FROM groups WHERE id = ?`, id)); err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM group_members WHERE group_id = ?`,
		`DELETE FROM conversation_members WHERE conversation = ?`,
		`DELETE FROM read_markers WHERE conversation = ?`,
		`DELETE FROM conversations WHERE id = ?`,
	} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	return nil
}

const memberColumns = `group_id, user_id, role, state, since_seq`

func scanMember(r interface{ Scan(...any) error }) (storage.GroupMember, error) {
	var m storage.GroupMember
	return m, r.Scan(&m.GroupID, &m.UserID, &m.Role, &m.State, &m.SinceSeq)
}

func (t *Tx) GroupMembers(groupID string) ([]storage.GroupMember, error) {
	rows, err := t.query(`SELECT `+memberColumns+` FROM group_members WHERE group_id = ? ORDER BY user_id`, groupID)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanMember)
}

func (t *Tx) GroupMember(groupID, userID string) (storage.GroupMember, error) {
	m, err := scanMember(t.queryRow(`SELECT `+memberColumns+` FROM group_members WHERE group_id = ? AND user_id = ?`,
		groupID, userID))
	return m, t.mapErr(err)
}

func (t *Tx) PutGroupMember(m storage.GroupMember) error {
	_, err := t.exec(`INSERT INTO group_members (`+memberColumns+`) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role, state = excluded.state,
		since_seq = excluded.since_seq`, m.GroupID, m.UserID, m.Role, m.State, m.SinceSeq)
	return err
}

func (t *Tx) DeleteGroupMember(groupID, userID string) error {
	return mustAffect(t.exec(`DELETE FROM group_members WHERE group_id = ? AND user_id = ?`, groupID, userID))
}

func (t *Tx) UserGroups(userID string) ([]storage.UserGroup, error) {
	rows, err := t.query(`SELECT m.group_id, g.name, m.role, m.state FROM group_members m
		JOIN groups g ON g.id = m.group_id WHERE m.user_id = ? ORDER BY g.name, m.group_id`, userID)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (storage.UserGroup, error) {
		var g storage.UserGroup
		return g, r.Scan(&g.GroupID, &g.Name, &g.Role, &g.State)
	})
}

func (t *Tx) GroupDevices(groupID string) ([]storage.GroupDevice, error) {
	// Local members' devices, and remote members' as last learnt from
	// their homeservers.
	rows, err := t.query(`SELECT d.user_id, d.device_id, d.identity_key FROM group_members m
		JOIN devices d ON d.user_id = m.user_id
		WHERE m.group_id = ? AND m.state = 'joined' AND d.identity_key IS NOT NULL
		UNION ALL
		SELECT r.user_id, r.device_id, r.identity_key FROM group_members m
		JOIN remote_devices r ON r.user_id = m.user_id
		WHERE m.group_id = ? AND m.state = 'joined'
		ORDER BY 1, 2`, groupID, groupID)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (storage.GroupDevice, error) {
		var d storage.GroupDevice
		return d, r.Scan(&d.UserID, &d.DeviceID, &d.IdentityKey)
	})
}

func (t *Tx) GroupDeviceIDs(groupID string) ([]storage.GroupDevice, error) {
	// No keys to copy and no sort: for a 1,024-member group the ordered
	// read with keys was a tenth of the send's transaction.
	rows, err := t.query(`SELECT d.user_id, d.device_id FROM group_members m
		JOIN devices d ON d.user_id = m.user_id
		WHERE m.group_id = ? AND m.state = 'joined' AND d.identity_key IS NOT NULL
		UNION ALL
		SELECT r.user_id, r.device_id FROM group_members m
		JOIN remote_devices r ON r.user_id = m.user_id
		WHERE m.group_id = ? AND m.state = 'joined'`, groupID, groupID)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r interface{ Scan(...any) error }) (storage.GroupDevice, error) {
		var d storage.GroupDevice
		return d, r.Scan(&d.UserID, &d.DeviceID)
	})
}
