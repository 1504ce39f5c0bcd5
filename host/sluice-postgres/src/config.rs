//! `kind: postgres` sink: its keys (the language half, registered with `sluice-config`) and
//! its validated settings.

use std::str::FromStr;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_config::{Section, SinkKind};
use sluice_core::connector::SinkConfig;
use sluice_core::spec::{SchemaPolicy, Secret, WriteMode};

/// `kind: postgres`: a table in a Postgres database. Each unit is loaded through binary `COPY`
/// in one transaction that also records the unit, its keyed state and its source's mark in
/// Sluice's state tables of the same database.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresSink {
    /// The connection URL, without a password: `postgresql://user@host:5432/db`. May use
    /// `${VAR}`.
    pub url: String,
    /// The environment variable holding the password (declared in the pipeline's `env:`).
    pub password_env: Option<String>,
    /// The target table: `schema.table`, or `table` in schema `public`.
    /// Created from the pipeline's output when missing.
    pub table: String,
    /// `append` (default), `upsert` (needs `key`) or `replace_partition` (needs `partition_by`).
    #[serde(default)]
    pub mode: RawMode,
    /// The key columns of `upsert`: of rows with the same key, the newest is kept.
    #[serde(default)]
    pub key: Vec<String>,
    /// The columns whose values `replace_partition` replaces as a whole.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// What happens when a unit's columns differ from the table's: `evolve` (default: add
    /// columns, widen types), `freeze` or `discard_columns`.
    pub schema_policy: Option<RawPolicy>,
    /// The schema of Sluice's state tables in the same database. Default `sluice`.
    pub state_schema: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawMode {
    #[default]
    Append,
    Upsert,
    ReplacePartition,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawPolicy {
    Evolve,
    Freeze,
    DiscardColumns,
}

/// The validated settings of a `kind: postgres` sink.
#[derive(Debug, Clone, Serialize)]
pub struct PgSinkSpec {
    /// The URL as written (no password in it).
    pub url: String,
    /// Serialized as its variable's name only.
    pub password: Option<Secret>,
    pub schema: String,
    pub table: String,
    pub mode: WriteMode,
    pub key: Vec<String>,
    pub partition_by: Vec<String>,
    pub schema_policy: SchemaPolicy,
    pub state_schema: String,
}

impl PgSinkSpec {
    /// The connection settings, with the password.
    pub(crate) fn connect_config(&self) -> tokio_postgres::Config {
        connect_config(&self.url, self.password.as_ref())
    }

    /// `host:port/db`, for messages (no user, no password).
    pub fn endpoint(&self) -> String {
        endpoint(&self.connect_config())
    }

    /// `postgres://host:port/db/schema.table`: what `watch` compares to refuse two writers.
    pub fn target(&self) -> String {
        format!("postgres://{}/{}.{}", self.endpoint(), self.schema, self.table)
    }
}

/// `url`, `${VAR}` expanded, checked: a Postgres URL with a host and without a password (never
/// echoed: it may hold one).
pub(crate) fn resolve_url(cx: &mut Section<'_>, raw: &str) -> String {
    let url = cx.interpolate(&["url"], raw);
    match tokio_postgres::Config::from_str(&url) {
        // `validate --no-environment`: the variable stands for itself, nothing to check.
        Err(_) if url.contains("${") => {}
        Err(e) => cx.error(
            &["url"],
            format!("`url` is not a Postgres connection URL: {e}"),
            Some("write it as `postgresql://user@host:5432/database`".into()),
        ),
        Ok(c) if c.get_password().is_some() => cx.error(
            &["url"],
            "`url` holds a password, which would end up in logs and in the pipeline's definition",
            Some("remove it from the URL, put it in an environment variable and name it: `password_env: PGPASSWORD` (declared in `env:`)".into()),
        ),
        Ok(c) if c.get_hosts().is_empty() => {
            cx.error(&["url"], "`url` names no host", Some("`postgresql://user@127.0.0.1:5432/db`".into()))
        }
        Ok(_) => {}
    }
    url
}

/// The password in the variable `password_env` names (declared in `env:`); an empty value is
/// no password (a `trust` login).
pub(crate) fn resolve_password(cx: &mut Section<'_>, name: Option<&str>) -> Option<Secret> {
    name.and_then(|name| cx.secret(&["password_env"], name)).filter(|s| !s.expose().is_empty())
}

/// Connection settings from a checked URL and its password.
pub(crate) fn connect_config(url: &str, password: Option<&Secret>) -> tokio_postgres::Config {
    // Checked when the pipeline was resolved (unless validated without the environment,
    // where `${VAR}` stands for itself and nothing connects).
    let mut c = tokio_postgres::Config::from_str(url).unwrap_or_else(|_| tokio_postgres::Config::new());
    if let Some(p) = password {
        c.password(p.expose());
    }
    if c.get_application_name().is_none() {
        c.application_name("sluice");
    }
    // Server notices (`schema ... already exists, skipping`) are not worth a log line; values
    // printed as text (a cursor's mark, a compared group's key) read the same whatever the
    // server's or role's settings.
    let fixed = "-c client_min_messages=warning -c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres";
    let options = match c.get_options() {
        Some(o) => format!("{fixed} {o}"),
        None => fixed.to_string(),
    };
    c.options(&options);
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(std::time::Duration::from_secs(15));
    }
    c
}

