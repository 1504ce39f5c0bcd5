//! S3 test helpers: [`MotoServer`] (moto's S3 server with one bucket, seeded in-process),
//! [`FaultProxy`] (a std-only HTTP proxy in front of it that injects faults by rule and logs every
//! request) and [`http_get`] / [`http_request`] (a tiny HTTP/1.1 client over `TcpStream`).
//!
//! moto lives in its own venv (`scripts/moto-venv.sh`: `moto[s3]==5.2.6 flask flask-cors` under
//! `~/.cache/sluice/venv/moto`, or `$SLUICE_MOTO_PYTHON`). Without it, `MotoServer::start` returns
//! `None` (the test skips), except under `CI=true`, where it panics.
//!
//! moto facts worth knowing (5.2.6): path-style URLs (`/<bucket>/<key>`, `/<bucket>?list-type=2`);
//! every response has `Content-Length` and `Connection: close` (no keep-alive, never chunked); the
//! `ETag` is the quoted MD5 of the bytes; `If-Match` works (412) but `If-Range` is ignored; anonymous
//! `HEAD` of an object is 403 even on a public bucket; with `INITIAL_NO_AUTH_ACTION_COUNT=0` an
//! unsigned request makes moto answer 500.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Python driver around moto's `ThreadedMotoServer`, written to the server's temp dir.
const DRIVER: &str = include_str!("moto_driver.py");

/// How long one blocking socket call of the proxy waits before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(50);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// moto's S3 server on `127.0.0.1:<port>` with one bucket, killed when dropped. Objects are put
/// and deleted through moto's backend in the driver process (no HTTP, fast: 20,000 keys in < 1 s).
pub struct MotoServer {
    child: Child,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    port: u16,
    bucket: String,
    keys: Option<(String, String)>,
    python: PathBuf,
    dir: tempfile::TempDir,
}

/// The venv's interpreter: `$SLUICE_MOTO_PYTHON`, else `~/.cache/sluice/venv/moto/bin/python`.
fn moto_python() -> Option<PathBuf> {
    let p = match std::env::var_os("SLUICE_MOTO_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache/sluice/venv/moto/bin/python"),
    };
    p.is_file().then_some(p)
}

fn moto_missing(what: &str) -> Option<MotoServer> {
    crate::missing(what, "scripts/moto-venv.sh")
}

impl MotoServer {
    /// A server whose bucket is public: a bucket policy allows anonymous `s3:GetObject` and
    /// `s3:ListBucket` (moto refuses an anonymous GET otherwise). Signatures are not checked, so
    /// signed requests with any keys work too. `None` when moto is not installed (outside CI).
    pub fn start(bucket: &str) -> Option<MotoServer> {
        Self::start_inner(bucket, false)
    }

    /// A server that checks SigV4 signatures (`INITIAL_NO_AUTH_ACTION_COUNT=0`) against an IAM
    /// user with full S3 access ([`access_key`](Self::access_key), [`secret_key`](Self::secret_key)).
    /// The bucket has no policy. Anonymous requests get a 500 from moto (its own bug), so tests of
    /// anonymous access need a [`start`](Self::start) server.
    pub fn start_with_auth(bucket: &str) -> Option<MotoServer> {
        Self::start_inner(bucket, true)
    }

