//! The Postgres sink against a real server the test starts: a CSV folder with a keyed moving
//! average loaded through COPY, re-runs that skip, `--force`, a changed file, SIGKILLs at random
//! moments, upsert, schema changes between runs, refused rows, and connection errors that name
//! the server and never print the password.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sluice_testkit::{PG_PASSWORD, PgServer};

use crate::crash::{Rng, write_ticks};
use crate::support::*;

/// The pipeline: ticks with a per-symbol moving average (keyed state across files) into a
/// Postgres table.
fn pipeline(dir: &Path, url: &str, extra_sink: &str, workers: usize) -> std::path::PathBuf {
    let p = dir.join("pg.yaml");
    write(
        &p,
        &format!(
            r#"
pipeline: ticks_pg
env: [PGPASS]
sources:
  ticks:
    path: in
    glob: "*.csv"
    format:
      csv: {{header: true}}
steps:
  - plugin: select
    config: {{columns: [ts, symbol, price, qty]}}
  - plugin: indicators
    config:
      keys: [symbol]
      order_by: ts
      indicators: [{{kind: sma, column: price, window: 5, as: ma5}}]
sink:
  kind: postgres
  url: {url}
  password_env: PGPASS
  table: market.ticks
{extra_sink}
settings: {{workers: {workers}, batch_rows: 4096}}
"#
        ),
    );
    p
}

/// A pipeline that loads `in/*.csv` (with headers) unchanged into Postgres table `table`, with
/// `sink_extra` (indented sink keys, each line ending in a newline) added to the sink.
fn plain_pipeline(url: &str, table: &str, sink_extra: &str) -> String {
    format!(
        "pipeline: plain\nenv: [PGPASS]\nsources:\n  s:\n    path: in\n    glob: \"*.csv\"\n    \
         format: {{csv: {{header: true}}}}\nsink:\n  kind: postgres\n  url: {url}\n  password_env: PGPASS\n  \
         table: {table}\n{sink_extra}settings: {{workers: 1}}\n"
    )
}

fn sluice_pg(dir: &Path, args: &[&str]) -> std::process::Output {
    report(args, sluice().current_dir(dir).env("PGPASS", PG_PASSWORD).args(args).output().expect("sluice runs"))
}

/// Every row of the table, in order, as text: what two loads must agree on.
fn table_rows(pg: &PgServer, db: &str) -> String {
    pg.psql(db, "SELECT ts, symbol, price, qty, ma5 FROM market.ticks ORDER BY ts")
}

