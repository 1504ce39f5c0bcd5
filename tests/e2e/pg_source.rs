//! The Postgres source against a real server the test starts: every mapped type read into the
//! lake, values Arrow cannot hold set aside naming their column, a type without a mapping
//! refused naming its column, full loads split by key that skip unchanged spans, incremental
//! loads by a cursor that read a row committed late by a long transaction exactly once, and
//! SIGKILLs during extracts.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_testkit::{PG_PASSWORD, PgServer};

use crate::crash::Rng;
use crate::support::*;

fn sluice_pg(dir: &Path, args: &[&str]) -> std::process::Output {
    report(args, sluice().current_dir(dir).env("PGPASS", PG_PASSWORD).args(args).output().expect("sluice runs"))
}

/// A pipeline reading `source_keys` (indented source keys) from Postgres into `lake`.
fn pipeline(dir: &Path, url: &str, source_keys: &str, sink_extra: &str) -> String {
    let p = dir.join("p.yaml");
    write(
        &p,
        &format!(
            "pipeline: from_pg\nenv: [PGPASS]\nsources:\n  pg:\n    kind: postgres\n    url: {url}\n    \
             password_env: PGPASS\n{source_keys}sink:\n  lake: lake\n  dataset: out\n{sink_extra}\
             settings: {{workers: 2, batch_rows: 1000}}\n"
        ),
    );
    p.to_str().unwrap().to_string()
}

fn run_ok(dir: &Path, p: &str) -> serde_json::Value {
    let s = dir.join("summary.json");
    let out = sluice_pg(dir, &["run", p, "--summary-json", s.to_str().unwrap()]);
    assert!(out.status.success(), "run failed");
    summary(&s)
}

fn lake_count(dir: &Path, sql: &str) -> i64 {
    query(&dir.join("lake"), sql)[0]["n"].as_i64().unwrap()
}