    fn start_inner(bucket: &str, auth: bool) -> Option<MotoServer> {
        assert!((3..=63).contains(&bucket.len()), "S3 bucket names have 3 to 63 characters: {bucket:?}");
        let Some(python) = moto_python() else {
            return moto_missing(
                "moto's Python ($SLUICE_MOTO_PYTHON or ~/.cache/sluice/venv/moto/bin/python) is missing",
            );
        };
        let dir = tempfile::Builder::new().prefix("slmoto").tempdir().expect("a temp dir");
        let script = dir.path().join("moto_driver.py");
        std::fs::write(&script, DRIVER).expect("write the moto driver");
        let log = std::fs::File::create(dir.path().join("driver.log")).expect("create the driver log");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(bucket)
            .arg(if auth { "--auth" } else { "--public" })
            .env_remove("INITIAL_NO_AUTH_ACTION_COUNT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
        let stdin = child.stdin.take().expect("driver stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("driver stdout"));
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let log = || std::fs::read_to_string(dir.path().join("driver.log")).unwrap_or_default();
        let hello: serde_json::Value = match read {
            Ok(n) if n > 0 => serde_json::from_str(&line).unwrap_or_else(|e| {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto driver said {line:?} ({e}); its log:\n{}", log())
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto driver ended before it started; its log:\n{}", log());
            }
        };
        if let Some(err) = hello.get("error") {
            let _ = child.wait();
            if err == "import" {
                return moto_missing(&format!(
                    "moto is not importable by {}: {}",
                    python.display(),
                    hello["detail"].as_str().unwrap_or_default()
                ));
            }
            panic!("moto driver failed: {hello}; its log:\n{}", log());
        }
        let port = hello["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("a port in the driver's hello");
        let keys = auth.then(|| {
            let key = |k: &str| hello[k].as_str().expect("keys in the driver's hello").to_string();
            (key("access_key"), key("secret_key"))
        });
        let io = Mutex::new((stdin, stdout));
        Some(MotoServer { child, io, port, bucket: bucket.to_string(), keys, python, dir })
    }

    /// `http://127.0.0.1:<port>` (path-style: objects are at `<endpoint>/<bucket>/<key>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The region the bucket was made in (`us-east-1`), for signing.
    pub fn region(&self) -> &str {
        "us-east-1"
    }

    /// `/<bucket>/<key>`: the request path of an object (for a key that needs no
    /// percent-encoding), as [`PathMatch::Exact`] expects it.
    pub fn object_path(&self, key: &str) -> String {
        format!("/{}/{key}", self.bucket)
    }

    /// The IAM user's access key id of a [`start_with_auth`](Self::start_with_auth) server;
    /// `testing` for a public one (which checks no signature).
    pub fn access_key(&self) -> &str {
        self.keys.as_ref().map_or("testing", |k| &k.0)
    }

    /// The IAM user's secret key of a [`start_with_auth`](Self::start_with_auth) server;
    /// `testing` for a public one (which checks no signature).
    pub fn secret_key(&self) -> &str {
        self.keys.as_ref().map_or("testing", |k| &k.1)
    }

    /// The venv's interpreter the server runs on (it has boto3 too).
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Send one command line to the driver; returns the text after `ok`. Panics on `error ...`.
    fn command(&self, cmd: serde_json::Value) -> String {
        let mut io = lock(&self.io);
        let (stdin, stdout) = &mut *io;
        writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()).unwrap_or_else(|e| panic!("moto driver input: {e}"));
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let log = std::fs::read_to_string(self.dir.path().join("driver.log")).unwrap_or_default();
            panic!("moto driver ended during {cmd}; its log:\n{log}");
        }
        let line = line.trim_end();
        match line.strip_prefix("ok") {
            Some(rest) => rest.trim_start().to_string(),
            None => panic!("moto driver: {cmd} failed: {line}"),
        }
    }

    /// Put an object; returns its ETag as S3 shows it (`"<md5 hex>"`, with the quotes).
    pub fn put_bytes(&self, key: &str, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.command(serde_json::json!({"op": "put_bytes", "key": key, "hex": hex}))
    }

    /// Put an object with the bytes of a file; returns its ETag (`"<md5 hex>"`).
    pub fn put_file(&self, key: &str, path: &Path) -> String {
        let path = std::path::absolute(path).expect("an absolute path");
        let path = path.to_str().expect("a UTF-8 path");
        self.command(serde_json::json!({"op": "put_file", "key": key, "path": path}))
    }

    /// Delete an object (a missing key is no error, as in S3).
    pub fn delete(&self, key: &str) {
        self.command(serde_json::json!({"op": "delete", "key": key}));
    }

    /// Put `n` objects `{prefix}{i:06}.zip` (`i` in `0..n`) of 10 bytes each (`xxxxxxxxxx`).
    pub fn seed_many(&self, prefix: &str, n: usize) {
        self.command(serde_json::json!({"op": "seed_many", "prefix": prefix, "n": n}));
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client.

/// A response read by [`http_request`]: the body is what arrived before the server closed (or a
/// read failed), so a short body is visible as such.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Why reading the body stopped, when it was not a clean end (a reset, a timeout).
    pub error: Option<String>,
}

impl HttpResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body ended cleanly with as many bytes as `Content-Length` said (when it said).
    pub fn is_complete(&self) -> bool {
        self.error.is_none() && self.content_length().is_none_or(|n| n == self.body.len())
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// `GET path_and_query` from `addr_or_url` (`127.0.0.1:9000` or `http://127.0.0.1:9000[/]`) with
/// `Connection: close` and the extra headers; reads until the server closes (or `Content-Length`
/// bytes came). 30 s read timeout. Panics when there is no response head; a body cut short is in
/// [`HttpResponse::error`] / [`HttpResponse::is_complete`].
pub fn http_get(addr_or_url: &str, path_and_query: &str, extra_headers: &[(&str, &str)]) -> HttpResponse {
    http_request("GET", addr_or_url, path_and_query, extra_headers, &[], Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("GET {addr_or_url}{path_and_query}: {e}"))
}

/// One request like [`http_get`], any method, with a body (sent with `Content-Length`) and a
/// timeout for each read. Errors only when no response head arrived; chunked bodies are not
/// decoded (moto never sends them).
pub fn http_request(
    method: &str,
    addr_or_url: &str,
    path_and_query: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let host = addr_or_url.strip_prefix("http://").unwrap_or(addr_or_url);
    let host = host.split('/').next().unwrap_or(host);
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path_and_query} HTTP/1.1\r\n");
    if !extra_headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    let never = || true;
    let (head, mut rest) = read_head(&mut stream, &never)?;
    let status = head.status().ok_or_else(|| bad_data(format!("not an HTTP status line: {:?}", head.first)))?;
    let length = if method == "HEAD" || no_body(status) { Some(0) } else { head.content_length() };
    let error = read_body(&mut stream, &mut rest, length, &never).err().map(|e| e.to_string());
    Ok(HttpResponse { status, headers: head.headers, body: rest, error })
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 message heads, shared by the client and the proxy.

/// A request or response head: its first line and its headers, as they came.
struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }

    /// The status of a response's first line (`HTTP/1.1 200 OK`).
    fn status(&self) -> Option<u16> {
        let mut parts = self.first.split_whitespace();
        parts.next().filter(|v| v.starts_with("HTTP/"))?;
        parts.next()?.parse().ok()
    }
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn no_body(status: u16) -> bool {
    status / 100 == 1 || status == 204 || status == 304
}

/// A timeout (or would-block) of a socket with a read/write timeout.
fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// One `read`, retrying interruptions, and timeouts until `give_up()`.
fn read_some(s: &mut TcpStream, buf: &mut [u8], give_up: &dyn Fn() -> bool) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) && !give_up() => {}
            r => return r,
        }
    }
}

