//! `kind: postgres` sources: a table or a query, read through binary `COPY ... TO STDOUT`.
//!
//! **One snapshot per discovery.** Discovery opens a coordinator connection, starts a
//! read-only repeatable-read transaction and exports its snapshot. The units are planned in it,
//! and every unit reads in it (`SET TRANSACTION SNAPSHOT`) on a connection of its own, so ranges
//! read in parallel still see one consistent state. The coordinator stays open, holding the
//! snapshot, until the next discovery replaces it. A discovery is reused for a few seconds while
//! the mark is unchanged, so that `watch`'s scan and the pass that follows it see the same units.
//!
//! **Incremental loads (`cursor`).** Units are ranges `(lo, hi]` of the cursor after the
//! committed mark, about `range_rows` rows each, read in cursor order. Each ends with its mark,
//! `{"cursor": hi, "snap": <the snapshot>}`, which the sink commits with the unit's rows.
//!
//! **Late rows.** A transaction that began before a discovery and commits after it may write
//! cursor values at or below the mark (a `now()` taken early, a sequence value drawn early).
//! Each discovery therefore also looks `overlap` below the mark for row versions that the
//! mark's snapshot could not see (`NOT pg_visible_in_snapshot(xmin, snap)`), and reads them as
//! one unit, first. Rows the previous snapshot saw are never read again, so nothing is read
//! twice; a row committed later than `overlap` below the mark is missed (size `overlap` above
//! the longest writing transaction). An updated row (a new version) whose cursor did not move is
//! read again within the window: a sink in `upsert` mode replaces it.
//!
//! **Full loads.** Without a cursor, a table is split into spans of `range_rows` values of an
//! integer `key` (default: the primary key), stable across runs. Each span's version is a
//! fingerprint of its row versions (`ctid`, `xmin`), so an unchanged span is skipped and a
//! changed one replaces its earlier output. A `query:` is one unit, read by every run.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sluice_core::connector::SourceConnector;
use sluice_core::error::{SinkError, SourceError};
use sluice_core::source::{BatchStream, Source, SourceItem, SourceUnit};
use sluice_core::spec::{Settings, SourceSpec};
use tokio_postgres::{Client, CopyOutStream};

use crate::conn::{Pg, ident, literal, qualified, wait};
use crate::decode::{Decoder, Kind, kind_of};
use crate::source_config::{DEFAULT_NUMBER_OVERLAP, DEFAULT_TIME_OVERLAP, Overlap, PgSourceSpec};

/// How long a discovery is reused while the mark does not move: long enough for `watch`'s
/// scan and the pass that follows it to see the same units and snapshot, short enough that a
/// poll sees new rows soon.
const REUSE: Duration = Duration::from_secs(2);
/// How long a discovery none of whose units was opened yet is reused.
const REUSE_UNOPENED: Duration = Duration::from_secs(60);

/// The runtime half of `kind: postgres` sources.
pub struct PostgresSourceConnector;

fn spec_of(spec: &SourceSpec) -> Result<&PgSourceSpec, SourceError> {
    spec.config_as::<PgSourceSpec>()
        .ok_or_else(|| SourceError::Config { source_name: spec.name.clone(), message: "not a postgres source".into() })
}

impl SourceConnector for PostgresSourceConnector {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    /// Opens nothing: the connection is made when the run discovers.
    fn build(&self, spec: &SourceSpec, settings: &Settings) -> Result<Arc<dyn Source>, SourceError> {
        let pg_spec = spec_of(spec)?.clone();
        let pg = Pg::new(pg_spec.connect_config(), pg_spec.password.clone()).map_err(to_source)?;
        Ok(Arc::new(PgSource {
            name: spec.name.clone(),
            policy: spec.rejects,
            spec: pg_spec,
            batch_rows: settings.batch_rows.max(1),
            pg,
            memo: Mutex::new(None),
        }))
    }

    fn unchecked_schema(&self, spec: &SourceSpec) -> String {
        format!(
            "the schema is unchecked: source `{}` is a Postgres {}, described when the run connects",
            spec.name,
            if spec_of(spec).is_ok_and(|s| s.query.is_some()) { "query" } else { "table" }
        )
    }
}

