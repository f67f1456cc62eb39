//! The store's PostgreSQL session, driven synchronously, with writes
//! pipelined.
//!
//! The synchronous `postgres` client waits for each statement's answer
//! before it sends the next: a status took about fifteen statements, and
//! so fifteen round trips, most of them writes whose answer nothing reads
//! (measured with `pg_stat_statements`: the server spent a fifth of each
//! status executing, the rest was the wait). Here a write whose answer does
//! not matter ([`Session::send`]) is put on the connection and not waited
//! for; a statement waited for later goes behind it on the same
//! connection, so it sees it, and a flush's COMMIT is waited for last. A
//! write that fails aborts the transaction: every later statement of it
//! fails with `25P02`, which is how the failure is seen.
//!
//! The connection is driven on a current-thread runtime of the session's
//! own, as the `postgres` crate does: while a call waits, and once after
//! each write sent, so that the write goes out at once and the server
//! works on it while tidemark goes on (without that it waited in memory
//! for the next waited call; measured: 2,133 to 2,435 statuses/s). A
//! thread of its own driving it instead, so that a flush could wait for
//! its COMMIT without holding the session, was tried: 2,390 to 2,120 in
//! the same benchmark (a third thread on two cores), and dropped.

use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Error, NoTls, Row, Statement};

use super::pg_err;
use crate::store::{StoreError, StoreResult};

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

pub(super) struct Session {
    client: Client,
    driver: Driver,
}

/// tokio-postgres' connection: it reads and writes the socket for the
/// client's calls, and ends with the session.
type Connection = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

struct Driver {
    runtime: tokio::runtime::Runtime,
    /// Until it ends (the session closed).
    connection: Option<Connection>,
}

impl Session {
    pub fn connect(config: &Config) -> StoreResult<Session> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Backend(format!("PostgreSQL: a runtime for the session: {e}"))
            })?;
        let (client, connection) = runtime.block_on(config.connect(NoTls)).map_err(pg_err)?;
        Ok(Session {
            client,
            driver: Driver {
                runtime,
                connection: Some(Box::pin(connection)),
            },
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        let Session { client, driver } = self;
        driver.block_on(client.prepare(sql))
    }

    /// Sends `statement` without waiting for its answer; see the module's
    /// comment. An error here is one of encoding or a closed session.
    pub fn send(&mut self, statement: &Statement, params: Params<'_>) -> Result<(), Error> {
        {
            let mut execute = pin!(self.client.execute(statement, params));
            // The first poll encodes the statement and queues it for the
            // connection; its answer is then discarded, the future dropped.
            if let Poll::Ready(Err(e)) = execute
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
            {
                return Err(e);
            }
        }
        self.driver.poke();
        Ok(())
    }

    pub fn execute(&mut self, statement: &Statement, params: Params<'_>) -> Result<u64, Error> {
        let Session { client, driver } = self;
        driver.block_on(client.execute(statement, params))
    }

    pub fn query(&mut self, statement: &Statement, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let Session { client, driver } = self;
        driver.block_on(client.query(statement, params))
    }

    pub fn query_one(&mut self, statement: &Statement, params: Params<'_>) -> Result<Row, Error> {
        let Session { client, driver } = self;
        driver.block_on(client.query_one(statement, params))
    }

    pub fn query_opt(
        &mut self,
        statement: &Statement,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        let Session { client, driver } = self;
        driver.block_on(client.query_opt(statement, params))
    }

    /// Statements without parameters in the simple protocol, one round
    /// trip for all.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        let Session { client, driver } = self;
        driver.block_on(client.batch_execute(sql))
    }
}

impl Driver {
    /// Lets the connection write what is queued, without waiting: the
    /// server works on it while the caller goes on.
    fn poke(&mut self) {
        let connection = &mut self.connection;
        self.runtime.block_on(std::future::poll_fn(|cx| {
            if let Some(c) = connection.as_mut()
                && let Poll::Ready(_) = c.as_mut().poll(cx)
            {
                // Ended: the next call that waits says so.
                *connection = None;
            }
            Poll::Ready(())
        }))
    }

    /// Runs `call` to its end, driving the connection meanwhile.
    fn block_on<T>(&mut self, call: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let mut call = pin!(call);
        let connection = &mut self.connection;
        self.runtime.block_on(std::future::poll_fn(|cx| {
            if let Some(c) = connection.as_mut() {
                match c.as_mut().poll(cx) {
                    Poll::Pending => {}
                    // Ended: the client's calls now fail as closed.
                    Poll::Ready(Ok(())) => *connection = None,
                    Poll::Ready(Err(e)) => {
                        *connection = None;
                        return Poll::Ready(Err(e));
                    }
                }
            }
            call.as_mut().poll(cx)
        }))
    }
}
