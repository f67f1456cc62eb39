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
    // 2: counts kept, not counted. The `Store` trait promises desk counts
    // and refusal counts in O(1), unread totals and room counts in O(log n);
    // migration 1 counted rows for them. Each count is now a row (or a
    // column) kept by triggers on the rows it counts, so it changes in the
    // same transaction as they do, whichever path writes them (the trait's
    // operations, an import, retention), and as a delta
    // (`INSERT ... ON CONFLICT DO UPDATE SET n = n + EXCLUDED.n`) that two
    // writers add up rather than overwrite. The existing rows are counted
    // once here, before the triggers exist.
    r#"
    -- Desk views (`DeskView::holds`): per desk `unassigned`, `all` and
    -- `done` with agent '', and `mine` per assignee. `unread` counts the
    -- conversations with customer_latest > read_upto.
    CREATE TABLE desk_counts (
        desk TEXT NOT NULL,
        view_name TEXT NOT NULL,
        agent TEXT NOT NULL,
        conversations BIGINT NOT NULL,
        unread BIGINT NOT NULL,
        PRIMARY KEY (desk, view_name, agent)
    );
    INSERT INTO desk_counts (desk, view_name, agent, conversations, unread)
    SELECT desk, v.view_name, v.agent, COUNT(*),
           COUNT(*) FILTER (WHERE customer_latest > read_upto)
    FROM desk_conversations d,
         LATERAL (VALUES
            (CASE WHEN d.state = 'done' THEN 'done' ELSE 'all' END, ''),
            (CASE WHEN d.state = 'done' THEN NULL
                  WHEN d.assignee IS NULL THEN 'unassigned' ELSE 'mine' END,
             COALESCE(d.assignee, ''))
         ) AS v (view_name, agent)
    WHERE v.view_name IS NOT NULL
    GROUP BY desk, v.view_name, v.agent;

    CREATE FUNCTION desk_counts_bump(TEXT, TEXT, TEXT, BIGINT, BIGINT) RETURNS VOID
    LANGUAGE SQL AS $$
        INSERT INTO desk_counts (desk, view_name, agent, conversations, unread)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (desk, view_name, agent) DO UPDATE SET
            conversations = desk_counts.conversations + EXCLUDED.conversations,
            unread = desk_counts.unread + EXCLUDED.unread
    $$;
    -- Adds (sign 1) or takes away (-1) one conversation in the views that
    -- hold it.
    CREATE FUNCTION desk_counts_add(p_desk TEXT, p_state TEXT, p_assignee TEXT,
                                    p_unread BOOLEAN, p_sign BIGINT) RETURNS VOID
    LANGUAGE plpgsql AS $$
    DECLARE
        u BIGINT := CASE WHEN p_unread THEN p_sign ELSE 0 END;
    BEGIN
        IF p_state = 'done' THEN
            PERFORM desk_counts_bump(p_desk, 'done', '', p_sign, u);
        ELSE
            PERFORM desk_counts_bump(p_desk, 'all', '', p_sign, u);
            IF p_assignee IS NULL THEN
                PERFORM desk_counts_bump(p_desk, 'unassigned', '', p_sign, u);
            ELSE
                PERFORM desk_counts_bump(p_desk, 'mine', p_assignee, p_sign, u);
            END IF;
        END IF;
    END $$;
    CREATE FUNCTION desk_conversations_count() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            PERFORM desk_counts_add(OLD.desk, OLD.state, OLD.assignee,
                                    OLD.customer_latest > OLD.read_upto, -1);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM desk_counts_add(NEW.desk, NEW.state, NEW.assignee,
                                    NEW.customer_latest > NEW.read_upto, 1);
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER desk_conversations_count AFTER INSERT OR DELETE ON desk_conversations
        FOR EACH ROW EXECUTE FUNCTION desk_conversations_count();
    -- Most updates (a new message moves `latest`) change no view: the
    -- counts are written only when what they depend on changed.
    CREATE TRIGGER desk_conversations_recount AFTER UPDATE ON desk_conversations
        FOR EACH ROW WHEN (
            OLD.desk <> NEW.desk
            OR (OLD.state = 'done') <> (NEW.state = 'done')
            OR OLD.assignee IS DISTINCT FROM NEW.assignee
            OR (OLD.customer_latest > OLD.read_upto) <> (NEW.customer_latest > NEW.read_upto))
        EXECUTE FUNCTION desk_conversations_count();

    -- Unread messages of the conversation list: per entry (the inbox
    -- row's `unread`) and per user (inbox_totals). Statement triggers with
    -- transition tables, so that reading a conversation of a thousand
    -- unread messages (one DELETE) writes each count once.
    ALTER TABLE inbox ADD COLUMN unread BIGINT NOT NULL DEFAULT 0;
    UPDATE inbox SET unread = u.n
    FROM (SELECT jid, contact, COUNT(*) AS n FROM inbox_unread GROUP BY jid, contact) u
    WHERE inbox.jid = u.jid AND inbox.contact = u.contact;
    CREATE TABLE inbox_totals (
        jid TEXT PRIMARY KEY,
        unread BIGINT NOT NULL
    );
    INSERT INTO inbox_totals (jid, unread) SELECT jid, COUNT(*) FROM inbox_unread GROUP BY jid;
    CREATE FUNCTION inbox_unread_count() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    DECLARE
        sign BIGINT := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
    BEGIN
        UPDATE inbox SET unread = inbox.unread + sign * g.n
        FROM (SELECT jid, contact, COUNT(*) AS n FROM changed GROUP BY jid, contact) g
        WHERE inbox.jid = g.jid AND inbox.contact = g.contact;
        INSERT INTO inbox_totals (jid, unread)
        SELECT jid, sign * COUNT(*) FROM changed GROUP BY jid
        ON CONFLICT (jid) DO UPDATE SET unread = inbox_totals.unread + EXCLUDED.unread;
        RETURN NULL;
    END $$;
    CREATE TRIGGER inbox_unread_added AFTER INSERT ON inbox_unread
        REFERENCING NEW TABLE AS changed
        FOR EACH STATEMENT EXECUTE FUNCTION inbox_unread_count();
    CREATE TRIGGER inbox_unread_removed AFTER DELETE ON inbox_unread
        REFERENCING OLD TABLE AS changed
        FOR EACH STATEMENT EXECUTE FUNCTION inbox_unread_count();

    -- Refused messages kept per sender.
    CREATE TABLE refusal_counts (
        sender TEXT PRIMARY KEY,
        n BIGINT NOT NULL
    );
    INSERT INTO refusal_counts (sender, n) SELECT sender, COUNT(*) FROM messages WHERE refused
    GROUP BY sender;
    CREATE FUNCTION messages_refusal_count() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.refused THEN
            INSERT INTO refusal_counts (sender, n) VALUES (OLD.sender, -1)
            ON CONFLICT (sender) DO UPDATE SET n = refusal_counts.n + EXCLUDED.n;
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.refused THEN
            INSERT INTO refusal_counts (sender, n) VALUES (NEW.sender, 1)
            ON CONFLICT (sender) DO UPDATE SET n = refusal_counts.n + EXCLUDED.n;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER messages_refusal_added AFTER INSERT ON messages
        FOR EACH ROW WHEN (NEW.refused) EXECUTE FUNCTION messages_refusal_count();
    CREATE TRIGGER messages_refusal_removed AFTER DELETE ON messages
        FOR EACH ROW WHEN (OLD.refused) EXECUTE FUNCTION messages_refusal_count();
    CREATE TRIGGER messages_refusal_changed AFTER UPDATE ON messages
        FOR EACH ROW WHEN (OLD.refused <> NEW.refused OR (NEW.refused AND OLD.sender <> NEW.sender))
        EXECUTE FUNCTION messages_refusal_count();

    -- Room messages, as sled counts them: each message gets its room's
    -- running count (`counted`) when it is stored, room_counts the room's
    -- last counted sequence and total. The messages after a position are
    -- then the total, less the running count of the first message after
    -- it, plus one: O(log n) whatever retention removed before it. A
    -- message stored below the room's last counted sequence (an import out
    -- of order, a rewrite) is not counted again.
    ALTER TABLE room_messages ADD COLUMN counted BIGINT;
    UPDATE room_messages SET counted = r.n
    FROM (SELECT room, seq, ROW_NUMBER() OVER (PARTITION BY room ORDER BY seq) AS n
          FROM room_messages) r
    WHERE room_messages.room = r.room AND room_messages.seq = r.seq;
    CREATE TABLE room_counts (
        room TEXT PRIMARY KEY,
        last BIGINT NOT NULL,
        total BIGINT NOT NULL
    );
    INSERT INTO room_counts (room, last, total)
    SELECT room, MAX(seq), COUNT(*) FROM room_messages GROUP BY room;
    CREATE FUNCTION room_messages_count() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO room_counts AS rc (room, last, total) VALUES (NEW.room, NEW.seq, 1)
        ON CONFLICT (room) DO UPDATE SET last = EXCLUDED.last, total = rc.total + 1
            WHERE rc.last < EXCLUDED.last
        RETURNING rc.total INTO NEW.counted;
        RETURN NEW;
    END $$;
    -- BEFORE, to give the row its running count. It also runs for an
    -- INSERT that meets an existing row (ON CONFLICT): that row's sequence
    -- is never above the last counted, so nothing is counted twice, and
    -- the update keeps the row's `counted`.
    CREATE TRIGGER room_messages_count BEFORE INSERT ON room_messages
        FOR EACH ROW EXECUTE FUNCTION room_messages_count();
    "#,
];

/// The schema version this tidemark writes: the number of migrations.
pub fn version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Brings the schema in the connection's search path up to [`version`].
pub fn migrate(client: &mut Client) -> StoreResult<()> {
    migrate_to(client, version())
}

/// Brings the schema up to `target` (tests: a database left at an older
/// version, to check what a migration does to rows already there).
pub(super) fn migrate_to(client: &mut Client, target: u32) -> StoreResult<()> {
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
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(found as usize)
    {
        tx.batch_execute(sql).map_err(pg_err)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(i as i32 + 1)],
        )
        .map_err(pg_err)?;
    }
    tx.commit().map_err(pg_err)
}