/// `write_all`, retrying interruptions, and timeouts until `give_up()`.
fn write_all(s: &mut TcpStream, mut data: &[u8], give_up: &dyn Fn() -> bool) -> io::Result<()> {
    while !data.is_empty() {
        match s.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) && !give_up() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read a message head (up to the blank line, at most 64 KiB); returns it and the bytes read past
/// it (the start of the body).
fn read_head(s: &mut TcpStream, give_up: &dyn Fn() -> bool) -> io::Result<(Head, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(bad_data("a message head over 64 KiB".into()));
        }
        let n = read_some(s, &mut chunk, give_up)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the end of the message head"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let rest = buf.split_off(end + 4);
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Ok((Head { first, headers }, rest))
}

/// Read a body into `body` (which holds its start): `length` bytes, or until the peer closes.
fn read_body(
    s: &mut TcpStream,
    body: &mut Vec<u8>,
    length: Option<usize>,
    give_up: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut chunk = [0u8; 64 * 1024];
    while length.is_none_or(|n| body.len() < n) {
        let n = read_some(s, &mut chunk, give_up)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if let Some(n) = length {
        body.truncate(n);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The fault proxy.

/// Which requests a [`Rule`] applies to.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The request path, without the query and as sent (percent-encoding included), is exactly
    /// this: `/bucket/data/x.zip`.
    Exact(String),
    /// The request target (path and query) contains this.
    Contains(String),
    /// A ListObjectsV2 request: the path is one segment (`/bucket`) and the query has `list-type`.
    List,
    /// Every request.
    Any,
}

impl PathMatch {
    fn matches(&self, path: &str, query: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Contains(s) => path.contains(s.as_str()) || format!("{path}?{query}").contains(s.as_str()),
            PathMatch::List => {
                path.len() > 1 && !path[1..].contains('/') && query.split('&').any(|p| p.starts_with("list-type="))
            }
            PathMatch::Any => true,
        }
    }
}

/// What the proxy does to a request a [`Rule`] picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer this status with a small S3-style XML error body (`<Error><Code>…`), without
    /// asking upstream.
    Status(u16),
    /// Answer 429 with `Retry-After: <retry_after>` (seconds or an HTTP-date), without asking
    /// upstream.
    TooMany { retry_after: String },
    /// Upstream's status and headers unchanged, the first `n` body bytes, then a clean close (FIN).
    DropAfter(usize),
    /// As [`DropAfter`](Action::DropAfter), then a reset (RST: `SO_LINGER` 0). The client may see
    /// the reset before all `n` bytes.
    ResetAfter(usize),
    /// `Content-Length` kept, body short: upstream's head, `n` body bytes, then a clean close
    /// (the same bytes on the wire as [`DropAfter`](Action::DropAfter)).
    Truncate(usize),
    /// `Content-Length` rewritten to `n` and `n` body bytes sent: a well-formed but short response
    /// (`Content-Range` is left as upstream sent it).
    ShortConsistent(usize),
    /// Upstream's response with the body byte at `offset` flipped (XOR 0xFF), when there is one.
    Corrupt { offset: usize },
    /// Wait this long, then forward as usual.
    Delay(Duration),
    /// Upstream's head, then nothing until the client hangs up or the proxy is dropped.
    Stall,
}

