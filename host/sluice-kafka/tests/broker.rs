//! Against a real broker (Tansu, started by the test): partitions listed, records produced in
//! multi-record batches, high watermarks from fetches, and the planned ranges read back whole,
//! every offset once.

use std::time::Duration;

use rskafka::record::Record;
use sluice_kafka::client::KafkaClient;
use sluice_kafka::mark::Mark;
use sluice_kafka::plan::{Position, cut};
use sluice_testkit::TansuServer;

fn record(i: i64) -> Record {
    Record {
        key: Some(format!("user-{}", i % 7).into_bytes()),
        value: Some(format!("{{\"id\":{i}}}").into_bytes()),
        headers: Default::default(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i).unwrap(),
    }
}

#[test]
fn planned_ranges_read_every_offset_once() {
    let Some(broker) = TansuServer::start() else { return };
    broker.create_topic("events", 3);
    let client = KafkaClient::connect(&[broker.bootstrap()], Duration::from_secs(10)).unwrap();
    assert_eq!(client.partitions("events").unwrap(), vec![0, 1, 2]);
    assert!(client.partitions("nope").unwrap_err().to_string().contains("no topic `nope`"));
    // 250 records on partition 0 and 130 on 1, 50 to a batch; none on 2.
    let mut next_id = 0i64;
    for (p, n) in [(0, 250i64), (1, 130)] {
        let mut left = n;
        while left > 0 {
            let k = left.min(50);
            let batch: Vec<Record> = (0..k).map(|j| record(next_id + j)).collect();
            let offsets = client.produce("events", p, batch).unwrap();
            assert_eq!(offsets.len() as i64, k);
            next_id += k;
            left -= k;
        }
    }
    let positions: Vec<Position> = [0, 1, 2]
        .iter()
        .map(|&p| Position { partition: p, next: 0, high: client.high_watermark("events", p).unwrap() })
        .collect();
    assert_eq!(positions.iter().map(|p| p.high).collect::<Vec<_>>(), vec![250, 130, 0]);
    let units = cut(&Mark::new("events"), &positions, 100, 100, &|_, _| true);
    assert_eq!(units.len(), 5);
    let mut seen = std::collections::BTreeSet::new();
    for u in &units {
        let mut at = u.from;
        while at < u.to {
            let (records, high) = client.fetch("events", u.partition, at, 1..1_000_000, 100).unwrap();
            assert!(high >= u.to);
            assert!(!records.is_empty(), "no records at {at} of {u:?}");
            for r in records.into_iter().filter(|r| r.offset < u.to) {
                assert_eq!(r.offset, at, "offsets without gaps");
                assert!(seen.insert((u.partition, r.offset)));
                at += 1;
            }
        }
    }
    assert_eq!(seen.len(), 380);
    assert_eq!(units.last().unwrap().mark.next, [(0, 250), (1, 130), (2, 0)].into());
}