fn to_source(e: SinkError) -> SourceError {
    match e {
        SinkError::Remote { server, message } => SourceError::Remote { server, message },
        other => SourceError::Remote { server: "postgres".into(), message: other.to_string() },
    }
}

pub struct PgSource {
    name: String,
    /// The source's reject limits, applied to the rows the decoder sets aside.
    policy: sluice_core::spec::RejectPolicy,
    spec: PgSourceSpec,
    batch_rows: usize,
    pg: Pg,
    memo: Mutex<Option<Arc<Discovery>>>,
}

/// What one discovery planned, in its snapshot.
struct Discovery {
    mark: Option<String>,
    at: Instant,
    /// A unit of it was opened: a pass used it.
    opened: std::sync::atomic::AtomicBool,
    /// Holds the exported snapshot open (its transaction is never ended: the connection closes).
    _coordinator: Client,
    snapshot_id: String,
    names: Vec<String>,
    kinds: Vec<Kind>,
    units: Vec<SourceUnit>,
    /// Per locator: the `SELECT` that reads the unit, and the mark it ends with.
    plans: HashMap<String, Plan>,
}

impl Columns {
    /// Whether `name` is a column read, of an integer type.
    fn is_integer(&self, name: &str) -> bool {
        self.names
            .iter()
            .position(|n| n == name)
            .is_some_and(|i| matches!(self.kinds[i], Kind::I16 | Kind::I32 | Kind::I64))
    }
}

/// What an incremental unit reads.
enum Range {
    /// Rows with `lo < cursor <= hi` (no `lo`: from the start), read in snapshot `snap`.
    Cursor { lo: Option<String>, hi: String, snap: String },
    /// Rows with `hi - overlap < cursor <= hi` that snapshot `prev` (the mark's) did not see,
    /// read in snapshot `snap`.
    Late { hi: String, prev: String, snap: String },
}

/// The columns a source reads.
struct Columns {
    names: Vec<String>,
    kinds: Vec<Kind>,
    /// The cursor's index and type name.
    cursor: Option<(usize, String)>,
}

#[derive(Clone)]
struct Plan {
    select: String,
    high_water: Option<String>,
}

/// The committed progress of an incremental source.
#[derive(Debug, Serialize, Deserialize)]
struct Mark {
    v: u32,
    /// The last cursor value read, as Postgres prints it.
    cursor: String,
    /// The snapshot (`pg_current_snapshot()`) it was read in.
    snap: String,
}

impl PgSource {
    fn remote(&self, e: &tokio_postgres::Error) -> SourceError {
        to_source(self.pg.remote(e))
    }

    fn config_err(&self, message: impl Into<String>) -> SourceError {
        SourceError::Config { source_name: self.name.clone(), message: message.into() }
    }

    /// `"schema"."table"` or `(query) q`.
    fn relation(&self) -> String {
        match (&self.spec.table, &self.spec.query) {
            (Some((s, t)), _) => qualified(s, t),
            (None, Some(q)) => format!("({}) q", q.trim().trim_end_matches(';')),
            (None, None) => "(SELECT 1) q".into(),
        }
    }

    /// `schema.table` or `query`, for locators and messages.
    fn what(&self) -> String {
        match &self.spec.table {
            Some((s, t)) => format!("{s}.{t}"),
            None => "query".into(),
        }
    }

    fn select_list(&self) -> String {
        if self.spec.columns.is_empty() {
            "*".into()
        } else {
            self.spec.columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
        }
    }

    fn unit(&self, locator: String, location: String, size: u64, version: i64) -> SourceUnit {
        SourceUnit { source: self.name.clone(), locator, member: None, location, size, version, content_hash: None }
    }

    /// The current discovery for `mark`, planned again when the mark moved or it is older than
    /// [`REUSE`].
    fn discovery(&self, mark: Option<&str>) -> Result<Arc<Discovery>, SourceError> {
        let mut memo = self.memo.lock().expect("memo lock");
        // Reused shortly, or, while none of its units was opened yet (a `watch` scan found
        // them and its pass is starting), for as long as a slow pass needs.
        if let Some(d) = memo.as_ref()
            && d.mark.as_deref() == mark
            && (d.at.elapsed() < REUSE
                || (!d.units.is_empty()
                    && !d.opened.load(std::sync::atomic::Ordering::Relaxed)
                    && d.at.elapsed() < REUSE_UNOPENED))
        {
            return Ok(d.clone());
        }
        // The previous coordinator (and its snapshot) ends here, before a new one starts.
        *memo = None;
        let d = Arc::new(self.plan(mark)?);
        *memo = Some(d.clone());
        Ok(d)
    }