#[test]
fn every_mapped_type_reads_into_the_lake_and_unfit_values_are_rejects_naming_the_column() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("types");
    pg.psql(
        "types",
        "CREATE TYPE mood AS ENUM ('calm', 'busy'); CREATE DOMAIN qty AS integer CHECK (VALUE >= 0);
         CREATE TABLE t (id bigint PRIMARY KEY, i2 smallint, i4 integer, f4 real, f8 double precision,
           n numeric(12,3), nu numeric, txt text, vc varchar(10), ch char(3), b boolean, d date,
           ts timestamp, tstz timestamptz, u uuid, j jsonb, js json, raw bytea, ints integer[],
           words text[], tm time, iv interval, m mood, q qty);
         SET TIME ZONE 'Europe/Berlin';
         INSERT INTO t VALUES
          (1, -2, 40000, 1.5, 2.25, 12345.678, 0.1, 'héllo', 'v', 'ab', true, '2024-02-29',
           '2024-02-29 13:14:15.123456', '2024-06-01 12:00:00+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '{\"a\": [1, 2]}', '{\"b\":1}', '\\x00ff10', '{1,NULL,3}', '{x,\"y z\"}', '10:11:12.5',
           '1 day 02:00:00', 'busy', 7),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (3, 1, 1, 1, 1, 1, 1, 'x', 'x', 'x', false, 'infinity', NULL, NULL, NULL, NULL, NULL, NULL,
           '{}', NULL, NULL, NULL, NULL, NULL),
          (4, 1, 1, 1, 1, 1, 1.123456789012, 'x', 'x', 'x', false, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (5, 1, 1, 'NaN', 1, 1, 'NaN', 'x', 'x', 'x', false, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, '1 mon', NULL, NULL);",
    );
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &pg.url("types"), "    table: t\n", "");
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 1, "{s}");

    let rows = query(
        &dir.path().join("lake"),
        "SELECT id, i2, i4, f4, f8, n::VARCHAR AS n, nu::VARCHAR AS nu, txt, vc, ch, b, d::VARCHAR AS d,
                ts::VARCHAR AS ts, epoch_us(tstz) AS tstz_us, u, j, js, hex(raw) AS raw, ints, words,
                tm::VARCHAR AS tm, iv AS iv_us, m, q, typeof(n) AS tn, typeof(nu) AS tnu,
                typeof(tstz) AS ttz, typeof(iv) AS tiv
         FROM out ORDER BY id",
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    let r = &rows[0];
    let want = serde_json::json!({
        "id": 1, "i2": -2, "i4": 40000, "f4": 1.5, "f8": 2.25, "n": "12345.678", "nu": "0.1000000000",
        "txt": "héllo", "vc": "v", "ch": "ab ", "b": true, "d": "2024-02-29",
        "ts": "2024-02-29 13:14:15.123456", "tstz_us": 1_717_236_000_000_000i64,
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": "{\"a\": [1, 2]}", "js": "{\"b\":1}",
        "raw": "00FF10", "ints": [1, null, 3], "words": ["x", "y z"], "tm": "10:11:12.5",
        "iv_us": 93_600_000_000i64, "m": "busy", "q": 7,
        "tn": "DECIMAL(12,3)", "tnu": "DECIMAL(38,10)", "ttz": "TIMESTAMP WITH TIME ZONE",
        // interval is read as Duration(µs); Parquet stores a duration as its microseconds
        "tiv": "BIGINT"
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&r[k], v, "column {k}: {r}");
    }
    // The all-NULL row is all NULLs.
    for (k, v) in rows[1].as_object().unwrap() {
        if k != "id" && !k.starts_with('t') {
            assert!(v.is_null(), "row 2, column {k}: {v}");
        }
    }
    // Values Arrow cannot hold: the row is set aside, naming the column and the value.
    let rejects = query(
        &dir.path().join("lake"),
        &format!(
            "SELECT reason, raw FROM read_parquet('{}/_rejects/**/*.parquet') ORDER BY line",
            dir.path().join("lake").display()
        ),
    );
    let reasons: Vec<&str> = rejects.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 3, "{rejects:?}");
    assert!(reasons[0].contains("column `d`: infinity has no Date32 value"), "{reasons:?}");
    assert!(reasons[1].contains("column `nu`: 1.123456789012 has more than 10 fractional digits"), "{reasons:?}");
    assert!(
        reasons[2].contains("column `nu`: numeric NaN") && reasons[2].contains("column `iv`"),
        "every bad column is named: {reasons:?}"
    );
    assert!(rejects[0]["raw"].as_str().unwrap().starts_with("id=3, i2=1"), "{rejects:?}");

    // The source's reject limits count the rows it set aside.
    let dir2 = tempfile::tempdir().unwrap();
    let p2 = pipeline(dir2.path(), &pg.url("types"), "    table: t\n    rejects: {max_errors: 1}\n", "");
    let out = sluice_pg(dir2.path(), &["run", &p2]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 rejected rows, more than max_errors = 1"), "{err}");

    // `unbounded_numeric: text` keeps every digit as text.
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        &pg.url("types"),
        "    table: t\n    columns: [id, nu]\n    unbounded_numeric: text\n",
        "",
    );
    run_ok(dir.path(), &p);
    let nu = query(&dir.path().join("lake"), "SELECT nu FROM out WHERE id = 4");
    assert_eq!(nu[0]["nu"], "1.123456789012");
}

