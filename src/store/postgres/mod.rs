//! The PostgreSQL backend (issue 12): the [`Store`] contract over logical
//! tables (`schema.rs`), one per kind of record of the export.
//!
//! One session behind a mutex, driven synchronously to fit the synchronous
//! trait, with the batch's writes pipelined (`session.rs`). The first write
//! after a flush opens a transaction; reads run on the same session, so they
//! see the writes not yet committed; [`Store::flush`] commits. The rows the
//! serving tidemark reads most are known without asking (`known.rs`). The shell flushes before it
//! sends, so nothing is relayed before the transaction that records it has
//! committed. A tidemark moves with `INSERT ... ON CONFLICT DO UPDATE ...
//! WHERE marks.seq < EXCLUDED.seq`: an atomic maximum in the database
//! itself, whoever else writes to it.

mod db;
mod known;
mod leader;
mod schema;
mod session;

use std::sync::{Mutex, MutexGuard};

use ::postgres::types::ToSql;
use ::postgres::{Client, NoTls, Row};
use db::{Db, Statements};
use session::Session;

use super::export::{ExportError, ExportRecord};
use super::*;

pub use schema::version as schema_version;

pub(super) fn pg_err(e: ::postgres::Error) -> StoreError {
    // The driver's Display says only "db error" or "error connecting to
    // server"; the server's code and message, or the socket's error, are
    // what an admin can act on.
    let detail = match (e.as_db_error(), std::error::Error::source(&e)) {
        (Some(db), _) => format!("{}: {}", db.code().code(), db.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    };
    if lost_connection(&e) {
        return StoreError::ConnectionLost(format!("PostgreSQL: {detail}"));
    }
    StoreError::Backend(format!("PostgreSQL: {detail}"))
}

/// Text below this cannot make a key PostgreSQL refuses to index (2,704
/// bytes; two long JIDs reach that, and anyone on the federation chooses
/// JIDs), whatever else the key holds.
const KEY_TEXT_BOUND: usize = 2048;

/// Whether `write` holds text enough for a key beyond what PostgreSQL
/// indexes: its `Debug` form prints every string and byte it holds in full
/// (derived throughout), so its length bounds any key's. Counting stops at
/// [`KEY_TEXT_BOUND`].
fn may_be_refused(write: &write::Write) -> bool {
    struct Upto(usize);
    impl std::fmt::Write for Upto {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 = self.0.checked_sub(s.len()).ok_or(std::fmt::Error)?;
            Ok(())
        }
    }
    std::fmt::write(&mut Upto(KEY_TEXT_BOUND), format_args!("{write:?}")).is_err()
}

/// The statement failed because one before it, not waited for, had failed
/// and aborted the transaction (`pg_err`'s text starts with the code).
fn aborted_before(detail: &str) -> bool {
    detail.starts_with("PostgreSQL: 25P02")
}

/// The server went away: the socket closed, or the server is shutting
/// down (class 57, operator intervention) or lost the connection (class
/// 08). Any other error leaves the session, and the leader lock held by it,
/// in place.
fn lost_connection(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("57") || code.starts_with("08")
        }
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

/// Runs `f`, which blocks on the synchronous client, where that is allowed.
/// The `postgres` crate drives each call on a runtime of its own, and tokio
/// refuses to start one on a thread that is driving tasks: on the service's
/// multi-threaded runtime the worker first hands its tasks to another
/// thread (`block_in_place`). A single-threaded runtime cannot do that; the
/// store is used from none (tools, tests) or from the service's.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Sequence numbers fetched per round trip (`next_seq`).
const SEQ_BLOCK: i32 = 64;

/// A `Seq` or time as PostgreSQL's BIGINT; `Seq::MAX` and the like (used
/// as "no bound") become the largest BIGINT.
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unbig(v: i64) -> u64 {
    v.max(0) as u64
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A conversation key as stored: its JSON form, the same in the export.
fn conv_text(conv: &ConversationKey) -> String {
    serde_json::to_string(conv).expect("a conversation key serializes")
}

fn conv_from(text: &str) -> StoreResult<ConversationKey> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: "conversation key",
        detail: e.to_string(),
    })
}

struct Conn {
    /// Taken only by `Drop`, which closes it where blocking is allowed.
    client: Option<Session>,
    /// This session's prepared statements.
    statements: Statements,
    known: known::Known,
    /// Sequence numbers taken from the database and not handed out yet.
    seqs: std::collections::VecDeque<Seq>,
    /// A transaction is open (writes since the last flush).
    in_tx: bool,
    /// A stanza's writes are being applied in a savepoint of their own
    /// ([`PgStore::apply`]).
    in_stanza: bool,
    /// Why the writes since the last flush were rolled back, if they were:
    /// the flush reports it instead of committing what came after.
    lost: Option<String>,
    /// A schema of its own, dropped with the store (tests).
    temporary: Option<String>,
}

pub struct PgStore {
    conn: Mutex<Conn>,
    /// For the export's snapshot, read on a session of its own.
    options: PgOptions,
}

/// Where and how to connect: a URL without the password, and the password
/// read from a file (`storage.password_file`).
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub url: String,
    pub password: Option<String>,
    /// A schema of its own (a temporary store's), for every session.
    search_path: Option<String>,
}

impl PgOptions {
    /// `url`, with the password in the first line of `password_file` if
    /// given.
    pub fn new(url: &str, password_file: Option<&std::path::Path>) -> StoreResult<Self> {
        let password = match password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        StoreError::Backend(format!(
                            "reading the PostgreSQL password from {}: {e}",
                            path.display()
                        ))
                    })?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(PgOptions {
            url: url.to_owned(),
            password,
            search_path: None,
        })
    }

    /// The URL with the password: one parser for both clients below (the
    /// `postgres` crate's config wraps tokio-postgres' own).
    fn config(&self) -> StoreResult<::tokio_postgres::Config> {
        let mut config: ::tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e| StoreError::Backend(format!("PostgreSQL URL: {e}")))?;
        if let Some(p) = &self.password {
            config.password(p);
        }
        Ok(config)
    }

    /// A synchronous client, for what is not the store's own session:
    /// migrations, the export's snapshot, tests.
    fn connect(&self) -> StoreResult<Client> {
        let config = ::postgres::Config::from(self.config()?);
        let mut client = config.connect(NoTls).map_err(pg_err)?;
        if let Some(name) = &self.search_path {
            client
                .batch_execute(&format!("SET search_path TO {name}"))
                .map_err(pg_err)?;
        }
        Ok(client)
    }

    /// The store's session.
    fn session(&self) -> StoreResult<Session> {
        Session::connect(&self.config()?)
    }
}

impl PgStore {
    /// Connects and brings the schema up to date.
    pub fn open(options: &PgOptions) -> StoreResult<Self> {
        let session = off_runtime(|| -> StoreResult<Session> {
            let mut client = options.connect()?;
            schema::migrate(&mut client)?;
            drop(client);
            options.session()
        })?;
        Ok(PgStore {
            conn: Mutex::new(Conn::new(session, None)),
            options: options.clone(),
        })
    }

    /// A fresh, empty store in a schema of its own in the database, dropped
    /// with the store: each contract check gets one.
    pub fn temporary(options: &PgOptions) -> StoreResult<Self> {
        off_runtime(|| Self::temporary_in(options))
    }