    fn plan(&self, mark: Option<&str>) -> Result<Discovery, SourceError> {
        let client = self.pg.connect().map_err(to_source)?;
        let q = |sql: &str| wait(client.query(sql, &[])).map_err(|e| self.remote(&e));
        // The coordinator holds the snapshot while units read it: a server's idle-in-transaction
        // timeout must not end it.
        wait(client.batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL idle_in_transaction_session_timeout = 0",
        ))
        .map_err(|e| self.remote(&e))?;
        let row = q("SELECT pg_export_snapshot(), pg_current_snapshot()::text, \
                     pg_snapshot_xmax(pg_current_snapshot())::text::bigint, pg_is_in_recovery()")?;
        if self.spec.cursor.is_some() && row[0].get::<_, bool>(3) {
            return Err(self.config_err(format!(
                "{} is a standby: its snapshots do not list the transactions in progress on the primary, \
                 so rows committed late could be missed; read incrementally from the primary",
                self.spec.endpoint()
            )));
        }
        let snapshot_id: String = row[0].get(0);
        let snap_now: String = row[0].get(1);
        let xmax_now: i64 = row[0].get(2);

        let cols = self.columns(&client)?;
        let (units, plans) = match (&self.spec.cursor, &cols.cursor) {
            (Some(cursor), Some((ci, ty))) => {
                self.incremental_units(&q, mark, cursor, ty, &cols.kinds[*ci], &snap_now, xmax_now)?
            }
            _ => self.full_units(&client, &q, &cols)?,
        };
        let Columns { names, kinds, .. } = cols;
        Ok(Discovery {
            mark: mark.map(str::to_string),
            at: Instant::now(),
            opened: std::sync::atomic::AtomicBool::new(false),
            _coordinator: client,
            snapshot_id,
            names,
            kinds,
            units,
            plans,
        })
    }

    /// The columns read, each with its reading; every column without one is refused at once,
    /// naming it, and so is a cursor of a type that cannot be one.
    fn columns(&self, client: &Client) -> Result<Columns, SourceError> {
        let rel = self.relation();
        // Row versions (`xmin`, `ctid`) tell changed spans and late rows: a view has none.
        if let Some((schema, table)) = &self.spec.table {
            let kind = wait(client.query_opt(
                "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&qualified(schema, table)],
            ))
            .map_err(|e| self.remote(&e))?;
            match kind.map(|r| r.get::<_, String>(0)).as_deref() {
                None => {
                    return Err(self.config_err(format!(
                        "there is no table {} in {}",
                        self.what(),
                        self.spec.endpoint()
                    )));
                }
                Some("v" | "f") => {
                    return Err(self.config_err(format!(
                        "{} is a view or a foreign table, whose rows carry no versions to tell changed or late rows by; \
                         read its base table, or read it with `query:` (one unit, read by every run)",
                        self.what()
                    )));
                }
                _ => {}
            }
        }
        let stmt = wait(client.prepare(&format!("SELECT {} FROM {rel} LIMIT 0", self.select_list())))
            .map_err(|e| self.remote(&e))?;
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        let mut refused: Vec<(String, String)> = Vec::new();
        for c in stmt.columns() {
            match kind_of(c.type_(), c.type_modifier(), self.spec.unbounded_numeric) {
                Ok(k) => kinds.push(k),
                Err(t) => refused.push((c.name().to_string(), t)),
            }
            names.push(c.name().to_string());
        }
        if let Some((first, _)) = refused.first() {
            let list: Vec<String> = refused.iter().map(|(n, t)| format!("column `{n}` is {t}")).collect();
            return Err(self.config_err(format!(
                "{} has columns Sluice cannot read into Arrow: {}; cast them in a `query:` (`SELECT {}::text AS {} ...`), or leave them out with `columns:`",
                self.what(),
                list.join(", "),
                ident(first),
                ident(first),
            )));
        }
        let dup = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n));
        if let Some((_, n)) = dup {
            return Err(self.config_err(format!("the query returns two columns named `{n}`: give them distinct names")));
        }
        let cursor = match &self.spec.cursor {
            None => None,
            Some(cursor) => {
                let Some(ci) = names.iter().position(|n| n == cursor) else {
                    return Err(self.config_err(format!(
                        "the cursor `{cursor}` is not a column of {} (columns: {})",
                        self.what(),
                        names.join(", ")
                    )));
                };
                let ty = stmt.columns()[ci].type_().name().to_string();
                let time = matches!(kinds[ci], Kind::Date | Kind::Timestamp | Kind::Timestamptz);
                let number = matches!(
                    kinds[ci],
                    Kind::I16 | Kind::I32 | Kind::I64 | Kind::Decimal { .. } | Kind::NumFloat | Kind::NumText
                );
                if !time && !number {
                    return Err(self.config_err(format!(
                        "the cursor `{cursor}` is {ty}; a cursor is a timestamp, date, integer or numeric column"
                    )));
                }
                Some((ci, ty))
            }
        };
        Ok(Columns { names, kinds, cursor })
    }

    /// The SQL of `overlap` for a cursor of this kind.
    fn overlap_sql(&self, cursor: &str, ty: &str, kind: &Kind) -> Result<String, SourceError> {
        let time = matches!(kind, Kind::Date | Kind::Timestamp | Kind::Timestamptz);
        Ok(match (self.spec.overlap, time) {
            (None, true) => format!("interval '{} seconds'", DEFAULT_TIME_OVERLAP.as_secs()),
            (None, false) => DEFAULT_NUMBER_OVERLAP.to_string(),
            (Some(Overlap::Time(d)), true) => format!("interval '{} seconds'", d.as_secs_f64()),
            (Some(Overlap::Number(n)), false) => n.to_string(),
            (Some(Overlap::Time(_)), false) => {
                return Err(self.config_err(format!("the cursor `{cursor}` is {ty}: give `overlap` as a number")));
            }
            (Some(Overlap::Number(_)), true) => {
                return Err(
                    self.config_err(format!("the cursor `{cursor}` is {ty}: give `overlap` as a duration (`15m`)"))
                );
            }
        })
    }

    /// An incremental unit's locator: it records what the unit read, so that a committed unit
    /// can be read again exactly (the runner re-runs one whose keyed groups a later unit
    /// continues).
    fn range_locator(&self, r: &Range) -> String {
        let what = self.what();
        match r {
            Range::Cursor { lo, hi, snap } => format!("{what}/cursor/{}..{hi}@{snap}", lo.as_deref().unwrap_or("")),
            Range::Late { hi, prev, snap } => format!("{what}/late/{hi}@{prev}@{snap}"),
        }
    }

    fn parse_range(&self, locator: &str) -> Option<Range> {
        let rest = locator.strip_prefix(&format!("{}/", self.what()))?;
        if let Some(r) = rest.strip_prefix("cursor/") {
            let (range, snap) = r.rsplit_once('@')?;
            let (lo, hi) = range.split_once("..")?;
            let lo = (!lo.is_empty()).then(|| lo.to_string());
            return Some(Range::Cursor { lo, hi: hi.to_string(), snap: snap.to_string() });
        }
        let r = rest.strip_prefix("late/")?;
        let (r, snap) = r.rsplit_once('@')?;
        let (hi, prev) = r.rsplit_once('@')?;
        Some(Range::Late { hi: hi.to_string(), prev: prev.to_string(), snap: snap.to_string() })
    }

    /// The `SELECT` of an incremental unit. Read `again` (a committed unit read by a later
    /// run), only the row versions its snapshot saw are read: rows committed since belong to
    /// the units that read them.
    fn range_select(&self, r: &Range, cursor: &str, ty: &str, overlap: &str, xmax_now: i64, again: bool) -> String {
        let rel = self.relation();
        let c = ident(cursor);
        let lit = |v: &str| format!("{}::{ty}", literal(v));
        let x = "xmin::text::bigint";
        // xmin is a 32-bit xid; widened to the current epoch, it compares with a snapshot's
        // 64-bit xids.
        let base = xmax_now & !0xffff_ffff;
        let xid8 = format!(
            "(CASE WHEN {base} + {x} > {xmax_now} THEN {base} + {x} - 4294967296 ELSE {base} + {x} END)::text::xid8"
        );
        let visible =
            |snap: &str| format!("({x} < 3 OR pg_visible_in_snapshot({xid8}, {}::pg_snapshot))", literal(snap));
        let (mut pred, snap) = match r {
            Range::Cursor { lo: Some(lo), hi, snap } => (format!("{c} > {} AND {c} <= {}", lit(lo), lit(hi)), snap),
            Range::Cursor { lo: None, hi, snap } => (format!("{c} <= {}", lit(hi)), snap),
            Range::Late { hi, prev, snap } => {
                let h = lit(hi);
                (format!("{c} > {h} - {overlap} AND {c} <= {h} AND NOT {}", visible(prev)), snap)
            }
        };
        if again {
            pred.push_str(&format!(" AND {}", visible(snap)));
        }
        format!("SELECT {} FROM {rel} WHERE {pred} ORDER BY {c}", self.select_list())
    }

    /// Ranges of the cursor after `mark`, preceded by a unit of late rows when there are any.
    #[allow(clippy::too_many_arguments)]
    fn incremental_units(
        &self,
        q: &dyn Fn(&str) -> Result<Vec<tokio_postgres::Row>, SourceError>,
        mark: Option<&str>,
        cursor: &str,
        ty: &str,
        kind: &Kind,
        snap_now: &str,
        xmax_now: i64,
    ) -> Result<(Vec<SourceUnit>, HashMap<String, Plan>), SourceError> {
        let overlap = self.overlap_sql(cursor, ty, kind)?;
        let mark: Option<Mark> = match mark {
            None => None,
            Some(m) => Some(serde_json::from_str(m).map_err(|e| {
                self.config_err(format!(
                    "the committed mark `{m}` is not one this source wrote ({e}); reset the source's state"
                ))
            })?),
        };
        let rel = self.relation();
        let c = ident(cursor);
        let lit = |v: &str| format!("{}::{ty}", literal(v));
        let what = self.what();
        let endpoint = self.spec.endpoint();
        let mut units = Vec::new();
        let mut plans = HashMap::new();
        let size_of = |rows: i64| rows.max(0) as u64 * 100;
        let mut add = |range: Range, location: String, rows: i64, mark: Mark| {
            let locator = self.range_locator(&range);
            let select = self.range_select(&range, cursor, ty, &overlap, xmax_now, false);
            plans.insert(
                locator.clone(),
                Plan { select, high_water: Some(serde_json::to_string(&mark).expect("json")) },
            );
            units.push(self.unit(locator, location, size_of(rows), 0));
        };

        if let Some(m) = &mark {
            // Rows at or below the mark that the mark's snapshot did not see.
            let late = Range::Late { hi: m.cursor.clone(), prev: m.snap.clone(), snap: snap_now.to_string() };
            let select = self.range_select(&late, cursor, ty, &overlap, xmax_now, false);
            let n: i64 = q(&format!("SELECT count(*) FROM ({select}) late"))?[0].get(0);
            if n > 0 {
                let location = format!("{endpoint} {what} ({n} late rows at or below {cursor} {})", m.cursor);
                add(late, location, n, Mark { v: 1, cursor: m.cursor.clone(), snap: snap_now.to_string() });
            }
        }

        // Range ends: every range_rows-th value after the mark, and the last.
        let after = match &mark {
            Some(m) => format!("{c} > {}", lit(&m.cursor)),
            None => format!("{c} IS NOT NULL"),
        };
        let r = self.spec.range_rows;
        let ends = q(&format!(
            "SELECT v, rn FROM (SELECT {c}::text AS v, row_number() OVER (ORDER BY {c}) AS rn, count(*) OVER () AS n \
             FROM {rel} WHERE {after}) s WHERE rn % {r} = 0 OR rn = n ORDER BY rn"
        ))?;
        let mut lo: Option<String> = mark.as_ref().map(|m| m.cursor.clone());
        let mut rows_before = 0i64;
        for row in ends {
            let hi: String = row.get(0);
            let rn: i64 = row.get(1);
            if lo.as_deref() == Some(hi.as_str()) {
                continue; // a run of equal values: the previous range took them all
            }
            let location = format!("{endpoint} {what} ({cursor} in ({}, {hi}])", lo.as_deref().unwrap_or("-inf"));
            let range = Range::Cursor { lo: lo.clone(), hi: hi.clone(), snap: snap_now.to_string() };
            add(range, location, rn - rows_before, Mark { v: 1, cursor: hi.clone(), snap: snap_now.to_string() });
            rows_before = rn;
            lo = Some(hi);
        }
        Ok((units, plans))
    }

    /// An explicit `key` must be an integer column read.
    fn full_key_check(&self, cols: &Columns) -> Result<(), SourceError> {
        if let Some(k) = &self.spec.key
            && !cols.is_integer(k)
        {
            return Err(self.config_err(format!(
                "the key `{k}` is not an integer column read from {}: a full load is split by an integer key",
                self.what()
            )));
        }
        Ok(())
    }

    /// Spans of an integer key, or the whole table, or the query.
    fn full_units(
        &self,
        client: &Client,
        q: &dyn Fn(&str) -> Result<Vec<tokio_postgres::Row>, SourceError>,
        cols: &Columns,
    ) -> Result<(Vec<SourceUnit>, HashMap<String, Plan>), SourceError> {
        let rel = self.relation();
        let what = self.what();
        let list = self.select_list();
        let endpoint = self.spec.endpoint();
        let mut units = Vec::new();
        let mut plans = HashMap::new();
        let Some((schema, table)) = &self.spec.table else {
            // A query: one unit, read by every run (nothing tells whether its result changed).
            let version =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
            let id = &sluice_core::sha256_hex(&[rel.as_bytes()])[..16];
            let locator = format!("query/{id}");
            plans.insert(locator.clone(), Plan { select: format!("SELECT * FROM {rel}"), high_water: None });
            units.push(self.unit(locator, format!("{endpoint} query"), 0, version));
            return Ok((units, plans));
        };
        let key = match &self.spec.key {
            Some(k) => Some(k.clone()),
            None => {
                // The primary key, when it is one column.
                let sql = "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                           AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::text::regclass AND i.indisprimary";
                let rows = wait(client.query(sql, &[&qualified(schema, table)])).map_err(|e| self.remote(&e))?;
                (rows.len() == 1).then(|| rows[0].get::<_, String>(0))
            }
        };
        self.full_key_check(cols)?;
        // A primary key that is not one integer column: the table is one unit.
        let key = key.filter(|k| cols.is_integer(k));
        // A fingerprint of a set of row versions: any insert, update or delete changes it.
        let print = "count(*), coalesce(sum(hashtext(ctid::text || ':' || xmin::text)), 0)::text";
        let version = |count: i64, sum: &str| -> i64 {
            let h = sluice_core::sha256_hex(&[&count.to_le_bytes(), sum.as_bytes()]);
            i64::from_str_radix(&h[..15], 16).unwrap_or(0)
        };
        match key {
            Some(k) => {
                let w = self.spec.range_rows as i64;
                let kc = ident(&k);
                let spans = q(&format!(
                    "SELECT floor({kc}::numeric / {w})::bigint AS b, {print} FROM {rel} WHERE {kc} IS NOT NULL GROUP BY 1 ORDER BY 1"
                ))?;
                for s in spans {
                    let (b, n, sum): (i64, i64, String) = (s.get(0), s.get(1), s.get(2));
                    let (lo, hi) = (b.saturating_mul(w), b.saturating_mul(w).saturating_add(w));
                    let locator = format!("{what}/key/{lo}..{hi}");
                    plans.insert(
                        locator.clone(),
                        Plan {
                            select: format!(
                                "SELECT {list} FROM {rel} WHERE {kc} >= {lo} AND {kc} <= {} ORDER BY {kc}",
                                lo.saturating_add(w - 1)
                            ),
                            high_water: None,
                        },
                    );
                    units.push(self.unit(
                        locator,
                        format!("{endpoint} {what} ({k} in [{lo}, {hi}))"),
                        n as u64 * 100,
                        version(n, &sum),
                    ));
                }
                let nulls: i64 = q(&format!("SELECT count(*) FROM {rel} WHERE {kc} IS NULL"))?[0].get(0);
                if nulls > 0 {
                    let p: Vec<(i64, String)> = q(&format!("SELECT {print} FROM {rel} WHERE {kc} IS NULL"))?
                        .iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect();
                    let locator = format!("{what}/key/null");
                    plans.insert(
                        locator.clone(),
                        Plan { select: format!("SELECT {list} FROM {rel} WHERE {kc} IS NULL"), high_water: None },
                    );
                    units.push(self.unit(
                        locator,
                        format!("{endpoint} {what} ({k} is null)"),
                        nulls as u64 * 100,
                        version(p[0].0, &p[0].1),
                    ));
                }
            }
            None => {
                let p = q(&format!("SELECT {print} FROM {rel}"))?;
                let (n, sum): (i64, String) = (p[0].get(0), p[0].get(1));
                let locator = format!("{what}/all");
                plans.insert(locator.clone(), Plan { select: format!("SELECT {list} FROM {rel}"), high_water: None });
                units.push(self.unit(locator, format!("{endpoint} {what}"), n as u64 * 100, version(n, &sum)));
            }
        }
        Ok((units, plans))
    }
}

