//! rskafka on a private runtime. Calls block the calling thread (a worker, or the runner's
//! blocking task) on a task spawned there, so the source works from any thread, inside another
//! runtime or not (as sluice-postgres does).

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::{Record, RecordAndOffset};

/// A failure talking to the brokers, naming them.
#[derive(Debug, thiserror::Error)]
#[error("kafka {brokers}: {message}")]
pub struct ClientError {
    pub brokers: String,
    pub message: String,
}

/// A message to produce: key, value, timestamp (ms since the epoch).
pub type Message = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

/// `text` with every secret of at least 4 bytes masked.
fn redact(secrets: &[String], text: &str) -> String {
    secrets.iter().filter(|s| s.len() >= 4).fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
}

pub struct KafkaClient {
    rt: tokio::runtime::Runtime,
    client: Arc<Client>,
    brokers: String,
    secrets: Vec<String>,
    partitions: Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
}

/// How to reach the brokers.
#[derive(Clone, Default)]
pub struct Connect {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Give up connecting after this long; a request retried after failures gives up after
    /// four times as long (a broker restarting is waited for, a dead one is reported).
    pub timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<rskafka::client::SaslConfig>,
    /// Texts (passwords) masked in every error message.
    pub secrets: Vec<String>,
}

impl KafkaClient {
    /// Connect to the bootstrap `brokers` (`host:port`), giving up after `timeout`.
    pub fn connect(brokers: &[String], timeout: Duration) -> Result<KafkaClient, ClientError> {
        Self::open(Connect { brokers: brokers.to_vec(), timeout, ..Default::default() })
    }

