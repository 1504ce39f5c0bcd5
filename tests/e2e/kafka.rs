//! `kind: kafka` against a real broker (Tansu, started by each test): every partition read once
//! with the envelope's columns, malformed records set aside with their partition and offset,
//! `sluice watch` SIGKILLed at random moments and restarted with each record held once, the
//! broker restarted mid-stream, and sessions that run across units and a restart.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_kafka::client::KafkaClient;
use sluice_testkit::{MotoServer, TansuServer};

use crate::crash::Rng;
use crate::support::*;

fn producer(t: &TansuServer) -> KafkaClient {
    KafkaClient::connect(&[t.bootstrap()], Duration::from_secs(10)).expect("connect to the test broker")
}

/// Produce `values` (key, value) to one partition, 200 per batch, with timestamps `ts_ms`.
fn produce(c: &KafkaClient, partition: i32, values: Vec<(Option<String>, Vec<u8>)>, ts_ms: i64) -> Vec<i64> {
    let mut offsets = Vec::new();
    let mut values = values.into_iter().peekable();
    while values.peek().is_some() {
        let chunk: Vec<_> =
            values.by_ref().take(200).map(|(k, v)| (k.map(String::into_bytes), Some(v), ts_ms)).collect();
        offsets.extend(c.produce_messages("events", partition, chunk).expect("produce"));
    }
    offsets
}

fn event(id: u64, user: &str, ts: i64) -> (Option<String>, Vec<u8>) {
    (Some(user.to_string()), json!({"id": id, "user": user, "ts": ts}).to_string().into_bytes())
}

/// A pipeline reading topic `events` from `broker` into `lake/out`, with `extra` source keys and
/// `steps` (a YAML list, or empty).
fn pipeline(dir: &Path, broker: &str, extra: &str, steps: &str) -> String {
    let p = dir.join("p.yaml");
    write(
        &p,
        &format!(
            "pipeline: stream
sources:
  events:
    kind: kafka
    brokers: {broker}
    topic: events
    max_rows: 100
    max_wait: 200ms
    format: {{jsonl: {{columns: {{id: int64, user: utf8, ts: int64}}}}}}
    metadata: {{partition: kafka_partition, offset: kafka_offset, key: kafka_key, timestamp: kafka_ts}}
    watch: {{poll_interval: 100ms}}
{extra}{steps}sink:
  lake: lake
  dataset: out
settings: {{workers: 2, batch_rows: 1000}}
"
        ),
    );
    p.to_str().unwrap().to_string()
}

fn run_ok(dir: &Path, p: &str) -> serde_json::Value {
    let s = dir.join("summary.json");
    let out = report(
        &["run", p],
        sluice().current_dir(dir).args(["run", p, "--summary-json", s.to_str().unwrap()]).output().unwrap(),
    );
    assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
    summary(&s)
}

fn count(dir: &Path, sql: &str) -> i64 {
    query(&dir.join("lake"), sql)[0]["n"].as_i64().unwrap()
}

/// Rows and distinct ids in the lake now (0 before the first catalog); a duplicate fails.
fn rows_now(dir: &Path) -> i64 {
    try_query(&dir.join("lake"), "SELECT count(*) AS n, count(DISTINCT id) AS d FROM out")
        .and_then(|r| {
            let (n, d) = (r[0]["n"].as_i64()?, r[0]["d"].as_i64()?);
            assert_eq!(n, d, "a record was written twice");
            Some(n)
        })
        .unwrap_or(0)
}

/// `sluice watch`, killed when dropped.
struct Watch(Child);