impl Source for PgSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> Option<SchemaRef> {
        None
    }

    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
        self.discover_after(None)
    }

    fn discover_after(&self, high_water: Option<&str>) -> Result<Vec<SourceUnit>, SourceError> {
        let mark = if self.spec.cursor.is_some() { high_water } else { None };
        Ok(self.discovery(mark)?.units.clone())
    }

    fn incremental(&self) -> bool {
        self.spec.cursor.is_some()
    }

    /// Connect and describe the columns (`validate --connect`).
    fn describe(&self) -> Result<Option<SchemaRef>, SourceError> {
        let client = self.pg.connect().map_err(to_source)?;
        let cols = self.columns(&client)?;
        if let (Some(cursor), Some((ci, ty))) = (&self.spec.cursor, &cols.cursor) {
            self.overlap_sql(cursor, ty, &cols.kinds[*ci])?;
        }
        if self.spec.cursor.is_none() && self.spec.table.is_some() {
            self.full_key_check(&cols)?;
        }
        let fields: Vec<arrow_schema::Field> =
            cols.names.iter().zip(&cols.kinds).map(|(n, k)| arrow_schema::Field::new(n, k.data_type(), true)).collect();
        Ok(Some(Arc::new(arrow_schema::Schema::new(fields))))
    }

    /// A committed range is behind the mark, not gone from the table.
    fn is_gone(&self, unit: &SourceUnit, present: &[SourceUnit]) -> bool {
        !self.incremental() && !present.iter().any(|u| u.same_unit(unit))
    }

    /// A committed cursor range or late unit can be read again: its locator records what it
    /// read and in which snapshot.
    fn still_current(&self, unit: &SourceUnit) -> bool {
        self.spec.cursor.is_some() && self.parse_range(&unit.locator).is_some()
    }

    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let d = self.memo.lock().expect("memo lock").clone();
        let planned = d.and_then(|d| d.plans.get(&unit.locator).cloned().map(|p| (d, p)));
        let client = self.pg.connect().map_err(to_source)?;
        let (names, kinds, select, high_water) = match planned {
            Some((d, plan)) => {
                d.opened.store(true, std::sync::atomic::Ordering::Relaxed);
                let begin = format!(
                    "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET TRANSACTION SNAPSHOT {}",
                    literal(&d.snapshot_id)
                );
                wait(client.batch_execute(&begin)).map_err(|e| self.remote(&e))?;
                (d.names.clone(), d.kinds.clone(), plan.select, plan.high_water)
            }
            None => {
                // A unit of an earlier discovery, read again: only what its snapshot saw, and no
                // mark (the committed one is further on).
                let (Some(cursor), Some(range)) = (&self.spec.cursor, self.parse_range(&unit.locator)) else {
                    return Err(SourceError::Format {
                        path: unit.location.clone(),
                        message: "the discovery that planned this unit was replaced; the next run reads it".into(),
                    });
                };
                wait(client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
                    .map_err(|e| self.remote(&e))?;
                let cols = self.columns(&client)?;
                let Some((ci, ty)) = &cols.cursor else { unreachable!("columns() checks the cursor") };
                let overlap = self.overlap_sql(cursor, ty, &cols.kinds[*ci])?;
                let xmax_now: i64 =
                    wait(client.query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint", &[]))
                        .map_err(|e| self.remote(&e))?
                        .get(0);
                let select = self.range_select(&range, cursor, ty, &overlap, xmax_now, true);
                (cols.names, cols.kinds, select, None)
            }
        };
        let copy = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
        let stream = wait(client.copy_out(&copy)).map_err(|e| self.remote(&e))?;
        let cancel = (client.cancel_token(), self.pg.handle());
        Ok(Box::new(CopyReader {
            cancel: Some(cancel),
            _client: client,
            stream: Box::pin(stream),
            decoder: Decoder::new(names, kinds, self.batch_rows),
            pending: VecDeque::new(),
            high_water,
            location: unit.location.clone(),
            server: format!("postgres {}", self.pg.endpoint),
            secret: self.spec.password.clone(),
            done: false,
            policy: self.policy,
            rejected: 0,
        }))
    }
}

