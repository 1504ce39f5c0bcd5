//! The Redis sink: each unit's writes, and its marker, in one `MULTI`/`EXEC`; the run's state
//! in the sink `state:` names.
//!
//! The marker (`HSET {prefix}_sluice:units <unit id> <hash>`) is a hash of every command the
//! unit sent. A unit's writer reads the marker, then sends `MULTI` and each batch's commands as
//! one pipeline (queued by the server). At commit, when the marker already holds this hash,
//! Redis holds exactly these writes (a run stopped after `EXEC` and before the state sink
//! committed): the queue is discarded, and only the state commits. Otherwise the new marker
//! joins the queue and `EXEC` applies it all; a command that failed inside `EXEC` (a key of
//! another type) fails the unit and removes its marker, so the next run writes the unit again.
//! A crash before `EXEC` drops the queue with the connection. Durability is Redis's own
//! (`appendonly`, `appendfsync`).

use std::sync::{Arc, Mutex};

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, SchemaRef};
use sluice_core::connector::BuiltSink;
use sluice_core::error::SinkError;
use sluice_core::sink::{CommitReport, Sink, StateStore, UnitState, UnitWriter};
use sluice_core::source::{Source, SourceUnit};

use crate::config::{Layout, RedisSinkSpec, ScoreUpdate};

pub struct RedisSink {
    spec: RedisSinkSpec,
    client: redis::Client,
    /// Idle connections, reused by later units.
    pool: Arc<Mutex<Vec<redis::Connection>>>,
    /// Where the run's state lives.
    state: BuiltSink,
    endpoint: String,
}

/// How long connecting may take, and how long a reply (an `EXEC` of a large unit) may.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A client for the sink's server, with the password.
fn client(spec: &RedisSinkSpec) -> Result<redis::Client, SinkError> {
    use redis::IntoConnectionInfo;
    let endpoint = format!("redis {}", spec.endpoint());
    let mut info = spec
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| SinkError::Config(format!("{endpoint}: not a Redis URL: {e}")))?;
    if let Some(p) = &spec.password {
        let settings = info.redis_settings().clone().set_password(p.expose());
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info).map_err(|e| SinkError::Config(format!("{endpoint}: {e}")))
}

impl RedisSinkSpec {
    /// A Redis error's text, with the password masked.
    fn error_text(&self, e: &redis::RedisError) -> String {
        let text = e.to_string();
        match &self.password {
            Some(p) => p.redact(&text),
            None => text,
        }
    }
}

/// Connect and log in, writing nothing (`validate --connect`).
pub(crate) fn ping(spec: &RedisSinkSpec) -> Result<(), SinkError> {
    let remote = |e: redis::RedisError| SinkError::Remote {
        server: format!("redis {}", spec.endpoint()),
        message: spec.error_text(&e),
    };
    let mut con = client(spec)?.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(remote)?;
    redis::cmd("PING").query::<String>(&mut con).map_err(remote)?;
    Ok(())
}

impl RedisSink {
    pub(crate) fn open(spec: &RedisSinkSpec, state: BuiltSink) -> Result<Self, SinkError> {
        let endpoint = format!("redis {}", spec.endpoint());
        let client = client(spec)?;
        let sink = RedisSink { spec: spec.clone(), client, pool: Arc::new(Mutex::new(Vec::new())), state, endpoint };
        // Connect now: a refused connection or a wrong password fails the run before any unit.
        let con = sink.connect()?;
        sink.pool.lock().expect("pool lock").push(con);
        Ok(sink)
    }

    fn remote(&self, e: &redis::RedisError) -> SinkError {
        SinkError::Remote { server: self.endpoint.clone(), message: self.spec.error_text(e) }
    }

    fn connect(&self) -> Result<redis::Connection, SinkError> {
        let mut con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(|e| self.remote(&e))?;
        con.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| self.remote(&e))?;
        con.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| self.remote(&e))?;
        redis::cmd("PING").query::<String>(&mut con).map_err(|e| self.remote(&e))?;
        Ok(con)
    }

    /// The marker hash: unit id → fingerprint of what was written.
    fn marker_key(&self) -> String {
        format!("{}_sluice:units", self.spec.prefix)
    }
}

