//! Real servers for tests, started by the tests themselves and stopped when dropped.
//!
//! Postgres comes from Debian's `postgresql-15` (`/usr/lib/postgresql/<v>/bin`, or
//! `$SLUICE_PG_BINDIR`, or `PATH`). `initdb` refuses root, so as root every server command runs
//! as the `postgres` user (`runuser`). Each server has a private port, socket directory and data
//! directory, `fsync=off`, and password (scram) authentication over TCP, so a wrong password is
//! really refused. Without the binaries, `PgServer::start` returns `None` (the test skips),
//! except under `CI=true`, where it panics: CI installs them (`scripts/install-services.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod kafka;
mod s3;
pub use kafka::TansuServer;
pub use s3::{Action, FaultProxy, HttpResponse, MotoServer, PathMatch, Rule, Seen, http_get, http_request};

/// The password of the `postgres` user of every test server.
pub const PG_PASSWORD: &str = "sluice-test-pw-7f3a";

pub struct PgServer {
    bindir: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    stopped: bool,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pg_bindir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SLUICE_PG_BINDIR") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let out = Command::new("sh").args(["-c", "command -v pg_ctl"]).output().ok()?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        p.parent().map(Path::to_path_buf).filter(|d| d.join("initdb").is_file())
    })
}

/// A free TCP port on 127.0.0.1 (free when asked; a race with another process is possible and
/// shows as a start failure).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// What a test needs is not installed: under `CI=true` that fails the test (CI installs it with
/// `installer`); elsewhere the test is skipped, saying so.
pub(crate) fn missing<T>(what: &str, installer: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} under CI=true: {installer} installs it");
    }
    eprintln!("skipped: {what} ({installer} installs it)");
    None
}

impl PgServer {
    /// Start a fresh server, or `None` when Postgres is not installed (outside CI).
    pub fn start() -> Option<PgServer> {
        let Some(bindir) = pg_bindir() else {
            return missing("Postgres (initdb, pg_ctl) is not installed", "scripts/install-services.sh");
        };
        let dir = tempfile::Builder::new().prefix("slpg").tempdir_in("/tmp").expect("a temp dir");
        let root = is_root();
        run_ok(Command::new("chmod").args(["755"]).arg(dir.path()));
        if root {
            run_ok(Command::new("chown").arg("postgres:").arg(dir.path()));
        }
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PG_PASSWORD).expect("write the password file");
        if root {
            run_ok(Command::new("chown").arg("postgres:").arg(&pw));
        }
        let mut server = PgServer { bindir, dir, port: 0, stopped: true };
        let data = server.data();
        server.pg_cmd(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                &format!("--pwfile={}", pw.display()),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        // A port taken between asking and binding: try again with another.
        for attempt in 0..5 {
            server.port = free_port();
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c shared_buffers=32MB -c max_connections=60",
                server.port,
                server.dir.path().display()
            );
            let log = server.dir.path().join("log").display().to_string();
            let out = server.pg_output("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start"]);
            if out.status.success() {
                server.stopped = false;
                return Some(server);
            }
            eprintln!(
                "pg_ctl start failed (attempt {attempt}): {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("could not start Postgres");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let exe = self.bindir.join(program);
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args).stdin(Stdio::null());
        c
    }

    fn pg_output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args).output().unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    fn pg_cmd(&self, program: &str, args: &[&str]) {
        let out = self.pg_output(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `postgresql://postgres@127.0.0.1:<port>/<db>` (no password in it).
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Create a database for one test.
    pub fn create_db(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// Run SQL with `psql` over TCP; returns its unaligned, tuples-only output (`|` between
    /// columns, a line per row). Panics on an error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.try_psql(db, sql);
        match out {
            Ok(s) => s,
            Err(e) => panic!("psql {sql:?}: {e}"),
        }
    }

    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let psql = if self.bindir.join("psql").is_file() { self.bindir.join("psql") } else { PathBuf::from("psql") };
        let out = Command::new(psql)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .env("PGPASSWORD", PG_PASSWORD)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A `psql` session kept open (a transaction held across other work): statements run as
    /// they are sent, with [`Session::exec`] waiting until they did.
    pub fn session(&self, db: &str, application_name: &str) -> Session {
        let psql = if self.bindir.join("psql").is_file() { self.bindir.join("psql") } else { PathBuf::from("psql") };
        let mut child = Command::new(psql)
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string(), "-d", db])
            .env("PGPASSWORD", PG_PASSWORD)
            .env("PGAPPNAME", application_name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("psql starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Session { child, stdin, stdout, n: 0 }
    }

    /// Stop now, as a crash would (`-m immediate`).
    pub fn stop(&mut self) {
        if !self.stopped {
            let data = self.data();
            let _ = self.pg_output("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
            self.stopped = true;
        }
    }

    /// Start again after `stop`, on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        let data = self.data();
        let log = self.dir.path().join("log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c shared_buffers=32MB -c max_connections=60",
            self.port,
            self.dir.path().display()
        );
        self.pg_cmd("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &opts, "start"]);
        self.stopped = false;
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_ok(c: &mut Command) {
    let out = c.output().expect("run a setup command");
    assert!(out.status.success(), "{c:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// An open `psql` session ([`PgServer::session`]); killed when dropped.
pub struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    n: u32,
}

impl Session {
    /// Run `sql` and wait until it ran; returns what it printed.
    pub fn exec(&mut self, sql: &str) -> String {
        use std::io::{BufRead, Write};
        self.n += 1;
        let marker = format!("--done-{}--", self.n);
        writeln!(self.stdin, "{sql}\n\\echo {marker}").expect("psql takes input");
        self.stdin.flush().expect("psql takes input");
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("psql output") == 0 {
                panic!("psql session ended while running {sql:?} (output: {out})");
            }
            if line.trim_end() == marker {
                return out;
            }
            out.push_str(&line);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis server on a private port, without persistence (`--save ''`, no AOF), killed when
/// dropped. Debian's `redis-server`; without it, `start` returns `None` (the test skips),
/// except under `CI=true`, where it panics.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    password: Option<String>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Option<RedisServer> {
        Self::start_with(None)
    }

    /// A server that requires `password` (`--requirepass`).
    pub fn start_with_password(password: &str) -> Option<RedisServer> {
        Self::start_with(Some(password))
    }

    fn start_with(password: Option<&str>) -> Option<RedisServer> {
        let ok = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
        if !ok {
            return missing("redis-server is not installed", "scripts/install-services.sh");
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd.spawn().expect("redis-server starts");
        let server = RedisServer { child, port, password: password.map(str::to_string), _dir: dir };
        let started = std::time::Instant::now();
        while server.try_cli(&["PING"]).is_none_or(|r| r != "PONG") {
            assert!(started.elapsed() < std::time::Duration::from_secs(20), "redis-server did not answer on {port}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(server)
    }

    /// `redis://127.0.0.1:<port>/<db>` (no password in it).
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Run `redis-cli` with `args`; returns its raw output, trimmed. Panics on a failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"]);
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        let out = cmd.args(args).stdin(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