#[test]
fn a_type_without_a_mapping_is_refused_naming_the_column_and_no_password_is_printed() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("odd");
    pg.psql(
        "odd",
        "CREATE TABLE shapes (id int PRIMARY KEY, at point, name text); INSERT INTO shapes VALUES (1, '(1,2)', 'a')",
    );
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &pg.url("odd"), "    table: shapes\n", "");
    // validate opens no connection; `validate --connect` describes the table.
    assert!(sluice_pg(dir.path(), &["validate", &p]).status.success());
    let out = sluice_pg(dir.path(), &["validate", "--connect", &p]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("p.yaml:5:") && err.contains("column `at` is point"), "{err}");
    let out = sluice_pg(dir.path(), &["run", &p]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("column `at` is point"), "{err}");
    assert!(err.contains("\"at\"::text"), "{err}");
    // Leaving it out with `columns:` works.
    let p = pipeline(dir.path(), &pg.url("odd"), "    table: shapes\n    columns: [id, name]\n", "");
    let out = sluice_pg(dir.path(), &["validate", "--connect", &p]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("unchecked"), "the described schema is checked");
    run_ok(dir.path(), &p);
    assert_eq!(lake_count(dir.path(), "SELECT count(*) AS n FROM out"), 1);

    // A wrong password: the server is named, the password is not printed.
    let out = report(
        &["run"],
        sluice()
            .current_dir(dir.path())
            .env("PGPASS", "wrong-secret-xyz")
            .args(["run", &p, "--force"])
            .output()
            .unwrap(),
    );
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains(&format!("postgres 127.0.0.1:{}/odd", pg.port)), "{all}");
    assert!(all.contains("password authentication failed"), "{all}");
    assert!(!all.contains("wrong-secret-xyz"), "{all}");
    let out = report(
        &["validate"],
        sluice()
            .current_dir(dir.path())
            .env("PGPASS", "wrong-secret-xyz")
            .args(["validate", "--connect", &p])
            .output()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(2));
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("password authentication failed") && !all.contains("wrong-secret-xyz"), "{all}");
}

#[test]
fn a_full_load_splits_by_key_and_skips_unchanged_spans() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("full");
    pg.psql(
        "full",
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric(14,2));
         INSERT INTO accounts SELECT g, 'u' || g, g * 1.5 FROM generate_series(1, 2500) g;",
    );
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &pg.url("full"), "    table: accounts\n    range_rows: 1000\n", "");
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 3, "{s}");
    assert_eq!(lake_count(dir.path(), "SELECT count(DISTINCT id) AS n FROM out"), 2500);
    // Nothing changed: nothing is read.
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 0, "{s}");
    // One span changed (an update and a delete): only it is read again, and replaces its rows.
    pg.psql("full", "UPDATE accounts SET balance = 0 WHERE id = 1500; DELETE FROM accounts WHERE id = 1501;");
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 1, "{s}");
    assert_eq!(lake_count(dir.path(), "SELECT count(*) AS n FROM out"), 2499);
    assert_eq!(lake_count(dir.path(), "SELECT count(*) AS n FROM out WHERE id = 1500 AND balance = 0"), 1);
}

/// Insert `n` events with ids after `from`, a second apart from `t0` + `from` seconds.
fn insert_events(pg: &PgServer, db: &str, from: i64, n: i64) {
    pg.psql(
        db,
        &format!(
            "INSERT INTO events (id, user_id, updated_at) SELECT g, g % 17, \
             timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' FROM generate_series({}, {}) g",
            from + 1,
            from + n
        ),
    );
}

#[test]
fn an_incremental_load_reads_new_rows_and_a_late_commit_exactly_once() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("inc");
    pg.psql("inc", "CREATE TABLE events (id bigint PRIMARY KEY, user_id int, updated_at timestamptz NOT NULL)");
    insert_events(&pg, "inc", 0, 2500);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        &pg.url("inc"),
        "    table: events\n    cursor: updated_at\n    overlap: 1h\n    range_rows: 1000\n",
        "",
    );
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 3, "{s}");
    assert_eq!(lake_count(dir.path(), "SELECT count(DISTINCT id) AS n FROM out"), 2500);

    // A long transaction takes its timestamp early: its row's cursor is below the next mark.
    let mut late = pg.session("inc", "late-writer");
    late.exec("BEGIN; INSERT INTO events VALUES (900001, 1, timestamptz '2026-01-01 00:41:00+00');");
    insert_events(&pg, "inc", 2500, 500);
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 1, "{s}");
    assert_eq!(lake_count(dir.path(), "SELECT count(*) AS n FROM out"), 3000);
    // Nothing new: no unit.
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 0, "{s}");

    // The transaction commits: its row is read by the next run, once; and again nothing after.
    late.exec("COMMIT;");
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 1, "{s}");
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 0, "{s}");
    assert_eq!(lake_count(dir.path(), "SELECT count(*) AS n FROM out"), 3001);
    assert_eq!(lake_count(dir.path(), "SELECT count(DISTINCT id) AS n FROM out"), 3001);
    assert_eq!(lake_count(dir.path(), "SELECT count(*) AS n FROM out WHERE id = 900001"), 1);
}

