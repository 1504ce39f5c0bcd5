//! The Postgres sink: each unit loads through binary `COPY FROM STDIN` inside one transaction
//! that also writes the unit's record, keyed state, mark and rejects to the state tables.
//! Until `COMMIT` nothing of the unit is visible; a crash anywhere rolls all of it back.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use sluice_core::error::SinkError;
use sluice_core::sink::{
    CommitReport, DeadLetter, Freshness, KeyRange, KeyValues, KeyedUnit, Sink, StateStore, UnitState, UnitWriter,
};
use sluice_core::source::SourceUnit;
use sluice_core::spec::{SchemaPolicy, WriteMode};
use tokio_postgres::{Client, CopyInSink};

use crate::config::PgSinkSpec;
use crate::conn::{Pg, describe, ident, literal, qualified, wait};
use crate::state::{Cache, KeyedRow, UnitRow, fingerprint};
use crate::types::{copy_type, ddl_type, fits, widened};

/// The column holding the `seq` of the unit that wrote a row (append mode), so that a changed
/// or forced unit's earlier rows can be replaced.
pub const UNIT_COLUMN: &str = "_sluice_unit";
/// The staging table's insertion order (upsert keeps each key's last row).
const ORD_COLUMN: &str = "_sluice_ord";
const STAGE: &str = "_sluice_stage";
/// COPY data is sent in chunks of about this size.
const CHUNK: usize = 1 << 20;

/// The target table's columns: name → type as `format_type` prints it.
type Columns = Vec<(String, String)>;

/// The sink: shared with its unit writers.
pub struct PgSink(Arc<Inner>);

pub(crate) struct Inner {
    spec: PgSinkSpec,
    target: String,
    /// Holds the target's advisory lock for the sink's life; state writes outside units.
    control: Mutex<Client>,
    pool: Mutex<Vec<Client>>,
    cache: Mutex<Cache>,
    /// The table's columns as last committed (None: not read yet, or no table).
    table: Mutex<Option<Columns>>,
    definition: String,
    /// Last: the clients above close before the runtime that drives them stops.
    pg: Pg,
}

impl std::fmt::Debug for PgSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSink").field("target", &self.0.target).finish()
    }
}

/// The advisory lock key of a target (one writer per target).
fn lock_key(target: &str) -> i64 {
    let h = sluice_core::sha256_hex(&[b"sluice-postgres-target:", target.as_bytes()]);
    i64::from_str_radix(&h[..15], 16).expect("hex")
}

impl PgSink {
    /// The target, `postgres://host:port/db/schema.table`.
    pub fn target(&self) -> &str {
        &self.0.target
    }
}

