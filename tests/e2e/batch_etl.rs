//! The batch ETL seed end to end, with the repository's pipelines against real servers the test
//! starts: behaviour events extracted incrementally from Postgres, cleaned, de-duplicated,
//! enriched and rolled up per user, event type and day into the lake
//! (`pipelines/events-daily.yaml`), and the items each user touched, with their latest times,
//! into Redis sorted sets, with the run's state in Postgres (`pipelines/user-features-redis.yaml`).
//! After each of two runs (new events between them, continuing the last day, and late events of
//! earlier days), the lake and Redis equal the same job in SQL.

use std::path::Path;

use sluice_testkit::{PG_PASSWORD, PgServer, RedisServer};

use crate::support::*;

/// `n` events after event `from`, 53 s apart; every 97th has no user; `event_type` in mixed
/// case and padding; every 50th event sent twice (a retry: a new id, the same content).
fn insert_events(pg: &PgServer, from: i64, n: i64) {
    pg.psql(
        "app",
        &format!(
            "INSERT INTO user_behaviors
             SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE g % 40 END, g % 200,
                    (ARRAY['view', ' Click', 'like', 'purchase', 'VIEW '])[1 + g % 5],
                    timestamptz '2026-03-01 00:00+00' + g * interval '53 seconds', now()
             FROM generate_series({a}, {b}) g;
             INSERT INTO user_behaviors
             SELECT event_id + 10000000, user_id, item_id, event_type, ts, now()
             FROM user_behaviors WHERE event_id BETWEEN {a} AND {b} AND event_id % 50 = 0;",
            a = from + 1,
            b = from + n
        ),
    );
}

/// The same cleaning and de-duplication in SQL.
const CLEAN: &str = "(SELECT DISTINCT user_id, item_id, lower(trim(event_type)) AS event_type, ts
                      FROM user_behaviors WHERE user_id IS NOT NULL AND event_type IS NOT NULL) e";

fn run_pipeline(dir: &Path, name: &str, env: &[(&str, String)]) -> serde_json::Value {
    let s = dir.join(format!("{name}.json"));
    let pipeline = repo().join("pipelines").join(name);
    let args = ["run", pipeline.to_str().unwrap(), "--summary-json", s.to_str().unwrap()];
    let mut c = sluice();
    c.current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = report(&args, c.args(args).output().expect("sluice runs"));
    assert!(out.status.success(), "{name} failed");
    summary(&s)
}

#[test]
fn events_into_daily_aggregates_in_the_lake_and_user_features_in_redis() {
    let Some(pg) = PgServer::start() else { return };
    let Some(redis) = RedisServer::start() else { return };
    pg.create_db("app");
    pg.psql(
        "app",
        "CREATE TABLE user_behaviors (event_id bigint PRIMARY KEY, user_id int, item_id int NOT NULL,
           event_type text, ts timestamptz NOT NULL, updated_at timestamptz NOT NULL);
         CREATE INDEX ON user_behaviors (updated_at);",
    );
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let env = [
        ("APP_PG_URL", pg.url("app")),
        ("APP_PG_PASSWORD", PG_PASSWORD.to_string()),
        ("LAKE_DIR", lake.display().to_string()),
        ("REDIS_URL", redis.url(0)),
    ];
    for (round, (from, n)) in [(0, 12_000), (12_000, 3_000)].into_iter().enumerate() {
        insert_events(&pg, from, n);
        if round == 1 {
            // Events that arrive late: their time falls in days already aggregated.
            pg.psql(
                "app",
                "INSERT INTO user_behaviors SELECT 20000000 + g, g % 40, g % 200, 'view',
                   timestamptz '2026-03-02 12:00+00' + g * interval '7 minutes', now()
                 FROM generate_series(1, 30) g",
            );
        }
        let s = run_pipeline(dir.path(), "events-daily.yaml", &env);
        assert!(s["files_committed"].as_u64().unwrap() >= 1, "{s}");
        assert!(s["rows_rejected"].as_u64().unwrap() > 0, "the events without a user are rejects: {s}");

        let want = pg.psql(
            "app",
            &format!(
                "SELECT user_id, event_type, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*),
                        min(extract(epoch FROM ts))::bigint, max(extract(epoch FROM ts))::bigint
                 FROM {CLEAN} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            ),
        );
        let got: Vec<String> = query(
            &lake,
            "SELECT user_id, event_type, strftime(day, '%Y-%m-%d') AS d, sum(events) AS events,
                    min(first_epoch)::BIGINT AS f, max(last_epoch)::BIGINT AS l
             FROM user_daily GROUP BY ALL ORDER BY 1, 2, 3",
        )
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().map_or_else(|| r[k].to_string(), str::to_string);
            format!("{}|{}|{}|{}|{}|{}", s("user_id"), s("event_type"), s("d"), s("events"), s("f"), s("l"))
        })
        .collect();
        let want: Vec<&str> = want.lines().collect();
        assert_eq!(got.len(), want.len(), "round {round}: groups");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "round {round}");
        }

        run_pipeline(dir.path(), "user-features-redis.yaml", &env);
        let want = pg.psql(
            "app",
            &format!(
                "SELECT user_id, string_agg(item_id || '=' || latest, ',' ORDER BY item_id)
                 FROM (SELECT user_id, item_id, max(extract(epoch FROM ts))::bigint AS latest FROM {CLEAN}
                       GROUP BY 1, 2) s GROUP BY 1 ORDER BY 1"
            ),
        );
        for line in want.lines() {
            let (user, items) = line.split_once('|').unwrap();
            let got = redis.cli(&["ZRANGE", &format!("recent:user:{user}"), "0", "-1", "WITHSCORES"]);
            let mut pairs: Vec<(i64, i64)> = got
                .lines()
                .collect::<Vec<_>>()
                .chunks(2)
                .map(|p| (p[0].parse().unwrap(), p[1].parse::<f64>().unwrap() as i64))
                .collect();
            pairs.sort();
            let got = pairs.iter().map(|(i, t)| format!("{i}={t}")).collect::<Vec<_>>().join(",");
            assert_eq!(got, items, "round {round}: user {user}");
        }
    }
    // The features' run state lives in Postgres.
    let units: i64 = pg.psql("app", "SELECT count(*) FROM sluice.units").parse().unwrap();
    assert!(units >= 2, "{units}");
}
