//! `kind: kafka` sources: their keys (the language half) and validated settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_config::{Section, SourceKind};
use sluice_core::connector::SourceConfig;
use sluice_core::spec::{FormatSpec, Secret, SourceLimits};

/// `kind: kafka`: one topic of a Kafka-compatible broker, read as ranges of each partition's
/// offsets. Each range commits with the next offsets in the sink's state store, so that a
/// restart goes on exactly where the last commit ended. Beside these keys: `format` (`csv` or
/// `jsonl`, with explicit `columns`) and `limits.max_record_bytes`, as for a directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKafkaSource {
    /// Bootstrap brokers: `host:port`, a list of them, or one comma-separated string. May use
    /// `${VAR}`.
    pub brokers: RawBrokers,
    /// The topic to read (one per source: read several topics with several sources). May use
    /// `${VAR}`.
    pub topic: String,
    /// The partitions to read (default: all, including ones added later).
    pub partitions: Option<Vec<i32>>,
    /// Where a partition the sink has no committed offset for starts: `earliest` (default),
    /// `latest` (records produced after the source first sees the partition), or a timestamp
    /// (`2026-12-01T00:00:00Z`: the first record at or after it).
    pub start: Option<String>,
    /// Offsets per unit (default 10000). Units are cut at multiples of it, so a range planned
    /// again after a crash is the same unit.
    pub max_rows: Option<u64>,
    /// How long `sluice watch` lets a partition's last, short range wait for more records before
    /// it commits it anyway, e.g. `500ms` (default `1s`). `sluice run` reads to the end.
    pub max_wait: Option<String>,
    /// Columns taken from each record's envelope: `{partition: kafka_partition, offset:
    /// kafka_offset, key: kafka_key, timestamp: kafka_ts}`, each optional, each the name of the
    /// column to add.
    pub metadata: Option<RawMetadata>,
    /// Bytes per fetch request (default `4MiB`).
    pub fetch_bytes: Option<String>,
    /// How long to wait for a broker: connecting, and each request (default `10s`).
    pub timeout: Option<String>,
    /// TLS: `{}` for the system's roots, or `{ca_file: ca.pem}`. Default: plaintext.
    pub tls: Option<RawTls>,
    /// SASL authentication, over TLS or not.
    pub sasl: Option<RawSasl>,
    /// What to do when the broker no longer holds the next offset to read (retention deleted
    /// records before they were read): `fail` (default: the source stops with an error naming
    /// the partition and the offsets lost) or `skip` (go on from the earliest offset held, with a
    /// warning).
    pub on_retention_gap: Option<RawGapPolicy>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawBrokers {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetadata {
    pub partition: Option<String>,
    pub offset: Option<String>,
    pub key: Option<String>,
    pub timestamp: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// A PEM file of the certificate authorities to trust instead of the system's, relative to
    /// the pipeline file.
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    /// `plain`, `scram-sha-256` or `scram-sha-512`.
    pub mechanism: RawMechanism,
    /// The environment variable holding the user name (declared in `env:`).
    pub username_env: String,
    /// The environment variable holding the password (declared in `env:`).
    pub password_env: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RawMechanism {
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawGapPolicy {
    Fail,
    Skip,
}

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

/// The envelope columns to add, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    pub partition: Option<String>,
    pub offset: Option<String>,
    pub key: Option<String>,
    pub timestamp: Option<String>,
}

impl Metadata {
    /// The added fields, in this order: partition (Int32), offset (Int64), key (Utf8, null
    /// without one), timestamp (Timestamp(ms, UTC)).
    pub fn fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        if let Some(n) = &self.partition {
            out.push(Field::new(n, DataType::Int32, false));
        }
        if let Some(n) = &self.offset {
            out.push(Field::new(n, DataType::Int64, false));
        }
        if let Some(n) = &self.key {
            out.push(Field::new(n, DataType::Utf8, true));
        }
        if let Some(n) = &self.timestamp {
            out.push(Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false));
        }
        out
    }
}

/// SASL credentials.
#[derive(Debug, Clone, Serialize)]
pub struct Sasl {
    pub mechanism: RawMechanism,
    pub username: Secret,
    pub password: Secret,
}

/// The validated settings of a `kind: kafka` source.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaSpec {
    pub brokers: Vec<String>,
    pub topic: String,
    /// None: every partition.
    pub partitions: Option<Vec<i32>>,
    pub start: Start,
    pub max_rows: u64,
    pub max_wait: Duration,
    /// How records are read; its columns are declared.
    pub format: FormatSpec,
    pub columns: Vec<(String, DataType)>,
    pub metadata: Metadata,
    pub limits: SourceLimits,
    pub fetch_bytes: u64,
    pub timeout: Duration,
    /// None: plaintext; Some(None): TLS with the system's roots; Some(Some(path)): a CA file.
    pub tls: Option<Option<PathBuf>>,
    pub sasl: Option<Sasl>,
    pub skip_retention_gap: bool,
}