impl Inner {
    /// Connect, take the target's writer lock, create the state tables and read them.
    pub(crate) fn open(spec: &PgSinkSpec, definition: String) -> Result<PgSink, SinkError> {
        let pg = Pg::new(spec.connect_config(), spec.password.clone())?;
        let target = spec.target();
        let control = pg.connect()?;
        let key = lock_key(&target);
        let got: bool =
            wait(control.query_one("SELECT pg_try_advisory_lock($1)", &[&key])).map_err(|e| pg.remote(&e))?.get(0);
        if !got {
            let holder = wait(control.query_opt(
                "SELECT a.pid::text || ' (' || coalesce(a.application_name, '') || ', since ' || \
                 coalesce(a.backend_start::text, '?') || ')' FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.locktype = 'advisory' AND l.granted AND \
                 ((l.classid::bigint << 32) | l.objid::bigint) = $1 LIMIT 1",
                &[&key],
            ))
            .ok()
            .flatten()
            .map(|r| format!("server process {}", r.get::<_, String>(0)))
            .unwrap_or_else(|| "another session".into());
            return Err(SinkError::Locked { path: target, holder });
        }
        // Concurrent first runs of two targets in one database create the state tables once.
        let ddl = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}); {} COMMIT;",
            lock_key("sluice-state-ddl"),
            crate::state::ddl(&spec.state_schema)
        );
        wait(control.batch_execute(&ddl)).map_err(|e| pg.remote(&e))?;
        let sink = Inner {
            pg,
            spec: spec.clone(),
            target,
            control: Mutex::new(control),
            pool: Mutex::new(Vec::new()),
            cache: Mutex::new(Cache::default()),
            table: Mutex::new(None),
            definition,
        };
        sink.load()?;
        *sink.table.lock().expect("table lock") = sink.read_columns(&sink.control.lock().expect("control lock"))?;
        sink.check_table_for_mode()?;
        Ok(PgSink(Arc::new(sink)))
    }

    fn state_table(&self, name: &str) -> String {
        qualified(&self.spec.state_schema, name)
    }

    fn remote(&self, e: &tokio_postgres::Error) -> SinkError {
        self.pg.remote(e)
    }

    /// Read the state tables into the cache.
    fn load(&self) -> Result<(), SinkError> {
        let control = self.control.lock().expect("control lock");
        let mut cache = Cache::default();
        let rows = wait(control.query(
            &format!("SELECT unit_id, seq, unit FROM {} WHERE target = $1", self.state_table("units")),
            &[&self.target],
        ))
        .map_err(|e| self.remote(&e))?;
        for r in rows {
            let unit: SourceUnit = serde_json::from_str(r.get(2)).map_err(|e| self.corrupt("units", e))?;
            cache.units.insert(r.get(0), UnitRow { unit, seq: r.get(1) });
        }
        let rows = wait(control.query(
            &format!("SELECT source, mark FROM {} WHERE target = $1", self.state_table("marks")),
            &[&self.target],
        ))
        .map_err(|e| self.remote(&e))?;
        for r in rows {
            cache.marks.insert(r.get(0), r.get(1));
        }
        // In commit order, so that a checkpoint supersedes the arrival ranges of its key before it.
        let rows = wait(control.query(
            &format!(
                "SELECT k.unit_id, k.step, k.lookback, k.span, k.ranges FROM {} k LEFT JOIN {} u \
                 ON u.target = k.target AND u.unit_id = k.unit_id WHERE k.target = $1 ORDER BY u.seq NULLS FIRST",
                self.state_table("keyed"),
                self.state_table("units")
            ),
            &[&self.target],
        ))
        .map_err(|e| self.remote(&e))?;
        for r in rows {
            let ranges: Vec<KeyRange> = serde_json::from_str(r.get(4)).map_err(|e| self.corrupt("keyed", e))?;
            let lookback: i64 = r.get(2);
            let row = KeyedRow { lookback: lookback as u64, span: r.get(3), ranges };
            cache.put_keyed(r.get(0), r.get(1), row);
        }
        *self.cache.lock().expect("cache lock") = cache;
        Ok(())
    }

    fn corrupt(&self, table: &str, e: impl std::fmt::Display) -> SinkError {
        SinkError::Ledger {
            path: format!("{} ({})", self.state_table(table), self.pg.endpoint),
            message: e.to_string(),
        }
    }

    /// The target table's columns, or None when it does not exist.
    fn read_columns(&self, client: &Client) -> Result<Option<Columns>, SinkError> {
        let rows = wait(client.query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&self.spec.schema, &self.spec.table],
        ))
        .map_err(|e| self.remote(&e))?;
        Ok((!rows.is_empty()).then(|| rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
    }

    /// An existing table must suit the mode: upsert needs a unique index on exactly its key.
    fn check_table_for_mode(&self) -> Result<(), SinkError> {
        if self.spec.mode != WriteMode::Upsert || self.table.lock().expect("table lock").is_none() {
            return Ok(());
        }
        let control = self.control.lock().expect("control lock");
        let rows = wait(control.query(
            "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) \
             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique GROUP BY i.indexrelid",
            &[&self.spec.schema, &self.spec.table],
        ))
        .map_err(|e| self.remote(&e))?;
        let mut want: Vec<String> = self.spec.key.clone();
        want.sort();
        if rows.iter().any(|r| r.get::<_, Vec<String>>(0) == want) {
            return Ok(());
        }
        Err(SinkError::Config(format!(
            "{}: mode `upsert` on key ({}) needs a unique index on exactly those columns; create one: \
             CREATE UNIQUE INDEX ON {} ({})",
            self.target,
            self.spec.key.join(", "),
            qualified(&self.spec.schema, &self.spec.table),
            self.spec.key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        )))
    }

    fn take_client(&self) -> Result<Client, SinkError> {
        let pooled = self.pool.lock().expect("pool lock").pop();
        match pooled {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.pg.connect(),
        }
    }

    fn give_back(&self, client: Client) {
        if !client.is_closed() {
            self.pool.lock().expect("pool lock").push(client);
        }
    }

    fn table_name(&self) -> String {
        qualified(&self.spec.schema, &self.spec.table)
    }

    fn schema_err(&self, message: String) -> SinkError {
        SinkError::Schema { dataset: self.target.clone(), message }
    }
}

impl Sink for PgSink {
    fn check_schema(&self, schema: &SchemaRef) -> Result<(), SinkError> {
        let s = &self.0;
        let needed = match s.spec.mode {
            WriteMode::Upsert => &s.spec.key,
            WriteMode::ReplacePartition => &s.spec.partition_by,
            WriteMode::Append => return Ok(()),
        };
        for k in needed {
            if schema.field_with_name(k).is_err() {
                return Err(s.schema_err(format!("the output has no column `{k}`, which the sink's mode needs")));
            }
        }
        Ok(())
    }

    fn begin(&self, unit: &SourceUnit) -> Result<Box<dyn UnitWriter>, SinkError> {
        let client = self.0.take_client()?;
        Ok(Box::new(PgUnitWriter {
            sink: self.0.clone(),
            client: Some(client),
            unit: unit.clone(),
            unit_id: unit.id(),
            open: false,
            seq: None,
            copy: None,
            rows: 0,
            bytes: 0,
            rejects: Vec::new(),
            states: Vec::new(),
            high_water: None,
            counts: None,
            content: None,
            columns: None,
            recent: std::collections::VecDeque::new(),
            copied: 0,
        }))
    }

    fn state(&self) -> &dyn StateStore {
        &*self.0
    }

    fn rejects_location(&self) -> Option<String> {
        let s = &self.0;
        Some(format!(
            "table {} of postgres {} (read them with: SELECT * FROM {} WHERE target = {})",
            s.state_table("rejects"),
            s.pg.endpoint,
            s.state_table("rejects"),
            literal(&s.target)
        ))
    }
}