impl Sink for RedisSink {
    fn check_schema(&self, schema: &SchemaRef) -> Result<(), SinkError> {
        for (_, c) in self.spec.columns() {
            if schema.field_with_name(c).is_err() {
                return Err(SinkError::Config(format!(
                    "redis sink: `{c}` is not a column of the pipeline's output (columns: {})",
                    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(())
    }

    fn begin(&self, unit: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError> {
        // A unit the state holds is re-run on purpose (`--force`, a stale or continued unit):
        // its writes go out even when a marker says Redis holds them.
        let honor_marker = !self.state.sink.state().is_committed(unit)?;
        let inner = self.state.sink.begin(unit)?;
        let con = match self.pool.lock().expect("pool lock").pop() {
            Some(c) => c,
            None => self.connect()?,
        };
        Ok(Box::new(RedisWriter {
            sink: self.clone_handle(),
            unit_id: unit.id(),
            location: unit.display_name(),
            prior: None,
            honor_marker,
            hash: sha2::Sha256::default(),
            con: Some(con),
            inner: Some(inner),
            phase: Phase::Fresh,
            rows: 0,
        }))
    }

    fn state(&self) -> &dyn StateStore {
        self.state.sink.state()
    }

    fn remove_deleted(&self, _source: &dyn Source, _present: &[SourceUnit]) -> Result<Vec<SourceUnit>, SinkError> {
        Ok(Vec::new())
    }

    fn rejects_location(&self) -> Option<String> {
        self.state.sink.rejects_location()
    }

    fn set_lineage(&self, lineage: Arc<sluice_core::lineage::Lineage>) {
        self.state.sink.set_lineage(lineage)
    }
}

/// What a writer needs of its sink (the sink lives as long as the run; writers are boxed).
#[derive(Clone)]
struct Handle {
    spec: RedisSinkSpec,
    endpoint: String,
    marker_key: String,
    pool: Arc<Mutex<Vec<redis::Connection>>>,
}

impl RedisSink {
    fn clone_handle(&self) -> Handle {
        Handle {
            spec: self.spec.clone(),
            endpoint: self.endpoint.clone(),
            marker_key: self.marker_key(),
            pool: self.pool.clone(),
        }
    }
}

#[derive(PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet.
    Fresh,
    /// `MULTI` sent; writes queued.
    Queued,
}

struct RedisWriter {
    sink: Handle,
    unit_id: String,
    location: String,
    /// The unit's marker before this attempt.
    prior: Option<String>,
    /// Whether a marker equal to this attempt's writes means they are applied (a replay of a
    /// unit the state does not hold yet).
    honor_marker: bool,
    /// Of every command sent, in order.
    hash: sha2::Sha256,
    con: Option<redis::Connection>,
    inner: Option<Box<dyn UnitWriter>>,
    phase: Phase,
    rows: u64,
}

impl RedisWriter {
    fn remote(&self, e: &redis::RedisError) -> SinkError {
        let text = self.sink.spec.error_text(e);
        SinkError::Remote { server: self.sink.endpoint.clone(), message: format!("{}: {text}", self.location) }
    }

    fn con(&mut self) -> &mut redis::Connection {
        self.con.as_mut().expect("a connection until the writer ends")
    }

    /// Before the first write: read the unit's marker, then open the transaction.
    fn start(&mut self) -> Result<(), SinkError> {
        if self.phase != Phase::Fresh {
            return Ok(());
        }
        let (key, id) = (self.sink.marker_key.clone(), self.unit_id.clone());
        self.prior = redis::cmd("HGET").arg(&key).arg(&id).query(self.con()).map_err(|e| self.remote(&e))?;
        redis::cmd("MULTI").query::<()>(self.con()).map_err(|e| self.remote(&e))?;
        self.phase = Phase::Queued;
        Ok(())
    }

    fn commands(&self, batch: &RecordBatch) -> Result<redis::Pipeline, SinkError> {
        let spec = &self.sink.spec;
        let schema = batch.schema();
        let opts = FormatOptions::default();
        let fmt = |name: &str| -> Result<(usize, ArrayFormatter<'_>), SinkError> {
            let i = schema.index_of(name).map_err(|_| {
                SinkError::Config(format!("redis sink: `{name}` is not a column of the pipeline's output"))
            })?;
            let f = ArrayFormatter::try_new(batch.column(i).as_ref(), &opts)
                .map_err(|e| SinkError::Encode(format!("column `{name}`: {e}")))?;
            Ok((i, f))
        };
        let keys: Vec<(usize, ArrayFormatter<'_>)> = spec.key.iter().map(|k| fmt(k)).collect::<Result<_, _>>()?;
        let ttl = spec.ttl.map(|d| d.as_secs());
        let zadd_rule: Option<&str> = match &spec.layout {
            Layout::Zset { update: ScoreUpdate::Max, .. } => Some("GT"),
            Layout::Zset { update: ScoreUpdate::Min, .. } => Some("LT"),
            _ => None,
        };
        let mut pipe = redis::pipe();
        let key_of = |row: usize| -> Result<String, SinkError> {
            let mut k = spec.prefix.clone();
            for (n, (i, f)) in keys.iter().enumerate() {
                if batch.column(*i).is_null(row) {
                    return Err(SinkError::Rows {
                        target: format!("{} ({})", self.sink.endpoint, self.location),
                        message: format!("row {}: key column `{}` is NULL", row + 1, spec.key[n]),
                    });
                }
                if n > 0 {
                    k.push(':');
                }
                k.push_str(&f.value(row).to_string());
            }
            Ok(k)
        };
        match &spec.layout {
            Layout::Hash { field_value: Some((field, value)), .. } => {
                let (fi, ff) = fmt(field)?;
                let (vi, vf) = fmt(value)?;
                for row in 0..batch.num_rows() {
                    if batch.column(fi).is_null(row) {
                        continue;
                    }
                    let key = key_of(row)?;
                    let name = ff.value(row).to_string();
                    if batch.column(vi).is_null(row) {
                        pipe.cmd("HDEL").arg(&key).arg(name);
                    } else {
                        pipe.cmd("HSET").arg(&key).arg(name).arg(vf.value(row).to_string());
                    }
                    if let Some(t) = ttl {
                        pipe.cmd("EXPIRE").arg(&key).arg(t);
                    }
                }
            }
            Layout::Hash { fields, .. } => {
                let names: Vec<String> = if fields.is_empty() {
                    schema.fields().iter().map(|f| f.name().clone()).filter(|n| !spec.key.contains(n)).collect()
                } else {
                    fields.clone()
                };
                let cols: Vec<(usize, ArrayFormatter<'_>)> = names.iter().map(|n| fmt(n)).collect::<Result<_, _>>()?;
                for row in 0..batch.num_rows() {
                    let key = key_of(row)?;
                    let mut set = redis::cmd("HSET");
                    set.arg(&key);
                    let mut del = redis::cmd("HDEL");
                    del.arg(&key);
                    let (mut sets, mut dels) = (0, 0);
                    for (name, (i, f)) in names.iter().zip(&cols) {
                        if batch.column(*i).is_null(row) {
                            del.arg(name);
                            dels += 1;
                        } else {
                            set.arg(name).arg(f.value(row).to_string());
                            sets += 1;
                        }
                    }
                    if sets > 0 {
                        pipe.add_command(set);
                    }
                    if dels > 0 {
                        pipe.add_command(del);
                    }
                    if let Some(t) = ttl {
                        pipe.cmd("EXPIRE").arg(&key).arg(t);
                    }
                }
            }
            Layout::Zset { member, score, .. } => {
                let (mi, mf) = fmt(member)?;
                let si = schema.index_of(score).map_err(|_| SinkError::Config(format!("no column `{score}`")))?;
                let scores = arrow_cast::cast(batch.column(si), &DataType::Float64)
                    .map_err(|e| SinkError::Encode(format!("column `{score}` as a score: {e}")))?;
                let scores = scores.as_any().downcast_ref::<arrow_array::Float64Array>().expect("cast to Float64");
                for row in 0..batch.num_rows() {
                    if batch.column(mi).is_null(row) || scores.is_null(row) {
                        continue;
                    }
                    let key = key_of(row)?;
                    let zadd = pipe.cmd("ZADD").arg(&key);
                    if let Some(rule) = zadd_rule {
                        zadd.arg(rule);
                    }
                    zadd.arg(scores.value(row)).arg(mf.value(row).to_string());
                    if let Some(t) = ttl {
                        pipe.cmd("EXPIRE").arg(&key).arg(t);
                    }
                }
            }
            Layout::String { value: Some(col) } => {
                let (vi, vf) = fmt(col)?;
                for row in 0..batch.num_rows() {
                    let key = key_of(row)?;
                    if batch.column(vi).is_null(row) {
                        pipe.cmd("DEL").arg(&key);
                        continue;
                    }
                    let c = pipe.cmd("SET").arg(&key).arg(vf.value(row).to_string());
                    if let Some(t) = ttl {
                        c.arg("EX").arg(t);
                    }
                }
            }
            Layout::String { value: None } => {
                let others: Vec<usize> =
                    (0..schema.fields().len()).filter(|i| !spec.key.contains(schema.field(*i).name())).collect();
                let projected = batch.project(&others).map_err(|e| SinkError::Encode(e.to_string()))?;
                let mut w = arrow_json::ArrayWriter::new(Vec::new());
                w.write(&projected).map_err(|e| SinkError::Encode(e.to_string()))?;
                w.finish().map_err(|e| SinkError::Encode(e.to_string()))?;
                let rows: Vec<serde_json::Value> = serde_json::from_slice(&w.into_inner())
                    .map_err(|e| SinkError::Encode(format!("rows as JSON: {e}")))?;
                for (row, json) in rows.iter().enumerate() {
                    let key = key_of(row)?;
                    let c = pipe.cmd("SET").arg(&key).arg(json.to_string());
                    if let Some(t) = ttl {
                        c.arg("EX").arg(t);
                    }
                }
            }
        }
        Ok(pipe)
    }

    /// `EXEC` the unit's writes with its marker, or discard them when Redis holds exactly
    /// them already.
    fn apply(&mut self) -> Result<(), SinkError> {
        self.start()?;
        let print: String = sha2::Digest::finalize(self.hash.clone()).iter().map(|b| format!("{b:02x}")).collect();
        let (key, id) = (self.sink.marker_key.clone(), self.unit_id.clone());
        if self.honor_marker && self.prior.as_deref() == Some(print.as_str()) {
            tracing::warn!(unit = %self.location,
                "redis already holds exactly this unit's writes (a run stopped after writing them): only its state commits");
            redis::cmd("DISCARD").query::<()>(self.con()).map_err(|e| self.remote(&e))?;
            return Ok(());
        }
        redis::cmd("HSET").arg(&key).arg(&id).arg(&print).query::<()>(self.con()).map_err(|e| self.remote(&e))?;
        if std::env::var("SLUICE_TEST_FAULT").is_ok_and(|f| f == "before-exec") {
            std::process::abort();
        }
        // Redis does not roll back a command that fails inside EXEC: fail the unit and drop
        // its marker, so that the next run writes it again. (A lost connection is the
        // server's failure, and leaves the marker to tell what was applied.)
        let failed = match redis::cmd("EXEC").query::<redis::Value>(self.con()) {
            Ok(redis::Value::Array(items)) => items.iter().find_map(|v| match v {
                redis::Value::ServerError(e) => Some(format!("{e:?}")),
                _ => None,
            }),
            Ok(redis::Value::Nil) => Some("the transaction was aborted".into()),
            Ok(_) => None,
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                return Err(self.remote(&e));
            }
            Err(e) => Some(self.sink.spec.error_text(&e)),
        };
        if let Some(error) = failed {
            // Without its marker, the next run writes the unit again; a marker left in place
            // would make it discard the writes, so failing to remove it stops the run.
            if let Err(e) = redis::cmd("HDEL").arg(&key).arg(&id).query::<()>(self.con()) {
                return Err(SinkError::Remote {
                    server: self.sink.endpoint.clone(),
                    message: format!(
                        "{}: a write failed inside MULTI/EXEC ({error}), and its marker could not be removed \
                         (HDEL {key} {id}: {e}); remove it before the next run",
                        self.location
                    ),
                });
            }
            self.phase = Phase::Fresh;
            return Err(SinkError::Rows {
                target: format!("{} ({})", self.sink.endpoint, self.location),
                message: format!(
                    "a write failed inside MULTI/EXEC (the others were applied; the unit is written again by the next run): {error}"
                ),
            });
        }
        if std::env::var("SLUICE_TEST_FAULT").is_ok_and(|f| f == "after-exec") {
            std::process::abort();
        }
        Ok(())
    }

    fn inner(&mut self) -> &mut Box<dyn UnitWriter> {
        self.inner.as_mut().expect("the state writer until the writer ends")
    }

    /// Give the connection back for another unit (only a clean one: nothing queued).
    fn release(&mut self) {
        if let Some(con) = self.con.take() {
            self.sink.pool.lock().expect("pool lock").push(con);
        }
    }
}

impl UnitWriter for RedisWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.start()?;
        self.rows += batch.num_rows() as u64;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let pipe = self.commands(batch)?;
        sha2::Digest::update(&mut self.hash, pipe.get_packed_pipeline());
        pipe.query::<()>(self.con()).map_err(|e| self.remote(&e))?;
        Ok(())
    }

    fn write_rejects(&mut self, rejects: &RecordBatch) -> Result<(), SinkError> {
        self.inner().write_rejects(rejects)
    }

    fn write_state(&mut self, state: UnitState) -> Result<(), SinkError> {
        self.inner().write_state(state)
    }

    fn content_hash(&mut self, hash: &str, bytes: u64) {
        self.inner().content_hash(hash, bytes)
    }

    fn high_water(&mut self, mark: &str) {
        self.inner().high_water(mark)
    }

    fn input_rows(&mut self, rows_in: u64, rows_rejected: u64) {
        self.inner().input_rows(rows_in, rows_rejected)
    }

    fn continues(&mut self) {
        self.inner().continues()
    }

    fn commit(mut self: Box<Self>) -> Result<CommitReport, SinkError> {
        if let Err(e) = self.apply() {
            if let Some(inner) = self.inner.take() {
                inner.abort();
            }
            return Err(e);
        }
        self.release();
        let rows = self.rows;
        let inner = self.inner.take().expect("the state writer until the writer ends");
        let mut report = inner.commit()?;
        report.rows = rows;
        // The state holds the unit now: its marker has done its work.
        let (key, id) = (self.sink.marker_key.clone(), self.unit_id.clone());
        let idle = self.sink.pool.lock().expect("pool lock").pop();
        if let Some(mut con) = idle {
            if let Err(e) = redis::cmd("HDEL").arg(&key).arg(&id).query::<()>(&mut con) {
                tracing::warn!(unit = %self.location, "cannot remove the unit's marker ({e}); it is harmless");
            }
            self.sink.pool.lock().expect("pool lock").push(con);
        }
        Ok(report)
    }

    fn abort(mut self: Box<Self>) {
        if self.phase == Phase::Queued {
            // The queue is dropped; the connection is clean again only if DISCARD answered.
            if redis::cmd("DISCARD").query::<()>(self.con()).is_ok() {
                self.release();
            }
        } else {
            self.release();
        }
        if let Some(inner) = self.inner.take() {
            inner.abort();
        }
    }
}