/// One unit's `COPY` stream, decoded as it arrives.
struct CopyReader {
    /// Cancels the server's COPY when the reader is dropped before its end (a failed unit):
    /// closing the connection alone would leave the server streaming the rest.
    cancel: Option<(tokio_postgres::CancelToken, tokio::runtime::Handle)>,
    /// The connection the stream reads from (closed when the reader is dropped).
    _client: Client,
    stream: Pin<Box<CopyOutStream>>,
    decoder: Decoder,
    pending: VecDeque<SourceItem>,
    high_water: Option<String>,
    location: String,
    server: String,
    secret: Option<sluice_core::spec::Secret>,
    done: bool,
    policy: sluice_core::spec::RejectPolicy,
    rejected: u64,
}

impl CopyReader {
    /// Queue what the decoder produced; `Err`: the rejects are over the source's limits.
    fn drain(&mut self) -> Result<(), String> {
        let rejects = self.decoder.take_rejects();
        if !rejects.is_empty() {
            self.rejected += rejects.len() as u64;
            if let Some(message) = self.policy.over_max_errors(self.rejected, None) {
                return Err(format!("{message} (first: row {}: {})", rejects[0].line, rejects[0].reason));
            }
            self.pending.push_back(SourceItem::Rejects(rejects));
        }
        self.pending.extend(self.decoder.take_batches().into_iter().map(SourceItem::Batch));
        Ok(())
    }