    fn temporary_in(options: &PgOptions) -> StoreResult<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let mut client = options.connect()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "tidemark_tmp_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        client
            .batch_execute(&format!("CREATE SCHEMA {name}; SET search_path TO {name}"))
            .map_err(pg_err)?;
        schema::migrate(&mut client)?;
        drop(client);
        let mut session = options.session()?;
        session
            .batch_execute(&format!("SET search_path TO {name}"))
            .map_err(pg_err)?;
        // The export's session looks in the same schema.
        let mut options = options.clone();
        options.search_path = Some(name.clone());
        Ok(PgStore {
            conn: Mutex::new(Conn::new(session, Some(name))),
            options,
        })
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, Conn>> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Backend("PostgreSQL connection lock poisoned".into()))
    }

    /// Runs `f` on the connection; `write`: inside the transaction of the
    /// writes since the last flush, opened if need be. A failed statement
    /// aborts that transaction in PostgreSQL: it is rolled back and the
    /// error says so, rather than have later writes fail one by one.
    fn run<T>(&self, write: bool, f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.lock()?;
        if conn.client()?.is_closed() {
            // The lock this session held went with it: see `leader.rs`.
            conn.in_tx = false;
            conn.known.forget();
            return Err(StoreError::ConnectionLost(
                "PostgreSQL: the connection is closed".into(),
            ));
        }
        off_runtime(|| Self::run_in(&mut conn, write, f))
    }

    fn run_in<T>(
        conn: &mut Conn,
        write: bool,
        f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        if write && !conn.in_tx {
            conn.client()?.batch_execute("BEGIN").map_err(pg_err)?;
            conn.in_tx = true;
        }
        let result = {
            let Conn {
                client,
                statements,
                known,
                in_tx,
                in_stanza,
                ..
            } = &mut *conn;
            let client = client.as_mut().ok_or_else(|| {
                StoreError::ConnectionLost("PostgreSQL: the store was closed".into())
            })?;
            f(&mut Db::new(
                client,
                statements,
                known,
                *in_tx && !*in_stanza,
            ))
        };
        match result {
            Err(StoreError::Backend(detail)) if conn.in_tx => {
                // What is known may include what was just undone.
                conn.known.forget();
                if std::mem::take(&mut conn.in_stanza)
                    && !aborted_before(&detail)
                    && conn
                        .client()?
                        .batch_execute("ROLLBACK TO SAVEPOINT stanza; RELEASE SAVEPOINT stanza")
                        .is_ok()
                {
                    return Err(StoreError::Backend(format!(
                        "{detail} (this stanza's writes were rolled back)"
                    )));
                }
                // Not this stanza's own failure, or outside one: the
                // transaction is lost, with the writes of stanzas whose
                // answers are already gathered.
                conn.in_tx = false;
                let _ = conn.client()?.batch_execute("ROLLBACK");
                conn.lost.get_or_insert_with(|| detail.clone());
                Err(StoreError::Backend(format!(
                    "{detail} (the writes since the last flush were rolled back)"
                )))
            }
            Err(lost @ StoreError::ConnectionLost(_)) => {
                conn.in_tx = false;
                conn.in_stanza = false;
                conn.known.forget();
                Err(lost)
            }
            other => other,
        }
    }

    /// The savepoint of a stanza's writes. Opened and released without
    /// waiting (a failure shows in the next statement that is waited for,
    /// as `25P02`); a roll back is waited for.
    fn stanza_savepoint(&self, step: Savepoint) -> StoreResult<()> {
        let mut conn = self.lock()?;
        if step != Savepoint::Open && !conn.in_stanza {
            // Rolled back to already, or the transaction is gone.
            return Ok(());
        }
        conn.in_stanza = step == Savepoint::Open;
        off_runtime(|| {
            Self::run_in(&mut conn, true, |c| {
                match step {
                    Savepoint::Open => c.send("SAVEPOINT stanza", &[]),
                    Savepoint::Release => c.send("RELEASE SAVEPOINT stanza", &[]),
                    Savepoint::RollBack => {
                        c.known().forget();
                        c.batch_execute("ROLLBACK TO SAVEPOINT stanza; RELEASE SAVEPOINT stanza")
                    }
                }
                .map_err(pg_err)
            })
        })
    }

    fn read<T>(&self, f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.run(false, f)
    }

    fn write<T>(&self, f: impl FnOnce(&mut Db<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.run(true, f)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Savepoint {
    Open,
    Release,
    RollBack,
}

impl Conn {
    fn new(client: Session, temporary: Option<String>) -> Self {
        Conn {
            client: Some(client),
            statements: Statements::default(),
            known: known::Known::default(),
            seqs: std::collections::VecDeque::new(),
            in_tx: false,
            in_stanza: false,
            lost: None,
            temporary,
        }
    }

    fn client(&mut self) -> StoreResult<&mut Session> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::ConnectionLost("PostgreSQL: the store was closed".into()))
    }
}

impl Drop for Conn {
    /// Closing the client blocks on its own runtime, as every call does.
    fn drop(&mut self) {
        let Some(mut client) = self.client.take() else {
            return;
        };
        let (in_tx, temporary) = (self.in_tx, self.temporary.take());
        off_runtime(move || {
            if !client.is_closed() {
                if in_tx {
                    let _ = client.batch_execute("ROLLBACK");
                }
                if let Some(name) = temporary {
                    let _ = client.batch_execute(&format!("DROP SCHEMA {name} CASCADE"));
                }
            }
            drop(client);
        })
    }
}

// --- rows to records ---

const MESSAGE_COLUMNS: &str = "seq, conv, id, sender, recipient, sent_at, delivered_at, failed_at, \
     failed_condition, failed_text, wants_receipt, wants_markers, readable, queued, refused, preview";

fn message_from(row: &Row) -> MessageRecord {
    let failed_at: Option<i64> = row.get(7);
    MessageRecord {
        id: row.get(2),
        sender: row.get(3),
        recipient: row.get(4),
        sent_at: unbig(row.get(5)),
        delivered_at: row.get::<_, Option<i64>>(6).map(unbig),
        failed: failed_at.map(|at| Failure {
            at: unbig(at),
            condition: row.get::<_, Option<String>>(8).unwrap_or_default(),
            text: row.get::<_, Option<String>>(9).unwrap_or_default(),
        }),
        wants_receipt: row.get(10),
        wants_markers: row.get(11),
        readable: row.get(12),
        queued: row.get(13),
    }
}

const ROOM_MESSAGE_COLUMNS: &str = "seq, id, stanza_id, sender, sent_at, readable, stanza";

fn room_message_from(row: &Row) -> (Seq, RoomMessage) {
    (
        unbig(row.get(0)),
        RoomMessage {
            id: row.get(1),
            stanza_id: row.get(2),
            sender: row.get(3),
            sent_at: unbig(row.get(4)),
            readable: row.get(5),
            stanza: row.get(6),
        },
    )
}

/// `unread` is kept by a trigger on inbox_unread (migration 2).
const INBOX_COLUMNS: &str = "contact, latest, latest_at, latest_by_contact, own_latest, missed_count, \
     missed_first_at, missed_last_at, unread";

fn inbox_from(row: &Row) -> InboxEntry {
    let count: Option<i32> = row.get(5);
    InboxEntry {
        contact: row.get(0),
        latest: unbig(row.get(1)),
        latest_at: unbig(row.get(2)),
        latest_by_contact: row.get(3),
        own_latest: unbig(row.get(4)),
        unread: u32::try_from(row.get::<_, i64>(8).max(0)).unwrap_or(u32::MAX),
        missed: count.map(|count| Missed {
            count: count as u32,
            first_at: unbig(row.get::<_, Option<i64>>(6).unwrap_or_default()),
            last_at: unbig(row.get::<_, Option<i64>>(7).unwrap_or_default()),
        }),
    }
}

const DESK_COLUMNS: &str =
    "customer, state, until, assignee, latest, latest_at, customer_latest, read_upto, opened_at";

fn desk_from(row: &Row) -> StoreResult<DeskConversation> {
    let state: String = row.get(1);
    let state = match state.as_str() {
        "open" => DeskState::Open,
        "pending" => DeskState::Pending,
        "snoozed" => DeskState::Snoozed {
            until: unbig(row.get::<_, Option<i64>>(2).unwrap_or_default()),
        },
        "done" => DeskState::Done,
        other => {
            return Err(StoreError::Corrupt {
                what: "desk conversation state",
                detail: other.to_owned(),
            });
        }
    };
    Ok(DeskConversation {
        customer: row.get(0),
        state,
        assignee: row.get(3),
        latest: unbig(row.get(4)),
        latest_at: unbig(row.get(5)),
        customer_latest: unbig(row.get(6)),
        read_upto: unbig(row.get(7)),
        opened_at: unbig(row.get(8)),
    })
}

/// The SQL condition of a desk view (`DeskView::holds`), its agent `$3`.
fn desk_view_condition(view: &DeskView) -> &'static str {
    match view {
        DeskView::Mine(_) => "state <> 'done' AND assignee = $3",
        DeskView::Unassigned => "state <> 'done' AND assignee IS NULL AND $3::TEXT IS NULL",
        DeskView::All => "state <> 'done' AND $3::TEXT IS NULL",
        DeskView::Done => "state = 'done' AND $3::TEXT IS NULL",
    }
}

// --- the writes, shared by the trait's operations and the import ---

