//! The Kafka benchmark's helpers (benches/kafka/run.sh), on the same client as the source:
//!
//! - `kbench produce BROKER TOPIC PARTITIONS RECORDS RATE LOG`: behaviour events
//!   (`{"id","user","ts","action"}`, keyed by user, a user's events on one partition, `ts` the
//!   produce time in ms) at about RATE records per second (0: as fast as it can), in batches of
//!   500; LOG gets one line per batch: `partition,first_offset,count,produced_ms`.
//! - `kbench consume BROKER TOPIC RECORDS`: the floor, a plain consumer that reads every
//!   partition from the earliest offset until RECORDS records came, and discards them; prints
//!   JSON with the wall time and records per second.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_kafka::client::KafkaClient;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

const ACTIONS: [&str; 4] = ["view", "click", "cart", "buy"];
const BATCH: u64 = 500;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: kbench produce BROKER TOPIC PARTITIONS RECORDS RATE LOG | consume BROKER TOPIC RECORDS");
        std::process::exit(2)
    };
    match args.first().map(String::as_str) {
        Some("produce") if args.len() == 7 => {
            let client = KafkaClient::connect(&[args[1].clone()], Duration::from_secs(10)).expect("connect");
            let topic = &args[2];
            let partitions: u64 = args[3].parse().unwrap_or_else(|_| usage());
            let records: u64 = args[4].parse().unwrap_or_else(|_| usage());
            let rate: f64 = args[5].parse().unwrap_or_else(|_| usage());
            let mut log = std::io::BufWriter::new(std::fs::File::create(&args[6]).expect("log file"));
            let users = 10_000u64;
            let started = Instant::now();
            let mut sent = 0u64;
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            while sent < records {
                let p = (sent / BATCH) % partitions;
                let n = BATCH.min(records - sent);
                let ts = now_ms();
                let batch: Vec<_> = (0..n)
                    .map(|i| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        // A user per partition: users u with u % partitions == p.
                        let user = (rng % (users / partitions)) * partitions + p;
                        let id = sent + i;
                        let action = ACTIONS[(rng >> 20) as usize % ACTIONS.len()];
                        let v = format!(r#"{{"id":{id},"user":"u{user}","ts":{ts},"action":"{action}"}}"#);
                        (Some(format!("u{user}").into_bytes()), Some(v.into_bytes()), ts)
                    })
                    .collect();
                let offsets = client.produce_messages(topic, p as i32, batch).expect("produce");
                writeln!(log, "{p},{},{n},{ts}", offsets[0]).expect("log");
                sent += n;
                if rate > 0.0 {
                    let due = started + Duration::from_secs_f64(sent as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            log.flush().expect("log");
            let secs = started.elapsed().as_secs_f64();
            println!(r#"{{"produced":{sent},"seconds":{secs:.3},"records_per_second":{:.0}}}"#, sent as f64 / secs);
        }
        Some("consume") if args.len() == 4 => {
            let started = Instant::now();
            let client = KafkaClient::connect(&[args[1].clone()], Duration::from_secs(10)).expect("connect");
            let topic = &args[2];
            let want: u64 = args[3].parse().unwrap_or_else(|_| usage());
            let parts = client.partitions(topic).expect("partitions");
            let mut next: Vec<i64> = parts.iter().map(|&p| client.earliest(topic, p).expect("earliest")).collect();
            let (mut got, mut bytes) = (0u64, 0u64);
            while got < want {
                let mut progress = false;
                for (i, &p) in parts.iter().enumerate() {
                    let (records, _) = client.fetch(topic, p, next[i], 1..(4 << 20), 200).expect("fetch");
                    let from = next[i];
                    for r in records.into_iter().filter(|r| r.offset >= from) {
                        next[i] = r.offset + 1;
                        got += 1;
                        bytes += r.record.value.as_ref().map_or(0, Vec::len) as u64;
                        progress = true;
                    }
                }
                if !progress {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                r#"{{"records":{got},"bytes":{bytes},"seconds":{secs:.3},"records_per_second":{:.0}}}"#,
                got as f64 / secs
            );
        }
        _ => usage(),
    }
}