impl StateStore for Inner {
    fn is_committed(&self, unit: &SourceUnit) -> Result<bool, SinkError> {
        Ok(self.freshness(unit)? == Freshness::Unchanged)
    }

    fn freshness(&self, unit: &SourceUnit) -> Result<Freshness, SinkError> {
        let cache = self.cache.lock().expect("cache lock");
        let Some(r) = cache.units.get(&unit.id()) else { return Ok(Freshness::New) };
        Ok(Freshness::of(&r.unit, unit))
    }

    fn confirm_unchanged(&self, unit: &SourceUnit) -> Result<bool, SinkError> {
        let id = unit.id();
        {
            let cache = self.cache.lock().expect("cache lock");
            let Some(r) = cache.units.get(&id) else { return Ok(false) };
            if unit.content_hash.is_none() || r.unit.content_hash != unit.content_hash || r.unit.size != unit.size {
                return Ok(false);
            }
        }
        let text = serde_json::to_string(unit).map_err(|e| SinkError::Encode(e.to_string()))?;
        let control = self.control.lock().expect("control lock");
        wait(control.execute(
            &format!("UPDATE {} SET unit = $3 WHERE target = $1 AND unit_id = $2", self.state_table("units")),
            &[&self.target, &id, &text],
        ))
        .map_err(|e| self.remote(&e))?;
        if let Some(r) = self.cache.lock().expect("cache lock").units.get_mut(&id) {
            r.unit = unit.clone();
        }
        Ok(true)
    }

    fn high_water(&self, source: &str) -> Result<Option<String>, SinkError> {
        Ok(self.cache.lock().expect("cache lock").marks.get(source).cloned())
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let unit = serde_json::to_string(&letter.unit).map_err(|e| SinkError::Encode(e.to_string()))?;
        let control = self.control.lock().expect("control lock");
        wait(control.execute(
            &format!(
                "INSERT INTO {} (target, unit_id, unit, step, error) VALUES ($1, $2, $3, $4, $5)",
                self.state_table("dead_letters")
            ),
            &[&self.target, &letter.unit.id(), &unit, &letter.step, &self.pg.redact(&letter.error)],
        ))
        .map(|_| ())
        .map_err(|e| self.remote(&e))
    }

    fn failures(&self, unit: &SourceUnit) -> Result<u32, SinkError> {
        let control = self.control.lock().expect("control lock");
        let row = wait(control.query_opt(
            &format!(
                "SELECT attempts FROM {} WHERE target = $1 AND unit_id = $2 AND fingerprint = $3 AND definition = $4",
                self.state_table("failures")
            ),
            &[&self.target, &unit.id(), &fingerprint(unit), &self.definition],
        ))
        .map_err(|e| self.remote(&e))?;
        Ok(row.map_or(0, |r| r.get::<_, i32>(0) as u32))
    }

    fn record_failure(&self, unit: &SourceUnit, error: &str) -> Result<(), SinkError> {
        let control = self.control.lock().expect("control lock");
        let t = self.state_table("failures");
        wait(control.execute(
            &format!(
                "INSERT INTO {t} AS f (target, unit_id, fingerprint, definition, attempts, error) \
                 VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT (target, unit_id) DO UPDATE SET \
                 attempts = CASE WHEN f.fingerprint = EXCLUDED.fingerprint AND f.definition = EXCLUDED.definition \
                 THEN f.attempts + 1 ELSE 1 END, fingerprint = EXCLUDED.fingerprint, \
                 definition = EXCLUDED.definition, error = EXCLUDED.error, at = now()"
            ),
            &[&self.target, &unit.id(), &fingerprint(unit), &self.definition, &self.pg.redact(error)],
        ))
        .map(|_| ())
        .map_err(|e| self.remote(&e))
    }

    fn key_history(&self, step: &str, key: &KeyValues) -> Result<Vec<KeyedUnit>, SinkError> {
        let cache = self.cache.lock().expect("cache lock");
        Ok(history(&cache, step, key))
    }

    fn keyed_units(&self, step: &str) -> Result<Vec<Vec<KeyedUnit>>, SinkError> {
        let cache = self.cache.lock().expect("cache lock");
        let keys: BTreeSet<&KeyValues> = cache.keys.keys().filter(|(s, _)| s == step).map(|(_, k)| k).collect();
        Ok(keys.into_iter().map(|k| history(&cache, step, k)).filter(|h| !h.is_empty()).collect())
    }

    fn unit_ranges(&self, step: &str, unit_id: &str) -> Result<Vec<KeyRange>, SinkError> {
        let cache = self.cache.lock().expect("cache lock");
        Ok(cache.keyed.get(&(unit_id.to_string(), step.to_string())).map(|r| r.ranges.clone()).unwrap_or_default())
    }

    fn state_tails(&self, step: &str, unit_id: &str) -> Result<Option<RecordBatch>, SinkError> {
        let bytes: Option<Vec<u8>> = {
            let control = self.control.lock().expect("control lock");
            let row = wait(control.query_opt(
                &format!(
                    "SELECT tails FROM {} WHERE target = $1 AND unit_id = $2 AND step = $3",
                    self.state_table("keyed")
                ),
                &[&self.target, &unit_id, &step],
            ))
            .map_err(|e| self.remote(&e))?;
            row.and_then(|r| r.get(0))
        };
        let Some(bytes) = bytes else { return Ok(None) };
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| self.corrupt("keyed", e))?;
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(|e| self.corrupt("keyed", e))?;
        match batches.len() {
            0 => Ok(None),
            1 => Ok(batches.into_iter().next()),
            _ => arrow_select::concat::concat_batches(&batches[0].schema(), &batches)
                .map(Some)
                .map_err(|e| self.corrupt("keyed", e)),
        }
    }
}