#[allow(clippy::too_many_arguments)]
fn upsert_message(
    c: &mut Db<'_>,
    conv: &ConversationKey,
    seq: Seq,
    r: &MessageRecord,
    refused: bool,
) -> StoreResult<()> {
    if ConversationKey::direct(&r.sender, &r.recipient) != *conv || r.sender == r.recipient {
        return Err(StoreError::Rejected(format!(
            "message {seq} from {} to {} is not of its conversation {conv:?}",
            r.sender, r.recipient
        )));
    }
    let conv = conv_text(conv);
    let failed = r.failed.as_ref();
    // A sequence number held by another conversation's message is left as
    // it is (the WHERE), which leaves no row touched: one round trip for
    // the check and the write. A message known to be of this conversation
    // (its receipt, its failure), or a new one with a number this session
    // took and has not used, passes the check for sure: not waited for.
    let sql = "INSERT INTO messages (seq, conv, id, sender, recipient, sent_at, delivered_at, failed_at, \
         failed_condition, failed_text, wants_receipt, wants_markers, readable, queued, refused) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (seq) DO UPDATE SET id = EXCLUDED.id, sender = EXCLUDED.sender, \
         recipient = EXCLUDED.recipient, sent_at = EXCLUDED.sent_at, \
         delivered_at = EXCLUDED.delivered_at, failed_at = EXCLUDED.failed_at, \
         failed_condition = EXCLUDED.failed_condition, failed_text = EXCLUDED.failed_text, \
         wants_receipt = EXCLUDED.wants_receipt, wants_markers = EXCLUDED.wants_markers, \
         readable = EXCLUDED.readable, queued = EXCLUDED.queued, refused = EXCLUDED.refused \
         WHERE messages.conv = EXCLUDED.conv";
    let params: &[&(dyn ToSql + Sync)] = &[
        &big(seq),
        &conv,
        &r.id,
        &r.sender,
        &r.recipient,
        &big(r.sent_at),
        &r.delivered_at.map(big),
        &failed.map(|f| big(f.at)),
        &failed.map(|f| f.condition.as_str()),
        &failed.map(|f| f.text.as_str()),
        &r.wants_receipt,
        &r.wants_markers,
        &r.readable,
        &r.queued,
        &refused,
    ];
    if c.known().take_fresh(seq) || c.known().is_message_of(&conv, seq) {
        c.send(sql, params).map_err(pg_err)?;
    } else if c.execute(sql, params).map_err(pg_err)? == 0 {
        return Err(StoreError::Rejected(format!(
            "sequence {seq} is a message of another conversation"
        )));
    }
    c.known().set_message(&conv, seq, r);
    Ok(())
}

fn advance(
    c: &mut Db<'_>,
    conv: &ConversationKey,
    reader: &str,
    seq: Seq,
    at: Millis,
) -> StoreResult<bool> {
    let conv = conv_text(conv);
    let moved = advance_raw(c, &conv, reader, seq)?;
    if moved {
        c.send(
            "INSERT INTO mark_log (conv, reader, seq, at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
            &[&conv, &reader, &big(seq), &big(at)],
        )
        .map_err(pg_err)?;
    }
    Ok(moved)
}

/// Moves a tidemark as an atomic maximum, without logging when: whether
/// this call moved it.
fn advance_raw(c: &mut Db<'_>, conv: &str, reader: &str, seq: Seq) -> StoreResult<bool> {
    // A row comes back only if this statement inserted or raised it.
    let sql = "INSERT INTO marks (conv, reader, seq) VALUES ($1, $2, $3) \
         ON CONFLICT (conv, reader) DO UPDATE SET seq = GREATEST(marks.seq, EXCLUDED.seq) \
         WHERE marks.seq < EXCLUDED.seq RETURNING seq";
    let params: &[&(dyn ToSql + Sync)] = &[&conv, &reader, &big(seq)];
    // With the mark known, whether it moves is known too: it is written
    // only here (`known.rs`), and the statement stays an atomic maximum.
    let moved = match c.known().mark(conv, reader) {
        Some(known) if seq <= known => return Ok(false),
        Some(_) => {
            c.send(sql, params).map_err(pg_err)?;
            true
        }
        None => c.query_opt(sql, params).map_err(pg_err)?.is_some(),
    };
    if moved {
        c.known().set_mark(conv, reader, seq);
    }
    Ok(moved)
}

fn put_room_message_in(c: &mut Db<'_>, room: &str, seq: Seq, m: &RoomMessage) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO room_messages (room, seq, id, stanza_id, sender, sent_at, readable, stanza) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (room, seq) DO UPDATE SET \
         id = EXCLUDED.id, stanza_id = EXCLUDED.stanza_id, sender = EXCLUDED.sender, \
         sent_at = EXCLUDED.sent_at, readable = EXCLUDED.readable, stanza = EXCLUDED.stanza",
        &[
            &room,
            &big(seq),
            &m.id,
            &m.stanza_id,
            &m.sender,
            &big(m.sent_at),
            &m.readable,
            &m.stanza,
        ],
    )
}

fn put_desk_in(c: &mut Db<'_>, desk: &str, d: &DeskConversation) -> StoreResult<()> {
    let until = match d.state {
        DeskState::Snoozed { until } => Some(big(until)),
        _ => None,
    };
    exec(
        c,
        "INSERT INTO desk_conversations (desk, customer, state, until, assignee, latest, latest_at, \
         customer_latest, read_upto, opened_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (desk, customer) DO UPDATE SET state = EXCLUDED.state, until = EXCLUDED.until, \
         assignee = EXCLUDED.assignee, latest = EXCLUDED.latest, latest_at = EXCLUDED.latest_at, \
         customer_latest = EXCLUDED.customer_latest, read_upto = EXCLUDED.read_upto, \
         opened_at = EXCLUDED.opened_at",
        &[
            &desk,
            &d.customer,
            &d.state.name(),
            &until,
            &d.assignee,
            &big(d.latest),
            &big(d.latest_at),
            &big(d.customer_latest),
            &big(d.read_upto),
            &big(d.opened_at),
        ],
    )
}

fn put_desk_event_in(
    c: &mut Db<'_>,
    desk: &str,
    customer: &str,
    seq: Seq,
    e: &DeskEvent,
) -> StoreResult<()> {
    let kind = serde_json::to_string(&e.kind).expect("a desk event serializes");
    exec(
        c,
        "INSERT INTO desk_events (desk, customer, seq, at, by_whom, kind) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (desk, customer, seq) DO UPDATE SET \
         at = EXCLUDED.at, by_whom = EXCLUDED.by_whom, kind = EXCLUDED.kind",
        &[&desk, &customer, &big(seq), &big(e.at), &e.by, &kind],
    )
}

