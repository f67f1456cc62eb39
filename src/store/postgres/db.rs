//! The session as the store's queries see it: the client with its prepared
//! statements kept.
//!
//! A query given as text is prepared and then executed: two round trips to
//! the server, and a status takes about twenty statements (measured with
//! `log_min_duration_statement`: some forty round trips, which bounded the
//! PostgreSQL store at a few hundred statuses a second on loopback). Each
//! statement is prepared once per session here, and executing it is one
//! round trip.

use std::collections::HashMap;

use ::postgres::types::ToSql;
use ::postgres::{Client, Row, Statement};

/// Statements kept per session. The store's SQL is a fixed set of texts;
/// the bound is for any that are built per call, so that they cannot grow
/// the session (client and server side) without end.
const MAX_STATEMENTS: usize = 512;

#[derive(Default)]
pub(super) struct Statements(HashMap<String, Statement>);

pub(super) struct Db<'a> {
    client: &'a mut Client,
    statements: &'a mut Statements,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a> Db<'a> {
    pub fn new(client: &'a mut Client, statements: &'a mut Statements) -> Self {
        Db { client, statements }
    }

    fn prepared(&mut self, sql: &str) -> Result<Statement, ::postgres::Error> {
        if let Some(s) = self.statements.0.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(sql)?;
        if self.statements.0.len() >= MAX_STATEMENTS {
            // Dropping the last handle of a statement closes it on the
            // server at the next round trip.
            self.statements.0.clear();
        }
        self.statements.0.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.execute(&s, params)
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query(&s, params)
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query_one(&s, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, ::postgres::Error> {
        let s = self.prepared(sql)?;
        self.client.query_opt(&s, params)
    }

    /// Statements without parameters, in the simple protocol: one round
    /// trip for all of them, nothing prepared.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), ::postgres::Error> {
        self.client.batch_execute(sql)
    }

    /// The client itself, for what is not a single statement (a
    /// transaction of its own, a portal).
    pub fn client(&mut self) -> &mut Client {
        self.client
    }
}
