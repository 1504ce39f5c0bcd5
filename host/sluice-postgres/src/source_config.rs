//! `kind: postgres` sources: their keys (the language half) and validated settings.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_config::{Section, SourceKind};
use sluice_core::connector::SourceConfig;
use sluice_core::spec::Secret;

use crate::config::{check_ident, connect_config, resolve_password, resolve_url};
use crate::decode::Unbounded;

/// `kind: postgres`: a table, or a query, of a Postgres database, read through binary `COPY`
/// inside one consistent snapshot per discovery. With `cursor`, only rows after the committed
/// high-water mark are read, in ranges of the cursor.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresSource {
    /// The connection URL, without a password: `postgresql://user@host:5432/db`. May use
    /// `${VAR}`.
    pub url: String,
    /// The environment variable holding the password (declared in the pipeline's `env:`).
    pub password_env: Option<String>,
    /// The table to read: `schema.table`, or `table` in schema `public`. Exactly one of `table`
    /// and `query`.
    pub table: Option<String>,
    /// A query to read instead of a table: one unit, read again by every run.
    pub query: Option<String>,
    /// The columns to read (default: all).
    #[serde(default)]
    pub columns: Vec<String>,
    /// An incremental load's cursor column (a timestamp, date, integer or numeric that grows as
    /// rows are written: `updated_at`, `id`). Rows after the committed mark are read.
    pub cursor: Option<String>,
    /// How far below the mark to look for rows committed late by long transactions (their
    /// cursor value is older than the mark): a duration for a time cursor (default `15m`), a
    /// number for a numeric one (default 100000). Only rows not yet visible when the mark was
    /// taken are read there, so nothing is read twice.
    pub overlap: Option<RawOverlap>,
    /// The integer column a full load is split by (default: the table's primary key, when it
    /// is one integer column). Without one, the table is one unit.
    pub key: Option<String>,
    /// Rows per unit: a cursor range, or a span of `key` values. Default 500000.
    pub range_rows: Option<u64>,
    /// How `numeric` without a declared precision is read: `decimal` (default:
    /// Decimal128(38, 10); a value that does not fit is a rejected row), `float64` or `text`.
    pub unbounded_numeric: Option<RawUnbounded>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawOverlap {
    Number(i64),
    Duration(String),
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawUnbounded {
    Decimal,
    Float64,
    Text,
}

/// The late-row window below the mark.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    Time(#[serde(with = "secs")] Duration),
    Number(i64),
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Default `range_rows`.
pub const DEFAULT_RANGE_ROWS: u64 = 500_000;
/// Default `overlap` for a time cursor.
pub const DEFAULT_TIME_OVERLAP: Duration = Duration::from_secs(15 * 60);
/// Default `overlap` for a numeric cursor.
pub const DEFAULT_NUMBER_OVERLAP: i64 = 100_000;

/// The validated settings of a `kind: postgres` source.
#[derive(Debug, Clone, Serialize)]
pub struct PgSourceSpec {
    pub url: String,
    /// Serialized as its variable's name only.
    pub password: Option<Secret>,
    /// `(schema, table)`, or
    pub table: Option<(String, String)>,
    /// a query.
    pub query: Option<String>,
    pub columns: Vec<String>,
    pub cursor: Option<String>,
    /// None: the default for the cursor's type.
    pub overlap: Option<Overlap>,
    pub key: Option<String>,
    pub range_rows: u64,
    pub unbounded_numeric: Unbounded,
}

impl PgSourceSpec {
    pub(crate) fn connect_config(&self) -> tokio_postgres::Config {
        connect_config(&self.url, self.password.as_ref())
    }

    /// `host:port/db`, for messages.
    pub fn endpoint(&self) -> String {
        crate::config::endpoint(&self.connect_config())
    }
}

impl SourceConfig for PgSourceSpec {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn definition(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The language half of `kind: postgres` sources.
pub struct PostgresSourceKind;

impl SourceKind for PostgresSourceKind {
    fn name(&self) -> &'static str {
        "postgres"
    }
    /// Committed rows are complete: a unit is ready when it is discovered.
    fn default_ready(&self) -> sluice_core::spec::ReadyPolicy {
        sluice_core::spec::ReadyPolicy::Renamed
    }
    fn schema(&self) -> serde_json::Value {
        sluice_config::schema_of::<RawPostgresSource>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: serde_json::Value) -> Option<Arc<dyn SourceConfig>> {
        let raw: RawPostgresSource = cx.deserialize(keys)?;
        let name = cx.name().to_string();
        let url = resolve_url(cx, &raw.url);
        let password = resolve_password(cx, raw.password_env.as_deref());
        cx.table_or_query("postgres", raw.table.is_some(), raw.query.is_some(), "public.events");
        let table = raw.table.as_deref().map(|t| {
            let t = cx.interpolate(&["table"], t);
            let (schema, table) = match t.split_once('.') {
                Some((s, t)) => (s.to_string(), t.to_string()),
                None => ("public".to_string(), t.clone()),
            };
            check_ident(cx, &["table"], "the table's schema", &schema);
            check_ident(cx, &["table"], "the table name", &table);
            (schema, table)
        });
        let query = raw.query.as_deref().map(|q| cx.interpolate(&["query"], q));
        if query.is_some() {
            if raw.cursor.is_some() {
                cx.error(
                    &["cursor"],
                    format!("source `{name}`: `cursor` needs `table`: a query's rows carry no row versions, so rows committed late could not be told from rows already read"),
                    Some("read the table with `table:` and `columns:`, and filter or reshape it in a step".into()),
                );
            }
            if raw.key.is_some() {
                cx.error(&["key"], format!("source `{name}`: `key` splits a table; a query is read as one unit"), None);
            }
            if !raw.columns.is_empty() {
                cx.error(
                    &["columns"],
                    format!("source `{name}`: `columns` selects from a table; a query selects its own"),
                    None,
                );
            }
        }
        for (i, c) in raw.columns.iter().enumerate() {
            check_ident(cx, &["columns", &i.to_string()], "a column", c);
        }
        if let (Some(c), false) = (&raw.cursor, raw.columns.is_empty())
            && !raw.columns.contains(c)
        {
            cx.error(
                &["cursor"],
                format!("source `{name}`: the cursor `{c}` is not one of `columns`"),
                Some(format!("add `{c}` to `columns`")),
            );
        }
        if raw.cursor.is_some() && raw.key.is_some() {
            cx.error(
                &["key"],
                format!("source `{name}`: `key` splits a full load; with `cursor`, units are ranges of the cursor"),
                Some("remove `key`".into()),
            );
        }
        if raw.cursor.is_none() && raw.overlap.is_some() {
            cx.error(
                &["overlap"],
                format!("source `{name}`: `overlap` is the late-row window of a `cursor`"),
                Some("add `cursor:`, or remove `overlap`".into()),
            );
        }
        let overlap = match raw.overlap {
            None => None,
            Some(RawOverlap::Number(n)) if n < 0 => {
                cx.error(&["overlap"], format!("source `{name}`: overlap must not be negative"), None);
                None
            }
            Some(RawOverlap::Number(n)) => Some(Overlap::Number(n)),
            Some(RawOverlap::Duration(d)) => match sluice_config::duration_or_zero(&d) {
                Ok(d) => Some(Overlap::Time(d)),
                Err(e) => {
                    cx.error(
                        &["overlap"],
                        format!("source `{name}`: {e}"),
                        Some("`15m`, `2h`, or a number for a numeric cursor".into()),
                    );
                    None
                }
            },
        };
        let range_rows = raw.range_rows.unwrap_or(DEFAULT_RANGE_ROWS);
        if range_rows == 0 {
            cx.error(&["range_rows"], format!("source `{name}`: range_rows must be at least 1"), None);
        }
        let unbounded_numeric = match raw.unbounded_numeric {
            None | Some(RawUnbounded::Decimal) => Unbounded::Decimal,
            Some(RawUnbounded::Float64) => Unbounded::Float64,
            Some(RawUnbounded::Text) => Unbounded::Text,
        };
        Some(Arc::new(PgSourceSpec {
            url,
            password,
            table,
            query,
            columns: raw.columns,
            cursor: raw.cursor,
            overlap,
            key: raw.key,
            range_rows,
            unbounded_numeric,
        }))
    }
}