/// Runs one statement whose rows affected do not matter.
fn exec(c: &mut Db<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<()> {
    c.send(sql, params).map_err(pg_err)
}

/// A `SELECT COUNT(*) ...`'s answer.
fn count(c: &mut Db<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<usize> {
    let n: i64 = c.query_one(sql, params).map_err(pg_err)?.get(0);
    Ok(unbig(n) as usize)
}

/// How many refused messages of `sender` are kept (a trigger keeps the
/// count: migration 2).
fn refusals_of(c: &mut Db<'_>, sender: &str) -> StoreResult<usize> {
    Ok(
        c.query_opt("SELECT n FROM refusal_counts WHERE sender = $1", &[&sender])
            .map_err(pg_err)?
            .map_or(0, |r| unbig(r.get(0)) as usize),
    )
}

/// Tables in the order retention walks them, with the key columns it
/// pages by.
const EXPIRY_PHASES: u8 = 4;

impl Store for PgStore {
    /// A stanza whose writes could make a key PostgreSQL refuses to index
    /// (long JIDs and ids, which anyone on the federation chooses) gets a
    /// savepoint of its own: the refusal then undoes that stanza's writes
    /// alone, not those of the batch's earlier stanzas, whose answers are
    /// gathered and go out after the flush. Other stanzas go without: a
    /// savepoint is a subtransaction, a sixth of the store's speed when
    /// every stanza has one (`tidemark-bench pgstore`), and they can only
    /// fail as the whole batch does.
    fn apply(&self, writes: &[write::Write]) -> StoreResult<()> {
        if !writes.iter().any(may_be_refused) {
            return write::apply_each(self, writes);
        }
        self.stanza_savepoint(Savepoint::Open)?;
        let applied = write::apply_each(self, writes);
        // A refusal by the server has rolled back already (`run_in`); any
        // other error (a record the store refused) rolls back here.
        self.stanza_savepoint(match applied {
            Ok(()) => Savepoint::Release,
            Err(_) => Savepoint::RollBack,
        })?;
        applied
    }

    fn next_seq(&self) -> StoreResult<Seq> {
        let mut conn = self.lock()?;
        if let Some(seq) = conn.seqs.pop_front() {
            conn.known.set_fresh(seq);
            return Ok(seq);
        }
        drop(conn);
        // A sequence is outside transactions: a number handed out is never
        // handed out again, even if the transaction that took it rolls
        // back. Taken SEQ_BLOCK at a time (one round trip instead of one a
        // message); those a session leaves unused are gaps, never repeats.
        let mut taken: Vec<Seq> = self.read(|c| {
            Ok(c.query(
                "SELECT nextval('seq_numbers') FROM generate_series(1, $1)",
                &[&SEQ_BLOCK],
            )
            .map_err(pg_err)?
            .iter()
            .map(|row| unbig(row.get(0)))
            .collect())
        })?;
        taken.sort_unstable();
        let mut conn = self.lock()?;
        conn.seqs.extend(taken);
        let seq = conn.seqs.pop_front().ok_or_else(|| {
            StoreError::Backend("PostgreSQL: no sequence number was returned".into())
        })?;
        conn.known.set_fresh(seq);
        Ok(seq)
    }

    fn put_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
    ) -> StoreResult<()> {
        self.write(|c| upsert_message(c, conv, seq, record, false))
    }

    fn message(&self, conv: &ConversationKey, seq: Seq) -> StoreResult<Option<MessageRecord>> {
        let conv = conv_text(conv);
        self.read(|c| {
            if let Some(known) = c.known().message(&conv, seq) {
                return Ok(known);
            }
            let found = c
                .query_opt(
                    &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE seq = $1 AND conv = $2"),
                    &[&big(seq), &conv],
                )
                .map_err(pg_err)?
                .map(|r| message_from(&r));
            if let Some(m) = &found {
                c.known().set_message(&conv, seq, m);
            }
            Ok(found)
        })
    }

    fn find_message(
        &self,
        conv: &ConversationKey,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, MessageRecord)>> {
        let conv = conv_text(conv);
        self.read(|c| {
            if let Some(known) = c.known().find(&conv, sender, id) {
                return Ok(Some(known));
            }
            let found = c
                .query_opt(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conv = $1 AND sender = $2 \
                         AND id = $3 ORDER BY seq DESC LIMIT 1"
                    ),
                    &[&conv, &sender, &id],
                )
                .map_err(pg_err)?
                .map(|r| (unbig(r.get(0)), message_from(&r)));
            if let Some((seq, m)) = &found {
                c.known().set_message(&conv, *seq, m);
            }
            Ok(found)
        })
    }

    fn mark(&self, conv: &ConversationKey, reader: &str) -> StoreResult<Seq> {
        let conv = conv_text(conv);
        self.read(|c| {
            if let Some(known) = c.known().mark(&conv, reader) {
                return Ok(known);
            }
            let mark = c
                .query_opt(
                    "SELECT seq FROM marks WHERE conv = $1 AND reader = $2",
                    &[&conv, &reader],
                )
                .map_err(pg_err)?
                .map(|r| unbig(r.get(0)));
            if let Some(seq) = mark {
                c.known().set_mark(&conv, reader, seq);
            }
            Ok(mark.unwrap_or(0))
        })
    }

    fn advance_mark(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<bool> {
        self.write(|c| advance(c, conv, reader, seq, at))
    }

    fn read_at(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
    ) -> StoreResult<Option<Millis>> {
        let is_party = conv.side_of(reader).is_some();
        let conv = conv_text(conv);
        self.read(|c| {
            // A party reads only the other party's messages.
            if is_party {
                let other_message = c
                    .query_opt(
                        "SELECT 1 FROM messages WHERE seq = $1 AND conv = $2 AND sender <> $3",
                        &[&big(seq), &conv, &reader],
                    )
                    .map_err(pg_err)?;
                if other_message.is_none() {
                    return Ok(None);
                }
            }
            // The first move of the tidemark at or past `seq`.
            Ok(c.query_opt(
                "SELECT at FROM mark_log WHERE conv = $1 AND reader = $2 AND seq >= $3 \
                 ORDER BY seq LIMIT 1",
                &[&conv, &reader, &big(seq)],
            )
            .map_err(pg_err)?
            .map(|r| unbig(r.get(0))))
        })
    }

    fn set_presence_allowed(&self, contact: &str, watcher: &str, allowed: bool) -> StoreResult<()> {
        self.write(|c| {
            let sql = if allowed {
                "INSERT INTO grants (contact, watcher) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM grants WHERE contact = $1 AND watcher = $2"
            };
            c.send(sql, &[&contact, &watcher]).map_err(pg_err)?;
            c.known().set_grant(contact, watcher, allowed);
            Ok(())
        })
    }

    fn presence_allowed(&self, contact: &str, watcher: &str) -> StoreResult<bool> {
        self.read(|c| {
            if let Some(allowed) = c.known().grant(contact, watcher) {
                return Ok(allowed);
            }
            let allowed = c
                .query_opt(
                    "SELECT 1 FROM grants WHERE contact = $1 AND watcher = $2",
                    &[&contact, &watcher],
                )
                .map_err(pg_err)?
                .is_some();
            c.known().set_grant(contact, watcher, allowed);
            Ok(allowed)
        })
    }

    fn presence_grants(&self) -> StoreResult<Vec<(String, String)>> {
        self.read(|c| {
            Ok(c.query(
                "SELECT contact, watcher FROM grants ORDER BY contact, watcher",
                &[],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn has_watchers(&self, contact: &str) -> StoreResult<bool> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM grants WHERE contact = $1 LIMIT 1",
                &[&contact],
            )
            .map_err(pg_err)?
            .is_some())
        })
    }

    fn put_refused_message(
        &self,
        conv: &ConversationKey,
        seq: Seq,
        record: &MessageRecord,
        keep: usize,
    ) -> StoreResult<()> {
        self.write(|c| {
            upsert_message(c, conv, seq, record, true)?;
            // The sender's oldest refusals beyond `keep`, found from the
            // kept count: usually none, one when the sender is at the
            // bound. The id index is the table's, so a later message with
            // the id keeps it.
            let over = refusals_of(c, &record.sender)?.saturating_sub(keep);
            if over > 0 {
                c.execute(
                    "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages \
                     WHERE sender = $1 AND refused ORDER BY seq LIMIT $2)",
                    &[&record.sender, &limit(over)],
                )
                .map_err(pg_err)?;
                c.known().forget_messages();
            }
            Ok(())
        })
    }

    fn refusal_count(&self, sender: &str) -> StoreResult<usize> {
        self.read(|c| refusals_of(c, sender))
    }

    fn enqueue(
        &self,
        recipient: &str,
        seq: Seq,
        conv: &ConversationKey,
        stanza: &[u8],
    ) -> StoreResult<()> {
        let conv = conv_text(conv);
        self.write(|c| {
            exec(
                c,
                "INSERT INTO queue (recipient, seq, conv, stanza) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (recipient, seq) DO UPDATE SET conv = EXCLUDED.conv, \
                 stanza = EXCLUDED.stanza",
                &[&recipient, &big(seq), &conv, &stanza],
            )
        })
    }

    fn queued_count(&self, recipient: &str) -> StoreResult<usize> {
        self.read(|c| {
            count(
                c,
                "SELECT COUNT(*) FROM queue WHERE recipient = $1",
                &[&recipient],
            )
        })
    }

    fn queued(&self, recipient: &str) -> StoreResult<Vec<QueuedStanza>> {
        self.read(|c| {
            c.query(
                "SELECT seq, conv, stanza FROM queue WHERE recipient = $1 ORDER BY seq",
                &[&recipient],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| {
                Ok(QueuedStanza {
                    seq: unbig(r.get(0)),
                    conv: conv_from(r.get(1))?,
                    stanza: r.get(2),
                })
            })
            .collect()
        })
    }

    fn dequeue(&self, recipient: &str, seqs: &[Seq]) -> StoreResult<()> {
        let seqs: Vec<i64> = seqs.iter().copied().map(big).collect();
        self.write(|c| {
            exec(
                c,
                "DELETE FROM queue WHERE recipient = $1 AND seq = ANY($2)",
                &[&recipient, &seqs],
            )
        })
    }

    fn put_room(&self, room: &str, record: &RoomRecord) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO rooms (room, created_at, fixed_members) VALUES ($1, $2, $3) \
                 ON CONFLICT (room) DO UPDATE SET created_at = EXCLUDED.created_at, \
                 fixed_members = EXCLUDED.fixed_members",
                &[&room, &big(record.created_at), &record.fixed_members],
            )
        })
    }

    fn room(&self, room: &str) -> StoreResult<Option<RoomRecord>> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT created_at, fixed_members FROM rooms WHERE room = $1",
                &[&room],
            )
            .map_err(pg_err)?
            .map(|r| RoomRecord {
                created_at: unbig(r.get(0)),
                fixed_members: r.get(1),
            }))
        })
    }

    fn rooms(&self) -> StoreResult<Vec<(String, RoomRecord)>> {
        self.read(|c| {
            Ok(c.query(
                "SELECT room, created_at, fixed_members FROM rooms ORDER BY room",
                &[],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    RoomRecord {
                        created_at: unbig(r.get(1)),
                        fixed_members: r.get(2),
                    },
                )
            })
            .collect())
        })
    }

    fn set_membership(&self, room: &str, member: &str, m: &Membership) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO memberships (room, member, joined, left_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (room, member) DO UPDATE SET joined = EXCLUDED.joined, \
                 left_at = EXCLUDED.left_at",
                &[&room, &member, &big(m.joined), &m.left.map(big)],
            )
        })
    }

    fn membership(&self, room: &str, member: &str) -> StoreResult<Option<Membership>> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT joined, left_at FROM memberships WHERE room = $1 AND member = $2",
                &[&room, &member],
            )
            .map_err(pg_err)?
            .map(|r| Membership {
                joined: unbig(r.get(0)),
                left: r.get::<_, Option<i64>>(1).map(unbig),
            }))
        })
    }

    fn memberships(&self, room: &str) -> StoreResult<Vec<(String, Membership)>> {
        self.read(|c| {
            Ok(c.query(
                "SELECT member, joined, left_at FROM memberships WHERE room = $1 ORDER BY member",
                &[&room],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Membership {
                        joined: unbig(r.get(1)),
                        left: r.get::<_, Option<i64>>(2).map(unbig),
                    },
                )
            })
            .collect())
        })
    }

    fn put_room_message(&self, room: &str, seq: Seq, message: &RoomMessage) -> StoreResult<()> {
        self.write(|c| put_room_message_in(c, room, seq, message))
    }

    fn room_message_by_stanza_id(
        &self,
        room: &str,
        stanza_id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>> {
        self.read(|c| {
            Ok(c.query_opt(
                &format!(
                    "SELECT {ROOM_MESSAGE_COLUMNS} FROM room_messages WHERE room = $1 \
                     AND stanza_id = $2 ORDER BY seq DESC LIMIT 1"
                ),
                &[&room, &stanza_id],
            )
            .map_err(pg_err)?
            .map(|r| room_message_from(&r)))
        })
    }

    fn room_message_by_sender_id(
        &self,
        room: &str,
        sender: &str,
        id: &str,
    ) -> StoreResult<Option<(Seq, RoomMessage)>> {
        self.read(|c| {
            Ok(c.query_opt(
                &format!(
                    "SELECT {ROOM_MESSAGE_COLUMNS} FROM room_messages WHERE room = $1 \
                     AND sender = $2 AND id = $3 ORDER BY seq DESC LIMIT 1"
                ),
                &[&room, &sender, &id],
            )
            .map_err(pg_err)?
            .map(|r| room_message_from(&r)))
        })
    }

    fn room_messages_with_sender_id(
        &self,
        room: &str,
        id: &str,
        after: Seq,
        limit_to: usize,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        self.read(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {ROOM_MESSAGE_COLUMNS} FROM room_messages WHERE room = $1 \
                     AND id = $2 AND seq > $3 ORDER BY seq LIMIT $4"
                ),
                &[&room, &id, &big(after), &limit(limit_to)],
            )
            .map_err(pg_err)?
            .iter()
            .map(room_message_from)
            .collect())
        })
    }

    fn add_room_creator(&self, creator: &str, room: &str) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO room_creators (creator, room) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&creator, &room],
            )
        })
    }

    fn rooms_created_by(&self, creator: &str) -> StoreResult<usize> {
        self.read(|c| {
            count(
                c,
                "SELECT COUNT(*) FROM room_creators WHERE creator = $1",
                &[&creator],
            )
        })
    }

    fn room_messages_between(
        &self,
        room: &str,
        after: Seq,
        upto: Seq,
    ) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        self.read(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {ROOM_MESSAGE_COLUMNS} FROM room_messages WHERE room = $1 \
                     AND seq > $2 AND seq <= $3 ORDER BY seq"
                ),
                &[&room, &big(after), &big(upto)],
            )
            .map_err(pg_err)?
            .iter()
            .map(room_message_from)
            .collect())
        })
    }

    fn room_history(&self, room: &str, limit_to: usize) -> StoreResult<Vec<(Seq, RoomMessage)>> {
        self.read(|c| {
            let mut found: Vec<(Seq, RoomMessage)> = c
                .query(
                    &format!(
                        "SELECT {ROOM_MESSAGE_COLUMNS} FROM room_messages WHERE room = $1 \
                         ORDER BY seq DESC LIMIT $2"
                    ),
                    &[&room, &limit(limit_to)],
                )
                .map_err(pg_err)?
                .iter()
                .map(room_message_from)
                .collect();
            found.reverse();
            Ok(found)
        })
    }

    fn read_receipts_pref(&self, user: &str) -> StoreResult<Option<bool>> {
        self.read(|c| {
            if let Some(pref) = c.known().receipts(user) {
                return Ok(pref);
            }
            let pref = c
                .query_opt(
                    "SELECT enabled FROM read_receipts_prefs WHERE jid = $1",
                    &[&user],
                )
                .map_err(pg_err)?
                .map(|r| r.get(0));
            c.known().set_receipts(user, pref);
            Ok(pref)
        })
    }

    fn set_read_receipts_pref(&self, user: &str, enabled: bool) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO read_receipts_prefs (jid, enabled) VALUES ($1, $2) \
                 ON CONFLICT (jid) DO UPDATE SET enabled = EXCLUDED.enabled",
                &[&user, &enabled],
            )?;
            c.known().set_receipts(user, Some(enabled));
            Ok(())
        })
    }

    fn set_occupant(
        &self,
        room: &str,
        nick: &str,
        occupant: Option<&OccupantRecord>,
    ) -> StoreResult<()> {
        self.write(|c| {
            match occupant {
                Some(o) => c.execute(
                    "INSERT INTO occupants (room, nick, jid, sessions, presence) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room, nick) DO UPDATE SET \
                     jid = EXCLUDED.jid, sessions = EXCLUDED.sessions, presence = EXCLUDED.presence",
                    &[&room, &nick, &o.user, &o.sessions, &o.presence],
                ),
                None => c.execute(
                    "DELETE FROM occupants WHERE room = $1 AND nick = $2",
                    &[&room, &nick],
                ),
            }
            .map_err(pg_err)?;
            Ok(())
        })
    }

    fn occupants(&self) -> StoreResult<Vec<(String, String, OccupantRecord)>> {
        self.read(|c| {
            Ok(c.query(
                "SELECT room, nick, jid, sessions, presence FROM occupants ORDER BY room, nick",
                &[],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    OccupantRecord {
                        user: r.get(2),
                        sessions: r.get(3),
                        presence: r.get(4),
                    },
                )
            })
            .collect())
        })
    }

    fn set_room_subject(&self, room: &str, s: &RoomSubject) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO room_subjects (room, text, nick, setter, at, config) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room) DO UPDATE SET \
                 text = EXCLUDED.text, nick = EXCLUDED.nick, setter = EXCLUDED.setter, \
                 at = EXCLUDED.at, config = EXCLUDED.config",
                &[&room, &s.text, &s.nick, &s.setter, &big(s.at), &s.config],
            )
        })
    }

    fn room_subject(&self, room: &str) -> StoreResult<Option<RoomSubject>> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT text, nick, setter, at, config FROM room_subjects WHERE room = $1",
                &[&room],
            )
            .map_err(pg_err)?
            .map(|r| RoomSubject {
                text: r.get(0),
                nick: r.get(1),
                setter: r.get(2),
                at: unbig(r.get(3)),
                config: r.get(4),
            }))
        })
    }

    fn created_room(&self, creator: &str, room: &str) -> StoreResult<bool> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT 1 FROM room_creators WHERE creator = $1 AND room = $2",
                &[&creator, &room],
            )
            .map_err(pg_err)?
            .is_some())
        })
    }

    fn expire(&self, cutoff: Millis, from: &ExpiryCursor, budget: usize) -> StoreResult<Expiry> {
        self.write(|c| expire_in(c, cutoff, from, budget.max(1)))
    }

    fn put_preview(&self, conv: &ConversationKey, seq: Seq, text: &str) -> StoreResult<()> {
        let conv = conv_text(conv);
        self.write(|c| {
            exec(
                c,
                "UPDATE messages SET preview = $3 WHERE seq = $1 AND conv = $2",
                &[&big(seq), &conv, &text],
            )
        })
    }

    fn sent_by(
        &self,
        user: &str,
        from: SentFrom,
        limit_to: usize,
        filter: Option<&SentTo>,
    ) -> StoreResult<SentPage> {
        // Both kinds of message by their sender's index, merged by seq;
        // the filter leaves one side out. PostgreSQL bounds the work by
        // the LIMIT, so the page is never cut.
        let (contact, room) = match filter {
            None => (None, None),
            Some(SentTo::Contact(c)) => (Some(c.as_str()), None),
            Some(SentTo::Room(r)) => (None, Some(r.as_str())),
        };
        let (with_direct, with_rooms) = match filter {
            None => (true, true),
            Some(SentTo::Contact(_)) => (true, false),
            Some(SentTo::Room(_)) => (false, true),
        };
        let (cmp, order, pos) = match from {
            SentFrom::Before(s) => ("<", "DESC", s),
            SentFrom::After(s) => (">", "ASC", s),
        };
        let sql = format!(
            "SELECT seq, sent_at, is_room, target, preview FROM ( \
               SELECT seq, sent_at, FALSE AS is_room, recipient AS target, preview FROM messages \
                 WHERE $5 AND sender = $1 AND seq {cmp} $2 AND ($6::TEXT IS NULL OR recipient = $6) \
               UNION ALL \
               SELECT seq, sent_at, TRUE, room, NULL FROM room_messages \
                 WHERE $4 AND sender = $1 AND seq {cmp} $2 AND ($7::TEXT IS NULL OR room = $7) \
             ) s ORDER BY seq {order} LIMIT $3"
        );
        self.read(|c| {
            let rows = c
                .query(
                    &sql,
                    &[
                        &user,
                        &big(pos),
                        &limit(limit_to),
                        &with_rooms,
                        &with_direct,
                        &contact,
                        &room,
                    ],
                )
                .map_err(pg_err)?;
            let mut entries: Vec<SentEntry> = rows
                .iter()
                .map(|r| {
                    let target: String = r.get(3);
                    SentEntry {
                        seq: unbig(r.get(0)),
                        sent_at: unbig(r.get(1)),
                        to: if r.get(2) {
                            SentTo::Room(target)
                        } else {
                            SentTo::Contact(target)
                        },
                        preview: r.get(4),
                    }
                })
                .collect();
            if matches!(from, SentFrom::After(_)) {
                entries.reverse();
            }
            Ok(SentPage {
                entries,
                cut: false,
            })
        })
    }

    fn inbox_message(
        &self,
        user: &str,
        contact: &str,
        seq: Seq,
        at: Millis,
        own: bool,
    ) -> StoreResult<()> {
        // One statement, sent without waiting (`session.rs`): the entry
        // moves only for a seq above its newest (idempotent), and only then
        // do its unread rows change.
        self.write(|c| {
            c.send(
                "WITH moved AS ( \
                   INSERT INTO inbox (jid, contact, latest, latest_at, latest_by_contact, own_latest) \
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (jid, contact) DO UPDATE SET \
                   latest = EXCLUDED.latest, latest_at = EXCLUDED.latest_at, \
                   latest_by_contact = EXCLUDED.latest_by_contact, \
                   own_latest = GREATEST(inbox.own_latest, EXCLUDED.own_latest), \
                   missed_count = CASE WHEN $7 THEN NULL ELSE inbox.missed_count END, \
                   missed_first_at = CASE WHEN $7 THEN NULL ELSE inbox.missed_first_at END, \
                   missed_last_at = CASE WHEN $7 THEN NULL ELSE inbox.missed_last_at END \
                   WHERE inbox.latest < EXCLUDED.latest RETURNING 1), \
                 unread AS ( \
                   INSERT INTO inbox_unread (jid, contact, seq) \
                   SELECT $1, $2, $3 FROM moved WHERE NOT $7 ON CONFLICT DO NOTHING) \
                 DELETE FROM inbox_unread WHERE $7 AND jid = $1 AND contact = $2 AND seq < $3 \
                   AND EXISTS (SELECT 1 FROM moved)",
                // The user's own message: they have the conversation open,
                // so what came before is read.
                &[
                    &user,
                    &contact,
                    &big(seq),
                    &big(at),
                    &!own,
                    &(if own { big(seq) } else { 0 }),
                    &own,
                ],
            )
            .map_err(pg_err)
        })
    }

    fn inbox_read(&self, user: &str, contact: &str, upto: Seq) -> StoreResult<()> {
        self.write(|c| {
            c.send(
                "WITH found AS ( \
                   UPDATE inbox SET missed_count = NULL, missed_first_at = NULL, \
                   missed_last_at = NULL WHERE jid = $1 AND contact = $2 RETURNING 1) \
                 DELETE FROM inbox_unread WHERE jid = $1 AND contact = $2 AND seq <= $3 \
                   AND EXISTS (SELECT 1 FROM found)",
                &[&user, &contact, &big(upto)],
            )
            .map_err(pg_err)
        })
    }

    fn inbox_missed(&self, user: &str, contact: &str, seq: Seq, at: Millis) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO inbox (jid, contact, latest, latest_at, latest_by_contact, own_latest, \
                 missed_count, missed_first_at, missed_last_at) \
                 VALUES ($1, $2, $3, $4, TRUE, 0, 1, $4, $4) ON CONFLICT (jid, contact) DO UPDATE SET \
                 latest = EXCLUDED.latest, latest_at = EXCLUDED.latest_at, latest_by_contact = TRUE, \
                 missed_count = COALESCE(inbox.missed_count, 0) + 1, \
                 missed_first_at = COALESCE(inbox.missed_first_at, EXCLUDED.missed_first_at), \
                 missed_last_at = EXCLUDED.missed_last_at \
                 WHERE inbox.latest < EXCLUDED.latest",
                &[&user, &contact, &big(seq), &big(at)],
            )
        })
    }

    fn inbox_room_sent(&self, user: &str, room: &str, seq: Seq) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO inbox_room_sent (jid, room, seq) VALUES ($1, $2, $3) \
                 ON CONFLICT (jid, room) DO UPDATE SET \
                 seq = GREATEST(inbox_room_sent.seq, EXCLUDED.seq)",
                &[&user, &room, &big(seq)],
            )
        })
    }

    fn inbox_entry(&self, user: &str, contact: &str) -> StoreResult<Option<InboxEntry>> {
        self.read(|c| {
            Ok(c.query_opt(
                &format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE jid = $1 AND contact = $2"),
                &[&user, &contact],
            )
            .map_err(pg_err)?
            .map(|r| inbox_from(&r)))
        })
    }

    fn inbox_latest(
        &self,
        user: &str,
        before: Seq,
        limit_to: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        self.read(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {INBOX_COLUMNS} FROM inbox WHERE jid = $1 AND latest < $2 \
                     ORDER BY latest DESC LIMIT $3"
                ),
                &[&user, &big(before), &limit(limit_to)],
            )
            .map_err(pg_err)?
            .iter()
            .map(inbox_from)
            .collect())
        })
    }

    fn inbox_entries(&self, user: &str, limit_to: usize) -> StoreResult<Vec<InboxEntry>> {
        self.read(|c| {
            Ok(c.query(
                &format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE jid = $1 LIMIT $2"),
                &[&user, &limit(limit_to)],
            )
            .map_err(pg_err)?
            .iter()
            .map(inbox_from)
            .collect())
        })
    }

    fn inbox_unread_total(&self, user: &str) -> StoreResult<u64> {
        // Kept by a trigger on inbox_unread (migration 2).
        self.read(|c| {
            Ok(
                c.query_opt("SELECT unread FROM inbox_totals WHERE jid = $1", &[&user])
                    .map_err(pg_err)?
                    .map_or(0, |r| unbig(r.get(0))),
            )
        })
    }

    fn inbox_room_sent_seq(&self, user: &str, room: &str) -> StoreResult<Seq> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT seq FROM inbox_room_sent WHERE jid = $1 AND room = $2",
                &[&user, &room],
            )
            .map_err(pg_err)?
            .map(|r| unbig(r.get(0)))
            .unwrap_or(0))
        })
    }

    fn member_rooms(&self, user: &str) -> StoreResult<Vec<String>> {
        self.read(|c| {
            Ok(c.query(
                "SELECT room FROM memberships WHERE member = $1 ORDER BY room",
                &[&user],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn room_messages_after(&self, room: &str, after: Seq) -> StoreResult<u64> {
        // The room's total less the running count of its first counted
        // message after `after` (migration 2): two index lookups.
        self.read(|c| {
            let n: Option<i64> = c
                .query_one(
                    "SELECT (SELECT total FROM room_counts WHERE room = $1) + 1 - \
                     (SELECT counted FROM room_messages WHERE room = $1 AND seq > $2 \
                      AND counted IS NOT NULL ORDER BY seq LIMIT 1)",
                    &[&room, &big(after)],
                )
                .map_err(pg_err)?
                .get(0);
            Ok(n.map_or(0, unbig))
        })
    }

    fn put_desk_conversation(&self, desk: &str, conv: &DeskConversation) -> StoreResult<()> {
        self.write(|c| put_desk_in(c, desk, conv))
    }

    fn desk_conversation(
        &self,
        desk: &str,
        customer: &str,
    ) -> StoreResult<Option<DeskConversation>> {
        self.read(|c| {
            c.query_opt(
                &format!(
                    "SELECT {DESK_COLUMNS} FROM desk_conversations WHERE desk = $1 AND customer = $2"
                ),
                &[&desk, &customer],
            )
            .map_err(pg_err)?
            .map(|r| desk_from(&r))
            .transpose()
        })
    }

    fn desk_view(
        &self,
        desk: &str,
        view: &DeskView,
        after: Option<&str>,
        limit_to: usize,
    ) -> StoreResult<Vec<DeskConversation>> {
        let agent = match view {
            DeskView::Mine(agent) => Some(agent.as_str()),
            _ => None,
        };
        let condition = desk_view_condition(view);
        // Latest first; ties by customer, so that "after" is one place.
        let sql = format!(
            "SELECT {DESK_COLUMNS} FROM desk_conversations WHERE desk = $1 AND {condition} \
             AND ($2::TEXT IS NULL OR (latest, customer) < \
                  (SELECT latest, customer FROM desk_conversations WHERE desk = $1 AND customer = $2)) \
             ORDER BY latest DESC, customer DESC LIMIT $4"
        );
        self.read(|c| {
            c.query(&sql, &[&desk, &after, &agent, &limit(limit_to)])
                .map_err(pg_err)?
                .iter()
                .map(desk_from)
                .collect()
        })
    }

    fn desk_counts(&self, desk: &str, agent: &str) -> StoreResult<DeskCounts> {
        // Kept by a trigger on desk_conversations (migration 2): at most
        // four rows, by the primary key.
        self.read(|c| {
            let mut counts = DeskCounts::default();
            for r in c
                .query(
                    "SELECT view_name, conversations, unread FROM desk_counts WHERE desk = $1 \
                     AND ((view_name <> 'mine' AND agent = '') OR (view_name = 'mine' AND agent = $2))",
                    &[&desk, &agent],
                )
                .map_err(pg_err)?
            {
                let count = ViewCount {
                    conversations: unbig(r.get(1)),
                    unread: unbig(r.get(2)),
                };
                match r.get::<_, &str>(0) {
                    "mine" => counts.mine = count,
                    "unassigned" => counts.unassigned = count,
                    "all" => counts.all = count,
                    "done" => counts.done = count,
                    other => {
                        return Err(StoreError::Corrupt {
                            what: "desk count view",
                            detail: other.to_owned(),
                        });
                    }
                }
            }
            Ok(counts)
        })
    }

    fn put_desk_event(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        event: &DeskEvent,
    ) -> StoreResult<()> {
        self.write(|c| put_desk_event_in(c, desk, customer, seq, event))
    }

    fn desk_events(
        &self,
        desk: &str,
        customer: &str,
        limit_to: usize,
    ) -> StoreResult<Vec<(Seq, DeskEvent)>> {
        self.read(|c| {
            let mut found = c
                .query(
                    "SELECT seq, at, by_whom, kind FROM desk_events WHERE desk = $1 \
                     AND customer = $2 ORDER BY seq DESC LIMIT $3",
                    &[&desk, &customer, &limit(limit_to)],
                )
                .map_err(pg_err)?
                .iter()
                .map(desk_event_from)
                .collect::<StoreResult<Vec<_>>>()?;
            found.reverse();
            Ok(found)
        })
    }

    fn put_desk_author(
        &self,
        desk: &str,
        customer: &str,
        seq: Seq,
        agent: &str,
    ) -> StoreResult<()> {
        self.write(|c| {
            exec(
                c,
                "INSERT INTO desk_authors (desk, customer, seq, agent) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (desk, customer, seq) DO UPDATE SET agent = EXCLUDED.agent",
                &[&desk, &customer, &big(seq), &agent],
            )
        })
    }

    fn desk_author(&self, desk: &str, customer: &str, seq: Seq) -> StoreResult<Option<String>> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT agent FROM desk_authors WHERE desk = $1 AND customer = $2 AND seq = $3",
                &[&desk, &customer, &big(seq)],
            )
            .map_err(pg_err)?
            .map(|r| r.get(0)))
        })
    }

    fn desk_snoozed(&self) -> StoreResult<Vec<(String, String, Millis)>> {
        self.read(|c| {
            Ok(c.query(
                "SELECT desk, customer, until FROM desk_conversations WHERE state = 'snoozed' \
                 ORDER BY desk, customer",
                &[],
            )
            .map_err(pg_err)?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    unbig(r.get::<_, Option<i64>>(2).unwrap_or_default()),
                )
            })
            .collect())
        })
    }

    fn flush(&self) -> StoreResult<()> {
        let mut conn = self.lock()?;
        conn.in_stanza = false;
        if let Some(detail) = conn.lost.take() {
            // What came after the loss is not committed either: the
            // service starts over from what the database holds.
            if std::mem::take(&mut conn.in_tx) {
                let client = conn.client()?;
                let _ = off_runtime(|| client.batch_execute("ROLLBACK"));
                conn.known.forget();
            }
            return Err(StoreError::BatchLost(format!(
                "a write of this batch failed: {detail}"
            )));
        }
        if conn.in_tx {
            // Cleared first: a failed COMMIT ends the transaction too.
            conn.in_tx = false;
            let client = conn.client()?;
            // COMMIT of a transaction a write aborted answers ROLLBACK, not
            // an error: the SELECT before it is what fails (25P02) when a
            // write that was not waited for failed.
            let committed = off_runtime(|| {
                let r = client.batch_execute("SELECT 1; COMMIT");
                if r.is_err() && !client.is_closed() {
                    let _ = client.batch_execute("ROLLBACK");
                }
                r
            });
            if committed.is_err() {
                conn.known.forget();
            }
            committed.map_err(|e| match pg_err(e) {
                StoreError::Backend(detail) if aborted_before(&detail) => StoreError::BatchLost(format!(
                    "a write of this batch sent without waiting was refused (PostgreSQL's log names the statement and why): {detail}"
                )),
                other => other,
            })?;
        }
        Ok(())
    }

    fn check(&self) -> StoreResult<()> {
        self.read(|c| c.batch_execute("").map_err(pg_err))
    }

    fn export_records(
        &self,
        each: &mut dyn FnMut(ExportRecord) -> Result<(), ExportError>,
    ) -> Result<(), ExportError> {
        // Pending writes first: the export reads a snapshot of what is
        // committed, on a session of its own.
        self.flush()?;
        let mut client = off_runtime(|| self.options.connect())?;
        let exported = off_runtime(|| export_in(&mut client, each));
        off_runtime(move || drop(client));
        exported
    }

    fn import_mark(&self, conv: &ConversationKey, reader: &str, seq: Seq) -> StoreResult<()> {
        let conv = conv_text(conv);
        self.write(|c| advance_raw(c, &conv, reader, seq).map(|_| ()))
    }

    fn import_mark_moved(
        &self,
        conv: &ConversationKey,
        reader: &str,
        seq: Seq,
        at: Millis,
    ) -> StoreResult<()> {
        let conv = conv_text(conv);
        self.write(|c| {
            exec(
                c,
                "INSERT INTO mark_log (conv, reader, seq, at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[&conv, &reader, &big(seq), &big(at)],
            )
        })
    }

    fn import_inbox_entry(&self, user: &str, entry: InboxEntry, unread: &[Seq]) -> StoreResult<()> {
        self.write(|c| import_inbox_entry_in(c, user, &entry, unread))
    }

    fn is_empty(&self) -> StoreResult<bool> {
        self.read(|c| {
            let any: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM messages) OR EXISTS (SELECT 1 FROM marks) \
                     OR EXISTS (SELECT 1 FROM grants) OR EXISTS (SELECT 1 FROM queue) \
                     OR EXISTS (SELECT 1 FROM rooms) OR EXISTS (SELECT 1 FROM memberships) \
                     OR EXISTS (SELECT 1 FROM room_messages) OR EXISTS (SELECT 1 FROM room_creators) \
                     OR EXISTS (SELECT 1 FROM read_receipts_prefs) OR EXISTS (SELECT 1 FROM occupants) \
                     OR EXISTS (SELECT 1 FROM room_subjects) OR EXISTS (SELECT 1 FROM inbox) \
                     OR EXISTS (SELECT 1 FROM inbox_room_sent) \
                     OR EXISTS (SELECT 1 FROM desk_conversations) \
                     OR EXISTS (SELECT 1 FROM desk_events) OR EXISTS (SELECT 1 FROM desk_authors)",
                    &[],
                )
                .map_err(pg_err)?
                .get(0);
            Ok(!any)
        })
    }

    fn continue_after(&self, seq: Seq) -> StoreResult<()> {
        // Numbers taken before may be below `seq`.
        self.lock()?.seqs.clear();
        self.read(|c| {
            exec(
                c,
                "SELECT setval('seq_numbers', GREATEST($1, (SELECT last_value FROM seq_numbers)))",
                &[&big(seq.max(1))],
            )
        })
    }
}

