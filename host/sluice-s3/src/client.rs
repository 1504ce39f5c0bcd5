//! The S3 API, as much as a listing source needs: ListObjectsV2 pages and GETs of objects,
//! anonymous or signed (SigV4), with each response classified for the retry policy.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use crate::config::{Addressing, S3Spec};

/// Everything but S3's unreserved characters is encoded in a key's path; `/` separates.
const KEY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
/// Query values: `/` too.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// Without its quotes.
    pub etag: String,
    /// Nanoseconds since the epoch (0 when the server sent none that parses).
    pub last_modified_ns: i64,
}

/// One ListObjectsV2 page.
#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Object>,
    /// The "directories" one level down, when listed with a delimiter.
    pub prefixes: Vec<String>,
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefix {
    prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    #[serde(default)]
    size: u64,
    #[serde(default, rename = "ETag")]
    etag: String,
    #[serde(default)]
    last_modified: String,
}

/// An S3 error document's code and message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorDoc {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Parse one ListObjectsV2 response body.
pub fn parse_page(xml: &str) -> Result<Page, String> {
    let r: ListBucketResult = quick_xml::de::from_str(xml).map_err(|e| format!("bad ListObjectsV2 response: {e}"))?;
    let objects = r
        .contents
        .into_iter()
        .map(|c| Object {
            last_modified_ns: parse_time_ns(&c.last_modified),
            etag: unquote(&c.etag),
            size: c.size,
            key: c.key,
        })
        .collect();
    let next = if r.is_truncated {
        match r.next_continuation_token {
            Some(t) if !t.is_empty() => Some(t),
            _ => return Err("the listing is truncated but names no continuation token".into()),
        }
    } else {
        None
    };
    let prefixes = r.common_prefixes.into_iter().map(|p| p.prefix).collect();
    Ok(Page { objects, prefixes, next })
}

/// An ETag without its quotes (and without a weak `W/` mark).
pub fn unquote(etag: &str) -> String {
    etag.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// `2026-12-06T20:23:12.000Z` in nanoseconds since the epoch (0 when it does not parse).
fn parse_time_ns(s: &str) -> i64 {
    let s = s.trim();
    let (Some(date), Some(time)) = (s.get(..10), s.get(11..19)) else { return 0 };
    let d: Vec<i64> = date.split('-').filter_map(|p| p.parse().ok()).collect();
    let t: Vec<i64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
    let ([y, m, dd], [hh, mm, ss]) = (d.as_slice(), t.as_slice()) else { return 0 };
    if !((1..=9999).contains(y)
        && (1..=12).contains(m)
        && (1..=31).contains(dd)
        && (0..24).contains(hh)
        && (0..60).contains(mm)
        && (0..=60).contains(ss))
    {
        return 0;
    }
    let frac: i64 = s
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|r| r.trim_end_matches('Z'))
        .map(|digits| format!("{digits:0<9}").get(..9).and_then(|x| x.parse().ok()).unwrap_or(0))
        .unwrap_or(0);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if *m <= 2 { (y - 1, m + 9) } else { (*y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // Past 2262 nanoseconds overflow an i64: no time then.
    (days * 86_400 + hh * 3600 + mm * 60 + ss).checked_mul(1_000_000_000).and_then(|n| n.checked_add(frac)).unwrap_or(0)
}

/// What a failed request means for the attempt loop.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt after a backoff (or after `retry_after`, which pauses the source).
    Retry { reason: String, retry_after: Option<Duration> },
    /// Another attempt would fail the same way (403, 404, a bad request, the object changed).
    Fatal(String),
    /// The bytes are not the object's (a checksum mismatch): worth another transfer, and when
    /// every attempt ends so, a failure of the unit's data (it counts towards poisoning).
    Corrupt(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Retry { reason, .. } => reason,
            Failure::Fatal(m) | Failure::Corrupt(m) => m,
        }
    }
}

