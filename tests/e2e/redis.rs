//! The Redis sink against a real server the test starts: features per key as hashes (with a
//! TTL, and keyed state carried across runs in a lake), sorted sets and JSON values; a crash
//! after `EXEC` and before the state commits, replayed without writing again; a crash before
//! `EXEC`, which leaves nothing; a wrong password, named without printing it.

use std::path::Path;

use sluice_testkit::RedisServer;

use crate::support::*;

/// Day `d`'s features of users 1..=5: clicks = user × day.
fn write_day(dir: &Path, d: u32) {
    let mut s = String::from("user_id,day,clicks,spend\n");
    for u in 1..=5 {
        s.push_str(&format!("{u},2026-01-0{d},{},{}.5\n", u * d, u));
    }
    write(&dir.join(format!("in/d{d}.csv")), &s);
}

fn pipeline(dir: &Path, url: &str, sink: &str) -> String {
    let p = dir.join("r.yaml");
    write(
        &p,
        &format!(
            "pipeline: features\nenv: [REDIS_PW]\nsources:\n  days:\n    path: in\n    glob: \"*.csv\"\n    \
             format: {{csv: {{header: true}}}}\nsteps:\n  - plugin: indicators\n    config:\n      keys: [user_id]\n      \
             order_by: day\n      indicators: [{{kind: sma, column: clicks, window: 3, as: ma3}}]\n\
             sink:\n  kind: redis\n  url: {url}\n  key: [user_id]\n  prefix: \"feat:user:\"\n{sink}  \
             state: {{lake: lake, dataset: features_state}}\nsettings: {{workers: 2}}\n"
        ),
    );
    p.to_str().unwrap().to_string()
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = sluice();
    c.current_dir(dir).env("REDIS_PW", "");
    for (k, v) in env {
        c.env(k, v);
    }
    report(args, c.args(args).output().expect("sluice runs"))
}

fn committed(dir: &Path, p: &str) -> u64 {
    let s = dir.join("s.json");
    let out = run_in(dir, &["run", p, "--summary-json", s.to_str().unwrap()], &[]);
    assert!(out.status.success());
    summary(&s)["files_committed"].as_u64().unwrap()
}

#[test]
fn features_per_key_as_hashes_with_ttl_and_keyed_state_across_runs() {
    let Some(redis) = RedisServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), 1);
    write_day(dir.path(), 2);
    let p = pipeline(dir.path(), &redis.url(0), "  ttl: 7d\n");
    assert!(run_in(dir.path(), &["validate", "--connect", &p], &[]).status.success());
    assert_eq!(committed(dir.path(), &p), 2);
    assert_eq!(redis.cli(&["HGET", "feat:user:4", "clicks"]), "8");
    let ttl: i64 = redis.cli(&["TTL", "feat:user:4"]).parse().unwrap();
    assert!(ttl > 6 * 86_400 && ttl <= 7 * 86_400, "ttl {ttl}");
    // Re-run: nothing new.
    assert_eq!(committed(dir.path(), &p), 0);
    // A new day: the moving average continues from the state the lake kept.
    write_day(dir.path(), 3);
    assert_eq!(committed(dir.path(), &p), 1);
    for u in 1..=5 {
        let fields = redis.cli(&["HGETALL", &format!("feat:user:{u}")]);
        let f: Vec<&str> = fields.lines().collect();
        let get = |k: &str| f.iter().position(|x| *x == k).map(|i| f[i + 1]).unwrap_or_else(|| panic!("{k} in {f:?}"));
        assert_eq!(get("day"), "2026-01-03");
        assert_eq!(get("clicks"), (3 * u).to_string());
        assert_eq!(get("ma3").parse::<f64>().unwrap(), (2 * u) as f64, "user {u}: {f:?}");
        assert_eq!(get("spend"), format!("{u}.5"));
    }
    // Nothing but the features: each unit's marker goes once its state committed.
    assert_eq!(redis.cli(&["HLEN", "feat:user:_sluice:units"]), "0");
    assert_eq!(redis.cli(&["DBSIZE"]), "5");
    // `--force` writes again (the state holds the units: markers do not stop a deliberate re-run).
    redis.cli(&["DEL", "feat:user:2"]);
    let out = run_in(dir.path(), &["run", &p, "--force"], &[]);
    assert!(out.status.success());
    assert_eq!(redis.cli(&["HGET", "feat:user:2", "clicks"]), "6");
}