fn desk_event_from(r: &Row) -> StoreResult<(Seq, DeskEvent)> {
    let kind: String = r.get(3);
    Ok((
        unbig(r.get(0)),
        DeskEvent {
            at: unbig(r.get(1)),
            by: r.get(2),
            kind: serde_json::from_str(&kind).map_err(|e| StoreError::Corrupt {
                what: "desk event",
                detail: e.to_string(),
            })?,
        },
    ))
}

/// A key column of a table retention walks.
#[derive(Clone, Copy)]
enum KeyColumn {
    Text,
    Big,
}

/// One phase of retention: a table walked by its key. `select` gives the
/// key columns, then the time compared with the cutoff, then what
/// `remove` needs; it takes the key to go on after as `$1..$k` and the
/// page's size as `$k+1`.
struct Walk {
    select: &'static str,
    key: &'static [KeyColumn],
    /// Removes one expired row: how many entries that removed, and how
    /// many it examined besides the row itself.
    remove: fn(&mut Db<'_>, &Row) -> StoreResult<(usize, usize)>,
}

/// The phases, in the order retention walks them.
const WALKS: [Walk; EXPIRY_PHASES as usize] = [
    Walk {
        select: "SELECT seq, sent_at, conv FROM messages WHERE seq > $1 ORDER BY seq LIMIT $2",
        key: &[KeyColumn::Big],
        remove: |c, r| {
            let (seq, conv): (i64, String) = (r.get(0), r.get(2));
            c.execute("DELETE FROM messages WHERE seq = $1", &[&seq])
                .map_err(pg_err)?;
            c.known().forget_messages();
            // Its held stanza goes with it, examined and removed in the
            // same step.
            let held = c
                .execute(
                    "DELETE FROM queue WHERE seq = $1 AND conv = $2",
                    &[&seq, &conv],
                )
                .map_err(pg_err)? as usize;
            Ok((1 + held, held))
        },
    },
    Walk {
        select: "SELECT room, seq, sent_at FROM room_messages WHERE (room, seq) > ($1, $2) \
                 ORDER BY room, seq LIMIT $3",
        key: &[KeyColumn::Text, KeyColumn::Big],
        remove: |c, r| {
            let (room, seq): (String, i64) = (r.get(0), r.get(1));
            c.execute(
                "DELETE FROM room_messages WHERE room = $1 AND seq = $2",
                &[&room, &seq],
            )
            .map_err(pg_err)?;
            Ok((1, 0))
        },
    },
    Walk {
        select: "SELECT jid, contact, latest_at FROM inbox WHERE (jid, contact) > ($1, $2) \
                 ORDER BY jid, contact LIMIT $3",
        key: &[KeyColumn::Text, KeyColumn::Text],
        remove: |c, r| {
            let (jid, contact): (String, String) = (r.get(0), r.get(1));
            for sql in [
                "DELETE FROM inbox WHERE jid = $1 AND contact = $2",
                "DELETE FROM inbox_unread WHERE jid = $1 AND contact = $2",
            ] {
                c.execute(sql, &[&jid, &contact]).map_err(pg_err)?;
            }
            Ok((1, 0))
        },
    },
    Walk {
        select: "SELECT conv, reader, seq, at FROM mark_log \
                 WHERE (conv, reader, seq) > ($1, $2, $3) ORDER BY conv, reader, seq LIMIT $4",
        key: &[KeyColumn::Text, KeyColumn::Text, KeyColumn::Big],
        remove: |c, r| {
            let (conv, reader, seq): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            c.execute(
                "DELETE FROM mark_log WHERE conv = $1 AND reader = $2 AND seq = $3",
                &[&conv, &reader, &seq],
            )
            .map_err(pg_err)?;
            // A party's read times are statuses of the messages, counted
            // with them (as sled's status log does); a room's or a private
            // tidemark's log entries count.
            let counted = conv_from(&conv)?.side_of(&reader).is_none();
            Ok((usize::from(counted), 0))
        },
    },
];

/// One step of retention: the phases walk messages (with their held
/// stanzas), room messages, inbox entries and tidemark log entries, each by
/// its key, examining at most `budget` rows in all.
fn expire_in(
    c: &mut Db<'_>,
    cutoff: Millis,
    from: &ExpiryCursor,
    budget: usize,
) -> StoreResult<Expiry> {
    let cutoff = big(cutoff);
    let (mut examined, mut removed) = (0usize, 0usize);
    // Rows removed with another (a message's held stanza): examined, but
    // not counted against the phase's page.
    let mut also_examined = 0usize;
    let mut phase = from.phase;
    // The key to go on after, as a JSON array of the key's columns.
    let mut after: Option<serde_json::Value> = match &from.after {
        Some(bytes) => Some(
            serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
                what: "retention cursor",
                detail: e.to_string(),
            })?,
        ),
        None => None,
    };
    while let Some(walk) = WALKS.get(usize::from(phase)) {
        let room = budget - examined;
        // Below every key: "" and -1 (sequences start at 1).
        let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        for (i, column) in walk.key.iter().enumerate() {
            let v = after.as_ref().map(|a| &a[i]);
            params.push(match column {
                KeyColumn::Text => {
                    Box::new(v.and_then(|v| v.as_str()).unwrap_or_default().to_owned())
                }
                KeyColumn::Big => Box::new(v.and_then(|v| v.as_i64()).unwrap_or(-1)),
            });
        }
        params.push(Box::new(limit(room)));
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p).collect();
        let rows = c.query(walk.select, &params).map_err(pg_err)?;
        let at = walk.key.len();
        for r in &rows {
            if r.get::<_, i64>(at) < cutoff {
                let (gone, with_it) = (walk.remove)(c, r)?;
                removed += gone;
                also_examined += with_it;
            }
        }
        examined += rows.len();
        if rows.len() < room {
            phase += 1;
            after = None;
            continue;
        }
        // The budget is spent within this phase: go on from its last key.
        let last = rows.last().map(|r| {
            serde_json::Value::Array(
                walk.key
                    .iter()
                    .enumerate()
                    .map(|(i, column)| match column {
                        KeyColumn::Text => serde_json::json!(r.get::<_, String>(i)),
                        KeyColumn::Big => serde_json::json!(r.get::<_, i64>(i)),
                    })
                    .collect(),
            )
        });
        return Ok(Expiry {
            examined: examined + also_examined,
            removed,
            next: Some(ExpiryCursor {
                phase,
                after: last.map(|v| v.to_string().into_bytes()),
            }),
        });
    }
    Ok(Expiry {
        examined: examined + also_examined,
        removed,
        next: None,
    })
}

mod exchange;
use exchange::{export_in, import_inbox_entry_in};

#[cfg(test)]
mod tests;