impl KafkaSpec {
    /// The rows' schema: the format's columns (nullable), then the envelope columns.
    pub fn schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self.columns.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect();
        fields.extend(self.metadata.fields());
        Arc::new(Schema::new(fields))
    }

    /// The format's own columns.
    pub fn format_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(self.columns.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>()))
    }

    /// `host:port,...`, as errors name the brokers.
    pub fn server(&self) -> String {
        self.brokers.join(",")
    }

    /// The secret values, masked in every message.
    pub fn secrets(&self) -> Vec<String> {
        self.sasl.iter().flat_map(|s| [s.username.expose().to_string(), s.password.expose().to_string()]).collect()
    }
}

impl SourceConfig for KafkaSpec {
    fn kind(&self) -> &'static str {
        "kafka"
    }
    /// What decides the output: the topic, partitions, start and how records are read (not the
    /// brokers' addresses, credentials or tuning).
    fn definition(&self) -> Value {
        serde_json::json!({
            "topic": self.topic,
            "partitions": self.partitions,
            "start": self.start,
            "format": self.format,
            "metadata": self.metadata,
            "max_record_bytes": self.limits.max_record_bytes,
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Default `max_rows`.
pub const DEFAULT_MAX_ROWS: u64 = 10_000;

/// The keys of `kind: kafka` that are not a directory source's file keys.
const OWN_KEYS: &[&str] = &[
    "brokers",
    "topic",
    "partitions",
    "start",
    "max_rows",
    "max_wait",
    "metadata",
    "fetch_bytes",
    "timeout",
    "tls",
    "sasl",
    "on_retention_gap",
];

/// The directory source's keys a kafka source takes.
const FILE_KEYS: &[&str] = &["format", "limits"];

/// The language half of `kind: kafka` sources.
pub struct KafkaKind;

impl SourceKind for KafkaKind {
    fn name(&self) -> &'static str {
        "kafka"
    }

    /// Records below the high watermark are complete: a unit is ready when it is discovered.
    fn default_ready(&self) -> sluice_core::spec::ReadyPolicy {
        sluice_core::spec::ReadyPolicy::Renamed
    }

    fn schema(&self) -> Value {
        let dir = sluice_config::directory_source_schema();
        let mut schema = sluice_config::schema_of::<RawKafkaSource>();
        if let (Some(props), Some(theirs)) = (
            schema.get_mut("properties").and_then(Value::as_object_mut),
            dir.get("properties").and_then(Value::as_object),
        ) {
            for k in FILE_KEYS {
                if let Some(v) = theirs.get(*k) {
                    props.insert(k.to_string(), v.clone());
                }
            }
        }
        if let (Some(defs), Some(theirs)) =
            (schema.as_object_mut(), dir.get("$defs").and_then(Value::as_object).cloned())
        {
            let defs = defs.entry("$defs").or_insert_with(|| Value::Object(Default::default()));
            if let Some(defs) = defs.as_object_mut() {
                for (k, v) in theirs {
                    defs.entry(k).or_insert(v);
                }
            }
        }
        if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
            req.push("format".into());
        }
        schema
    }

    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SourceConfig>> {
        let Value::Object(keys) = keys else { return None };
        let (own, files): (serde_json::Map<String, Value>, serde_json::Map<String, Value>) =
            keys.into_iter().partition(|(k, _)| OWN_KEYS.contains(&k.as_str()));
        let raw: RawKafkaSource = cx.deserialize(Value::Object(own))?;
        let name = cx.name().to_string();
        let mut ok = true;

        let brokers: Vec<String> = match &raw.brokers {
            RawBrokers::One(s) => {
                let s = cx.interpolate(&["brokers"], s);
                s.split(',').map(|b| b.trim().to_string()).filter(|b| !b.is_empty()).collect()
            }
            RawBrokers::Many(v) => {
                v.iter().enumerate().map(|(i, b)| cx.interpolate(&["brokers", &i.to_string()], b)).collect()
            }
        };
        if brokers.is_empty() {
            cx.error(
                &["brokers"],
                format!("source `{name}`: no broker given"),
                Some("`brokers: 127.0.0.1:9092`".into()),
            );
            ok = false;
        }
        for b in &brokers {
            let port_ok = b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !b.contains("${") && !port_ok {
                cx.error(
                    &["brokers"],
                    format!("source `{name}`: `{b}` is not `host:port`"),
                    Some("e.g. `127.0.0.1:9092` or `kafka-1.internal:9093`".into()),
                );
                ok = false;
            }
        }
        let topic = cx.interpolate(&["topic"], &raw.topic);
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !topic.contains("${") && (topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal)) {
            cx.error(
                &["topic"],
                format!("source `{name}`: `{topic}` is not a topic name"),
                Some("1 to 249 letters, digits, `.`, `_` or `-`".into()),
            );
            ok = false;
        }
        if let Some(ps) = &raw.partitions {
            if ps.is_empty() {
                cx.error(
                    &["partitions"],
                    format!("source `{name}`: `partitions` is empty"),
                    Some("omit it to read every partition".into()),
                );
                ok = false;
            }
            if let Some((_, p)) = ps.iter().enumerate().find(|(i, p)| ps[..*i].contains(p)) {
                cx.error(&["partitions"], format!("source `{name}`: partition {p} is listed twice"), None);
                ok = false;
            }
            if let Some(p) = ps.iter().find(|&&p| p < 0) {
                cx.error(&["partitions"], format!("source `{name}`: partition {p} is negative"), None);
                ok = false;
            }
        }
        let start = match raw.start.as_deref() {
            None | Some("earliest") => Start::Earliest,
            Some("latest") => Start::Latest,
            Some(t) => {
                match chrono::DateTime::parse_from_rfc3339(t) {
                    Ok(at) => Start::Timestamp(at.timestamp_millis()),
                    Err(e) => {
                        cx.error(
                        &["start"],
                        format!("source `{name}`: start `{t}` is not `earliest`, `latest` or an RFC 3339 timestamp ({e})"),
                        Some("e.g. `2026-12-01T00:00:00Z`".into()),
                    );
                        ok = false;
                        Start::Earliest
                    }
                }
            }
        };
        let max_rows = raw.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        if max_rows == 0 {
            cx.error(&["max_rows"], format!("source `{name}`: max_rows must be at least 1"), None);
            ok = false;
        }
        let max_wait = cx.duration(&["max_wait"], raw.max_wait.as_deref(), Duration::from_secs(1));
        let timeout = cx.duration(&["timeout"], raw.timeout.as_deref(), Duration::from_secs(10));
        if timeout.is_zero() {
            cx.error(&["timeout"], format!("source `{name}`: timeout must be more than 0"), None);
            ok = false;
        }
        let fetch_bytes = match raw.fetch_bytes.as_deref().map(sluice_config::size) {
            None => 4 << 20,
            Some(Ok(n)) if (1024..=(1u64 << 30)).contains(&n) => n,
            Some(Ok(_)) => {
                cx.error(&["fetch_bytes"], format!("source `{name}`: fetch_bytes must be 1KiB to 1GiB"), None);
                ok = false;
                4 << 20
            }
            Some(Err(e)) => {
                cx.error(&["fetch_bytes"], format!("source `{name}`: {e}"), Some("e.g. `4MiB`".into()));
                ok = false;
                4 << 20
            }
        };
        let raw_meta = raw.metadata.unwrap_or_default();
        let metadata = Metadata {
            partition: raw_meta.partition,
            offset: raw_meta.offset,
            key: raw_meta.key,
            timestamp: raw_meta.timestamp,
        };
        let tls = raw.tls.map(|t| t.ca_file.map(|f| cx.path(&["tls", "ca_file"], &f)));
        let sasl = match raw.sasl {
            None => None,
            Some(s) => {
                let username = cx.secret(&["sasl", "username_env"], &s.username_env);
                let password = cx.secret(&["sasl", "password_env"], &s.password_env);
                match (username, password) {
                    (Some(username), Some(password)) => Some(Sasl { mechanism: s.mechanism, username, password }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
        };

        let files = cx.file_keys(Value::Object(files), PathBuf::from("."))?;
        let columns = match &files.format {
            FormatSpec::Csv(c) => c.columns.clone(),
            FormatSpec::Jsonl(j) | FormatSpec::Json(j) => j.columns.clone(),
            FormatSpec::Parquet => {
                cx.error(
                    &["format"],
                    format!("source `{name}`: a kafka source reads records as `csv` or `jsonl`"),
                    Some("`format: {jsonl: {columns: {id: int64, user: string}}}`".into()),
                );
                return None;
            }
        };
        let Some(columns) = columns else {
            cx.error(
                &["format"],
                format!(
                    "source `{name}`: a kafka source needs its columns declared (`columns:`): records are not sampled"
                ),
                Some("`format: {jsonl: {columns: {id: int64, user: string, ts: timestamp}}}`".into()),
            );
            return None;
        };
        for (key, col) in [
            ("partition", &metadata.partition),
            ("offset", &metadata.offset),
            ("key", &metadata.key),
            ("timestamp", &metadata.timestamp),
        ] {
            let Some(col) = col else { continue };
            if columns.iter().any(|(n, _)| n == col) {
                cx.error(
                    &["metadata", key],
                    format!("source `{name}`: metadata column `{col}` is also a column of the format"),
                    Some("name the envelope's column differently, e.g. `kafka_{key}`".into()),
                );
                ok = false;
            }
        }
        let meta_names: Vec<&String> =
            [&metadata.partition, &metadata.offset, &metadata.key, &metadata.timestamp].into_iter().flatten().collect();
        for (i, n) in meta_names.iter().enumerate() {
            if meta_names[..i].contains(n) {
                cx.error(&["metadata"], format!("source `{name}`: metadata column `{n}` is named twice"), None);
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Arc::new(KafkaSpec {
            brokers,
            topic,
            partitions: raw.partitions,
            start,
            max_rows,
            max_wait,
            format: files.format,
            columns,
            metadata,
            limits: files.limits,
            fetch_bytes,
            timeout,
            tls,
            sasl,
            skip_retention_gap: raw.on_retention_gap == Some(RawGapPolicy::Skip),
        }))
    }
}
