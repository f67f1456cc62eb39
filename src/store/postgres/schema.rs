//! The PostgreSQL schema, as numbered migrations. `schema_version` holds the
//! highest migration applied; each migration runs in its own transaction
//! with its row, under an advisory lock, so two tidemark processes starting
//! together cannot apply one twice.

use ::postgres::Client;

use super::pg_err;
use crate::store::{StoreError, StoreResult};

/// Migration `i + 1` is `MIGRATIONS[i]`. Never edit one that has shipped:
/// add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the logical tables, one per kind of record in the export
    // (`xep/export.md`). Sequence numbers are BIGINT: a `Seq` stays far below
    // 2^63 (one per message).
    r#"
    CREATE SEQUENCE seq_numbers MINVALUE 1 START 1;

    -- 1:1 messages. A sequence number names one message in the whole store.
    -- `conv` is the conversation key as JSON (`ConversationKey`'s serde form).
    CREATE TABLE messages (
        seq BIGINT PRIMARY KEY,
        conv TEXT NOT NULL,
        id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        sent_at BIGINT NOT NULL,
        delivered_at BIGINT,
        failed_at BIGINT,
        failed_condition TEXT,
        failed_text TEXT,
        wants_receipt BOOLEAN NOT NULL,
        wants_markers BOOLEAN NOT NULL,
        readable BOOLEAN NOT NULL,
        queued BOOLEAN NOT NULL,
        refused BOOLEAN NOT NULL,
        preview TEXT
    );
    -- find_message: the latest message of a sender with an id.
    CREATE INDEX messages_by_sender_id ON messages (conv, sender, id, seq);
    -- sent_by, and refusals per sender.
    CREATE INDEX messages_by_sender ON messages (sender, seq);
    CREATE INDEX refusals_by_sender ON messages (sender, seq) WHERE refused;

    CREATE TABLE marks (
        conv TEXT NOT NULL,
        reader TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (conv, reader)
    );
    -- Each move of a tidemark: read_at is the first move at or past a seq.
    CREATE TABLE mark_log (
        conv TEXT NOT NULL,
        reader TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at BIGINT NOT NULL,
        PRIMARY KEY (conv, reader, seq)
    );

    CREATE TABLE grants (
        contact TEXT NOT NULL,
        watcher TEXT NOT NULL,
        PRIMARY KEY (contact, watcher)
    );

    CREATE TABLE queue (
        recipient TEXT NOT NULL,
        seq BIGINT NOT NULL,
        conv TEXT NOT NULL,
        stanza BYTEA NOT NULL,
        PRIMARY KEY (recipient, seq)
    );

    CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        fixed_members BOOLEAN NOT NULL
    );
    CREATE TABLE memberships (
        room TEXT NOT NULL,
        member TEXT NOT NULL,
        joined BIGINT NOT NULL,
        left_at BIGINT,
        PRIMARY KEY (room, member)
    );
    CREATE INDEX memberships_by_member ON memberships (member, room);

    CREATE TABLE room_messages (
        room TEXT NOT NULL,
        seq BIGINT NOT NULL,
        id TEXT NOT NULL,
        stanza_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        sent_at BIGINT NOT NULL,
        readable BOOLEAN NOT NULL,
        stanza BYTEA NOT NULL,
        PRIMARY KEY (room, seq)
    );
    CREATE INDEX room_messages_by_stanza_id ON room_messages (room, stanza_id, seq);
    CREATE INDEX room_messages_by_id ON room_messages (room, id, seq);
    CREATE INDEX room_messages_by_sender_id ON room_messages (room, sender, id, seq);
    CREATE INDEX room_messages_by_sender ON room_messages (sender, seq);

    CREATE TABLE room_creators (
        creator TEXT NOT NULL,
        room TEXT NOT NULL,
        PRIMARY KEY (creator, room)
    );
    CREATE TABLE read_receipts_prefs (
        jid TEXT PRIMARY KEY,
        enabled BOOLEAN NOT NULL
    );
    CREATE TABLE occupants (
        room TEXT NOT NULL,
        nick TEXT NOT NULL,
        jid TEXT NOT NULL,
        sessions TEXT[] NOT NULL,
        presence TEXT NOT NULL,
        PRIMARY KEY (room, nick)
    );
    CREATE TABLE room_subjects (
        room TEXT PRIMARY KEY,
        text TEXT NOT NULL,
        nick TEXT NOT NULL,
        setter TEXT,
        at BIGINT NOT NULL,
        config TEXT
    );

    -- Issue 10: the conversation list; unread counts are the rows of
    -- inbox_unread (the export lists them).
    CREATE TABLE inbox (
        jid TEXT NOT NULL,
        contact TEXT NOT NULL,
        latest BIGINT NOT NULL,
        latest_at BIGINT NOT NULL,
        latest_by_contact BOOLEAN NOT NULL,
        own_latest BIGINT NOT NULL,
        missed_count INTEGER,
        missed_first_at BIGINT,
        missed_last_at BIGINT,
        PRIMARY KEY (jid, contact)
    );
    CREATE INDEX inbox_by_latest ON inbox (jid, latest);
    CREATE TABLE inbox_unread (
        jid TEXT NOT NULL,
        contact TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (jid, contact, seq)
    );
    CREATE TABLE inbox_room_sent (
        jid TEXT NOT NULL,
        room TEXT NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY (jid, room)
    );

    -- Issue 11: team desks. `state` is the DeskState's name, `until` its
    -- time when snoozed.
    CREATE TABLE desk_conversations (
        desk TEXT NOT NULL,
        customer TEXT NOT NULL,
        state TEXT NOT NULL,
        until BIGINT,
        assignee TEXT,
        latest BIGINT NOT NULL,
        latest_at BIGINT NOT NULL,
        customer_latest BIGINT NOT NULL,
        read_upto BIGINT NOT NULL,
        opened_at BIGINT NOT NULL,
        PRIMARY KEY (desk, customer)
    );
    CREATE INDEX desk_conversations_by_latest ON desk_conversations (desk, latest, customer);
    CREATE INDEX desk_conversations_snoozed ON desk_conversations (desk) WHERE state = 'snoozed';
    -- `kind` is the DeskEventKind as JSON.
    CREATE TABLE desk_events (
        desk TEXT NOT NULL,
        customer TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at BIGINT NOT NULL,
        by_whom TEXT NOT NULL,
        kind TEXT NOT NULL,
        PRIMARY KEY (desk, customer, seq)
    );
    CREATE TABLE desk_authors (
        desk TEXT NOT NULL,
        customer TEXT NOT NULL,
        seq BIGINT NOT NULL,
        agent TEXT NOT NULL,
        PRIMARY KEY (desk, customer, seq)
    );
    "#,
];

/// The schema version this tidemark writes: the number of migrations.
pub fn version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Brings the schema in the connection's search path up to [`version`].
pub fn migrate(client: &mut Client) -> StoreResult<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY)",
        )
        .map_err(pg_err)?;
    let mut tx = client.transaction().map_err(pg_err)?;
    // One migrator at a time per database; released at the end of the
    // transaction. The key is arbitrary, the same in every tidemark.
    tx.execute("SELECT pg_advisory_xact_lock(7405126)", &[])
        .map_err(pg_err)?;
    let found: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .map_err(pg_err)?
        .get(0);
    let found = found as u32;
    if found > version() {
        return Err(StoreError::Schema {
            path: "the PostgreSQL database".into(),
            found,
            expected: version(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).map_err(pg_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .map_err(pg_err)?;
    }
    tx.commit().map_err(pg_err)
}
