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

pub struct KafkaClient {
    rt: tokio::runtime::Runtime,
    client: Arc<Client>,
    brokers: String,
    partitions: Mutex<HashMap<(String, i32), Arc<PartitionClient>>>,
}

impl KafkaClient {
    /// Connect to the bootstrap `brokers` (`host:port`), giving up after `timeout`.
    pub fn connect(brokers: &[String], timeout: Duration) -> Result<KafkaClient, ClientError> {
        let named = brokers.join(",");
        let err = |message: String| ClientError { brokers: named.clone(), message };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-kafka")
            .enable_all()
            .build()
            .map_err(|e| err(format!("starting the client runtime: {e}")))?;
        let builder = ClientBuilder::new(brokers.to_vec()).client_id("sluice");
        let client =
            futures_executor::block_on(rt.spawn(async move { tokio::time::timeout(timeout, builder.build()).await }))
                .map_err(|e| err(e.to_string()))?
                .map_err(|_| err(format!("no broker answered within {timeout:?}")))?
                .map_err(|e| err(e.to_string()))?;
        Ok(KafkaClient { rt, client: Arc::new(client), brokers: named, partitions: Mutex::new(HashMap::new()) })
    }

    fn err(&self, message: impl std::fmt::Display) -> ClientError {
        ClientError { brokers: self.brokers.clone(), message: message.to_string() }
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
        let from = self.earliest(topic, partition)?;
        Ok(self.fetch(topic, partition, from, 1..4096, 10)?.1)
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
}