fn history(cache: &Cache, step: &str, key: &KeyValues) -> Vec<KeyedUnit> {
    let Some(starts) = cache.keys.get(&(step.to_string(), key.clone())) else { return Vec::new() };
    let mut out = Vec::with_capacity(starts.len());
    for (_, unit_id) in starts.keys() {
        let (Some(u), Some(k)) = (cache.units.get(unit_id), cache.keyed.get(&(unit_id.clone(), step.to_string())))
        else {
            continue;
        };
        if let Some(range) = sluice_core::sink::range_of(&k.ranges, key) {
            out.push(KeyedUnit {
                unit: u.unit.clone(),
                unit_id: unit_id.clone(),
                range: range.clone(),
                lookback: k.lookback,
                span: k.span,
            });
        }
    }
    out
}

/// An open `COPY ... FROM STDIN (FORMAT binary)` of one unit, and how batches enter it.
struct Copy {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    encoder: pgpq::ArrowToPostgresBinaryEncoder,
    buf: BytesMut,
    /// The batch schema this COPY was planned for.
    input: SchemaRef,
    plan: Plan,
}

/// How a batch of one schema becomes rows of the table: for each output column, the input
/// column and the type to cast it to.
#[derive(Clone)]
struct Plan {
    columns: Vec<(usize, String, DataType)>,
}

struct PgUnitWriter {
    sink: Arc<Inner>,
    client: Option<Client>,
    unit: SourceUnit,
    unit_id: String,
    /// The unit's transaction has begun.
    open: bool,
    /// This unit's `_sluice_unit` value.
    seq: Option<i64>,
    copy: Option<Copy>,
    rows: u64,
    bytes: u64,
    rejects: Vec<RecordBatch>,
    states: Vec<UnitState>,
    high_water: Option<String>,
    counts: Option<(u64, u64)>,
    content: Option<(String, u64)>,
    /// The table's columns as this unit's transaction sees them (after its own DDL).
    columns: Option<Columns>,
    /// The last batches sent in the current COPY, each with its first line number there, so
    /// that a row the server refuses (`COPY t, line N`) can be shown.
    recent: std::collections::VecDeque<(u64, RecordBatch)>,
    /// Rows sent in the current COPY.
    copied: u64,
}

