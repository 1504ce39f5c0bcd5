//! Connections: tokio-postgres on a private runtime, called synchronously.
//!
//! The sink's methods run on worker threads and (for failures) on the runner's async tasks, so
//! the blocking `postgres` crate, whose calls start a runtime, cannot be used. Instead each
//! connection's I/O future runs on this connector's own one-thread runtime, and a call waits
//! for its reply with `futures_executor::block_on`, which works on any thread. The runtime, and
//! with it every connection task, ends when the sink is dropped.

use std::future::Future;

use sluice_core::error::SinkError;
use sluice_core::spec::Secret;
use tokio_postgres::{Client, NoTls};

/// A private runtime that drives connections, with what is needed to open them.
pub(crate) struct Pg {
    /// Taken on drop (see `Drop`).
    rt: Option<tokio::runtime::Runtime>,
    config: tokio_postgres::Config,
    /// `host:port/db`, for messages.
    pub(crate) endpoint: String,
    secret: Option<Secret>,
}

impl Pg {
    pub(crate) fn new(config: tokio_postgres::Config, secret: Option<Secret>) -> Result<Self, SinkError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-postgres")
            .enable_all()
            .build()
            .map_err(|e| SinkError::Config(format!("cannot start the Postgres connector's runtime: {e}")))?;
        let endpoint = crate::config::endpoint(&config);
        Ok(Pg { rt: Some(rt), config, endpoint, secret })
    }

    /// Open a connection (its I/O runs on the runtime until the client is dropped).
    pub(crate) fn connect(&self) -> Result<Client, SinkError> {
        let config = self.config.clone();
        let task = self.rt.as_ref().expect("until dropped").spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            // The connection's I/O; it ends when the client is dropped, or with the runtime.
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("postgres connection ended: {e}");
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        match futures_executor::block_on(task) {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(self.remote(&e)),
            Err(e) => Err(SinkError::Config(format!("postgres {}: connect task failed: {e}", self.endpoint))),
        }
    }

    /// The runtime the connections run on (a cancel request is sent from it).
    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.rt.as_ref().expect("until dropped").handle().clone()
    }

    /// A server or connection error, naming the server, with the password masked.
    pub(crate) fn remote(&self, e: &tokio_postgres::Error) -> SinkError {
        SinkError::Remote { server: format!("postgres {}", self.endpoint), message: self.redact(&describe(e)) }
    }

    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(s) => s.redact(text),
            None => text.to_string(),
        }
    }
}

/// The sink may be dropped on the runner's async task, where a runtime cannot block to shut
/// down: its connection tasks are dropped without waiting (the server sees the sockets close).
impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Wait for a client call.
pub(crate) fn wait<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// The server's message with its detail, hint and position, or the client's error with its
/// cause (`error connecting to server: Connection refused`).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(c) = db.column() {
            s.push_str(&format!(" (column `{c}`)"));
        }
        if let Some(d) = db.detail() {
            s.push_str(&format!("; {d}"));
        }
        if let Some(w) = db.where_() {
            s.push_str(&format!("; at {w}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

/// A SQL identifier, quoted (`"a""b"`).
pub(crate) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"schema"."table"`.
pub(crate) fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

/// A SQL string literal (`'it''s'`).
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
