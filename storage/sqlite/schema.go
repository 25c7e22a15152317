package sqlite

// migrations are applied in order at start, each in its own transaction, and
// recorded in schema_migrations. A released migration is never edited: a
// change is a new entry at the end.
var migrations = []struct {
	version int
	name    string
	sql     string
}{
	{1, "core: accounts, devices, keys, conversations, messages, inbox", `
CREATE TABLE accounts (
	user_id       TEXT PRIMARY KEY,
	password_hash TEXT NOT NULL,
	display_name  TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	next_device   INTEGER NOT NULL
);
CREATE TABLE devices (
	user_id         TEXT NOT NULL REFERENCES accounts (user_id),
	device_id       INTEGER NOT NULL,
	name            TEXT NOT NULL,
	token_hash      BLOB NOT NULL UNIQUE,
	created_at      INTEGER NOT NULL,
	identity_key    BLOB,
	registration_id INTEGER NOT NULL DEFAULT 0,
	spk_id          INTEGER NOT NULL DEFAULT 0,
	spk_public      BLOB,
	spk_signature   BLOB,
	PRIMARY KEY (user_id, device_id)
);
CREATE TABLE prekeys (
	user_id    TEXT NOT NULL,
	device_id  INTEGER NOT NULL,
	key_id     INTEGER NOT NULL,
	public_key BLOB NOT NULL,
	PRIMARY KEY (user_id, device_id, key_id)
);
CREATE TABLE conversations (
	id         TEXT PRIMARY KEY,
	kind       TEXT NOT NULL,
	hub        TEXT NOT NULL,
	last_seq   INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE conversation_members (
	conversation TEXT NOT NULL,
	user_id      TEXT NOT NULL,
	PRIMARY KEY (conversation, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);
CREATE TABLE messages (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	conversation  TEXT NOT NULL,
	seq           INTEGER NOT NULL,
	sender        TEXT NOT NULL,
	sender_device INTEGER NOT NULL,
	client_id     TEXT NOT NULL,
	sent_at       INTEGER NOT NULL,
	expires_at    INTEGER NOT NULL,
	UNIQUE (sender, sender_device, client_id),
	UNIQUE (conversation, seq)
);
CREATE INDEX messages_expires ON messages (expires_at);
-- AUTOINCREMENT: entry ids must never be reused, since devices acknowledge
-- and de-duplicate by id.
CREATE TABLE inbox (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      TEXT NOT NULL,
	device_id    INTEGER NOT NULL,
	kind         TEXT NOT NULL,
	conversation TEXT NOT NULL DEFAULT '',
	seq          INTEGER NOT NULL DEFAULT 0,
	message_id   INTEGER,
	expires_at   INTEGER NOT NULL DEFAULT 0,
	payload      BLOB NOT NULL
);
CREATE INDEX inbox_device ON inbox (user_id, device_id, id);
CREATE INDEX inbox_expires ON inbox (expires_at) WHERE expires_at > 0;
CREATE TABLE read_markers (
	user_id      TEXT NOT NULL,
	conversation TEXT NOT NULL,
	seq          INTEGER NOT NULL,
	PRIMARY KEY (user_id, conversation)
);
`},
	{2, "groups: members, shared ciphertexts, delivery counts", `
CREATE TABLE groups (
	id          TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	avatar      TEXT NOT NULL DEFAULT '',
	creator     TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	removal_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE group_members (
	group_id  TEXT NOT NULL,
	user_id   TEXT NOT NULL,
	role      TEXT NOT NULL,
	state     TEXT NOT NULL,
	since_seq INTEGER NOT NULL,
	PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
ALTER TABLE messages ADD COLUMN body BLOB;
ALTER TABLE messages ADD COLUMN body_type TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
CREATE INDEX read_markers_conversation ON read_markers (conversation, seq);
CREATE INDEX inbox_device_kind ON inbox (user_id, device_id, kind, conversation);
`},
	{3, "federation: outbound queue, inbound transactions, remote device lists, forwards", `
CREATE TABLE outbox (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	destination TEXT NOT NULL,
	payload     BLOB NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
);
CREATE INDEX outbox_destination ON outbox (destination, id);
CREATE INDEX outbox_expires ON outbox (expires_at);
CREATE TABLE inbound_txns (
	origin      TEXT NOT NULL,
	txn_id      TEXT NOT NULL,
	received_at INTEGER NOT NULL,
	PRIMARY KEY (origin, txn_id)
);
CREATE TABLE remote_device_lists (
	user_id    TEXT PRIMARY KEY,
	stream_pos INTEGER NOT NULL,
	fetched_at INTEGER NOT NULL
);
CREATE TABLE remote_devices (
	user_id      TEXT NOT NULL,
	device_id    INTEGER NOT NULL,
	identity_key BLOB NOT NULL,
	PRIMARY KEY (user_id, device_id)
);
CREATE TABLE forwards (
	sender        TEXT NOT NULL,
	sender_device INTEGER NOT NULL,
	client_id     TEXT NOT NULL,
	conversation  TEXT NOT NULL,
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (sender, sender_device, client_id)
);
ALTER TABLE accounts ADD COLUMN device_stream INTEGER NOT NULL DEFAULT 0;
`},
	{4, "covering index for the devices a sender encrypts to", `
CREATE INDEX devices_keyed ON devices (user_id, device_id, identity_key) WHERE identity_key IS NOT NULL;
`},
	{5, "inbox rows name the message's sender, so an acknowledgement needs no lookup", `
ALTER TABLE inbox ADD COLUMN sender TEXT NOT NULL DEFAULT '';
`},
	{6, "only receipt summaries are indexed by kind", `
-- A group message puts a row in 1,000 devices' inboxes: every index whose
-- key starts with the device takes a write in 1,000 places. Only summary
-- rows are looked up by kind, so only they are in this index.
DROP INDEX inbox_device_kind;
CREATE INDEX inbox_summaries ON inbox (user_id, device_id, kind, conversation)
	WHERE kind IN ('delivered_summary', 'read_summary');
`},
	{7, "direct sends are remembered by client id only, not as message records", `
-- A direct message needs no record once its inbox entries are written:
-- only a retried client id must be recognised. One narrow table keyed by
-- the client id does that, where a messages row cost four b-tree inserts
-- (the row, two unique keys, the expiry index), two of them landing on a
-- random page each. Old direct rows stay in messages until they expire,
-- and are still consulted.
CREATE TABLE sends (
	user_id      TEXT NOT NULL,
	device_id    INTEGER NOT NULL,
	client_id    TEXT NOT NULL,
	conversation TEXT NOT NULL,
	seq          INTEGER NOT NULL,
	sent_at      INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	PRIMARY KEY (user_id, device_id, client_id)
) WITHOUT ROWID;
CREATE INDEX sends_expires ON sends (expires_at);
`},
	{8, "a local device's send is answered by a sent entry in its inbox, which also de-duplicates it", `
-- The answer to a send waits in the sending device's inbox until the
-- device acknowledges it, and while it waits its client id is recognised:
-- a client retries only sends whose answer it does not have. The index
-- holds only unacknowledged answers, so it stays a few pages however
-- many messages pass, where a key per send ever made takes a page per
-- sender in every commit.
ALTER TABLE inbox ADD COLUMN client_id TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX inbox_answers ON inbox (user_id, device_id, client_id)
	WHERE kind = 'sent' AND client_id != '';
`},
	{9, "a shared ciphertext's event is stored once, with the message", `
-- Every member device of a 1,024-member group got the same 200-byte
-- event in its inbox row; the row now leaves its payload empty and the
-- read takes the message's.
ALTER TABLE messages ADD COLUMN event BLOB;
`},
	{10, "direct sends recorded before answer entries are remembered in sends", `
-- A retry, after the upgrade, of a direct send made before it must still
-- be recognised: its record moves to sends, which a local device's send
-- consults until the last of these expires.
INSERT OR IGNORE INTO sends (user_id, device_id, client_id, conversation, seq, sent_at, expires_at)
	SELECT sender, sender_device, client_id, conversation, seq, sent_at, expires_at
	FROM messages WHERE conversation LIKE 'd-%';
`},
}