impl PgUnitWriter {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("a writer holds its client until commit or abort")
    }

    fn remote(&self, e: &tokio_postgres::Error) -> SinkError {
        // A server error about the rows themselves is the unit's data error.
        if let Some(db) = e.as_db_error() {
            let class = &db.code().code()[..2];
            // 22: data exception, 23: integrity constraint violation.
            if class == "22" || class == "23" {
                let mut message = describe(e);
                if let Some(row) = db.where_().and_then(|w| self.refused_row(w)) {
                    message.push_str(&format!("; the row: {row}"));
                }
                return SinkError::Rows { target: self.sink.target.clone(), message: self.sink.pg.redact(&message) };
            }
        }
        self.sink.remote(e)
    }

    /// The row a server message's context (`COPY t, line N[, column c: ...]`) names, as
    /// `column=value, ...`, when it is still among the last batches sent.
    fn refused_row(&self, context: &str) -> Option<String> {
        let rest = &context[context.find(", line ")? + ", line ".len()..];
        let line: u64 = rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
        let (start, batch) =
            self.recent.iter().find(|(start, b)| line >= *start && line < start + b.num_rows() as u64)?;
        let row = (line - start) as usize;
        let opts = arrow_cast::display::FormatOptions::default().with_null("NULL");
        let cells: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| {
                let v = arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &opts)
                    .map(|fmt| fmt.value(row).to_string())
                    .unwrap_or_else(|_| "?".into());
                format!("{}={v}", f.name())
            })
            .collect();
        Some(cells.join(", "))
    }

    fn exec(&self, sql: &str) -> Result<(), SinkError> {
        wait(self.client().batch_execute(sql)).map_err(|e| self.remote(&e))
    }

    /// Begin the unit's transaction: a new `seq`, and (append) the unit's earlier rows gone.
    fn open(&mut self) -> Result<(), SinkError> {
        if self.open {
            return Ok(());
        }
        self.exec("BEGIN")?;
        self.open = true;
        let seq: i64 =
            wait(self.client().query_one(
                &format!("SELECT nextval('{}')", self.sink.state_table("unit_seq").replace('\'', "''")),
                &[],
            ))
            .map_err(|e| self.remote(&e))?
            .get(0);
        self.seq = Some(seq);
        Ok(())
    }

    /// The plan for batches of `schema`, with the DDL it needs run in this transaction (under
    /// a lock that orders DDL between workers; the table's cached columns change at commit).
    fn plan(&mut self, schema: &SchemaRef) -> Result<Plan, SinkError> {
        let sink = self.sink.clone();
        let cached = match &self.columns {
            Some(c) => Some(c.clone()),
            None => sink.table.lock().expect("table lock").clone(),
        };
        let has_unit_column =
            |c: &Columns| sink.spec.mode != WriteMode::Append || c.iter().any(|(n, _)| n == UNIT_COLUMN);
        if let Some(cols) = &cached
            && has_unit_column(cols)
            && let Ok(plan) = plan_against(&sink, cols, schema, false)
        {
            self.columns = Some(cols.clone());
            return Ok(plan);
        }
        // DDL or a mismatch: look again under the DDL lock, as this transaction sees the table.
        let key = lock_key(&format!("ddl:{}", sink.target));
        self.exec(&format!("SELECT pg_advisory_xact_lock({key})"))?;
        let fresh = sink.read_columns(self.client())?;
        let table = sink.table_name();
        let cols = match fresh {
            Some(cols) => cols,
            None => {
                let mut defs = Vec::new();
                for f in schema.fields() {
                    let Some(t) = ddl_type(f.data_type()) else {
                        return Err(sink.schema_err(format!(
                            "column `{}` is {}, which has no Postgres type Sluice writes",
                            f.name(),
                            f.data_type()
                        )));
                    };
                    defs.push(format!("{} {t}", ident(f.name())));
                }
                if sink.spec.mode == WriteMode::Append {
                    defs.push(format!("{} bigint", ident(UNIT_COLUMN)));
                }
                if sink.spec.mode == WriteMode::Upsert {
                    let key: Vec<String> = sink.spec.key.iter().map(|k| ident(k)).collect();
                    defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
                }
                let mut sql = format!(
                    "CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {table} ({})",
                    ident(&sink.spec.schema),
                    defs.join(", ")
                );
                if sink.spec.mode == WriteMode::Append {
                    sql.push_str(&format!("; CREATE INDEX ON {table} USING brin ({})", ident(UNIT_COLUMN)));
                }
                tracing::info!(table = %table, "creating the target table");
                self.exec(&sql)?;
                sink.read_columns(self.client())?.unwrap_or_default()
            }
        };
        let mut ddl = Vec::new();
        if sink.spec.mode == WriteMode::Append && !cols.iter().any(|(n, _)| n == UNIT_COLUMN) {
            ddl.push(format!("ADD COLUMN {} bigint", ident(UNIT_COLUMN)));
        }
        if sink.spec.schema_policy == SchemaPolicy::Evolve {
            for f in schema.fields() {
                match cols.iter().find(|(n, _)| n == f.name()) {
                    None => {
                        let Some(t) = ddl_type(f.data_type()) else {
                            return Err(sink.schema_err(format!(
                                "column `{}` is {}, which has no Postgres type Sluice writes",
                                f.name(),
                                f.data_type()
                            )));
                        };
                        ddl.push(format!("ADD COLUMN {} {t}", ident(f.name())));
                    }
                    Some((_, pg)) => {
                        let fits_now = copy_type(pg).is_some_and(|t| fits(f.data_type(), &t));
                        if !fits_now && let Some(wider) = widened(pg, f.data_type()) {
                            ddl.push(format!("ALTER COLUMN {} TYPE {wider}", ident(f.name())));
                        }
                    }
                }
            }
        }
        let cols = if ddl.is_empty() {
            cols
        } else {
            tracing::info!(table = %table, changes = %ddl.join(", "), "evolving the target table");
            self.exec(&format!("ALTER TABLE {table} {}", ddl.join(", ")))?;
            sink.read_columns(self.client())?.unwrap_or_default()
        };
        let plan = plan_against(&sink, &cols, schema, true)?;
        self.columns = Some(cols);
        Ok(plan)
    }

    /// Start a COPY for batches of `schema` (into the staging table for upsert and
    /// replace_partition).
    fn start_copy(&mut self, schema: &SchemaRef) -> Result<(), SinkError> {
        self.open()?;
        let plan = self.plan(schema)?;
        let staged = self.sink.spec.mode != WriteMode::Append;
        let into = if staged {
            self.ensure_stage()?;
            ident(STAGE)
        } else {
            self.sink.table_name()
        };
        let mut names: Vec<String> = plan.columns.iter().map(|(_, n, _)| ident(n)).collect();
        let mut fields: Vec<Field> = plan.columns.iter().map(|(_, n, t)| Field::new(n, t.clone(), true)).collect();
        if !staged {
            names.push(ident(UNIT_COLUMN));
            fields.push(Field::new(UNIT_COLUMN, DataType::Int64, true));
        }
        let sql = format!("COPY {into} ({}) FROM STDIN (FORMAT binary)", names.join(", "));
        let sink = wait(self.client().copy_in::<_, Bytes>(&sql)).map_err(|e| self.remote(&e))?;
        let mut encoder = pgpq::ArrowToPostgresBinaryEncoder::try_new(&Schema::new(fields))
            .map_err(|e| SinkError::Encode(format!("{}: {e:?}", self.sink.target)))?;
        let mut buf = BytesMut::with_capacity(CHUNK + CHUNK / 4);
        encoder.write_header(&mut buf);
        self.copy = Some(Copy { sink: Box::pin(sink), encoder, buf, input: schema.clone(), plan });
        self.recent.clear();
        self.copied = 0;
        Ok(())
    }

    /// The unit's staging table (upsert, replace_partition): the target's columns, dropped at
    /// commit.
    fn ensure_stage(&mut self) -> Result<(), SinkError> {
        let sql = format!(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP; \
             ALTER TABLE {stage} ADD COLUMN IF NOT EXISTS {ord} bigint GENERATED ALWAYS AS IDENTITY",
            stage = ident(STAGE),
            t = self.sink.table_name(),
            ord = ident(ORD_COLUMN)
        );
        self.exec(&sql)
    }

    /// Finish the open COPY, if any.
    fn finish_copy(&mut self) -> Result<(), SinkError> {
        let Some(mut copy) = self.copy.take() else { return Ok(()) };
        copy.encoder.write_footer(&mut copy.buf).map_err(|e| SinkError::Encode(format!("{e:?}")))?;
        let chunk = copy.buf.split().freeze();
        self.bytes += chunk.len() as u64;
        let target = self.sink.target.clone();
        wait(async {
            copy.sink.send(chunk).await?;
            copy.sink.as_mut().finish().await
        })
        .map_err(|e| {
            let err = self.remote(&e);
            tracing::debug!(target = %target, "COPY failed: {err}");
            err
        })?;
        Ok(())
    }

    /// upsert / replace_partition: move the staged rows into the table.
    fn merge_stage(&mut self) -> Result<(), SinkError> {
        let Some(cols) = &self.columns else { return Ok(()) };
        let sink = self.sink.clone();
        let table = sink.table_name();
        let names: Vec<String> = cols.iter().filter(|(n, _)| n != UNIT_COLUMN).map(|(n, _)| ident(n)).collect();
        let list = names.join(", ");
        let sql = match sink.spec.mode {
            WriteMode::Upsert => {
                let key: Vec<String> = sink.spec.key.iter().map(|k| ident(k)).collect();
                let key = key.join(", ");
                let set: Vec<String> = names
                    .iter()
                    .filter(|n| !sink.spec.key.iter().any(|k| ident(k) == **n))
                    .map(|n| format!("{n} = EXCLUDED.{n}"))
                    .collect();
                let action =
                    if set.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", set.join(", ")) };
                format!(
                    "INSERT INTO {table} ({list}) SELECT DISTINCT ON ({key}) {list} FROM {stage} \
                     ORDER BY {key}, {ord} DESC ON CONFLICT ({key}) {action}",
                    stage = ident(STAGE),
                    ord = ident(ORD_COLUMN)
                )
            }
            WriteMode::ReplacePartition => {
                let p: Vec<String> = sink.spec.partition_by.iter().map(|k| ident(k)).collect();
                let cond: Vec<String> = p.iter().map(|c| format!("t.{c} IS NOT DISTINCT FROM s.{c}")).collect();
                format!(
                    "DELETE FROM {table} t USING (SELECT DISTINCT {plist} FROM {stage}) s WHERE {cond}; \
                     INSERT INTO {table} ({list}) SELECT {list} FROM {stage} ORDER BY {ord}",
                    plist = p.join(", "),
                    cond = cond.join(" AND "),
                    stage = ident(STAGE),
                    ord = ident(ORD_COLUMN)
                )
            }
            WriteMode::Append => return Ok(()),
        };
        self.exec(&sql)
    }

    fn rollback(&mut self) {
        self.copy = None;
        let Some(client) = self.client.take() else { return };
        if self.open && wait(client.batch_execute("ROLLBACK")).is_err() {
            // A broken connection is not pooled.
            return;
        }
        self.sink.give_back(client);
    }
}