#[test]
fn sorted_sets_and_json_values() {
    let Some(redis) = RedisServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), 1);
    write_day(dir.path(), 2);
    let p = pipeline(dir.path(), &redis.url(1), "  layout: zset\n  member: day\n  score: clicks\n");
    assert_eq!(committed(dir.path(), &p), 2);
    assert_eq!(
        redis.cli(&["-n", "1", "ZRANGE", "feat:user:3", "0", "-1", "WITHSCORES"]),
        "2026-01-01\n3\n2026-01-02\n6"
    );

    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), 1);
    let p = pipeline(dir.path(), &redis.url(2), "  layout: string\n  ttl: 1h\n");
    assert_eq!(committed(dir.path(), &p), 1);
    let v: serde_json::Value = serde_json::from_str(&redis.cli(&["-n", "2", "GET", "feat:user:2"])).unwrap();
    assert_eq!(v["clicks"], 2);
    assert_eq!(v["day"], "2026-01-01");
    assert!(v.get("user_id").is_none(), "{v}");
    let ttl: i64 = redis.cli(&["-n", "2", "TTL", "feat:user:2"]).parse().unwrap();
    assert!(ttl > 3500, "ttl {ttl}");
}

#[test]
fn a_crash_around_exec_replays_without_writing_twice_and_loses_nothing() {
    let Some(redis) = RedisServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), 1);
    let p = pipeline(dir.path(), &redis.url(0), "");
    // Killed before EXEC: nothing of the unit is in Redis.
    let out = run_in(dir.path(), &["run", &p], &[("SLUICE_TEST_FAULT", "before-exec")]);
    assert!(!out.status.success());
    assert_eq!(redis.cli(&["DBSIZE"]), "0");
    // Killed after EXEC, before the state committed: the writes and the marker are there, the
    // lake does not know the unit.
    let out = run_in(dir.path(), &["run", &p], &[("SLUICE_TEST_FAULT", "after-exec")]);
    assert!(!out.status.success());
    assert_eq!(redis.cli(&["HGET", "feat:user:5", "clicks"]), "5");
    assert_eq!(redis.cli(&["HLEN", "feat:user:_sluice:units"]), "1");
    // Someone changes a feature meanwhile: the replay must not write the unit again.
    redis.cli(&["HSET", "feat:user:5", "clicks", "999"]);
    let out = run_in(dir.path(), &["run", &p], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("redis already holds exactly this unit's writes"));
    assert_eq!(redis.cli(&["HGET", "feat:user:5", "clicks"]), "999");
    assert_eq!(redis.cli(&["HLEN", "feat:user:_sluice:units"]), "0", "the marker goes once the state committed");
    // The state committed: nothing is left to do.
    assert_eq!(committed(dir.path(), &p), 0);
}

#[test]
fn a_write_redis_refuses_inside_exec_fails_the_unit_and_the_next_run_writes_it_again() {
    let Some(redis) = RedisServer::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), 1);
    let p = pipeline(dir.path(), &redis.url(0), "");
    // A key of another type: its HSET fails inside EXEC, after the others were applied.
    redis.cli(&["SET", "feat:user:3", "not a hash"]);
    let out = run_in(dir.path(), &["run", &p], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a write failed inside MULTI/EXEC") && err.contains("WRONGTYPE"), "{err}");
    assert_eq!(redis.cli(&["HLEN", "feat:user:_sluice:units"]), "0", "the unit's marker is removed");
    redis.cli(&["DEL", "feat:user:3"]);
    assert_eq!(committed(dir.path(), &p), 1);
    assert_eq!(redis.cli(&["HGET", "feat:user:3", "clicks"]), "3");
}

#[test]
fn a_wrong_password_names_the_server_and_prints_no_secret() {
    let Some(redis) = RedisServer::start_with_password("redis-secret-q9") else { return };
    let dir = tempfile::tempdir().unwrap();
    write_day(dir.path(), 1);
    let p = pipeline(dir.path(), &redis.url(0), "  password_env: REDIS_PW\n");
    let out = run_in(dir.path(), &["run", &p], &[("REDIS_PW", "not-the-secret-7")]);
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains(&format!("redis 127.0.0.1:{}/0", redis.port)), "{all}");
    assert!(!all.contains("not-the-secret-7"), "{all}");
    let out = run_in(dir.path(), &["run", &p], &[("REDIS_PW", "redis-secret-q9")]);
    assert!(out.status.success());
    assert_eq!(redis.cli(&["HGET", "feat:user:1", "clicks"]), "1");
}
