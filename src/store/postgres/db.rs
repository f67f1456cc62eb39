//! The session as the store's queries see it: the client with its prepared
//! statements kept.
//!
//! A query given as text is prepared and then executed: two round trips to
//! the server, and a status takes about twenty statements (measured with
//! `log_min_duration_statement`: some forty round trips, which bounded the
//! PostgreSQL store at a few hundred statuses a second on loopback). Each
//! statement is prepared once per session here, and executing it is one
//! round trip; a write whose answer does not matter, inside the batch's
//! transaction, is not waited for at all ([`Db::send`]).

use std::collections::HashMap;

use ::postgres::types::ToSql;
use ::postgres::{Row, Statement};

use super::known::Known;
use super::session::Session;

/// Statements kept per session. The store's SQL is a fixed set of texts;
/// the bound is for any that are built per call, so that they cannot grow
/// the session (client and server side) without end.
const MAX_STATEMENTS: usize = 512;

#[derive(Default)]
pub(super) struct Statements(HashMap<String, Statement>);

pub(super) struct Db<'a> {
    session: &'a mut Session,
    statements: &'a mut Statements,
    known: &'a mut Known,
    /// Writes may go without waiting: inside the transaction of a batch's
    /// writes (a failed write aborts it, and the next waited statement or
    /// the COMMIT finds out), and not inside a stanza's savepoint, where a
    /// refusal must show while that stanza's writes can still be rolled
    /// back alone ([`super::PgStore`]'s `apply`).
    unwaited: bool,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a> Db<'a> {
    pub fn new(
        session: &'a mut Session,
        statements: &'a mut Statements,
        known: &'a mut Known,
        unwaited: bool,
    ) -> Self {
        Db {
            session,
            statements,
            known,
            unwaited,
        }
    }

    /// Rows read often, already known ([`Known`]).
    pub fn known(&mut self) -> &mut Known {
        self.known
    }

    fn prepared(&mut self, sql: &str) -> Result<Statement, ::postgres::Error> {
        if let Some(s) = self.statements.0.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.session.prepare(sql)?;
        if self.statements.0.len() >= MAX_STATEMENTS {
            // Dropping the last handle of a statement closes it on the
            // server at the next round trip.
            self.statements.0.clear();
        }
        self.statements.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// A write whose answer does not matter: inside a transaction it is
    /// sent and not waited for; outside one, waited for, so that its error
    /// is not lost.
    pub fn send(&mut self, sql: &str, params: Params<'_>) -> Result<(), ::postgres::Error> {
        let s = self.prepared(sql)?;
        if self.unwaited {
            self.session.send(&s, params)
        } else {
            self.session.execute(&s, params).map(drop)
        }
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.session.execute(&s, params)
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.session.query(&s, params)
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.session.query_one(&s, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.session.query_opt(&s, params)
    }

    /// Statements without parameters, in the simple protocol: one round
    /// trip for all of them, nothing prepared.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), ::postgres::Error> {
        self.session.batch_execute(sql)
    }
}