impl Watch {
    fn start(dir: &Path, p: &str, log: &str) -> Watch {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(log)).unwrap();
        Watch(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .current_dir(dir)
                .args(["watch", p])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn wait_rows(&mut self, dir: &Path, want: i64, log: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let n = rows_now(dir);
            if n == want {
                return;
            }
            let text = || std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            assert!(n < want, "{n} rows, more than the {want} produced");
            assert!(self.0.try_wait().unwrap().is_none(), "sluice watch exited: {}", text());
            assert!(Instant::now() < deadline, "{n} of {want} rows after 90 s: {}", text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().unwrap();
        self.0.wait().unwrap()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_reads_every_partition_once_with_the_envelope_and_sets_malformed_records_aside() {
    let Some(broker) = TansuServer::start() else { return };
    broker.create_topic("events", 3);
    let c = producer(&broker);
    let ts = 1_796_000_000_000;
    produce(&c, 0, (0..250).map(|i| event(i, &format!("u{}", i % 7), i as i64)).collect(), ts);
    let mut p1: Vec<_> = (1000..1130).map(|i| event(i, "w", i as i64)).collect();
    p1[57] = (Some("w".into()), b"{\"id\": 1057, \"user\": \"w\", \"ts\": \"not a number\"}".to_vec());
    p1[90] = (None, b"garbage".to_vec());
    produce(&c, 1, p1, ts);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker.bootstrap(), "", "");
    let s = run_ok(dir.path(), &p);
    // 100-offset ranges: 3 of partition 0, 2 of partition 1 (from 0), none of the empty one.
    assert_eq!(s["files_committed"], 5, "{s}");
    assert_eq!(count(dir.path(), "SELECT count(DISTINCT id) AS n FROM out"), 378);
    assert_eq!(count(dir.path(), "SELECT count(*) AS n FROM out"), 378);
    let lake = dir.path().join("lake");
    // The envelope, row for row.
    let r = query(
        &lake,
        "SELECT kafka_partition AS p, kafka_offset AS o, kafka_key AS k, epoch_ms(kafka_ts) AS t FROM out WHERE id = 1100",
    );
    assert_eq!(r, vec![json!({"p": 1, "o": 100, "k": "w", "t": ts})]);
    assert_eq!(
        count(dir.path(), "SELECT count(*) AS n FROM out WHERE kafka_offset <> id - 1000 AND kafka_partition = 1"),
        0
    );
    assert_eq!(count(dir.path(), "SELECT count(*) AS n FROM out WHERE kafka_offset <> id AND kafka_partition = 0"), 0);
    // The malformed records, with partition and offset.
    let rejects = query(
        &lake,
        &format!(
            "SELECT file, line, reason, raw FROM read_parquet('{}/_rejects/**/*.parquet') ORDER BY line",
            lake.display()
        ),
    );
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0]["line"], 57);
    assert!(rejects[0]["reason"].as_str().unwrap().starts_with("partition 1 offset 57: "), "{rejects:?}");
    assert_eq!(rejects[0]["file"], "kafka:events/1/0-100");
    assert_eq!(rejects[1]["line"], 90);
    assert!(rejects[1]["reason"].as_str().unwrap().contains("not a JSON object"), "{rejects:?}");
    assert_eq!(rejects[1]["raw"], "garbage");

    // Nothing new: nothing read. Then only what arrived.
    let s = run_ok(dir.path(), &p);
    assert_eq!(s["files_committed"], 0, "{s}");
    produce(&c, 2, (5000..5042).map(|i| event(i, "z", i as i64)).collect(), ts);
    produce(&c, 0, (250..260).map(|i| event(i, "u0", i as i64)).collect(), ts);
    run_ok(dir.path(), &p);
    assert_eq!(count(dir.path(), "SELECT count(DISTINCT id) AS n FROM out"), 430);
    assert_eq!(count(dir.path(), "SELECT count(*) AS n FROM out"), 430);
}

#[test]
fn config_errors_name_the_key_and_a_missing_topic_names_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.yaml");
    write(
        &p,
        "pipeline: bad
sources:
  events:
    kind: kafka
    brokers: [localhost]
    topic: 'no spaces'
    start: yesterday
    max_rows: 0
    format: {jsonl: {}}
    metadata: {offset: id}
    sasl: {mechanism: scram-sha-256, username_env: KAFKA_USER, password_env: KAFKA_PASSWORD}
sink:
  lake: lake
  dataset: out
",
    );
    let out = run(&["validate", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    for want in [
        "bad.yaml:5:",
        "`localhost` is not `host:port`",
        "bad.yaml:6:",
        "not a topic name",
        "bad.yaml:7:",
        "start `yesterday`",
        "bad.yaml:8:",
        "max_rows must be at least 1",
        "bad.yaml:11:",
        "`username_env` names `KAFKA_USER`, which is not declared in `env:`",
        "a kafka source needs its columns declared",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let Some(broker) = TansuServer::start() else { return };
    let p = pipeline(dir.path(), &broker.bootstrap(), "", "");
    let out = sluice().current_dir(dir.path()).args(["validate", &p, "--connect"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no topic `events`") && text.contains(&broker.bootstrap()), "{text}");
}

#[test]
fn watch_sigkilled_at_random_moments_holds_each_record_once() {
    let Some(broker) = TansuServer::start() else { return };
    broker.create_topic("events", 3);
    let c = producer(&broker);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker.bootstrap(), "", "");
    let total: u64 = 9000;
    let bootstrap = broker.bootstrap();
    // A producer that keeps writing while watches are killed.
    let writer = std::thread::spawn(move || {
        let c = KafkaClient::connect(&[bootstrap], Duration::from_secs(10)).unwrap();
        let mut id = 0u64;
        while id < total {
            let p = (id / 150 % 3) as i32;
            produce(&c, p, (id..id + 150).map(|i| event(i, &format!("u{}", i % 11), i as i64)).collect(), 0);
            id += 150;
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    let mut rng = Rng::new(0x6b61_666b);
    let mut kills = 0;
    for round in 0..6 {
        let mut w = Watch::start(dir.path(), &p, "watch.log");
        // Let it commit something, then kill it at a random moment.
        let before = rows_now(dir.path());
        let deadline = Instant::now() + Duration::from_secs(60);
        while rows_now(dir.path()) == before && Instant::now() < deadline && !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        if w.0.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = w.0.kill();
        let _ = w.0.wait();
        let _ = round;
    }
    writer.join().unwrap();
    assert!(kills >= 4, "only {kills} watches were killed while running");
    let mut w = Watch::start(dir.path(), &p, "watch.log");
    w.wait_rows(dir.path(), total as i64, "watch.log");
    std::thread::sleep(Duration::from_millis(500)); // more polls change nothing
    assert_eq!(rows_now(dir.path()), total as i64);
    let status = w.stop();
    let log = std::fs::read_to_string(dir.path().join("watch.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert_eq!(count(dir.path(), "SELECT count(DISTINCT (kafka_partition, kafka_offset)) AS n FROM out"), total as i64);
    drop(c);
}

/// Wait until the lake holds `want` rows (each once), for up to 90 s.
fn wait_for_rows(dir: &Path, want: i64, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = rows_now(dir);
        if n == want {
            return;
        }
        assert!(n < want, "{n} rows, more than the {want} produced");
        assert!(Instant::now() < deadline, "{n} of {want} rows after 90 s: {}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_broker_restarted_mid_stream_loses_and_repeats_nothing_and_lag_is_a_metric() {
    use crate::watch::{Watch as Listening, http_get, metric};
    let Some(moto) = MotoServer::start("tansu") else { return };
    let Some(mut broker) = TansuServer::start_on_s3(&moto) else { return };
    broker.create_topic("events", 2);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker.bootstrap(), "    timeout: 1s\n", "");
    {
        let c = producer(&broker);
        produce(&c, 0, (0..300).map(|i| event(i, "a", i as i64)).collect(), 0);
        produce(&c, 1, (300..420).map(|i| event(i, "b", i as i64)).collect(), 0);
    }
    let w = Listening::start(Path::new(&p), &["--listen", "127.0.0.1:0"]);
    let addr = w.metrics_addr();
    wait_for_rows(dir.path(), 420, &|| w.log());
    broker.kill();
    // Down until a pass has failed (after the client's retries, 4 × `timeout`), naming the
    // broker; the watch goes on.
    let named = format!("kafka {}", broker.bootstrap());
    crate::watch::wait_until("a pass to fail naming the broker", &w, || w.log().contains(&named).then_some(()));
    broker.restart();
    {
        let c = producer(&broker);
        produce(&c, 1, (420..700).map(|i| event(i, "b", i as i64)).collect(), 0);
        produce(&c, 0, (700..760).map(|i| event(i, "a", i as i64)).collect(), 0);
    }
    wait_for_rows(dir.path(), 760, &|| w.log());
    // Lag per partition, and where each partition's committed offset stands.
    let m = crate::watch::wait_until("the lag to reach 0", &w, || {
        let m = http_get(&addr, "/metrics");
        let lag = |p: u32| {
            metric(
                &m,
                &format!(
                    "sluice_source_kafka_consumer_lag_records{{pipeline=\"stream\",source=\"events\",partition=\"{p}\"}}"
                ),
            )
        };
        (lag(0) == Some(0.0) && lag(1) == Some(0.0)).then_some(m)
    });
    let committed = |p: u32| {
        metric(
            &m,
            &format!("sluice_source_kafka_committed_offset{{pipeline=\"stream\",source=\"events\",partition=\"{p}\"}}"),
        )
    };
    assert_eq!((committed(0), committed(1)), (Some(360.0), Some(400.0)), "{m}");
    assert_eq!(
        metric(&m, "sluice_source_kafka_records_total{pipeline=\"stream\",source=\"events\"}"),
        Some(760.0),
        "{m}"
    );
    assert!(
        metric(&m, "sluice_source_kafka_errors_total{pipeline=\"stream\",source=\"events\"}").unwrap_or(0.0) > 0.0,
        "{m}"
    );
    assert!(m.contains("sluice_commit_latency_seconds_count{pipeline=\"stream\"}"), "{m}");
    let log = w.log();
    assert_eq!(w.stop(), Some(0), "{log}");
    assert!(log.contains(&format!("kafka {}", broker.bootstrap())), "the outage names the broker: {log}");
}

/// Sessions with a 10-unit gap, per user, generated with known boundaries: each user's events
/// go to one partition (by key), in time order.
/// An event (id, user, time), and the session start each id belongs to.
type Generated = (Vec<(u64, String, i64)>, Vec<(u64, i64)>);

fn session_events(users: usize, per_user: usize, seed: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let mut events = Vec::new();
    let mut expected = Vec::new(); // (id, session_start)
    let mut id = 0u64;
    for u in 0..users {
        let user = format!("user{u}");
        let mut t = rng.below(50) as i64;
        let mut start = t;
        for i in 0..per_user {
            if i > 0 {
                // Mostly within the gap (1..=10), now and then a break (>= 11).
                let step = if rng.below(6) == 0 { 11 + rng.below(30) as i64 } else { 1 + rng.below(10) as i64 };
                if step > 10 {
                    start = t + step;
                }
                t += step;
            }
            events.push((id, user.clone(), t));
            expected.push((id, start));
            id += 1;
        }
    }
    (events, expected)
}

/// The events split by user over 2 partitions (users 0, 2, 4, ... on partition 0), in time
/// order within each.
fn by_user_partition(events: &[(u64, String, i64)]) -> [Vec<(u64, String, i64)>; 2] {
    let mut parts: [Vec<(u64, String, i64)>; 2] = Default::default();
    for e in events {
        let u: usize = e.1[4..].parse().unwrap();
        parts[u % 2].push(e.clone());
    }
    for part in &mut parts {
        part.sort_by_key(|e| (e.2, e.0));
    }
    parts
}

const SESSIONIZE_10MS: &str = "steps:
  - plugin: sessionize
    config: {keys: [user], time: ts, gap: 10ms, unit: ms}
";

/// The lake's `out` holds every event once, with the session start the generator made.
fn assert_sessions(dir: &Path, expected: &[(u64, i64)]) {
    let got = query(&dir.join("lake"), "SELECT id, session_start AS s FROM out ORDER BY id");
    assert_eq!(got.len(), expected.len());
    let wrong: Vec<_> = got
        .iter()
        .zip(expected)
        .filter(|(g, (id, s))| g["id"].as_u64() != Some(*id) || g["s"].as_i64() != Some(*s))
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "sessions differ from the generated ones: {wrong:?}");
}

#[test]
fn sessions_run_across_units_and_a_restart() {
    let Some(broker) = TansuServer::start() else { return };
    broker.create_topic("events", 2);
    let c = producer(&broker);
    let (events, expected) = session_events(6, 400, 0x5e55);
    let by_partition = by_user_partition(&events);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker.bootstrap(), "", SESSIONIZE_10MS);
    // Half of each partition, a run, the rest, another run: sessions cross units (100 offsets)
    // and the restart.
    for (i, part) in by_partition.iter().enumerate() {
        let half = part.len() / 2;
        produce(&c, i as i32, part[..half].iter().map(|e| event(e.0, &e.1, e.2)).collect(), 0);
    }
    run_ok(dir.path(), &p);
    for (i, part) in by_partition.iter().enumerate() {
        let half = part.len() / 2;
        produce(&c, i as i32, part[half..].iter().map(|e| event(e.0, &e.1, e.2)).collect(), 0);
    }
    run_ok(dir.path(), &p);
    assert_sessions(dir.path(), &expected);
    // A stream's state does not grow with its units: a key's checkpoint (every 8 of its units)
    // supersedes its units before, so once a run opens the lake again their files are gone.
    // 12 units per partition, each with all 3 of its keys: units 8 to 11 remain.
    run_ok(dir.path(), &p);
    let ledger = std::fs::read_to_string(dir.path().join("lake/_sluice/ledger.jsonl")).unwrap();
    let units = ledger.lines().filter(|l| l.contains("\"state\"")).count();
    let tails = std::fs::read_dir(dir.path().join("lake/_sluice/state/out")).unwrap().count();
    assert!(units >= 24 && tails <= units / 2, "{tails} tails files for {units} units of 6 keys");
    let sessions = count(dir.path(), "SELECT count(DISTINCT (user, session_start)) AS n FROM out");
    let want = expected
        .iter()
        .map(|(_, s)| *s)
        .zip(events.iter().map(|e| e.1.clone()))
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(sessions as usize, want.len());
}

/// Behaviour events of `users` users over about three hours: (event_id, user_id, ts ms), each
/// user's in time order, with pauses longer than 30 minutes now and then.
fn behaviour(users: i64, seed: u64) -> Vec<(i64, i64, i64)> {
    let mut rng = Rng::new(seed);
    let base = 1_796_000_000_000i64;
    let mut out = Vec::new();
    let mut id = 0;
    for u in 0..users {
        let mut t = base + rng.below(600_000) as i64;
        for _ in 0..(20 + rng.below(60)) {
            out.push((id, u, t));
            id += 1;
            t += if rng.below(8) == 0 { 1_900_000 + rng.below(3_000_000) as i64 } else { rng.below(240_000) as i64 };
        }
    }
    out
}

#[test]
fn the_seed_stream_jobs_count_per_user_into_redis_and_sessions_into_the_lake() {
    let Some(broker) = TansuServer::start() else { return };
    let Some(redis) = sluice_testkit::RedisServer::start() else { return };
    broker.create_topic("user_behaviors", 3);
    let c = producer(&broker);
    let events = behaviour(40, 0xbe4a);
    // A user's events on one partition (by user), in time order within it.
    let mut parts: [Vec<(i64, i64, i64)>; 3] = Default::default();
    for e in &events {
        parts[(e.1 % 3) as usize].push(*e);
    }
    for p in &mut parts {
        p.sort_by_key(|e| (e.2, e.0));
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let env =
        [("KAFKA_BROKERS", broker.bootstrap()), ("REDIS_URL", redis.url(0)), ("LAKE_DIR", lake.display().to_string())];
    let run_seed = |name: &str| {
        let pipeline = repo().join("pipelines").join(name);
        let mut cmd = sluice();
        cmd.current_dir(dir.path()).envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let args = ["run", pipeline.to_str().unwrap()];
        let out = report(&args, cmd.args(args).output().unwrap());
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Half, both jobs, the rest, both jobs again (new processes: state from the lake).
    for half in [0, 1] {
        for (p, es) in parts.iter().enumerate() {
            let mid = es.len() / 2;
            let part = if half == 0 { &es[..mid] } else { &es[mid..] };
            let values: Vec<sluice_kafka::client::Message> = part
                .iter()
                .map(|(id, u, t)| {
                    let v = json!({"event_id": id, "user_id": u, "item_id": id % 17, "event_type": "view", "ts": t});
                    (Some(u.to_string().into_bytes()), Some(v.to_string().into_bytes()), *t)
                })
                .collect();
            for chunk in values.chunks(300) {
                c.produce_messages("user_behaviors", p as i32, chunk.to_vec()).unwrap();
            }
        }
        run_seed("stream-user-counts-redis.yaml");
        run_seed("stream-sessions-lake.yaml");
    }

    // Redis: every user's per-minute counts, whole.
    let mut want: std::collections::BTreeMap<i64, std::collections::BTreeMap<i64, i64>> = Default::default();
    for (_, u, t) in &events {
        *want.entry(*u).or_default().entry(t - t.rem_euclid(60_000)).or_default() += 1;
    }
    for (u, minutes) in &want {
        let got = redis.cli(&["HGETALL", &format!("rt:user:{u}")]);
        let lines: Vec<&str> = got.lines().collect();
        let got: std::collections::BTreeMap<i64, i64> =
            lines.chunks(2).map(|kv| (kv[0].parse().unwrap(), kv[1].parse().unwrap())).collect();
        assert_eq!(&got, minutes, "user {u}");
    }

    // The lake: every closed session once, whole; each user's last session is still open.
    let mut sessions: Vec<(i64, i64, i64, i64)> = Vec::new(); // user, start, end, events
    let mut by_user: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for (_, u, t) in &events {
        by_user.entry(*u).or_default().push(*t);
    }
    for (u, ts) in &by_user {
        let (mut start, mut end, mut n) = (ts[0], ts[0], 0);
        for &t in ts {
            if t - end > 1_800_000 {
                sessions.push((*u, start, end, n));
                (start, n) = (t, 0);
            }
            end = t;
            n += 1;
        }
    }
    sessions.sort();
    let got: Vec<(i64, i64, i64, i64)> = query(
        &lake,
        "SELECT user_id AS u, session_start AS s, session_end AS e, events AS n FROM user_sessions ORDER BY 1, 2",
    )
    .iter()
    .map(|r| (r["u"].as_i64().unwrap(), r["s"].as_i64().unwrap(), r["e"].as_i64().unwrap(), r["n"].as_i64().unwrap()))
    .collect();
    assert!(sessions.len() > 40, "the generator makes closed sessions: {}", sessions.len());
    assert_eq!(got, sessions);
    // Every keyed-state file that a key's latest unit names is there (two pipelines share the
    // lake); a key's checkpoint supersedes its earlier units, whose files may be gone.
    let ledger = std::fs::read_to_string(lake.join("_sluice/ledger.jsonl")).unwrap();
    let mut latest: std::collections::HashMap<String, String> = Default::default();
    for line in ledger.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        for st in r["state"].as_array().into_iter().flatten() {
            let Some(t) = st["tails"].as_str() else { continue };
            for g in st["ranges"].as_array().into_iter().flatten() {
                assert_eq!(g["arrival"], true, "a stream's ranges are in arrival order: {g}");
                latest.insert(format!("{} {} {}", r["dataset"], st["step"], g["key"]), t.to_string());
            }
        }
    }
    assert!(!latest.is_empty());
    for t in latest.values() {
        assert!(lake.join(t).is_file(), "{t}, named by a key's latest unit, is missing");
    }
}

#[test]
fn late_events_join_their_session_within_the_gap_and_go_to_rejects_beyond_it() {
    let Some(broker) = TansuServer::start() else { return };
    broker.create_topic("events", 1);
    let c = producer(&broker);
    let steps = "steps:
  - plugin: sessionize
    config: {keys: [user], time: ts, gap: 10ms, unit: ms}
";
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker.bootstrap(), "", steps);
    // u: a session 0..8, a pause, a session from 100. Then, in a later run (a fresh instance,
    // seeded from the lake): 95 (late, within the gap of the open session 100..104: joins it,
    // which now starts at 95) and 50 (late by more than the gap: its session 0..8 was closed).
    produce(&c, 0, [(0, 0), (1, 4), (2, 8), (3, 100), (4, 104)].iter().map(|&(id, t)| event(id, "u", t)).collect(), 0);
    run_ok(dir.path(), &p);
    produce(&c, 0, [(5, 95), (6, 50), (7, 110)].iter().map(|&(id, t)| event(id, "u", t)).collect(), 0);
    run_ok(dir.path(), &p);
    let lake = dir.path().join("lake");
    let got: Vec<(i64, i64, i64)> =
        query(&lake, "SELECT id, session_start AS s, session_event AS e FROM out ORDER BY id")
            .iter()
            .map(|r| (r["id"].as_i64().unwrap(), r["s"].as_i64().unwrap(), r["e"].as_i64().unwrap()))
            .collect();
    assert_eq!(got, vec![(0, 0, 1), (1, 0, 2), (2, 0, 3), (3, 100, 1), (4, 100, 2), (5, 95, 3), (7, 95, 4)]);
    let rejects = query(
        &lake,
        &format!("SELECT line, step, reason FROM read_parquet('{}/_rejects/**/*.parquet')", lake.display()),
    );
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert_eq!(rejects[0]["step"], "sessionize");
    assert!(rejects[0]["reason"].as_str().unwrap().starts_with("late event: 50 is more than the gap"), "{rejects:?}");
}

#[test]
fn watch_keeps_sessions_across_passes_and_a_sigkill() {
    let Some(broker) = TansuServer::start() else { return };
    broker.create_topic("events", 2);
    let c = producer(&broker);
    let (events, expected) = session_events(8, 150, 0xca44);
    let by_partition = by_user_partition(&events);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &broker.bootstrap(), "", SESSIONIZE_10MS);
    // Five bursts, each waited for (passes that carry the instances over); the watch is
    // SIGKILLed after the second and started again (a fresh instance, seeded from the lake).
    let mut w = Watch::start(dir.path(), &p, "watch.log");
    let mut written = 0;
    for burst in 0..5 {
        for (i, part) in by_partition.iter().enumerate() {
            let (from, to) = (part.len() * burst / 5, part.len() * (burst + 1) / 5);
            produce(&c, i as i32, part[from..to].iter().map(|e| event(e.0, &e.1, e.2)).collect(), 0);
            written += to - from;
        }
        w.wait_rows(dir.path(), written as i64, "watch.log");
        if burst == 1 {
            let _ = w.0.kill();
            let _ = w.0.wait();
            w = Watch::start(dir.path(), &p, "watch.log");
        }
    }
    assert_eq!(w.stop().code(), Some(0));
    assert_sessions(dir.path(), &expected);
}

#[test]
fn sessions_into_postgres_keep_state_rows_per_key_not_per_unit() {
    let Some(broker) = TansuServer::start() else { return };
    let Some(pg) = sluice_testkit::PgServer::start() else { return };
    pg.create_db("stream");
    broker.create_topic("events", 2);
    let c = producer(&broker);
    let (events, expected) = session_events(6, 400, 0x9e55);
    let by_partition = by_user_partition(&events);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    write(
        &p,
        &format!(
            "pipeline: stream_pg
env: [PGPASS]
sources:
  events:
    kind: kafka
    brokers: {}
    topic: events
    max_rows: 100
    format: {{jsonl: {{columns: {{id: int64, user: utf8, ts: int64}}}}}}
{SESSIONIZE_10MS}sink:
  kind: postgres
  url: {}
  password_env: PGPASS
  table: public.sessions
",
            broker.bootstrap(),
            pg.url("stream")
        ),
    );
    let run = || {
        let out = report(
            &["run"],
            sluice()
                .current_dir(dir.path())
                .env("PGPASS", sluice_testkit::PG_PASSWORD)
                .args(["run"])
                .arg(&p)
                .output()
                .unwrap(),
        );
        assert!(out.status.success(), "run failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    // Two halves, two runs: the second seeds each key from the state Postgres holds.
    for half in [0, 1] {
        for (i, part) in by_partition.iter().enumerate() {
            let (from, to) = if half == 0 { (0, part.len() / 2) } else { (part.len() / 2, part.len()) };
            produce(&c, i as i32, part[from..to].iter().map(|e| event(e.0, &e.1, e.2)).collect(), 0);
        }
        run();
    }
    run();
    let got = pg.psql("stream", "SELECT id || ':' || session_start FROM public.sessions ORDER BY id");
    let want: Vec<String> = expected.iter().map(|(id, s)| format!("{id}:{s}")).collect();
    assert_eq!(got.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>(), want);
    let n = |sql: &str| pg.psql("stream", sql).trim().parse::<i64>().unwrap();
    let (units, keyed) = (n("SELECT count(*) FROM sluice.units"), n("SELECT count(*) FROM sluice.keyed"));
    // 12 units per partition, each with all 3 of its keys: a key's checkpoint at its 9th unit
    // supersedes the 8 before it, whose rows went in the same transaction.
    assert!(units >= 24 && keyed <= units / 2, "{keyed} keyed-state rows for {units} units of 6 keys");
}