    fn fail(&mut self, message: String) -> Option<Result<SourceItem, SourceError>> {
        // The server may still be streaming: cancel it.
        self.cancel_copy();
        self.done = true;
        self.pending.clear();
        Some(Err(SourceError::Format { path: self.location.clone(), message }))
    }
}

impl CopyReader {
    /// Ask the server to stop the COPY (once).
    fn cancel_copy(&mut self) {
        if let Some((token, rt)) = self.cancel.take() {
            let task = rt.spawn(async move { token.cancel_query(tokio_postgres::NoTls).await });
            if let Ok(Err(e)) = futures_executor::block_on(task) {
                tracing::debug!(unit = %self.location, "cancelling the COPY: {e}");
            }
        }
    }
}

impl Drop for CopyReader {
    fn drop(&mut self) {
        if !self.done {
            self.cancel_copy();
        }
    }
}

impl Iterator for CopyReader {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match wait(self.stream.next()) {
                Some(Ok(chunk)) => {
                    if let Err(e) = self.decoder.push(&chunk).and_then(|()| self.drain()) {
                        return self.fail(e);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    let message = crate::conn::describe(&e);
                    let message = match &self.secret {
                        Some(s) => s.redact(&message),
                        None => message,
                    };
                    return Some(Err(SourceError::Remote {
                        server: self.server.clone(),
                        message: format!("reading {}: {message}", self.location),
                    }));
                }
                None => {
                    // The server finished: nothing to cancel.
                    self.cancel = None;
                    if let Err(e) = self.decoder.finish().and_then(|()| self.drain()) {
                        return self.fail(e);
                    }
                    if let Some(message) = self.policy.over_max_error_rate(self.rejected, self.decoder.rows(), None) {
                        return self.fail(message);
                    }
                    tracing::debug!(rows = self.decoder.rows(), unit = %self.location, "postgres unit read");
                    if let Some(m) = self.high_water.take() {
                        self.pending.push_back(SourceItem::HighWater(m));
                    }
                    self.done = true;
                }
            }
        }
    }
}