/// Plan batches of `schema` into a table with `cols`; `final_` reports a mismatch as the
/// schema error it is (otherwise the caller looks again under the DDL lock).
fn plan_against(sink: &Inner, cols: &Columns, schema: &SchemaRef, final_: bool) -> Result<Plan, SinkError> {
    let mut out = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        if f.name() == UNIT_COLUMN {
            continue;
        }
        let Some((_, pg)) = cols.iter().find(|(n, _)| n == f.name()) else {
            if sink.spec.schema_policy == SchemaPolicy::DiscardColumns && final_ {
                continue;
            }
            return Err(sink.schema_err(format!(
                "column `{}` is not in table {}{}",
                f.name(),
                sink.table_name(),
                if sink.spec.schema_policy == SchemaPolicy::Freeze { " (schema_policy: freeze)" } else { "" }
            )));
        };
        let Some(target) = copy_type(pg) else {
            return Err(sink.schema_err(format!(
                "column `{}` is `{pg}` in table {}, which Sluice cannot write (it writes boolean, integers, \
                 real, double precision, numeric(p,s), text, bytea, date, timestamp[tz], time, interval and \
                 arrays of them)",
                f.name(),
                sink.table_name()
            )));
        };
        if !fits(f.data_type(), &target) {
            return Err(sink.schema_err(format!(
                "column `{}` is `{pg}` in table {}, but the pipeline's output has {}{}",
                f.name(),
                sink.table_name(),
                f.data_type(),
                if sink.spec.schema_policy == SchemaPolicy::Evolve {
                    " (evolve widens integers and floats only)"
                } else {
                    ""
                }
            )));
        }
        out.push((i, f.name().clone(), target));
    }
    Ok(Plan { columns: out })
}