/// A fault: `action` on the `attempts` (1-based) of requests with `method` (`*`: any) whose path
/// matches `path`. Attempts are counted per rule, from when it was added, and per exact method
/// and target (path and query): `1..=2` fails the first two requests for each key, and each
/// ListObjectsV2 page (its continuation token differs) counts apart. The first rule (in the order
/// added) whose attempts hold the request's count acts; every matching rule counts.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: String,
    pub path: PathMatch,
    pub attempts: RangeInclusive<u32>,
    pub action: Action,
}

impl Rule {
    /// A rule for `GET` requests.
    pub fn get(path: PathMatch, attempts: RangeInclusive<u32>, action: Action) -> Rule {
        Rule { method: "GET".into(), path, attempts, action }
    }
}

/// One request the proxy served.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target: path and query.
    pub path: String,
    /// The `Range` header.
    pub range: Option<String>,
    /// The `If-Match` header.
    pub if_match: Option<String>,
    /// Whether it had an `Authorization` header.
    pub authorization: bool,
    /// The status the client got (502 when upstream could not be reached).
    pub status: u16,
    /// The rule's action, as `Debug` shows it (`DropAfter(5000)`), or `None`: passed through.
    pub action: Option<String>,
    /// 1-based: the how-manyth request with this method and target since the start or the last
    /// [`FaultProxy::clear_seen`].
    pub attempt: u32,
    /// When its head had arrived.
    pub at: Instant,
}

struct RuleState {
    rule: Rule,
    counts: HashMap<(String, String), u32>,
}

#[derive(Default)]
struct Log {
    seen: Vec<Seen>,
    counts: HashMap<(String, String), u32>,
}

struct Shared {
    upstream: u16,
    stop: AtomicBool,
    rules: Mutex<Vec<RuleState>>,
    log: Mutex<Log>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Count the request against every rule it matches; the action of the first one in range.
    fn pick(&self, method: &str, path: &str, query: &str, target: &str) -> Option<Action> {
        let mut chosen = None;
        for r in lock(&self.rules).iter_mut() {
            if (r.rule.method == "*" || r.rule.method.eq_ignore_ascii_case(method)) && r.rule.path.matches(path, query)
            {
                let n = r.counts.entry((method.to_string(), target.to_string())).or_insert(0);
                *n += 1;
                if chosen.is_none() && r.rule.attempts.contains(n) {
                    chosen = Some(r.rule.action.clone());
                }
            }
        }
        chosen
    }
}

/// A connection being served: counted in `in_flight` until released (just before the last byte
/// goes out, so a client cannot start its next request while this one still counts) or dropped.
struct InFlight<'a>(&'a Shared, bool);

