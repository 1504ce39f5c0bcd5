//! `kind: s3` sources: their keys (the language half) and validated settings.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_config::{Section, SourceKind};
use sluice_core::connector::SourceConfig;
use sluice_core::spec::{DirSpec, Secret};

/// The keys of `kind: s3` beside a directory source's file keys (`glob`, `exclude`, `fields`,
/// `format`, `order`, `compression`, `members`, `limits`), which match the key relative to the
/// prefix's directory.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawS3Source {
    /// The bucket to list.
    pub bucket: String,
    /// Only keys under this prefix are listed, e.g. `data/spot/daily/klines/`. Globs and
    /// `fields` match the key after the prefix's last `/`. May use `${VAR}`.
    pub prefix: Option<String>,
    /// The server: `https://s3.<region>.amazonaws.com` (the default), or any S3-compatible
    /// endpoint. May use `${VAR}`.
    pub endpoint: Option<String>,
    /// The region requests are signed for (default `us-east-1`).
    pub region: Option<String>,
    /// `path` (default: `<endpoint>/<bucket>/<key>`) or `virtual_hosted`
    /// (`<bucket>.<endpoint host>/<key>`).
    pub addressing: Option<RawAddressing>,
    /// Allow a plain `http://` endpoint (default false).
    pub allow_http: Option<bool>,
    /// The environment variable holding the access key id (declared in `env:`). With
    /// `secret_access_key_env`, requests are signed; without both, they are anonymous.
    pub access_key_id_env: Option<String>,
    /// The environment variable holding the secret access key (declared in `env:`).
    pub secret_access_key_env: Option<String>,
    /// The environment variable holding a session token (declared in `env:`).
    pub session_token_env: Option<String>,
    /// The local directory objects are downloaded into, keeping the bucket's layout
    /// (`<mirror>/<key>`), relative to the pipeline file. May use `${VAR}`.
    pub mirror: String,
    /// Keep each downloaded object after its unit committed (default true); `false` deletes it.
    pub keep_mirror: Option<bool>,
    /// Check each object against a sibling `<key>.CHECKSUM` file (sha256, as `sha256sum`
    /// writes it): `auto` (default: when one is listed), `required` (objects without one are
    /// not selected) or `off`.
    pub checksum: Option<RawChecksum>,
    /// How the bucket is listed.
    pub list: Option<RawList>,
    /// How objects are downloaded.
    pub download: Option<RawDownload>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawAddressing {
    Path,
    VirtualHosted,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RawChecksum {
    Auto,
    Required,
    Off,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    /// How old a listing may be before `watch` lists again, e.g. `30s` (default `60s`).
    pub interval: Option<String>,
    /// Keys per ListObjectsV2 page, 1 to 1000 (default 1000).
    pub page_size: Option<u32>,
    /// List directory by directory (`delimiter=/`), descending only into directories the
    /// globs can match below; each `*` then matches within one path segment. For buckets with
    /// many more keys under the prefix than the globs select. Default false (one flat listing).
    pub by_directory: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDownload {
    /// Objects downloaded at once, apart from the workers that process them (default 4).
    pub concurrency: Option<u32>,
    /// How many downloaded objects may wait for a worker (default 16).
    pub ahead: Option<u32>,
    /// Attempts at one object before its unit fails (default 6). A failed unit is retried by
    /// later runs, then poisoned (`retries`).
    pub attempts: Option<u32>,
    /// Backoff between attempts: `{initial: 500ms, max: 30s}`, doubling, with full jitter.
    pub backoff: Option<RawBackoff>,
    /// The longest `Retry-After` honoured (default `5m`); a longer one fails the attempt.
    pub max_retry_after: Option<String>,
    /// Requests per second over the source, e.g. `20` (default: unlimited).
    pub requests_per_second: Option<f64>,
    /// Bytes per second over the source, e.g. `50MiB` (default: unlimited).
    pub bytes_per_second: Option<String>,
    /// Seconds to connect (default `10s`).
    pub connect_timeout: Option<String>,
    /// The longest wait for the next bytes of a response (default `60s`).
    pub read_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    pub initial: Option<String>,
    pub max: Option<String>,
}

/// How keys are put in URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Addressing {
    Path,
    VirtualHosted,
}

/// When objects are checked against a sibling `<key>.CHECKSUM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumPolicy {
    Auto,
    Required,
    Off,
}