/// The same pipeline into a lake, for the expected rows.
fn lake_rows(dir: &Path) -> String {
    let p = dir.join("lake.yaml");
    let text = std::fs::read_to_string(dir.join("pg.yaml")).unwrap();
    let head = text.split("sink:").next().unwrap();
    write(&p, &format!("{head}sink:\n  lake: lake\n  dataset: ticks\nsettings: {{workers: 2, batch_rows: 4096}}\n"));
    let out = sluice_pg(dir, &["run", p.to_str().unwrap()]);
    assert!(out.status.success());
    let rows = query(&dir.join("lake"), "SELECT ts, symbol, price, qty, ma5 FROM ticks ORDER BY ts");
    rows.iter()
        .map(|r| {
            let f = |k: &str| match &r[k] {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            format!("{}|{}|{}|{}|{}", f("ts"), f("symbol"), f("price"), f("qty"), f("ma5"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rows as text with every number at 6 decimals (Postgres prints `10`, DuckDB `10.0`).
fn normalized(rows: &str) -> Vec<String> {
    rows.lines()
        .map(|l| {
            l.split('|')
                .map(|f| f.parse::<f64>().map_or_else(|_| f.to_string(), |v| format!("{v:.6}")))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Two row listings agree, or the first difference is shown (not the whole listing).
fn assert_same_rows(got: &str, want: &str, what: &str) {
    let (g, w) = (normalized(got), normalized(want));
    if let Some(i) = (0..g.len().max(w.len())).find(|&i| g.get(i) != w.get(i)) {
        panic!(
            "{what}: {} vs {} rows; first difference at row {i}: {:?} vs {:?}",
            g.len(),
            w.len(),
            g.get(i),
            w.get(i)
        );
    }
}

fn count(pg: &PgServer, db: &str, sql: &str) -> i64 {
    pg.psql(db, sql).trim().parse().unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn csv_folder_into_postgres_skips_forces_and_reloads_a_changed_file() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("etl");
    let dir = tempfile::tempdir().unwrap();
    write_ticks(&dir.path().join("in"), 6, 700);
    let p = pipeline(dir.path(), &pg.url("etl"), "", 2);
    let p = p.to_str().unwrap();

    let summary_path = dir.path().join("s.json");
    let out = sluice_pg(dir.path(), &["run", p, "--summary-json", summary_path.to_str().unwrap()]);
    assert!(out.status.success());
    let s = summary(&summary_path);
    assert_eq!(s["files_committed"], 6, "{s}");
    assert_eq!(count(&pg, "etl", "SELECT count(*) FROM market.ticks"), 4200);
    assert_eq!(count(&pg, "etl", "SELECT count(DISTINCT ts) FROM market.ticks"), 4200);
    // The state tables say what is loaded, with the data.
    assert_eq!(count(&pg, "etl", "SELECT count(*) FROM sluice.units"), 6);
    assert_eq!(count(&pg, "etl", "SELECT sum(rows) FROM sluice.units"), 4200);
    // The moving average is continuous across files: equal to the same pipeline into a lake.
    let loaded = table_rows(&pg, "etl");
    assert_same_rows(&loaded, &lake_rows(dir.path()), "postgres vs lake");
    // `lake compare` says the same, per symbol, against the Postgres table.
    let compare = || {
        sluice_pg(
            dir.path(),
            &[
                "lake",
                "compare",
                "lake",
                "--dataset",
                "ticks",
                "--postgres",
                &pg.url("etl"),
                "--password-env",
                "PGPASS",
            ]
            .into_iter()
            .chain(["--table", "market.ticks", "--by", "symbol", "--sum", "price,qty,ma5"])
            .collect::<Vec<_>>(),
        )
    };
    let out = compare();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));

    // A re-run loads nothing.
    let out = sluice_pg(dir.path(), &["run", p, "--summary-json", summary_path.to_str().unwrap()]);
    assert!(out.status.success());
    let s = summary(&summary_path);
    assert_eq!(s["files_committed"], 0, "{s}");
    assert_eq!(s["files_unchanged"], 6, "{s}");
    assert_same_rows(&table_rows(&pg, "etl"), &loaded, "after a re-run");

    // --force reloads every file, replacing its rows: nothing doubled; --workers sets parallelism.
    let out = sluice_pg(dir.path(), &["run", p, "--force", "--workers", "1"]);
    assert!(out.status.success());
    assert_same_rows(&table_rows(&pg, "etl"), &loaded, "after a re-run");

    // A changed file is reloaded alone: its old rows leave in the same transaction.
    let f = dir.path().join("in/f005.csv");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push_str("99999,S1,12.50,3\n");
    std::fs::write(&f, text).unwrap();
    let out = sluice_pg(dir.path(), &["run", p, "--summary-json", summary_path.to_str().unwrap()]);
    assert!(out.status.success());
    let s = summary(&summary_path);
    assert_eq!(s["files_committed"], 1, "{s}");
    assert_eq!(count(&pg, "etl", "SELECT count(*) FROM market.ticks"), 4201);
    assert_eq!(count(&pg, "etl", "SELECT count(DISTINCT ts) FROM market.ticks"), 4201);
    assert_eq!(count(&pg, "etl", "SELECT count(DISTINCT _sluice_unit) FROM market.ticks"), 6);
    // The lake did not take the change: compare names the symbol that differs.
    let out = compare();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("differs: symbol=S1: rows lake 526 vs other 527"), "{text}");
}

#[test]
fn sigkill_during_loads_leaves_each_unit_whole_and_a_rerun_equals_a_clean_run() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("clean");
    pg.create_db("killed");
    let dir = tempfile::tempdir().unwrap();
    write_ticks(&dir.path().join("in"), 40, 5000);

    let clean_dir = dir.path().join("clean");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let killed_dir = dir.path().join("killed");
    std::fs::create_dir_all(&killed_dir).unwrap();
    for d in [&clean_dir, &killed_dir] {
        std::os::unix::fs::symlink(dir.path().join("in"), d.join("in")).unwrap();
    }
    let clean = pipeline(&clean_dir, &pg.url("clean"), "", 2);
    assert!(sluice_pg(&clean_dir, &["run", clean.to_str().unwrap()]).status.success());
    let want = table_rows(&pg, "clean");
    assert_eq!(want.lines().count(), 200_000);

    let killed = pipeline(&killed_dir, &pg.url("killed"), "", 2);
    let mut rng = Rng::new(0x5eed_f00d);
    let mut kills = 0;
    for round in 0..12 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .current_dir(&killed_dir)
            .env("PGPASS", PG_PASSWORD)
            .args(["run", killed.to_str().unwrap(), "-q"])
            .spawn()
            .unwrap();
        // Kill once the target holds a random number of units (and a little later, so that
        // some kills land inside a COPY or a COMMIT).
        let target = 2 + rng.below(36) as i64;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            let done: i64 =
                pg.try_psql("killed", "SELECT count(*) FROM sluice.units").map_or(0, |s| s.trim().parse().unwrap_or(0));
            if done >= target {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(40)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // What is loaded is always whole units: the table holds exactly the rows its recorded
        // units wrote (no partial COPY is ever visible).
        let units: i64 = pg
            .try_psql("killed", "SELECT coalesce(sum(rows), 0) FROM sluice.units")
            .map_or(0, |s| s.trim().parse().unwrap());
        let rows = pg.try_psql("killed", "SELECT count(*) FROM market.ticks").unwrap_or_else(|_| "0".into());
        assert_eq!(rows.trim().parse::<i64>().unwrap(), units, "round {round}: rows differ from committed units");
    }
    assert!(kills >= 4, "only {kills} runs were killed mid-way");
    let out = sluice_pg(&killed_dir, &["run", killed.to_str().unwrap()]);
    assert!(out.status.success());
    assert_same_rows(&table_rows(&pg, "killed"), &want, &format!("after {kills} kills vs a clean run"));
}

#[test]
fn upsert_keeps_the_newest_row_per_key_and_replace_partition_replaces_whole_partitions() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("up");
    let dir = tempfile::tempdir().unwrap();
    // Two files with overlapping ids: the later file (in name order) wins; within a file the
    // last row of a key wins.
    write(&dir.path().join("in/a.csv"), "id,day,v\n1,d1,10\n2,d1,20\n2,d1,21\n3,d2,30\n");
    write(&dir.path().join("in/b.csv"), "id,day,v\n3,d2,31\n4,d2,40\n");
    let url = pg.url("up");
    write(&dir.path().join("up.yaml"), &plain_pipeline(&url, "kv", "  mode: upsert\n  key: [id]\n"));
    assert!(sluice_pg(dir.path(), &["run", "up.yaml"]).status.success());
    assert_eq!(pg.psql("up", "SELECT id, day, v FROM kv ORDER BY id"), "1|d1|10\n2|d1|21\n3|d2|31\n4|d2|40");
    // A changed file upserts again: only its keys change.
    write(&dir.path().join("in/b.csv"), "id,day,v\n4,d2,41\n");
    assert!(sluice_pg(dir.path(), &["run", "up.yaml"]).status.success());
    assert_eq!(pg.psql("up", "SELECT id, v FROM kv ORDER BY id"), "1|10\n2|21\n3|31\n4|41");

    // replace_partition: a unit replaces every row of the partitions (days) it holds.
    write(
        &dir.path().join("rp.yaml"),
        &plain_pipeline(&url, "daily", "  mode: replace_partition\n  partition_by: [day]\n"),
    );
    write(&dir.path().join("in/b.csv"), "id,day,v\n9,d2,90\n");
    assert!(sluice_pg(dir.path(), &["run", "rp.yaml"]).status.success());
    assert_eq!(pg.psql("up", "SELECT id, day, v FROM daily ORDER BY id"), "1|d1|10\n2|d1|20\n2|d1|21\n9|d2|90");
}

#[test]
fn schema_changes_between_runs_evolve_or_are_refused_naming_the_column() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("sc");
    let dir = tempfile::tempdir().unwrap();
    let yaml = |policy: &str| plain_pipeline(&pg.url("sc"), "t", &format!("  schema_policy: {policy}\n"));
    write(&dir.path().join("evolve.yaml"), &yaml("evolve"));
    write(&dir.path().join("freeze.yaml"), &yaml("freeze"));
    write(&dir.path().join("in/a.csv"), "id,n\n1,5\n");
    assert!(sluice_pg(dir.path(), &["run", "evolve.yaml"]).status.success());
    // A new column is added under evolve.
    write(&dir.path().join("in/b.csv"), "id,n,note\n2,6,hello\n");
    assert!(sluice_pg(dir.path(), &["run", "evolve.yaml"]).status.success());
    assert_eq!(pg.psql("sc", "SELECT id, n, coalesce(note, '-') FROM t ORDER BY id"), "1|5|-\n2|6|hello");
    // Under freeze a new column is refused, naming it; nothing of the file is loaded.
    write(&dir.path().join("in/c.csv"), "id,n,extra\n3,7,x\n");
    let out = sluice_pg(dir.path(), &["run", "freeze.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("column `extra` is not in table"), "{err}");
    assert_eq!(count(&pg, "sc", "SELECT count(*) FROM t WHERE id = 3"), 0);
    std::fs::remove_file(dir.path().join("in/c.csv")).unwrap();
    // A type the column cannot hold: text into the integer column `n`.
    write(&dir.path().join("in/d.csv"), "id,n\n4,not-a-number\n");
    let out = sluice_pg(dir.path(), &["run", "evolve.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("column `n` is `bigint` in table"), "{err}");
}

#[test]
fn rows_the_server_refuses_fail_their_file_with_its_message_and_skip_file_goes_on() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("ref");
    pg.psql("ref", "CREATE TABLE t (id bigint, v bigint CHECK (v < 100))");
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("in/a.csv"), "id,v\n1,5\n");
    write(&dir.path().join("in/b.csv"), "id,v\n2,50\n4,500\n6,60\n");
    write(&dir.path().join("in/c.csv"), "id,v\n3,7\n");
    write(&dir.path().join("p.yaml"), &plain_pipeline(&pg.url("ref"), "t", "  on_error: skip_file\n"));
    let out = sluice_pg(dir.path(), &["run", "p.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("b.csv"), "{err}");
    assert!(err.contains("violates check constraint"), "{err}");
    assert!(err.contains("refused the unit's rows"), "{err}");
    assert!(err.contains("the row: id=4, v=500"), "the refused row is shown: {err}");
    assert_eq!(pg.psql("ref", "SELECT id FROM t ORDER BY id"), "1\n3");
}

#[test]
fn connection_errors_name_the_server_and_never_print_the_password() {
    let Some(pg) = PgServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("in/a.csv"), "id\n1\n");
    let yaml = |url: &str| plain_pipeline(url, "t", "");
    // A wrong password: refused by the server, named, the password nowhere.
    write(&dir.path().join("p.yaml"), &yaml(&pg.url("postgres")));
    let wrong = "wrong-secret-4821";
    let summary_path = dir.path().join("s.json");
    let out = sluice()
        .current_dir(dir.path())
        .env("PGPASS", wrong)
        .args(["run", "p.yaml", "--summary-json", summary_path.to_str().unwrap()])
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("{all}");
    assert!(!out.status.success());
    assert!(all.contains(&format!("postgres 127.0.0.1:{}/postgres", pg.port)), "{all}");
    assert!(all.contains("password authentication failed"), "{all}");
    assert!(!all.contains(wrong), "the password was printed: {all}");
    if let Ok(s) = std::fs::read_to_string(&summary_path) {
        assert!(!s.contains(wrong), "the password is in the summary");
    }
    // A password in the URL is a config error that does not echo it.
    write(&dir.path().join("p2.yaml"), &yaml(&format!("postgresql://postgres:{wrong}@127.0.0.1:{}/postgres", pg.port)));
    let out = sluice_pg(dir.path(), &["validate", "p2.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`url` holds a password"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    // Nobody listening: the error names host and port.
    let port = sluice_testkit::free_port();
    write(&dir.path().join("p3.yaml"), &yaml(&format!("postgresql://postgres@127.0.0.1:{port}/db")));
    let out = sluice_pg(dir.path(), &["run", "p3.yaml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}/db")), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}

/// The repository's example (`pipelines/kline-postgres.yaml`) on `sluice demo` data, the files
/// arriving a few per run in shuffled order: every row loaded once, and ma20 (keyed state kept
/// in Postgres across runs) equal to one pass over the sorted table, computed by Postgres.
#[test]
fn the_example_kline_pipeline_loads_postgres_with_ma20_across_days_in_any_arrival_order() {
    let Some(pg) = PgServer::start() else { return };
    pg.create_db("market");
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    let out =
        run(&["demo", "-q", "--dir", demo.to_str().unwrap(), "--symbols", "3", "--days", "6", "--rows-per-day", "41"]);
    assert_eq!(out.status.code(), Some(0));
    let src = demo.join("data/spot/daily/klines");
    let mut files: Vec<std::path::PathBuf> = files_under(&src).into_iter().map(|f| src.join(f)).collect();
    files.sort();
    let mut rng = Rng::new(0x9E_0C_A7);
    rng.shuffle(&mut files);
    let data = tmp.path().join("data");
    let dest = data.join("spot/daily/klines");
    let pipeline = repo().join("pipelines/kline-postgres.yaml");
    let run_once = || {
        let out = sluice()
            .args(["run", "-q", pipeline.to_str().unwrap(), "--workers", "2"])
            .env("DATA_DIR", &data)
            .env("PG_URL", pg.url("market"))
            .env("PGPASSWORD", PG_PASSWORD)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    };
    for (i, f) in files.iter().enumerate() {
        let rel = f.strip_prefix(&src).unwrap();
        std::fs::create_dir_all(dest.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(f, dest.join(rel)).unwrap();
        if i % 4 == 3 || i + 1 == files.len() {
            run_once();
        }
    }
    let check = "SELECT count(*), count(DISTINCT (symbol, open_time)), \
        count(*) FILTER (WHERE (ma20 IS NULL) <> (e IS NULL) OR abs(ma20 - e) > 1e-9) FROM \
        (SELECT ma20, symbol, open_time, CASE WHEN count(*) OVER w = 20 THEN avg(close) OVER w END AS e \
         FROM public.kline_ma WINDOW w AS (PARTITION BY symbol ORDER BY open_time ROWS 19 PRECEDING)) s";
    assert_eq!(pg.psql("market", check), format!("{n}|{n}|0", n = 3 * 6 * 41));
    // Late days re-ran the committed days after them, in Postgres too: one unit per file.
    assert_eq!(count(&pg, "market", "SELECT count(*) FROM sluice.units"), 18);
}

/// The server restarted in the middle of a run (`pg_ctl -m immediate`, as a crash): the run stops
/// naming the server, the files in flight are rolled back, and the next run loads the rest
/// exactly once.
#[test]
fn a_server_restart_mid_run_stops_the_run_cleanly_and_the_next_run_completes() {
    let Some(mut pg) = PgServer::start() else { return };
    pg.create_db("rs");
    let dir = tempfile::tempdir().unwrap();
    write_ticks(&dir.path().join("in"), 40, 5000);
    let p = pipeline(dir.path(), &pg.url("rs"), "", 2);
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir.path())
        .env("PGPASS", PG_PASSWORD)
        .args(["run", p.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let done: i64 =
            pg.try_psql("rs", "SELECT count(*) FROM sluice.units").map_or(0, |s| s.trim().parse().unwrap_or(0));
        if done >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pg.restart();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    let loaded = count(&pg, "rs", "SELECT count(*) FROM sluice.units");
    if loaded < 40 {
        // Stopped by the restart: the error names the server.
        assert!(!out.status.success());
        assert!(err.contains(&format!("postgres 127.0.0.1:{}/rs", pg.port)), "{err}");
    }
    assert_eq!(
        count(&pg, "rs", "SELECT coalesce(sum(rows), 0) FROM sluice.units"),
        count(&pg, "rs", "SELECT count(*) FROM market.ticks")
    );
    let out = sluice_pg(dir.path(), &["run", p.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(count(&pg, "rs", "SELECT count(*) FROM market.ticks"), 200_000);
    assert_eq!(count(&pg, "rs", "SELECT count(DISTINCT ts) FROM market.ticks"), 200_000);
}
