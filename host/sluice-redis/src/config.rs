//! `kind: redis` sinks: their keys (the language half) and validated settings.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sluice_config::{Section, SinkKind};
use sluice_core::connector::SinkConfig;
use sluice_core::spec::Secret;

/// `kind: redis`: features per key. Each unit's writes go in one `MULTI`/`EXEC` with the unit's
/// marker, so a replay after a crash changes nothing; the run's state (committed units, keyed
/// state, marks, rejects) lives where `state:` says, since Redis keeps no state table.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedisSink {
    /// `redis://host:6379/0`, without a password. May use `${VAR}`.
    pub url: String,
    /// The environment variable holding the password (declared in the pipeline's `env:`).
    pub password_env: Option<String>,
    /// The columns whose values name a row's Redis key: `{prefix}{value}` (several joined by
    /// `:`).
    pub key: Vec<String>,
    /// Prepended to every key, e.g. `feat:user:`.
    #[serde(default)]
    pub prefix: String,
    /// `hash` (default: a hash per key, a field per column), `zset` (a sorted set per key:
    /// `member` scored by `score`) or `string` (a value per key: `value`).
    #[serde(default)]
    pub layout: RawLayout,
    /// `hash`: the columns written as fields (default: every column but the key's). A NULL
    /// value deletes its field.
    #[serde(default)]
    pub fields: Vec<String>,
    /// `hash`: the column whose values name the field to set, with `value` the column of its
    /// values (long rows, `user_id, event_type, events`, into a field per event type), instead
    /// of a field per column.
    pub field: Option<String>,
    /// `zset`: the column whose values are the members.
    pub member: Option<String>,
    /// `zset`: the numeric column whose values are the scores.
    pub score: Option<String>,
    /// `zset`: how a member's score changes when it is written again: `set` (default), `max`
    /// (only upwards, `ZADD GT`: the latest time of an item, whatever order rows arrive in) or
    /// `min` (`ZADD LT`).
    pub score_update: Option<RawScoreUpdate>,
    /// `string`: the column written as the value, or `json` (default): the row's other
    /// columns as a JSON object. `hash` with `field`: the column of the field's values.
    pub value: Option<String>,
    /// How long a key lives after its last write (`7d`, `1h`); default: for ever.
    pub ttl: Option<String>,
    /// Where the run's state lives: a lake (`{lake: ../lake, dataset: features_state}`) or a
    /// Postgres database (`{kind: postgres, url: ..., table: ...}`), as a sink section.
    pub state: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawScoreUpdate {
    Set,
    Max,
    Min,
}

/// How a sorted set member's score changes when it is written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreUpdate {
    Set,
    Max,
    Min,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawLayout {
    #[default]
    Hash,
    Zset,
    String,
}

/// How a row becomes Redis writes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `HSET key field value ...`; NULLs `HDEL`. Empty: every column but the key's. With
    /// `field_value`, `HSET key <field column's value> <value column's value>`.
    Hash { fields: Vec<String>, field_value: Option<(String, String)> },
    /// `ZADD key [GT|LT] score member`.
    Zset { member: String, score: String, update: ScoreUpdate },
    /// `SET key value`: a column's text, or (None) the row's other columns as JSON.
    String { value: Option<String> },
}

/// The validated settings of a `kind: redis` sink.
#[derive(Debug, Clone, Serialize)]
pub struct RedisSinkSpec {
    pub url: String,
    /// Serialized as its variable's name only.
    pub password: Option<Secret>,
    pub key: Vec<String>,
    pub prefix: String,
    pub layout: Layout,
    #[serde(with = "secs")]
    pub ttl: Option<Duration>,
    /// The state sink's settings.
    #[serde(serialize_with = "state_definition")]
    pub state: Arc<dyn SinkConfig>,
}