    /// Connect as `c` says.
    pub fn open(c: Connect) -> Result<KafkaClient, ClientError> {
        let named = c.brokers.join(",");
        let secrets = c.secrets.clone();
        let err = |message: String| ClientError { brokers: named.clone(), message: redact(&secrets, &message) };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-kafka")
            .enable_all()
            .build()
            .map_err(|e| err(format!("starting the client runtime: {e}")))?;
        let backoff = rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(c.timeout * 4),
        };
        let mut builder = ClientBuilder::new(c.brokers.clone()).client_id("sluice").backoff_config(backoff);
        if let Some(tls) = c.tls.clone() {
            builder = builder.tls_config(tls);
        }
        if let Some(sasl) = c.sasl.clone() {
            builder = builder.sasl_config(sasl);
        }
        let timeout = c.timeout;
        let client =
            futures_executor::block_on(rt.spawn(async move { tokio::time::timeout(timeout, builder.build()).await }))
                .map_err(|e| err(e.to_string()))?
                .map_err(|_| err(format!("no broker answered within {timeout:?}")))?
                .map_err(|e| err(e.to_string()))?;
        Ok(KafkaClient {
            rt,
            client: Arc::new(client),
            brokers: named,
            secrets: c.secrets,
            partitions: Mutex::new(HashMap::new()),
        })
    }

    fn err(&self, message: impl std::fmt::Display) -> ClientError {
        ClientError { brokers: self.brokers.clone(), message: redact(&self.secrets, &message.to_string()) }
    }

    fn wait<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> Result<T, ClientError> {
        futures_executor::block_on(self.rt.spawn(f)).map_err(|e| self.err(format!("client task: {e}")))
    }

    /// The partitions of `topic`, sorted; an unknown topic is an error naming it.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, ClientError> {
        let client = self.client.clone();
        let topics = self.wait(async move { client.list_topics().await })?.map_err(|e| self.err(e))?;
        let Some(t) = topics.into_iter().find(|t| t.name == topic) else {
            return Err(self.err(format!("no topic `{topic}`")));
        };
        Ok(t.partitions.into_iter().collect())
    }

    fn partition(&self, topic: &str, partition: i32) -> Result<Arc<PartitionClient>, ClientError> {
        let key = (topic.to_string(), partition);
        if let Some(p) = self.partitions.lock().expect("partition clients").get(&key) {
            return Ok(p.clone());
        }
        let (client, t) = (self.client.clone(), topic.to_string());
        let p = self
            .wait(async move { client.partition_client(t, partition, UnknownTopicHandling::Error).await })?
            .map_err(|e| self.err(format!("{topic}/{partition}: {e}")))?;
        let p = Arc::new(p);
        self.partitions.lock().expect("partition clients").insert(key, p.clone());
        Ok(p)
    }

    /// The first offset still held.
    pub fn earliest(&self, topic: &str, partition: i32) -> Result<i64, ClientError> {
        let p = self.partition(topic, partition)?;
        self.wait(async move { p.get_offset(OffsetAt::Earliest).await })?
            .map_err(|e| self.err(format!("{topic}/{partition}: earliest offset: {e}")))
    }

    /// One past the last record: from a fetch's high watermark, not ListOffsets(latest), which
    /// Tansu 0.6.0 answers with the last batch's base offset + 1.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Result<i64, ClientError> {
        Ok(self.bounds(topic, partition)?.1)
    }

    /// The first offset still held and the high watermark.
    pub fn bounds(&self, topic: &str, partition: i32) -> Result<(i64, i64), ClientError> {
        let from = self.earliest(topic, partition)?;
        Ok((from, self.fetch(topic, partition, from, 1..4096, 10)?.1))
    }

    /// The first offset whose record's timestamp is at or after `at_ms` (ms since the epoch),
    /// or the high watermark when there is none. The broker's answer (ListOffsets by time) is
    /// checked against the records it points at and corrected by reading on: some brokers
    /// answer with an earlier offset.
    pub fn offset_at(&self, topic: &str, partition: i32, at_ms: i64) -> Result<i64, ClientError> {
        let (earliest, high) = self.bounds(topic, partition)?;
        let p = self.partition(topic, partition)?;
        let at = chrono::DateTime::from_timestamp_millis(at_ms).unwrap_or_default();
        let told = self
            .wait(async move { p.get_offset(OffsetAt::Timestamp(at)).await })?
            .map_err(|e| self.err(format!("{topic}/{partition}: offset at {at}: {e}")))?;
        let mut offset = if (earliest..high).contains(&told) { told } else { earliest };
        while offset < high {
            let (records, _) = self.fetch(topic, partition, offset, 1..(1 << 20), 100)?;
            let mut last = None;
            for r in records.iter().filter(|r| r.offset >= offset) {
                if r.record.timestamp.timestamp_millis() >= at_ms {
                    return Ok(r.offset);
                }
                last = Some(r.offset);
            }
            match last {
                Some(l) => offset = l + 1,
                None => break,
            }
        }
        Ok(high)
    }

    /// Records from `offset` (at most about `bytes.end` bytes, waiting up to `max_wait_ms` for
    /// `bytes.start`), and the high watermark.
    pub fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        bytes: Range<i32>,
        max_wait_ms: i32,
    ) -> Result<(Vec<RecordAndOffset>, i64), ClientError> {
        let p = self.partition(topic, partition)?;
        self.wait(async move { p.fetch_records(offset, bytes, max_wait_ms).await })?
            .map_err(|e| self.err(format!("{topic}/{partition} at offset {offset}: {e}")))
    }

    /// Write `records` to one partition in one batch; their offsets.
    pub fn produce(&self, topic: &str, partition: i32, records: Vec<Record>) -> Result<Vec<i64>, ClientError> {
        let p = self.partition(topic, partition)?;
        self.wait(async move { p.produce(records, Compression::NoCompression).await })?
            .map_err(|e| self.err(format!("{topic}/{partition}: produce: {e}")))
    }

    /// Write messages (key, value, timestamp in ms) to one partition in one batch; their
    /// offsets. For tests and benchmarks.
    pub fn produce_messages(
        &self,
        topic: &str,
        partition: i32,
        messages: Vec<Message>,
    ) -> Result<Vec<i64>, ClientError> {
        let records = messages
            .into_iter()
            .map(|(key, value, ts)| Record {
                key,
                value,
                headers: Default::default(),
                timestamp: chrono::DateTime::from_timestamp_millis(ts).unwrap_or_default(),
            })
            .collect();
        self.produce(topic, partition, records)
    }
}