impl UnitWriter for PgUnitWriter {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = batch.schema();
        if self.copy.as_ref().is_some_and(|c| c.input != schema) {
            self.finish_copy()?;
        }
        if self.copy.is_none() {
            self.start_copy(&schema)?;
        }
        let seq = self.seq.expect("the transaction is open");
        let staged = self.sink.spec.mode != WriteMode::Append;
        let copy = self.copy.as_mut().expect("started above");
        let opts = CastOptions { safe: false, ..Default::default() };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(copy.plan.columns.len() + 1);
        let mut fields = Vec::with_capacity(copy.plan.columns.len() + 1);
        for (i, name, t) in &copy.plan.columns {
            let col = batch.column(*i);
            let col = if col.data_type() == t {
                col.clone()
            } else {
                cast_with_options(col, t, &opts)
                    .map_err(|e| self.sink.schema_err(format!("column `{name}`: cannot write it as {t}: {e}")))?
            };
            fields.push(Field::new(name, t.clone(), true));
            columns.push(col);
        }
        if !staged {
            fields.push(Field::new(UNIT_COLUMN, DataType::Int64, true));
            columns.push(Arc::new(Int64Array::from_value(seq, batch.num_rows())));
        }
        let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(|e| SinkError::Encode(e.to_string()))?;
        copy.encoder
            .write_batch(&out, &mut copy.buf)
            .map_err(|e| SinkError::Encode(format!("{}: {e:?}", self.sink.target)))?;
        self.rows += batch.num_rows() as u64;
        // Bounded: the server reports a refused row soon after it arrives.
        self.recent.push_back((self.copied + 1, batch.clone()));
        self.copied += batch.num_rows() as u64;
        while self.recent.len() > 4 {
            self.recent.pop_front();
        }
        if copy.buf.len() >= CHUNK {
            let chunk = copy.buf.split().freeze();
            self.bytes += chunk.len() as u64;
            let sent = wait(copy.sink.send(chunk));
            if let Err(e) = sent {
                return Err(self.remote(&e));
            }
        }
        Ok(())
    }

    fn write_rejects(&mut self, rejects: &RecordBatch) -> Result<(), SinkError> {
        self.rejects.push(rejects.clone());
        Ok(())
    }

    fn write_state(&mut self, state: UnitState) -> Result<(), SinkError> {
        self.states.push(state);
        Ok(())
    }

    fn content_hash(&mut self, hash: &str, bytes: u64) {
        self.content = Some((hash.to_string(), bytes));
    }

    fn high_water(&mut self, mark: &str) {
        self.high_water = Some(mark.to_string());
    }

    fn input_rows(&mut self, rows_in: u64, rows_rejected: u64) {
        self.counts = Some((rows_in, rows_rejected));
    }

    fn commit(mut self: Box<Self>) -> Result<CommitReport, SinkError> {
        let result = self.commit_inner();
        if result.is_err() {
            self.rollback();
        }
        result
    }

    fn abort(mut self: Box<Self>) {
        self.rollback();
    }
}