/// The S3 client of one source.
pub struct Client {
    http: reqwest::Client,
    spec: std::sync::Arc<S3Spec>,
    credential: Option<object_store::aws::AwsCredential>,
}

impl Client {
    pub fn new(spec: std::sync::Arc<S3Spec>) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(spec.download.connect_timeout)
            .read_timeout(spec.download.read_timeout)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry the signature's headers to another host, and cannot be
            // signed anyway: it is reported (a wrong region or endpoint) instead.
            .redirect(reqwest::redirect::Policy::none())
            .http1_only();
        // Loopback endpoints (test servers) are never reached through a proxy.
        if url::Url::parse(&spec.endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .is_some_and(|h| h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()))
        {
            b = b.no_proxy();
        }
        let http = b.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let credential = match (&spec.access_key_id, &spec.secret_access_key) {
            (Some(k), Some(s)) => Some(object_store::aws::AwsCredential {
                key_id: k.expose().to_string(),
                secret_key: s.expose().to_string(),
                token: spec.session_token.as_ref().map(|t| t.expose().to_string()),
            }),
            _ => None,
        };
        Ok(Client { http, spec, credential })
    }

    /// The URL of the bucket (`key` empty) or of an object, with a query.
    pub fn url(&self, key: &str, query: &[(&str, &str)]) -> String {
        let key = utf8_percent_encode(key, KEY).to_string();
        let base = match self.spec.addressing {
            Addressing::Path if key.is_empty() => format!("{}/{}", self.spec.endpoint, self.spec.bucket),
            Addressing::Path => format!("{}/{}/{}", self.spec.endpoint, self.spec.bucket, key),
            Addressing::VirtualHosted => {
                let (scheme, rest) = self.spec.endpoint.split_once("://").unwrap_or(("https", &self.spec.endpoint));
                format!("{scheme}://{}.{rest}/{key}", self.spec.bucket)
            }
        };
        if query.is_empty() {
            return base;
        }
        // Sorted, as SigV4's canonical query string wants them.
        let q: BTreeMap<&str, String> =
            query.iter().map(|(k, v)| (*k, utf8_percent_encode(v, QUERY).to_string())).collect();
        let q: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{base}?{}", q.join("&"))
    }

    /// A GET of `url` with `headers`, signed when the source has credentials.
    async fn get(&self, url: &str, headers: &[(&str, String)]) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(cred) = &self.credential {
            let mut signed = http::Request::builder()
                .method("GET")
                .uri(url)
                .body(object_store::client::HttpRequestBody::empty())
                .expect("a valid request");
            object_store::aws::AwsAuthorizer::new(cred, "s3", &self.spec.region).authorize(&mut signed, None);
            for (k, v) in signed.headers() {
                if k != http::header::HOST {
                    req = req.header(k, v);
                }
            }
        }
        req.send().await
    }

    /// One page of the listing.
    /// One page of the listing of `prefix`, by directory when `delimited` (`delimiter=/`).
    pub async fn list_page(
        &self,
        prefix: &str,
        delimited: bool,
        token: Option<&str>,
        max_keys: u32,
    ) -> Result<Page, Failure> {
        let max = max_keys.to_string();
        let mut q = vec![("list-type", "2"), ("prefix", prefix), ("max-keys", max.as_str())];
        if delimited {
            q.push(("delimiter", "/"));
        }
        if let Some(t) = token {
            q.push(("continuation-token", t));
        }
        let url = self.url("", &q);
        let resp = self.get(&url, &[]).await.map_err(|e| self.transport("list", &e))?;
        let status = resp.status();
        let retry_after = header_retry_after(&resp);
        let body = resp.text().await.map_err(|e| self.transport("list", &e))?;
        if !status.is_success() {
            return Err(self.status_failure("list", status.as_u16(), retry_after, &body));
        }
        parse_page(&body).map_err(|m| Failure::Retry { reason: m, retry_after: None })
    }

    /// A GET of an object from byte `from`, only while its ETag is still `etag`.
    pub async fn get_object(&self, key: &str, from: u64, etag: &str) -> Result<reqwest::Response, Failure> {
        let mut headers = Vec::new();
        if !etag.is_empty() {
            headers.push(("if-match", format!("\"{etag}\"")));
        }
        if from > 0 {
            headers.push(("range", format!("bytes={from}-")));
        }
        self.get(&self.url(key, &[]), &headers).await.map_err(|e| self.transport(key, &e))
    }

    /// A GET of a small object's whole body (a checksum file).
    pub async fn get_small(&self, key: &str) -> Result<Vec<u8>, Failure> {
        let resp = self.get(&self.url(key, &[]), &[]).await.map_err(|e| self.transport(key, &e))?;
        let status = resp.status().as_u16();
        let retry_after = header_retry_after(&resp);
        let expected = resp.content_length();
        let body = resp.bytes().await.map_err(|e| self.transport(key, &e))?;
        if !(200..300).contains(&status) {
            return Err(self.status_failure(key, status, retry_after, &String::from_utf8_lossy(&body)));
        }
        if expected.is_some_and(|n| n != body.len() as u64) {
            return Err(Failure::Retry { reason: format!("{key}: short body"), retry_after: None });
        }
        Ok(body.to_vec())
    }

    /// A transport error (connect, reset, timeout, a body cut short), worth retrying.
    pub fn transport(&self, what: &str, e: &reqwest::Error) -> Failure {
        let kind = if e.is_connect() {
            "cannot connect"
        } else if e.is_timeout() {
            "timed out"
        } else if e.is_body() || e.is_decode() {
            "the body was cut short"
        } else {
            "request failed"
        };
        let mut detail = String::new();
        let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(s) = src {
            detail = s.to_string();
            src = s.source();
        }
        let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        Failure::Retry { reason: self.spec.redact(&format!("{what}: {kind}{detail}")), retry_after: None }
    }

    /// A response whose status is not a success.
    pub fn status_failure(&self, what: &str, status: u16, retry_after: Option<Duration>, body: &str) -> Failure {
        let doc: ErrorDoc = quick_xml::de::from_str(body).unwrap_or_default();
        let detail = match (doc.code.is_empty(), doc.message.is_empty()) {
            (true, _) => String::new(),
            (false, true) => format!(" {}", doc.code),
            (false, false) => format!(" {}: {}", doc.code, doc.message),
        };
        let reason = self.spec.redact(&format!("{what}: HTTP {status}{detail}"));
        match status {
            429 | 503 => Failure::Retry { reason, retry_after },
            408 | 500..=599 => Failure::Retry { reason, retry_after: None },
            412 => {
                Failure::Fatal(format!("{reason} (the object changed since it was listed; the next listing sees it)"))
            }
            301 | 302 | 307 | 308 => Failure::Fatal(format!(
                "{reason} (the server redirects: is `region` or `endpoint` wrong for this bucket?)"
            )),
            403 if self.credential.is_none() => Failure::Fatal(format!(
                "{reason} (anonymous requests are refused: give `access_key_id_env` and `secret_access_key_env`)"
            )),
            _ => Failure::Fatal(reason),
        }
    }
}