fn state_definition<S: serde::Serializer>(c: &Arc<dyn SinkConfig>, s: S) -> Result<S::Ok, S::Error> {
    (c.kind(), c.definition()).serialize(s)
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &Option<std::time::Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

impl RedisSinkSpec {
    /// The output columns the sink reads, each with the key that names it.
    pub fn columns(&self) -> Vec<(&'static str, &String)> {
        let mut out: Vec<(&'static str, &String)> = self.key.iter().map(|k| ("key", k)).collect();
        match &self.layout {
            Layout::Hash { fields, field_value } => {
                out.extend(fields.iter().map(|f| ("fields", f)));
                if let Some((f, v)) = field_value {
                    out.extend([("field", f), ("value", v)]);
                }
            }
            Layout::Zset { member, score, .. } => out.extend([("member", member), ("score", score)]),
            Layout::String { value } => out.extend(value.iter().map(|v| ("value", v))),
        }
        out
    }

    /// `host:port/db`, for messages (no password).
    pub fn endpoint(&self) -> String {
        endpoint(&self.url)
    }
}

/// `host:port/db` of a `redis://` URL, without user or password.
pub(crate) fn endpoint(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let (host, db) = rest.split_once('/').unwrap_or((rest, "0"));
    let host = if host.contains(':') { host.to_string() } else { format!("{host}:6379") };
    format!("{host}/{}", if db.is_empty() { "0" } else { db })
}

impl SinkConfig for RedisSinkSpec {
    fn kind(&self) -> &'static str {
        "redis"
    }
    fn definition(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The language half of `kind: redis`.
pub struct RedisKind;

impl SinkKind for RedisKind {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn schema(&self) -> serde_json::Value {
        sluice_config::schema_of::<RawRedisSink>()
    }
    fn resolve(&self, cx: &mut Section<'_>, keys: serde_json::Value) -> Option<Arc<dyn SinkConfig>> {
        let raw: RawRedisSink = cx.deserialize(keys)?;
        let url = cx.interpolate(&["url"], &raw.url);
        if !url.contains("${") {
            match redis::parse_redis_url(&url) {
                None => cx.error(
                    &["url"],
                    "`url` is not a Redis URL",
                    Some("write it as `redis://127.0.0.1:6379/0`".into()),
                ),
                Some(u) if u.password().is_some() => cx.error(
                    &["url"],
                    "`url` holds a password, which would end up in logs and in the pipeline's definition",
                    Some("remove it from the URL and name the variable that holds it: `password_env: REDIS_PASSWORD` (declared in `env:`)".into()),
                ),
                Some(u) if u.scheme() != "redis" => cx.error(
                    &["url"],
                    format!("`url` scheme `{}` is not supported", u.scheme()),
                    Some("use `redis://` (TLS is not built in)".into()),
                ),
                Some(_) => {}
            }
        }
        let password = raw
            .password_env
            .as_deref()
            .and_then(|name| cx.secret(&["password_env"], name))
            .filter(|s| !s.expose().is_empty());
        if raw.key.is_empty() {
            cx.error(&["key"], "`key` names no column", Some("`key: [user_id]`".into()));
        }
        let layout = match raw.layout {
            RawLayout::Hash => {
                if raw.member.is_some() || raw.score.is_some() || raw.score_update.is_some() {
                    cx.error(&["layout"], "`member`, `score` and `score_update` belong to layout `zset`", None);
                }
                let field_value = match (raw.field, raw.value) {
                    (Some(f), Some(v)) => Some((f, v)),
                    (None, None) => None,
                    _ => {
                        cx.error(
                            &["layout"],
                            "a hash's `field` and `value` go together: the column naming each field and the column of its value",
                            Some("`field: event_type`, `value: events`".into()),
                        );
                        None
                    }
                };
                if field_value.is_some() && !raw.fields.is_empty() {
                    cx.error(
                        &["fields"],
                        "`fields` (a field per column) and `field`/`value` (a field per row) exclude each other",
                        None,
                    );
                }
                Layout::Hash { fields: raw.fields, field_value }
            }
            RawLayout::Zset => match (raw.member, raw.score) {
                (Some(member), Some(score)) => {
                    if !raw.fields.is_empty() || raw.field.is_some() || raw.value.is_some() {
                        cx.error(&["layout"], "`fields`, `field` and `value` do not apply to layout `zset`", None);
                    }
                    let update = match raw.score_update {
                        None | Some(RawScoreUpdate::Set) => ScoreUpdate::Set,
                        Some(RawScoreUpdate::Max) => ScoreUpdate::Max,
                        Some(RawScoreUpdate::Min) => ScoreUpdate::Min,
                    };
                    Layout::Zset { member, score, update }
                }
                _ => {
                    cx.error(
                        &["layout"],
                        "layout `zset` needs `member` and `score`: the columns of each member and its score",
                        Some("`member: item_id`, `score: clicks`".into()),
                    );
                    return None;
                }
            },
            RawLayout::String => {
                if raw.field.is_some() || !raw.fields.is_empty() {
                    cx.error(&["layout"], "`field` and `fields` belong to layout `hash`", None);
                }
                if raw.member.is_some() || raw.score.is_some() || raw.score_update.is_some() {
                    cx.error(&["layout"], "`member`, `score` and `score_update` belong to layout `zset`", None);
                }
                Layout::String { value: raw.value.filter(|v| v != "json") }
            }
        };
        let ttl = match raw.ttl.as_deref().map(sluice_config::duration_or_zero) {
            None => None,
            Some(Ok(d)) if d.as_secs() == 0 => {
                cx.error(&["ttl"], "`ttl` must be at least a second", None);
                None
            }
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                cx.error(&["ttl"], e, Some("`7d`, `12h`, `30m`".into()));
                None
            }
        };
        let state = cx.sink_section(&["state"], raw.state)?;
        if state.kind() == "redis" {
            cx.error(
                &["state"],
                "the run's state cannot live in Redis too",
                Some("`state: {lake: ../lake, dataset: features_state}`".into()),
            );
        }
        Some(Arc::new(RedisSinkSpec { url, password, key: raw.key, prefix: raw.prefix, layout, ttl, state }))
    }
}