impl PgUnitWriter {
    fn commit_inner(&mut self) -> Result<CommitReport, SinkError> {
        let sink = self.sink.clone();
        if let Some((hash, bytes)) = self.content.take() {
            self.unit.content_hash = Some(hash);
            self.unit.size = bytes;
        }
        self.open()?;
        self.finish_copy()?;
        let previous = sink.cache.lock().expect("cache lock").units.get(&self.unit_id).map(|r| r.seq);
        if sink.spec.mode == WriteMode::Append {
            if let Some(prev) = previous {
                // A changed (or forced) unit: its earlier rows leave with this commit.
                let has_column = self
                    .columns
                    .as_ref()
                    .or(sink.table.lock().expect("table lock").as_ref())
                    .is_some_and(|c| c.iter().any(|(n, _)| n == UNIT_COLUMN));
                if has_column {
                    self.exec(&format!("DELETE FROM {} WHERE {} = {prev}", sink.table_name(), ident(UNIT_COLUMN)))?;
                }
            }
        } else {
            self.merge_stage()?;
        }
        let client = self.client.as_ref().expect("held until the end");
        let seq = self.seq.expect("opened");
        let (rows_in, rows_rejected) = self.counts.map_or((None, None), |(a, b)| (Some(a as i64), Some(b as i64)));
        let unit_text = serde_json::to_string(&self.unit).map_err(|e| SinkError::Encode(e.to_string()))?;
        let remote = |e: tokio_postgres::Error| sink.remote(&e);
        // Rejects: the unit's earlier ones go, this version's come.
        wait(client.execute(
            &format!("DELETE FROM {} WHERE target = $1 AND unit_id = $2", sink.state_table("rejects")),
            &[&sink.target, &self.unit_id],
        ))
        .map_err(remote)?;
        if !self.rejects.is_empty() {
            let stmt = wait(client.prepare(&format!(
                "INSERT INTO {} (target, unit_id, file, member, line, raw, reason, step) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                sink.state_table("rejects")
            )))
            .map_err(remote)?;
            for b in &self.rejects {
                use arrow_array::cast::AsArray;
                let s = |n: &str| b.column_by_name(n).map(|c| c.as_string::<i32>().clone());
                let (Some(file), Some(member), Some(raw), Some(reason), Some(step)) =
                    (s("file"), s("member"), s("raw"), s("reason"), s("step"))
                else {
                    continue;
                };
                let line = b.column_by_name("line").map(|c| c.as_primitive::<arrow_array::types::UInt64Type>().clone());
                for i in 0..b.num_rows() {
                    use arrow_array::Array;
                    let m: Option<&str> = (!member.is_null(i)).then(|| member.value(i));
                    let l: i64 = line.as_ref().map_or(0, |l| l.value(i) as i64);
                    wait(client.execute(
                        &stmt,
                        &[
                            &sink.target,
                            &self.unit_id,
                            &file.value(i),
                            &m,
                            &l,
                            &raw.value(i),
                            &reason.value(i),
                            &step.value(i),
                        ],
                    ))
                    .map_err(remote)?;
                }
            }
        }
        // Keyed state.
        wait(client.execute(
            &format!("DELETE FROM {} WHERE target = $1 AND unit_id = $2", sink.state_table("keyed")),
            &[&sink.target, &self.unit_id],
        ))
        .map_err(remote)?;
        let mut keyed = Vec::with_capacity(self.states.len());
        for st in &self.states {
            let ranges = serde_json::to_string(&st.ranges).map_err(|e| SinkError::Encode(e.to_string()))?;
            let tails: Option<Vec<u8>> = match &st.tails {
                Some(t) if t.num_rows() > 0 => {
                    let mut out = Vec::new();
                    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &t.schema())
                        .map_err(|e| SinkError::Encode(e.to_string()))?;
                    w.write(t).and_then(|_| w.finish()).map_err(|e| SinkError::Encode(e.to_string()))?;
                    drop(w);
                    Some(out)
                }
                _ => None,
            };
            wait(client.execute(
                &format!(
                    "INSERT INTO {} (target, unit_id, step, lookback, span, ranges, tails) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    sink.state_table("keyed")
                ),
                &[&sink.target, &self.unit_id, &st.step, &(st.lookback as i64), &st.span, &ranges, &tails],
            ))
            .map_err(remote)?;
            keyed.push((st.step.clone(), KeyedRow { lookback: st.lookback, span: st.span, ranges: st.ranges.clone() }));
            // A stream's units whose every key this one's checkpoints supersede: their
            // state goes with this commit, so the table does not grow with every unit.
            let emptied = sink.cache.lock().expect("cache lock").emptied_by(
                &self.unit_id,
                &self.unit.source,
                &st.step,
                &st.ranges,
            );
            if !emptied.is_empty() {
                wait(client.execute(
                    &format!(
                        "DELETE FROM {} WHERE target = $1 AND step = $2 AND unit_id = ANY($3)",
                        sink.state_table("keyed")
                    ),
                    &[&sink.target, &st.step, &emptied],
                ))
                .map_err(remote)?;
            }
        }
        // The unit's record, its source's mark, and no more failures: with the data.
        wait(client.execute(
            &format!(
                "INSERT INTO {} (target, unit_id, seq, unit, rows, rows_in, rows_rejected) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (target, unit_id) DO UPDATE SET \
                 seq = EXCLUDED.seq, unit = EXCLUDED.unit, rows = EXCLUDED.rows, rows_in = EXCLUDED.rows_in, \
                 rows_rejected = EXCLUDED.rows_rejected, committed_at = now()",
                sink.state_table("units")
            ),
            &[&sink.target, &self.unit_id, &seq, &unit_text, &(self.rows as i64), &rows_in, &rows_rejected],
        ))
        .map_err(remote)?;
        if let Some(mark) = &self.high_water {
            wait(client.execute(
                &format!(
                    "INSERT INTO {} (target, source, mark) VALUES ($1, $2, $3) \
                     ON CONFLICT (target, source) DO UPDATE SET mark = EXCLUDED.mark",
                    sink.state_table("marks")
                ),
                &[&sink.target, &self.unit.source, mark],
            ))
            .map_err(remote)?;
        }
        wait(client.execute(
            &format!("DELETE FROM {} WHERE target = $1 AND unit_id = $2", sink.state_table("failures")),
            &[&sink.target, &self.unit_id],
        ))
        .map_err(remote)?;
        sluice_core::fault_point("before-commit");
        // The moment the unit becomes part of the target. An error here is ambiguous (the
        // server may have committed): the unit fails, and the next run trusts the state tables.
        wait(client.batch_execute("COMMIT")).map_err(|e| self.remote(&e))?;
        self.open = false;
        {
            let mut cache = sink.cache.lock().expect("cache lock");
            cache.units.insert(self.unit_id.clone(), UnitRow { unit: self.unit.clone(), seq });
            if let Some(mark) = &self.high_water {
                cache.marks.insert(self.unit.source.clone(), mark.clone());
            }
            cache.drop_keyed(&self.unit_id);
            for (step, row) in keyed {
                cache.put_keyed(&self.unit_id, &step, row);
            }
        }
        if let Some(cols) = self.columns.take() {
            *sink.table.lock().expect("table lock") = Some(cols);
        }
        if let Some(client) = self.client.take() {
            sink.give_back(client);
        }
        Ok(CommitReport { rows: self.rows, bytes: self.bytes, ..Default::default() })
    }
}