#[test]
fn sigkill_during_extracts_then_a_rerun_holds_every_row_once() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("kill");
    pg.psql("kill", "CREATE TABLE events (id bigint PRIMARY KEY, user_id int, updated_at timestamptz NOT NULL)");
    insert_events(&pg, "kill", 0, 150_000);
    let dir = tempfile::tempdir().unwrap();
    let p =
        pipeline(dir.path(), &pg.url("kill"), "    table: events\n    cursor: updated_at\n    range_rows: 5000\n", "");
    let mut rng = Rng::new(0x0dd_ba11);
    let (mut kills, mut rows) = (0, 150_000);
    // Rounds until 5 kills landed mid-run (at most 16); rows keep arriving between runs, so each
    // run has ranges to read.
    for _ in 0..16 {
        if kills >= 5 {
            break;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(dir.path())
            .env("PGPASS", PG_PASSWORD)
            .args(["run", &p, "-q"])
            .spawn()
            .unwrap();
        // Kill while a COPY is running, after a random delay.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            let copying = pg
                .try_psql(
                    "kill",
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'COPY (SELECT%'",
                )
                .map_or(0, |s| s.trim().parse::<i64>().unwrap_or(0));
            if copying > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        insert_events(&pg, "kill", rows, 10_000);
        rows += 10_000;
    }
    assert!(kills >= 3, "only {kills} runs were killed mid-way");
    run_ok(dir.path(), &p);
    assert_eq!(lake_count(dir.path(), "SELECT count(*) AS n FROM out"), rows);
    assert_eq!(lake_count(dir.path(), "SELECT count(DISTINCT id) AS n FROM out"), rows);
}

/// Count rows in the lake's `out` through the catalog, or 0 before the first publication.
fn lake_rows_now(dir: &Path) -> i64 {
    try_query(&dir.join("lake"), "SELECT count(*) AS n, count(DISTINCT id) AS d FROM out")
        .and_then(|r| {
            let (n, d) = (r[0]["n"].as_i64()?, r[0]["d"].as_i64()?);
            assert_eq!(n, d, "a row was read twice");
            Some(n)
        })
        .unwrap_or(0)
}

/// A child process killed when dropped (a failed test leaves no `sluice watch` behind).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_rows(dir: &Path, child: &mut std::process::Child, want: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let n = lake_rows_now(dir);
        if n == want {
            return;
        }
        assert!(n < want, "{n} rows, more than the {want} written");
        assert!(child.try_wait().unwrap().is_none(), "sluice watch exited");
        assert!(std::time::Instant::now() < deadline, "{n} of {want} rows after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn watch_polls_the_table_and_reads_new_and_late_rows_once() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("w");
    pg.psql("w", "CREATE TABLE events (id bigint PRIMARY KEY, user_id int, updated_at timestamptz NOT NULL)");
    insert_events(&pg, "w", 0, 1000);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        &pg.url("w"),
        "    table: events\n    cursor: updated_at\n    range_rows: 400\n    watch: {poll_interval: 200ms}\n",
        "",
    );
    let log = std::fs::File::create(dir.path().join("watch.log")).unwrap();
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(dir.path())
            .env("PGPASS", PG_PASSWORD)
            .args(["watch", &p])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    wait_rows(dir.path(), child, 1000);
    let mut late = pg.session("w", "late-writer");
    late.exec("BEGIN; INSERT INTO events VALUES (900001, 1, timestamptz '2026-01-01 00:20:00+00');");
    insert_events(&pg, "w", 1000, 500);
    wait_rows(dir.path(), child, 1500);
    late.exec("COMMIT;");
    wait_rows(dir.path(), child, 1501);
    std::thread::sleep(Duration::from_millis(600)); // a few more polls change nothing
    assert_eq!(lake_rows_now(dir.path()), 1501);
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(dir.path().join("watch.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(!text.contains(PG_PASSWORD), "{text}");
}