/// `host:port/db` of a connection config.
pub(crate) fn endpoint(c: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", c.get_dbname().unwrap_or_else(|| c.get_user().unwrap_or("postgres")))
}

impl SinkConfig for PgSinkSpec {
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

/// The language half of `kind: postgres`.
pub struct PostgresKind;

/// Postgres truncates longer identifiers silently.
const MAX_IDENT: usize = 63;

pub(crate) fn check_ident(cx: &mut Section<'_>, rel: &[&str], what: &str, name: &str) {
    if name.is_empty() {
        cx.error(rel, format!("{what} is empty"), None);
    } else if name.len() > MAX_IDENT {
        cx.error(
            rel,
            format!("{what} `{name}` is {} bytes long; Postgres keeps only {MAX_IDENT}", name.len()),
            Some("choose a shorter name".into()),
        );
    }
}

impl SinkKind for PostgresKind {
    fn name(&self) -> &'static str {
        "postgres"
    }
    fn schema(&self) -> serde_json::Value {
        sluice_config::schema_of::<RawPostgresSink>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: serde_json::Value) -> Option<Arc<dyn SinkConfig>> {
        let raw: RawPostgresSink = cx.deserialize(keys)?;
        let url = resolve_url(cx, &raw.url);
        let password = resolve_password(cx, raw.password_env.as_deref());
        let (schema, table) = match raw.table.split_once('.') {
            Some((s, t)) => (s.to_string(), t.to_string()),
            None => ("public".to_string(), raw.table.clone()),
        };
        check_ident(cx, &["table"], "the table's schema", &schema);
        check_ident(cx, &["table"], "the table name", &table);
        let state_schema = raw.state_schema.unwrap_or_else(|| "sluice".into());
        check_ident(cx, &["state_schema"], "state_schema", &state_schema);
        for (i, k) in raw.key.iter().enumerate() {
            check_ident(cx, &["key", &i.to_string()], "a key column", k);
        }
        let mode = match raw.mode {
            RawMode::Append => WriteMode::Append,
            RawMode::Upsert => WriteMode::Upsert,
            RawMode::ReplacePartition => WriteMode::ReplacePartition,
        };
        match mode {
            WriteMode::Upsert if raw.key.is_empty() => cx.error(
                &["mode"],
                "mode `upsert` needs `key`: the columns that identify a row",
                Some("add `key: [id]`".into()),
            ),
            WriteMode::ReplacePartition if raw.partition_by.is_empty() => cx.error(
                &["mode"],
                "mode `replace_partition` needs `partition_by`: the columns whose values a unit replaces",
                Some("add `partition_by: [date]`".into()),
            ),
            WriteMode::Append if !raw.key.is_empty() => cx.error(
                &["key"],
                "`key` is used by mode `upsert` only",
                Some("add `mode: upsert`, or remove `key`".into()),
            ),
            _ => {}
        }
        let schema_policy = match raw.schema_policy {
            None | Some(RawPolicy::Evolve) => SchemaPolicy::Evolve,
            Some(RawPolicy::Freeze) => SchemaPolicy::Freeze,
            Some(RawPolicy::DiscardColumns) => SchemaPolicy::DiscardColumns,
        };
        Some(Arc::new(PgSinkSpec {
            url,
            password,
            schema,
            table,
            mode,
            key: raw.key,
            partition_by: raw.partition_by,
            schema_policy,
            state_schema,
        }))
    }
}