impl InFlight<'_> {
    fn release(&mut self) {
        if !self.1 {
            self.1 = true;
            self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// An HTTP/1.1 proxy on `127.0.0.1:<port>` in front of `127.0.0.1:<upstream>` that injects
/// faults by [`Rule`] and logs every request ([`Seen`]). One thread per connection, one request
/// per connection (answered with `Connection: close`); the request goes upstream with
/// `Connection: close` and its `Host` header unchanged (so SigV4 signatures made for the proxy
/// still hold), the whole response is read, then altered as the rule says. Threads are joined
/// when the proxy is dropped.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listen on a free port of 127.0.0.1, forwarding to `127.0.0.1:<upstream_port>`.
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared {
            upstream: upstream_port,
            stop: AtomicBool::new(false),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Log::default()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("fault-proxy-{port}"))
            .spawn(move || accept_loop(&listener, &s))
            .expect("start the proxy thread");
        FaultProxy { port, shared, accept: Some(accept) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Add a rule; it applies to requests whose head arrives from now on.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(RuleState { rule, counts: HashMap::new() });
    }

    /// Remove every rule (with its attempt counts).
    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request so far (since the last [`clear_seen`](Self::clear_seen)), in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        let mut seen = lock(&self.shared.log).seen.clone();
        seen.sort_by_key(|s| s.at);
        seen
    }

    /// Forget the log and its attempt counts (not the rules' counts).
    pub fn clear_seen(&self) {
        *lock(&self.shared.log) = Log::default();
    }

    /// The most connections served at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Connections being served now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop up.
        let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let Ok(stream) = conn else {
            std::thread::sleep(POLL);
            continue;
        };
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let s = shared.clone();
        match std::thread::Builder::new().name("fault-proxy-conn".into()).spawn(move || {
            let mut guard = InFlight(&s, false);
            serve(&s, stream, &mut guard);
        }) {
            Ok(t) => conns.push(t),
            Err(_) => {
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let (done, live): (Vec<_>, Vec<_>) = conns.into_iter().partition(|t| t.is_finished());
        done.into_iter().for_each(|t| drop(t.join()));
        conns = live;
    }
    conns.into_iter().for_each(|t| drop(t.join()));
}

/// An upstream response, read whole.
struct Upstream {
    head: Head,
    status: u16,
    body: Vec<u8>,
}

fn serve(shared: &Shared, mut client: TcpStream, guard: &mut InFlight) {
    let stop = || shared.stopped();
    let _ = client.set_read_timeout(Some(POLL));
    let _ = client.set_write_timeout(Some(POLL));
    let _ = client.set_nodelay(true);
    let Ok((req, mut body)) = read_head(&mut client, &stop) else { return };
    let at = Instant::now();
    let (method, target) = {
        let mut parts = req.first.split_whitespace();
        (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string())
    };
    if read_body(&mut client, &mut body, Some(req.content_length().unwrap_or(0)), &stop).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let action = shared.pick(&method, path, query, &target);
    let attempt = {
        let mut log = lock(&shared.log);
        let n = log.counts.entry((method.clone(), target.clone())).or_insert(0);
        *n += 1;
        *n
    };
    let record = |status: u16| {
        lock(&shared.log).seen.push(Seen {
            method: method.clone(),
            path: target.clone(),
            range: req.header("range").map(str::to_string),
            if_match: req.header("if-match").map(str::to_string),
            authorization: req.header("authorization").is_some(),
            status,
            action: action.as_ref().map(|a| format!("{a:?}")),
            attempt,
            at,
        });
    };
    match &action {
        Some(Action::Status(code)) => {
            record(*code);
            return respond_error(&mut client, guard, *code, &[], &stop);
        }
        Some(Action::TooMany { retry_after }) => {
            record(429);
            return respond_error(&mut client, guard, 429, &[("Retry-After", retry_after.as_str())], &stop);
        }
        Some(Action::Delay(d)) => {
            let until = Instant::now() + *d;
            while Instant::now() < until && !stop() {
                std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
            }
        }
        _ => {}
    }
    let up = match forward(shared, &method, &target, &req, &body) {
        Ok(up) => up,
        Err(e) => {
            record(502);
            let msg = format!("upstream 127.0.0.1:{}: {e}", shared.upstream);
            return respond_error(&mut client, guard, 502, &[("X-Proxy-Error", &msg)], &stop);
        }
    };
    record(up.status);
    let mut body = up.body;
    let (length, cut) = match &action {
        Some(Action::DropAfter(n) | Action::ResetAfter(n) | Action::Truncate(n)) => (None, (*n).min(body.len())),
        Some(Action::ShortConsistent(n)) => (Some((*n).min(body.len())), (*n).min(body.len())),
        Some(Action::Corrupt { offset }) => {
            if let Some(b) = body.get_mut(*offset) {
                *b ^= 0xFF;
            }
            (None, body.len())
        }
        _ => (None, body.len()),
    };
    let mut out = response_head(&up.head, length);
    if action == Some(Action::Stall) {
        if write_all(&mut client, &out, &stop).is_ok() {
            // Until the client hangs up (read: 0 or an error) or the proxy stops.
            let mut buf = [0u8; 1024];
            while matches!(read_some(&mut client, &mut buf, &stop), Ok(n) if n > 0) {}
        }
        return;
    }
    out.extend_from_slice(&body[..cut]);
    if send(&mut client, guard, &out, &stop).is_err() {
        return;
    }
    if matches!(action, Some(Action::ResetAfter(_))) {
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
        return;
    }
    close(&mut client);
}

/// Write `out`, releasing the in-flight count just before its last byte.
fn send(client: &mut TcpStream, guard: &mut InFlight, out: &[u8], stop: &dyn Fn() -> bool) -> io::Result<()> {
    let (most, last) = out.split_at(out.len().saturating_sub(1));
    write_all(client, most, stop)?;
    guard.release();
    write_all(client, last, stop)
}

/// A clean close: FIN, then wait (up to 2 s) for the client to close its side, so that no unread
/// input turns the close into a reset.
fn close(client: &mut TcpStream) {
    let _ = client.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 1024];
    let give_up = || Instant::now() >= until;
    while matches!(read_some(client, &mut buf, &give_up), Ok(n) if n > 0) {}
}

/// Upstream's head for the client: `Connection: close`, and `Content-Length` rewritten to
/// `length` when given.
fn response_head(up: &Head, length: Option<usize>) -> Vec<u8> {
    let mut s = format!("{}\r\n", up.first);
    for (k, v) in &up.headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        match length {
            Some(n) if k.eq_ignore_ascii_case("content-length") => s.push_str(&format!("{k}: {n}\r\n")),
            _ => s.push_str(&format!("{k}: {v}\r\n")),
        }
    }
    s.push_str("Connection: close\r\n\r\n");
    s.into_bytes()
}

