//! Downloading one object into the mirror: `<key>.partial`, resumed by range, fsynced, checked
//! (size, ETag through `If-Match`, sha256 against `<key>.CHECKSUM`), then renamed into place.
//! A mirror file under its final name is complete and checked.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sha2::Digest;

use crate::client::{Client, Failure, Object};
use crate::config::S3Spec;
use crate::manifest::{Entry, Manifest, now_ms};
use crate::metrics::Metrics;
use crate::policy::{Backoff, Gate, TokenBucket, jitter_rng};

/// One object to fetch.
#[derive(Debug, Clone)]
pub struct Job {
    pub object: Object,
    /// Its sibling checksum file's key, when one is listed (and checks are on).
    pub checksum_key: Option<String>,
}

impl Job {
    /// The job's identity in the download queue: the key and the ETag, so that a download of
    /// one version is never handed to a unit of another.
    pub fn id(&self) -> String {
        format!("{}\u{0}{}", self.object.key, self.object.etag)
    }
}

/// Why an object could not be fetched.
#[derive(Debug, Clone)]
pub struct FetchError {
    pub message: String,
    /// The object's bytes are wrong (a checksum mismatch on every attempt, a bad checksum
    /// file): a failure of the unit's data, which counts towards poisoning. Otherwise the
    /// server or the network failed, which says nothing about the object.
    pub data: bool,
}

/// Everything downloads of one source share.
pub struct Fetcher {
    pub client: Client,
    pub spec: Arc<S3Spec>,
    pub manifest: Arc<Manifest>,
    pub gate: Gate,
    pub requests: TokenBucket,
    pub bytes: TokenBucket,
    pub metrics: Arc<Metrics>,
}

/// Whether `key` can be a file in the mirror: relative, no empty, `.` or `..` segment, no
/// backslash or NUL, not a download in progress, not the mirror's own directory.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('/')
        && !key.ends_with('/')
        && !key.contains(['\0', '\\'])
        && !key.ends_with(".partial")
        && key.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && key.split('/').next() != Some(".sluice")
}