/// Download settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadSpec {
    pub concurrency: usize,
    pub ahead: usize,
    pub attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub max_retry_after: Duration,
    /// 0: unlimited.
    pub requests_per_second: f64,
    /// 0: unlimited.
    pub bytes_per_second: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl Default for DownloadSpec {
    fn default() -> Self {
        DownloadSpec {
            concurrency: 4,
            ahead: 16,
            attempts: 6,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            requests_per_second: 0.0,
            bytes_per_second: 0,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// The validated settings of a `kind: s3` source.
#[derive(Debug, Clone, Serialize)]
pub struct S3Spec {
    pub bucket: String,
    pub prefix: String,
    /// Without a trailing `/`.
    pub endpoint: String,
    pub region: String,
    pub addressing: Addressing,
    /// Both or neither (anonymous).
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    pub mirror: PathBuf,
    pub keep_mirror: bool,
    pub checksum: ChecksumPolicy,
    pub list_interval: Duration,
    pub page_size: u32,
    /// List by directory, pruned by the globs.
    pub by_directory: bool,
    pub download: DownloadSpec,
    /// How the fetched files are read (`path` is `<mirror>/<prefix's directory>`).
    pub files: DirSpec,
}

impl S3Spec {
    /// The prefix up to and including its last `/`: keys are located relative to it.
    pub fn base(&self) -> &str {
        match self.prefix.rfind('/') {
            Some(i) => &self.prefix[..=i],
            None => "",
        }
    }

    /// The key of the object whose locator (its key relative to [`S3Spec::base`]) is `locator`.
    pub fn key_of(&self, locator: &str) -> String {
        format!("{}{locator}", self.base())
    }

    /// `s3://bucket/key`, as messages name an object.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, key)
    }

    /// The endpoint and bucket, as errors name the server.
    pub fn server(&self) -> String {
        format!("{} (bucket {})", self.endpoint, self.bucket)
    }

    /// The secrets whose values must never appear in a message.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        [&self.access_key_id, &self.secret_access_key, &self.session_token].into_iter().flatten()
    }

    /// `text` with every secret value masked.
    pub fn redact(&self, text: &str) -> String {
        self.secrets().fold(text.to_string(), |t, s| s.redact(&t))
    }
}

impl SourceConfig for S3Spec {
    fn kind(&self) -> &'static str {
        "s3"
    }
    /// What decides the output: the objects selected and how they are read (not the mirror,
    /// the credentials or the download tuning).
    fn definition(&self) -> Value {
        let mut files = serde_json::to_value(&self.files).unwrap_or_default();
        if let Some(o) = files.as_object_mut() {
            o.remove("path");
        }
        serde_json::json!({
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint": self.endpoint,
            "checksum": self.checksum,
            "by_directory": self.by_directory,
            "files": files,
        })
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The language half of `kind: s3` sources.
pub struct S3Kind;

/// The s3 keys that are not a directory source's file keys.
const OWN_KEYS: &[&str] = &[
    "bucket",
    "prefix",
    "endpoint",
    "region",
    "addressing",
    "allow_http",
    "access_key_id_env",
    "secret_access_key_env",
    "session_token_env",
    "mirror",
    "keep_mirror",
    "checksum",
    "list",
    "download",
];

impl SourceKind for S3Kind {
    fn name(&self) -> &'static str {
        "s3"
    }

    /// An object is listed once it is complete (S3 writes are atomic).
    fn default_ready(&self) -> sluice_core::spec::ReadyPolicy {
        sluice_core::spec::ReadyPolicy::Renamed
    }

    fn schema(&self) -> Value {
        let mut schema = sluice_config::directory_source_schema();
        let own = sluice_config::schema_of::<RawS3Source>();
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.remove("path");
            if let Some(o) = own.get("properties").and_then(Value::as_object) {
                for (k, v) in o {
                    props.insert(k.clone(), v.clone());
                }
            }
        }
        if let (Some(defs), Some(own_defs)) =
            (schema.get_mut("$defs").and_then(Value::as_object_mut), own.get("$defs").and_then(Value::as_object))
        {
            for (k, v) in own_defs {
                defs.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
            req.retain(|r| r != "path");
            req.push("bucket".into());
            req.push("mirror".into());
        }
        schema
    }

    fn resolve(&self, cx: &mut Section<'_>, keys: Value) -> Option<Arc<dyn SourceConfig>> {
        let Value::Object(keys) = keys else { return None };
        let (own, files): (serde_json::Map<String, Value>, serde_json::Map<String, Value>) =
            keys.into_iter().partition(|(k, _)| OWN_KEYS.contains(&k.as_str()));
        let raw: RawS3Source = cx.deserialize(Value::Object(own))?;
        let name = cx.name().to_string();
        let mut ok = true;

        let bucket = cx.interpolate(&["bucket"], &raw.bucket);
        let bucket_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if bucket.contains("${") {
            // Not expanded (`validate --no-environment`): checked when it is.
        } else if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(bucket_chars) {
            cx.error(
                &["bucket"],
                format!("source `{name}`: `{bucket}` is not a bucket name"),
                Some("3 to 63 letters, digits, `.`, `-` or `_`".into()),
            );
            ok = false;
        }
        let prefix = raw.prefix.as_deref().map(|p| cx.interpolate(&["prefix"], p)).unwrap_or_default();
        let prefix = prefix.trim_start_matches('/').to_string();
        let region = raw.region.as_deref().map_or_else(|| "us-east-1".into(), |r| cx.interpolate(&["region"], r));
        let endpoint = match &raw.endpoint {
            Some(e) => cx.interpolate(&["endpoint"], e),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let endpoint = endpoint.trim_end_matches('/').to_string();
        match url::Url::parse(&endpoint) {
            // Not expanded (`validate --no-environment`): checked when it is.
            _ if endpoint.contains("${") => {}
            Ok(u) if u.scheme() == "https" => {}
            Ok(u) if u.scheme() == "http" => {
                if raw.allow_http != Some(true) {
                    cx.error(
                        &["endpoint"],
                        format!("source `{name}`: `{endpoint}` is plain http"),
                        Some("set `allow_http: true` to allow it".into()),
                    );
                    ok = false;
                }
            }
            _ => {
                cx.error(
                    &["endpoint"],
                    format!("source `{name}`: `{endpoint}` is not an http(s) URL"),
                    Some("e.g. `https://s3.us-east-1.amazonaws.com` or `http://127.0.0.1:9000`".into()),
                );
                ok = false;
            }
        }
        let addressing = match raw.addressing {
            Some(RawAddressing::VirtualHosted) => Addressing::VirtualHosted,
            _ => Addressing::Path,
        };
        let access_key_id = raw.access_key_id_env.as_deref().and_then(|n| cx.secret(&["access_key_id_env"], n));
        let secret_access_key =
            raw.secret_access_key_env.as_deref().and_then(|n| cx.secret(&["secret_access_key_env"], n));
        let session_token = raw.session_token_env.as_deref().and_then(|n| cx.secret(&["session_token_env"], n));
        if raw.access_key_id_env.is_some() != raw.secret_access_key_env.is_some() {
            let at = if raw.access_key_id_env.is_some() { "access_key_id_env" } else { "secret_access_key_env" };
            cx.error(
                &[at],
                format!("source `{name}`: give both `access_key_id_env` and `secret_access_key_env`, or neither"),
                Some("without both, requests are anonymous".into()),
            );
            ok = false;
        }
        let mirror = cx.path(&["mirror"], &raw.mirror);

        let list = raw.list.unwrap_or_default();
        let list_interval = cx.duration(&["list", "interval"], list.interval.as_deref(), Duration::from_secs(60));
        let page_size = list.page_size.unwrap_or(1000);
        if !(1..=1000).contains(&page_size) {
            cx.error(&["list", "page_size"], format!("source `{name}`: page_size must be 1 to 1000"), None);
            ok = false;
        }

        let d = raw.download.unwrap_or_default();
        let defaults = DownloadSpec::default();
        let mut download = DownloadSpec {
            concurrency: d.concurrency.map_or(defaults.concurrency, |n| n as usize),
            ahead: d.ahead.map_or(defaults.ahead, |n| n as usize),
            attempts: d.attempts.unwrap_or(defaults.attempts),
            max_retry_after: cx.duration(
                &["download", "max_retry_after"],
                d.max_retry_after.as_deref(),
                defaults.max_retry_after,
            ),
            requests_per_second: d.requests_per_second.unwrap_or(0.0),
            connect_timeout: cx.duration(
                &["download", "connect_timeout"],
                d.connect_timeout.as_deref(),
                defaults.connect_timeout,
            ),
            read_timeout: cx.duration(&["download", "read_timeout"], d.read_timeout.as_deref(), defaults.read_timeout),
            ..defaults
        };
        for (key, d) in [("connect_timeout", download.connect_timeout), ("read_timeout", download.read_timeout)] {
            if d.is_zero() {
                cx.error(&["download", key], format!("source `{name}`: download.{key} must be more than 0"), None);
                ok = false;
            }
        }
        for (key, n) in [("concurrency", download.concurrency), ("ahead", download.ahead)] {
            if n == 0 {
                cx.error(&["download", key], format!("source `{name}`: download.{key} must be at least 1"), None);
                ok = false;
            }
        }
        if download.attempts == 0 {
            cx.error(&["download", "attempts"], format!("source `{name}`: download.attempts must be at least 1"), None);
            ok = false;
        }
        if !(download.requests_per_second >= 0.0 && download.requests_per_second.is_finite()) {
            cx.error(
                &["download", "requests_per_second"],
                format!("source `{name}`: download.requests_per_second must be a positive number (0: unlimited)"),
                None,
            );
            ok = false;
        }
        if let Some(b) = &d.bytes_per_second {
            match sluice_config::size(b) {
                Ok(n) => download.bytes_per_second = n,
                Err(e) => {
                    cx.error(&["download", "bytes_per_second"], format!("download.bytes_per_second: {e}"), None);
                    ok = false;
                }
            }
        }
        if let Some(b) = &d.backoff {
            download.backoff_initial =
                cx.duration(&["download", "backoff", "initial"], b.initial.as_deref(), download.backoff_initial);
            download.backoff_max = cx.duration(&["download", "backoff", "max"], b.max.as_deref(), download.backoff_max);
        }

        let checksum = match raw.checksum {
            Some(RawChecksum::Required) => ChecksumPolicy::Required,
            Some(RawChecksum::Off) => ChecksumPolicy::Off,
            _ => ChecksumPolicy::Auto,
        };
        let base = prefix.rfind('/').map_or("", |i| &prefix[..=i]).to_string();
        let files = cx.file_keys(Value::Object(files), mirror.join(&base))?;
        if !ok {
            return None;
        }
        Some(Arc::new(S3Spec {
            bucket,
            prefix,
            endpoint,
            region,
            addressing,
            access_key_id,
            secret_access_key,
            session_token,
            mirror,
            keep_mirror: raw.keep_mirror.unwrap_or(true),
            checksum,
            list_interval,
            page_size,
            by_directory: list.by_directory.unwrap_or(false),
            download,
            files,
        }))
    }
}

/// A duration key, or its default; a bad one is reported at `rel`.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings for unit tests: bucket `bucket`, no prefix, a local endpoint.
    pub(crate) fn spec(mirror: &std::path::Path) -> S3Spec {
        S3Spec {
            bucket: "bucket".into(),
            prefix: String::new(),
            endpoint: "http://127.0.0.1:9".into(),
            region: "us-east-1".into(),
            addressing: Addressing::Path,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            mirror: mirror.to_path_buf(),
            keep_mirror: true,
            checksum: ChecksumPolicy::Auto,
            list_interval: Duration::from_secs(60),
            page_size: 1000,
            by_directory: false,
            download: DownloadSpec::default(),
            files: DirSpec {
                path: mirror.to_path_buf(),
                include: vec!["**/*".into()],
                exclude: vec![],
                fields: None,
                format: sluice_core::spec::FormatSpec::Jsonl(Default::default()),
                order: Default::default(),
                compression: Default::default(),
                members: vec![],
                limits: Default::default(),
            },
        }
    }

    #[test]
    fn keys_are_located_relative_to_the_prefix_directory() {
        let mut s = spec(std::path::Path::new("/m"));
        assert_eq!(s.base(), "");
        s.prefix = "data/spot/daily/klines/".into();
        assert_eq!(s.base(), "data/spot/daily/klines/");
        s.prefix = "data/spot/BTC".into();
        assert_eq!(s.base(), "data/spot/");
    }
}