/// An S3-style error answer made by the proxy, then a clean close.
fn respond_error(
    client: &mut TcpStream,
    guard: &mut InFlight,
    status: u16,
    extra: &[(&str, &str)],
    stop: &dyn Fn() -> bool,
) {
    let (reason, code) = match status {
        400 => ("Bad Request", "BadRequest"),
        403 => ("Forbidden", "AccessDenied"),
        404 => ("Not Found", "NoSuchKey"),
        408 => ("Request Timeout", "RequestTimeout"),
        412 => ("Precondition Failed", "PreconditionFailed"),
        429 => ("Too Many Requests", "TooManyRequests"),
        500 => ("Internal Server Error", "InternalError"),
        502 => ("Bad Gateway", "BadGateway"),
        503 => ("Service Unavailable", "SlowDown"),
        504 => ("Gateway Timeout", "GatewayTimeout"),
        _ => ("Injected", "InjectedFault"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the \
         sluice fault proxy</Message><RequestId>fault-proxy</RequestId></Error>"
    );
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {}\r\n", v.replace(['\r', '\n'], " ")));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    if send(client, guard, head.as_bytes(), stop).is_ok() {
        close(client);
    }
}

/// Send the request to upstream with `Connection: close` and read the whole response.
fn forward(shared: &Shared, method: &str, target: &str, req: &Head, body: &[u8]) -> io::Result<Upstream> {
    let stop = || shared.stopped();
    let addr = SocketAddr::from(([127, 0, 0, 1], shared.upstream));
    let mut up = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    up.set_read_timeout(Some(POLL))?;
    up.set_write_timeout(Some(POLL))?;
    up.set_nodelay(true)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in &req.headers {
        let hop = ["connection", "keep-alive", "proxy-connection", "te", "upgrade"];
        if !hop.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    write_all(&mut up, &out, &stop)?;
    let (head, mut body) = read_head(&mut up, &stop)?;
    let status = head.status().ok_or_else(|| bad_data(format!("not an HTTP status line: {:?}", head.first)))?;
    let length = if method == "HEAD" || no_body(status) { Some(0) } else { head.content_length() };
    read_body(&mut up, &mut body, length, &stop)?;
    Ok(Upstream { head, status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts of every `<tag>…</tag>` in `xml`.
    fn xml_all(xml: &str, tag: &str) -> Vec<String> {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut out = Vec::new();
        let mut rest = xml;
        while let Some(i) = rest.find(&open) {
            let from = &rest[i + open.len()..];
            let Some(j) = from.find(&close) else { break };
            out.push(from[..j].to_string());
            rest = &from[j + close.len()..];
        }
        out
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn moto_lists_pages_and_serves_ranges() {
        let Some(moto) = MotoServer::start("tk-list") else { return };
        let ep = moto.endpoint();
        moto.seed_many("data/x/", 12);
        moto.seed_many("other/", 3);
        let mut keys = Vec::new();
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = "/tk-list?list-type=2&max-keys=5&prefix=data/x/".to_string();
            if let Some(t) = &token {
                q.push_str(&format!("&continuation-token={t}"));
            }
            let r = http_get(&ep, &q, &[]);
            assert_eq!(r.status, 200, "{}", r.text());
            let text = r.text();
            let page = xml_all(&text, "Key");
            pages.push(page.len());
            keys.extend(page);
            token = xml_all(&text, "NextContinuationToken").pop();
            let truncated = xml_all(&text, "IsTruncated") == ["true"];
            assert_eq!(truncated, token.is_some(), "{text}");
            if token.is_none() {
                break;
            }
        }
        assert_eq!(pages, [5, 5, 2]);
        let want: Vec<String> = (0..12).map(|i| format!("data/x/{i:06}.zip")).collect();
        assert_eq!(keys, want);

        let bytes = pattern(1000);
        let etag = moto.put_bytes("obj/a.bin", &bytes);
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34, "{etag}");
        let r = http_get(&ep, "/tk-list/obj/a.bin", &[]);
        assert_eq!((r.status, r.header("etag")), (200, Some(etag.as_str())));
        assert_eq!(r.body, bytes);
        assert!(r.is_complete());
        let r = http_get(&ep, "/tk-list/obj/a.bin", &[("Range", "bytes=100-199")]);
        assert_eq!((r.status, r.header("content-range")), (206, Some("bytes 100-199/1000")));
        assert_eq!(r.body, &bytes[100..200]);
        let r = http_get(&ep, "/tk-list/obj/a.bin", &[("Range", "bytes=900-"), ("If-Match", &etag)]);
        assert_eq!((r.status, r.body.as_slice()), (206, &bytes[900..]));
        let r = http_get(&ep, "/tk-list/obj/a.bin", &[("Range", "bytes=900-"), ("If-Match", "\"0123\"")]);
        assert_eq!(r.status, 412, "{}", r.text());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        std::fs::write(&file, b"from a file").unwrap();
        let etag2 = moto.put_file("obj/f.bin", &file);
        assert_ne!(etag2, etag);
        assert_eq!(http_get(&ep, "/tk-list/obj/f.bin", &[]).body, b"from a file");
        moto.delete("obj/f.bin");
        let r = http_get(&ep, "/tk-list/obj/f.bin", &[]);
        assert_eq!(r.status, 404);
        assert!(r.text().contains("<Code>NoSuchKey</Code>"), "{}", r.text());
    }

    #[test]
    fn moto_with_auth_has_keys_and_refuses_anonymous() {
        let Some(moto) = MotoServer::start_with_auth("tk-auth") else { return };
        assert!(!moto.access_key().is_empty() && moto.access_key() != "testing");
        assert!(!moto.secret_key().is_empty() && moto.secret_key() != "testing");
        moto.put_bytes("k", b"hello");
        let r = http_get(&moto.endpoint(), "/tk-auth?list-type=2", &[]);
        assert!(r.status >= 400, "anonymous listing answered {}", r.status);

        // SigV4 through the proxy: its Host header is kept, so signatures made for it hold.
        let proxy = FaultProxy::start(moto.port());
        let list = |secret: &str| {
            let script = "import sys, boto3\n\
                c = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],\n\
                    aws_secret_access_key=sys.argv[3], region_name='us-east-1')\n\
                try:\n    print([o['Key'] for o in c.list_objects_v2(Bucket='tk-auth')['Contents']])\n\
                except Exception as e:\n    print(e)\n";
            let out = Command::new(moto.python())
                .args(["-c", script, &proxy.endpoint(), moto.access_key(), secret])
                .output()
                .expect("run boto3");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(list(moto.secret_key()), "['k']");
        assert!(list("wrong").contains("SignatureDoesNotMatch"));
        let seen = proxy.seen();
        assert!(seen.iter().all(|s| s.authorization), "{seen:?}");
        assert_eq!(seen.iter().map(|s| s.status).collect::<Vec<_>>(), [200, 403]);
    }

    #[test]
    fn helpers_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MotoServer>();
        check::<FaultProxy>();
    }

    /// One moto for every proxy scenario (each with its own proxy).
    #[test]
    fn fault_proxy_scenarios() {
        let Some(moto) = MotoServer::start("tk-proxy") else { return };
        let bytes = pattern(10_000);
        let etag = moto.put_bytes("data/x.zip", &bytes);
        moto.seed_many("list/", 7);
        let key = moto.object_path("data/x.zip");
        let exact = || PathMatch::Exact(key.clone());

        // Pass-through: same as direct, and logged.
        let proxy = FaultProxy::start(moto.port());
        let ep = proxy.endpoint();
        let r = http_get(&ep, &key, &[]);
        assert_eq!((r.status, r.header("etag"), r.header("connection")), (200, Some(etag.as_str()), Some("close")));
        assert_eq!(r.body, bytes);
        let r = http_get(&ep, "/tk-proxy?list-type=2&prefix=list/", &[]);
        assert_eq!(xml_all(&r.text(), "Key").len(), 7);
        let seen = proxy.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!((seen[0].method.as_str(), seen[0].path.as_str(), seen[0].status), ("GET", key.as_str(), 200));
        assert_eq!((seen[0].action.as_ref(), seen[0].attempt, seen[0].authorization), (None, 1, false));
        assert_eq!(seen[1].path, "/tk-proxy?list-type=2&prefix=list/");
        drop(proxy);

        // DropAfter: upstream head, 100 bytes, FIN; only on attempt 1.
        let proxy = FaultProxy::start(moto.port());
        proxy.add_rule(Rule::get(exact(), 1..=1, Action::DropAfter(100)));
        let r = http_get(&proxy.endpoint(), &key, &[]);
        assert_eq!((r.status, r.content_length(), r.body.as_slice()), (200, Some(10_000), &bytes[..100]));
        assert!(r.error.is_none() && !r.is_complete());
        let r = http_get(&proxy.endpoint(), &key, &[]);
        assert!(r.is_complete() && r.body == bytes);
        let actions: Vec<_> = proxy.seen().into_iter().map(|s| (s.attempt, s.action)).collect();
        assert_eq!(actions, [(1, Some("DropAfter(100)".into())), (2, None)]);

        // Truncate: the same on the wire.
        proxy.clear_rules();
        proxy.add_rule(Rule::get(exact(), 1..=1, Action::Truncate(300)));
        let r = http_get(&proxy.endpoint(), &key, &[]);
        assert_eq!((r.content_length(), r.body.as_slice()), (Some(10_000), &bytes[..300]));

        // ResetAfter: a reset (or at least a short body).
        proxy.clear_rules();
        proxy.add_rule(Rule::get(exact(), 1..=1, Action::ResetAfter(100)));
        let r = http_get(&proxy.endpoint(), &key, &[]);
        assert!(!r.is_complete() && r.body.len() <= 100, "{:?} {}", r.error, r.body.len());
        assert!(r.error.as_deref().is_some_and(|e| e.contains("reset")), "{:?}", r.error);

        // ShortConsistent: a well-formed, short response.
        proxy.clear_rules();
        proxy.add_rule(Rule::get(exact(), 1..=1, Action::ShortConsistent(300)));
        let r = http_get(&proxy.endpoint(), &key, &[]);
        assert_eq!((r.status, r.content_length(), r.body.as_slice()), (200, Some(300), &bytes[..300]));
        assert!(r.is_complete());

        // Corrupt: one byte flipped.
        proxy.clear_rules();
        proxy.add_rule(Rule::get(exact(), 1..=1, Action::Corrupt { offset: 10 }));
        let r = http_get(&proxy.endpoint(), &key, &[]);
        assert!(r.is_complete());
        let diff: Vec<usize> = (0..bytes.len()).filter(|&i| r.body[i] != bytes[i]).collect();
        assert_eq!((diff, r.body[10]), (vec![10], !bytes[10]));

        // Status(500) on attempt 1 only, then pass-through; Authorization noticed.
        let proxy = FaultProxy::start(moto.port());
        proxy.add_rule(Rule::get(exact(), 1..=1, Action::Status(500)));
        let auth =
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
        let r = http_get(&proxy.endpoint(), &key, &[("Authorization", auth)]);
        assert_eq!((r.status, r.header("connection")), (500, Some("close")));
        assert!(r.text().contains("<Code>InternalError</Code>"), "{}", r.text());
        let r = http_get(&proxy.endpoint(), &key, &[("Range", "bytes=5000-"), ("If-Match", &etag)]);
        assert_eq!((r.status, r.body.as_slice()), (206, &bytes[5000..]));
        let seen = proxy.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].status, seen[0].action.as_deref(), seen[0].authorization),
            (500, Some("Status(500)"), true)
        );
        assert_eq!((seen[1].status, seen[1].action.as_deref(), seen[1].attempt), (206, None, 2));
        assert_eq!((seen[1].range.as_deref(), seen[1].if_match.as_deref()), (Some("bytes=5000-"), Some(etag.as_str())));
        proxy.clear_seen();
        assert!(proxy.seen().is_empty());

        // TooMany: 429 with Retry-After, on list requests only (each page counted apart).
        proxy.clear_rules();
        proxy.add_rule(Rule::get(PathMatch::List, 1..=1, Action::TooMany { retry_after: "1".into() }));
        let list = "/tk-proxy?list-type=2&prefix=list/";
        let r = http_get(&proxy.endpoint(), list, &[]);
        assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
        assert_eq!(http_get(&proxy.endpoint(), list, &[]).status, 200);
        assert_eq!(http_get(&proxy.endpoint(), &key, &[]).status, 200);
        let r = http_get(&proxy.endpoint(), &format!("{list}&max-keys=2"), &[]);
        assert_eq!(r.status, 429);

        // Contains and any method; Delay.
        proxy.clear_rules();
        proxy.add_rule(Rule {
            method: "*".into(),
            path: PathMatch::Contains("x.zip".into()),
            attempts: 1..=1,
            action: Action::Delay(Duration::from_millis(300)),
        });
        let t = Instant::now();
        let r = http_get(&proxy.endpoint(), &key, &[]);
        assert!(r.is_complete() && t.elapsed() >= Duration::from_millis(300));

        // Stall: head, then nothing; the client times out, the proxy drops promptly.
        proxy.clear_rules();
        proxy.add_rule(Rule::get(exact(), 1..=1, Action::Stall));
        let r = http_request("GET", &proxy.endpoint(), &key, &[], &[], Duration::from_millis(300)).unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0));
        assert!(r.error.is_some());
        let _held = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap(); // an idle client
        let t = Instant::now();
        drop(proxy);
        assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());

        // max_in_flight: three delayed requests at once.
        let proxy = FaultProxy::start(moto.port());
        proxy.add_rule(Rule::get(PathMatch::Any, 1..=3, Action::Delay(Duration::from_millis(300))));
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| assert_eq!(http_get(&proxy.endpoint(), &key, &[]).status, 200));
            }
        });
        assert_eq!((proxy.max_in_flight(), proxy.in_flight()), (3, 0));
        for _ in 0..3 {
            assert_eq!(http_get(&proxy.endpoint(), &key, &[]).status, 200);
        }
        assert_eq!(proxy.max_in_flight(), 3);

        // Upstream gone: 502.
        let port = moto.port();
        drop(moto);
        let proxy = FaultProxy::start(port);
        assert_eq!(http_get(&proxy.endpoint(), &key, &[]).status, 502);
    }
}