/// `path` with `.partial` appended.
pub fn partial_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// The sha256 a `sha256sum`-style checksum file gives for `name`.
pub fn parse_checksum(text: &str, name: &str) -> Result<String, String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).ok_or("the checksum file is empty")?;
    let mut parts = line.split_whitespace();
    let hash = parts.next().unwrap_or_default();
    let file = parts.next().map(|f| f.trim_start_matches('*'));
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{line}` does not start with a sha256 in hex"));
    }
    match file {
        Some(f) if f != name => Err(format!("it names `{f}`, not `{name}`")),
        _ => Ok(hash.to_ascii_lowercase()),
    }
}

/// The sha256 of a file, in hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Remove a partial download (a missing one is fine).
fn discard(partial: &Path) -> Result<(), Failure> {
    match std::fs::remove_file(partial) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(partial, e)),
    }
}

fn io(path: &Path, e: std::io::Error) -> Failure {
    Failure::Fatal(format!("{}: {e}", path.display()))
}

impl Fetcher {
    pub fn mirror_path(&self, key: &str) -> PathBuf {
        self.spec.mirror.join(key)
    }

    fn backoff(&self) -> Backoff {
        Backoff { initial: self.spec.download.backoff_initial, max: self.spec.download.backoff_max }
    }

    /// Wait for the shared pause and a request token.
    async fn admit(&self) {
        let waited = self.gate.wait().await;
        Metrics::add(&self.metrics.throttled_ms, waited.as_millis() as u64);
        self.requests.take(1.0).await;
    }

    /// How long to wait after a failed attempt, or why not to try again.
    fn wait_after(&self, failure: &Failure, attempt: u32, rng: &mut rand::rngs::StdRng) -> Result<Duration, String> {
        match failure {
            Failure::Fatal(m) => Err(m.clone()),
            Failure::Retry { retry_after: Some(d), reason } => {
                // The whole source waits, even when this attempt gives up.
                self.gate.pause((*d).min(self.spec.download.max_retry_after));
                if *d > self.spec.download.max_retry_after {
                    return Err(format!(
                        "{reason}: the server asks to wait {}s, more than download.max_retry_after ({}s)",
                        d.as_secs(),
                        self.spec.download.max_retry_after.as_secs()
                    ));
                }
                // This download then backs off a little more.
                Ok(self.backoff().delay(1, rng))
            }
            Failure::Retry { retry_after: None, .. } | Failure::Corrupt(_) => Ok(self.backoff().delay(attempt, rng)),
        }
    }

    /// Fetch `job`'s object into the mirror; its path once it is there, complete and checked.
    /// An error's message does not name the object (its unit's location does).
    pub async fn fetch(&self, job: &Job) -> Result<PathBuf, FetchError> {
        let o = &job.object;
        let path = self.mirror_path(&o.key);
        let known = self.manifest.get(&o.key);
        let mut entry = Entry::new(&o.key, "fetching", &o.etag, o.size);
        let mut rng = jitter_rng(&o.key);
        let result = async {
            let expected = match &job.checksum_key {
                Some(ck) => Some(self.fetch_checksum(ck, &o.key, &mut rng).await?),
                None => None,
            };
            // Already in the mirror, complete, and checked against this checksum if there is one.
            if let Some(e) = &known
                && e.mirrored
                && e.etag == o.etag
                && e.size == o.size
                && (expected.is_none() || e.sha256 == expected)
                && std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == o.size)
            {
                Metrics::add(&self.metrics.objects_skipped, 1);
                return Ok(path.clone());
            }
            let r = self.fetch_inner(job, &path, known.as_ref(), expected.as_deref(), &mut entry, &mut rng).await;
            Metrics::add(if r.is_ok() { &self.metrics.objects_fetched } else { &self.metrics.fetch_failures }, 1);
            r
        }
        .await;
        result.inspect_err(|e| {
            tracing::error!(key = %o.key, attempts = entry.attempts, error = %e.message, "download failed");
            let _ = self.manifest.record(Entry {
                state: "failed".into(),
                error: Some(e.message.clone()),
                at_ms: now_ms(),
                ..entry.clone()
            });
        })
    }

    async fn fetch_inner(
        &self,
        job: &Job,
        path: &Path,
        known: Option<&Entry>,
        expected: Option<&str>,
        entry: &mut Entry,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<PathBuf, FetchError> {
        let o = &job.object;
        let partial = partial_of(path);
        let attempts = self.spec.download.attempts;
        let local = |m: String| FetchError { message: m, data: false };
        // A partial file is resumed only when it was started on this very version.
        let resumable = known.is_some_and(|e| (e.state == "fetching" || e.state == "failed") && e.etag == o.etag);
        if !resumable {
            match std::fs::remove_file(&partial) {
                Ok(()) => tracing::info!(key = %o.key, "discarded a partial download of another version"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(local(format!("{}: {e}", partial.display()))),
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| local(format!("{}: {e} (is a key also a directory of other keys?)", dir.display())))?;
        }
        let mut last = Failure::Fatal("no attempt was made".into());
        for attempt in 1..=attempts {
            entry.attempts = attempt - 1;
            entry.at_ms = now_ms();
            let _ = self.manifest.record(entry.clone());
            self.admit().await;
            let failure = match self.transfer(o, &partial).await {
                Ok(()) => match self.check(o, &partial, expected).await {
                    Ok(sha) => {
                        std::fs::rename(&partial, path).map_err(|e| local(format!("{}: {e}", path.display())))?;
                        if let Some(dir) = path.parent()
                            && let Ok(d) = std::fs::File::open(dir)
                        {
                            let _ = d.sync_all();
                        }
                        let _ = self.manifest.record(Entry {
                            state: "fetched".into(),
                            attempts: 0,
                            error: None,
                            sha256: sha,
                            mirrored: true,
                            at_ms: now_ms(),
                            ..entry.clone()
                        });
                        tracing::info!(key = %o.key, bytes = o.size, attempt, "fetched");
                        return Ok(path.to_path_buf());
                    }
                    Err(f) => f,
                },
                Err(f) => f,
            };
            entry.attempts = attempt;
            let wait = self.wait_after(&failure, attempt, rng);
            let message = failure.message().to_string();
            last = failure;
            let wait = match wait {
                Ok(w) if attempt < attempts => w,
                Ok(_) => break,
                Err(m) => {
                    last = Failure::Fatal(m);
                    break;
                }
            };
            Metrics::add(&self.metrics.retries, 1);
            tracing::warn!(key = %o.key, attempt, error = %message, retry_in_ms = wait.as_millis() as u64, "download failed; retrying");
            tokio::time::sleep(wait).await;
        }
        Err(FetchError {
            data: matches!(last, Failure::Corrupt(_)),
            message: format!("download failed after {} attempt(s): {}", entry.attempts, last.message()),
        })
    }

    /// One GET into the partial file, from where it ends. `Ok` when it holds `size` bytes.
    async fn transfer(&self, o: &Object, partial: &Path) -> Result<(), Failure> {
        // The partial file is created only once the server answers with the object.
        let mut from = match std::fs::metadata(partial) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(partial, e)),
        };
        if from >= o.size {
            discard(partial)?;
            from = 0;
        }
        let started = Instant::now();
        let sent = self.client.get_object(&o.key, from, &o.etag).await;
        let resp = match sent {
            Ok(r) => r,
            Err(f) => {
                self.metrics.request(0, started.elapsed());
                return Err(f);
            }
        };
        let status = resp.status().as_u16();
        self.metrics.request(status, started.elapsed());
        // What the server sends must be the listed version, whatever it made of `If-Match`
        // (a proxy or an S3-compatible server may ignore it): bytes of two versions are never
        // joined.
        if (status == 200 || status == 206)
            && let Some(etag) = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(crate::client::unquote)
            && !o.etag.is_empty()
            && etag != o.etag
        {
            discard(partial)?;
            return Err(Failure::Fatal(format!(
                "the server sent ETag {etag}, not the listed {} (the object changed since it was listed; the next \
                 listing sees it)",
                o.etag
            )));
        }
        match status {
            200 => {
                if from > 0 {
                    tracing::info!(key = %o.key, "the server ignored the range; downloading from the start");
                    from = 0;
                }
            }
            206 => {
                let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !range.starts_with(&format!("bytes {from}-")) || !range.ends_with(&format!("/{}", o.size)) {
                    discard(partial)?;
                    return Err(Failure::Retry {
                        reason: format!("asked for bytes {from}- and got `{range}`"),
                        retry_after: None,
                    });
                }
                tracing::info!(key = %o.key, from, "resuming a partial download");
            }
            416 => {
                discard(partial)?;
                return Err(Failure::Retry {
                    reason: "the partial download was longer than the object (HTTP 416)".into(),
                    retry_after: None,
                });
            }
            _ => {
                let retry_after = crate::client::header_retry_after(&resp);
                let body = resp.text().await.unwrap_or_default();
                return Err(self.client.status_failure("GET", status, retry_after, &body));
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(partial)
            .map_err(|e| io(partial, e))?;
        file.set_len(from).map_err(|e| io(partial, e))?;
        file.seek(std::io::SeekFrom::Start(from)).map_err(|e| io(partial, e))?;
        let announced = resp.content_length();
        let mut received = 0u64;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = file.sync_data();
                    return Err(self.client.transport("GET", &e));
                }
            };
            self.bytes.take(chunk.len() as f64).await;
            file.write_all(&chunk).map_err(|e| io(partial, e))?;
            received += chunk.len() as u64;
            Metrics::add(&self.metrics.bytes_downloaded, chunk.len() as u64);
        }
        file.sync_all().map_err(|e| io(partial, e))?;
        let total = from + received;
        if announced.is_some_and(|n| n != received) {
            return Err(Failure::Retry {
                reason: format!("the body was cut short: {received} of {} bytes", announced.unwrap_or(0)),
                retry_after: None,
            });
        }
        if total != o.size {
            if total > o.size {
                file.set_len(0).map_err(|e| io(partial, e))?;
            }
            return Err(Failure::Retry {
                reason: format!("got {total} bytes, but the listing says {}", o.size),
                retry_after: None,
            });
        }
        Ok(())
    }

    /// Check a complete partial file; its sha256 when it was checked against one. A mismatch
    /// deletes it (a new transfer may fix it) and is worth another attempt.
    async fn check(&self, o: &Object, partial: &Path, expected: Option<&str>) -> Result<Option<String>, Failure> {
        let len = std::fs::metadata(partial).map_err(|e| io(partial, e))?.len();
        if len != o.size {
            let _ = std::fs::remove_file(partial);
            return Err(Failure::Retry { reason: format!("{len} bytes, listed {}", o.size), retry_after: None });
        }
        let Some(expected) = expected else { return Ok(None) };
        let p = partial.to_path_buf();
        let got = tokio::task::spawn_blocking(move || sha256_file(&p))
            .await
            .map_err(|e| Failure::Fatal(format!("hashing panicked: {e}")))?
            .map_err(|e| io(partial, e))?;
        if got != expected {
            let _ = std::fs::remove_file(partial);
            return Err(Failure::Corrupt(format!(
                "checksum mismatch: {}.CHECKSUM says sha256 {expected}, the downloaded bytes hash to {got}",
                o.key
            )));
        }
        Ok(Some(got))
    }

    /// The sha256 the checksum file `ck` gives for `key`, fetched with the same retries, and
    /// kept in the mirror beside the object.
    async fn fetch_checksum(&self, ck: &str, key: &str, rng: &mut rand::rngs::StdRng) -> Result<String, FetchError> {
        let name = key.rsplit('/').next().unwrap_or(key);
        let body = self
            .retrying(
                rng,
                || self.client.get_small(ck),
                |attempt, error, wait| {
                    tracing::warn!(key = %ck, attempt, error, retry_in_ms = wait.as_millis() as u64,
                    "checksum download failed; retrying");
                },
            )
            .await
            .map_err(|(_, last)| FetchError {
                message: format!("its checksum file {ck} could not be fetched: {last}"),
                data: false,
            })?;
        let text = String::from_utf8_lossy(&body);
        let hash = parse_checksum(&text, name)
            .map_err(|m| FetchError { message: format!("checksum file {ck}: {m}"), data: true })?;
        let path = self.mirror_path(ck);
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = partial_of(&path);
        if std::fs::write(&tmp, &body).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
        Ok(hash)
    }

    /// `request` under the source's policy: the shared pause and the request rate before each
    /// attempt, [`Fetcher::wait_after`] a failure, up to `download.attempts` attempts;
    /// `on_retry(attempt, error, wait)` reports each retry. A failure is the attempts made and
    /// the last error. (An object's own download has more to do per attempt: `fetch_inner`.)
    pub async fn retrying<T, Fut>(
        &self,
        rng: &mut rand::rngs::StdRng,
        mut request: impl FnMut() -> Fut,
        on_retry: impl Fn(u32, &str, Duration),
    ) -> Result<T, (u32, String)>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let attempts = self.spec.download.attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.admit().await;
            let started = Instant::now();
            let got = request().await;
            self.metrics.request(if got.is_ok() { 200 } else { 0 }, started.elapsed());
            let failure = match got {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            match self.wait_after(&failure, attempt, rng) {
                Ok(wait) if attempt < attempts => {
                    Metrics::add(&self.metrics.retries, 1);
                    on_retry(attempt, failure.message(), wait);
                    tokio::time::sleep(wait).await;
                }
                Ok(_) => return Err((attempt, failure.message().to_string())),
                Err(m) => return Err((attempt, m)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_files_as_sha256sum_writes_them() {
        let h = "ab".repeat(32);
        assert_eq!(parse_checksum(&format!("{h}  x.zip\n"), "x.zip").unwrap(), h);
        assert_eq!(parse_checksum(&format!("{}  *x.zip\r\n", h.to_uppercase()), "x.zip").unwrap(), h);
        assert_eq!(parse_checksum(&format!("\n{h}\n"), "x.zip").unwrap(), h);
        assert!(parse_checksum(&format!("{h}  y.zip"), "x.zip").unwrap_err().contains("names `y.zip`"));
        assert!(parse_checksum("abc  x.zip", "x.zip").is_err());
        assert!(parse_checksum("", "x.zip").is_err());
    }

    #[test]
    fn keys_that_cannot_be_mirror_files_are_refused() {
        for ok in ["a", "a/b.zip", "data/spot/x-1s-2024-01-01.zip", "a b/ü"] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "./a", "a/../b", "x.zip.partial", ".sluice/manifest.jsonl", "a\\b"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