/// A response's `Retry-After`, when it has one that parses.
pub fn header_retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    crate::policy::retry_after(v, SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated><Contents><Key>data/spot/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2024-01-01.zip</Key><LastModified>2026-12-06T20:23:12.000Z</LastModified><ETag>&quot;5591a714cfe9170ec2b5a69f42da715c&quot;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>11470</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>a &amp; b.zip</Key><LastModified>1970-01-01T00:00:01.5Z</LastModified><ETag>"x-2"</ETag><Size>3</Size></Contents><Name>binance-data</Name><Prefix>data/spot/daily/klines/</Prefix><MaxKeys>3</MaxKeys><KeyCount>3</KeyCount><NextContinuationToken>c72de7f8f157ef24f30643c577306599</NextContinuationToken></ListBucketResult>"#;

    #[test]
    fn a_page_gives_keys_sizes_etags_times_and_the_next_token() {
        let p = parse_page(PAGE).unwrap();
        assert_eq!(p.next.as_deref(), Some("c72de7f8f157ef24f30643c577306599"));
        assert_eq!(p.objects.len(), 2);
        let o = &p.objects[0];
        assert_eq!(o.key, "data/spot/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2024-01-01.zip");
        assert_eq!((o.size, o.etag.as_str()), (11470, "5591a714cfe9170ec2b5a69f42da715c"));
        assert_eq!(o.last_modified_ns, 1_796_588_592 * 1_000_000_000);
        assert_eq!(p.objects[1].key, "a & b.zip");
        assert_eq!(p.objects[1].etag, "x-2");
        assert!(p.prefixes.is_empty());
        let dirs = parse_page(
            "<ListBucketResult><IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>k/BTCUSDT/</Prefix>\
             </CommonPrefixes><CommonPrefixes><Prefix>k/ETHUSDT/</Prefix></CommonPrefixes></ListBucketResult>",
        )
        .unwrap();
        assert_eq!(dirs.prefixes, ["k/BTCUSDT/", "k/ETHUSDT/"]);
        assert_eq!(p.objects[1].last_modified_ns, 1_500_000_000);
        // Out of range (found by the fuzzer: an overflow): no time rather than a panic.
        assert_eq!(parse_time_ns("4052-12-06T20:23:12.000Z"), 0);
        assert_eq!(parse_time_ns("99999-12-06T20:23:12Z"), 0);
        assert_eq!(parse_time_ns("2026-13-06T20:23:12Z"), 0);
    }

    #[test]
    fn the_last_page_and_an_empty_bucket_have_no_token_and_a_truncated_page_needs_one() {
        let last =
            parse_page("<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>")
                .unwrap();
        assert!(last.next.is_none() && last.objects.is_empty());
        assert!(parse_page("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>").is_err());
        assert!(parse_page("<html>not xml").is_err());
    }

    fn client(addressing: Addressing) -> Client {
        let mut spec = crate::config::tests::spec(std::path::Path::new("/m"));
        spec.endpoint = "http://127.0.0.1:9000".into();
        spec.addressing = addressing;
        Client::new(std::sync::Arc::new(spec)).unwrap()
    }

    #[test]
    fn keys_are_encoded_in_path_and_virtual_hosted_urls() {
        let c = client(Addressing::Path);
        assert_eq!(c.url("a b/c+d=é~.zip", &[]), "http://127.0.0.1:9000/bucket/a%20b/c%2Bd%3D%C3%A9~.zip");
        assert_eq!(
            c.url("", &[("prefix", "x/y"), ("list-type", "2")]),
            "http://127.0.0.1:9000/bucket?list-type=2&prefix=x%2Fy"
        );
        let v = client(Addressing::VirtualHosted);
        assert_eq!(v.url("k", &[]), "http://bucket.127.0.0.1:9000/k");
    }

    #[test]
    fn statuses_are_classified_for_the_retry_policy() {
        let c = client(Addressing::Path);
        let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        match c.status_failure("k", 503, Some(Duration::from_secs(2)), body) {
            Failure::Retry { reason, retry_after } => {
                assert_eq!(reason, "k: HTTP 503 SlowDown: Please reduce your request rate.");
                assert_eq!(retry_after, Some(Duration::from_secs(2)));
            }
            f => panic!("{f:?}"),
        }
        assert!(matches!(c.status_failure("k", 500, None, ""), Failure::Retry { .. }));
        assert!(matches!(c.status_failure("k", 404, None, ""), Failure::Fatal(_)));
        assert!(c.status_failure("k", 403, None, "").message().contains("anonymous"));
        assert!(c.status_failure("k", 412, None, "").message().contains("changed"));
    }
}
