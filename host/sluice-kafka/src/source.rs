//! `KafkaSource`: units are offset ranges of one topic's partitions, read after the committed
//! mark, decoded by the file readers one row per record, with the envelope's partition, offset,
//! key and timestamp as columns when asked for.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow_schema::SchemaRef;
use sluice_core::connector::SourceConnector;
use sluice_core::error::SourceError;
use sluice_core::source::{BatchStream, Reject, Settled, Source, SourceItem, SourceMetric, SourceUnit};
use sluice_core::spec::{RejectPolicy, Settings, SourceSpec};
use sluice_source::MessageFormat;

use crate::client::{ClientError, Connect, KafkaClient};
use crate::config::{KafkaSpec, Sasl, Start};
use crate::mark::Mark;
use crate::plan::{self, Position};

/// The runtime half of `kind: kafka`.
pub struct KafkaSourceConnector;

impl SourceConnector for KafkaSourceConnector {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn build(&self, spec: &SourceSpec, settings: &Settings) -> Result<Arc<dyn Source>, SourceError> {
        let config = spec.config_as::<KafkaSpec>().ok_or_else(|| SourceError::Config {
            source_name: spec.name.clone(),
            message: "not a kafka source".into(),
        })?;
        if config.sasl.as_ref().is_some_and(|s| s.mechanism == crate::config::RawMechanism::Plain)
            && config.tls.is_none()
        {
            tracing::warn!(source = %spec.name, "SASL PLAIN without `tls:`: the password crosses the network in the clear");
        }
        Ok(Arc::new(KafkaSource::new(&spec.name, config.clone(), spec.rejects, settings.batch_rows)?))
    }
}

/// How long a discovery's units may be handed out once more for the same mark: `watch` lists,
/// then its pass lists again at once, and both must see the same units (a range that grew in
/// between would be another unit, and the pass would skip it).
const MEMO: Duration = Duration::from_secs(5);
/// Units planned per discovery.
const MAX_UNITS: usize = 1000;

/// A discovery, kept for [`MEMO`].
struct Memo {
    mark: Option<String>,
    at: Instant,
    units: Vec<SourceUnit>,
}

#[derive(Default)]
struct State {
    memo: Option<Memo>,
    /// The mark after each planned unit, by locator.
    marks: HashMap<String, String>,
    /// Where partitions without a committed offset start, once resolved (`latest` and a
    /// timestamp are resolved once per process, so that records arriving meanwhile are not
    /// skipped).
    starts: HashMap<i32, i64>,
    /// When each short last range (partition, first offset) was first seen.
    tails: HashMap<(i32, i64), Instant>,
    /// Per partition: the committed next offset and the high watermark last seen.
    lag: HashMap<i32, (i64, i64)>,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    rejected: AtomicU64,
    fetches: AtomicU64,
    errors: AtomicU64,
}

pub struct KafkaSource {
    name: String,
    spec: KafkaSpec,
    rejects: RejectPolicy,
    schema: SchemaRef,
    format: MessageFormat,
    batch_rows: usize,
    client: Mutex<Option<Arc<KafkaClient>>>,
    state: Mutex<State>,
    following: AtomicBool,
    counters: Arc<Counters>,
}

impl KafkaSource {
    pub fn new(name: &str, spec: KafkaSpec, rejects: RejectPolicy, batch_rows: usize) -> Result<Self, SourceError> {
        let format = MessageFormat::new(&spec.format, spec.format_schema(), spec.limits.max_record_bytes)
            .map_err(|message| SourceError::Config { source_name: name.to_string(), message })?;
        Ok(KafkaSource {
            name: name.to_string(),
            schema: spec.schema(),
            spec,
            rejects,
            format,
            batch_rows: batch_rows.max(1),
            client: Mutex::new(None),
            state: Mutex::new(State::default()),
            following: AtomicBool::new(false),
            counters: Arc::default(),
        })
    }

    fn remote(&self, e: ClientError) -> SourceError {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        SourceError::Remote { server: format!("kafka {}", e.brokers), message: e.message }
    }

    /// The client, connected on first use and again after a failure.
    fn client(&self) -> Result<Arc<KafkaClient>, SourceError> {
        let mut c = self.client.lock().expect("client lock");
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let connect = Connect {
            brokers: self.spec.brokers.clone(),
            timeout: self.spec.timeout,
            tls: self.tls()?,
            sasl: self.spec.sasl.as_ref().map(sasl),
            secrets: self.spec.secrets(),
        };
        let client = Arc::new(KafkaClient::open(connect).map_err(|e| self.remote(e))?);
        *c = Some(client.clone());
        Ok(client)
    }

    /// Forget the client after a failure: the next call connects afresh.
    fn reset(&self) {
        *self.client.lock().expect("client lock") = None;
    }

    fn tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, SourceError> {
        let Some(ca) = &self.spec.tls else { return Ok(None) };
        let config_err = |message: String| SourceError::Config { source_name: self.name.clone(), message };
        let mut roots = rustls::RootCertStore::empty();
        match ca {
            Some(path) => {
                use rustls::pki_types::pem::PemObject;
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| config_err(format!("tls.ca_file {}: {e}", path.display())))?;
                for cert in certs {
                    let cert = cert.map_err(|e| config_err(format!("tls.ca_file {}: {e}", path.display())))?;
                    roots.add(cert).map_err(|e| config_err(format!("tls.ca_file {}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(config_err("tls: no trusted roots found on this system; give `tls.ca_file`".into()));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_err(format!("tls: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(Arc::new(config)))
    }

    /// Where partition `p` starts when the mark has no offset for it.
    fn start_of(&self, client: &KafkaClient, p: i32, earliest: i64, high: i64) -> Result<i64, ClientError> {
        if let Some(&s) = self.state.lock().expect("state lock").starts.get(&p) {
            return Ok(s);
        }
        let s = match self.spec.start {
            Start::Earliest => earliest,
            Start::Latest => high,
            Start::Timestamp(ms) => client.offset_at(&self.spec.topic, p, ms)?,
        };
        // `earliest` stays relative to what the broker holds; the others are fixed now.
        if self.spec.start != Start::Earliest {
            self.state.lock().expect("state lock").starts.insert(p, s);
        }
        Ok(s)
    }

    /// Each partition's next offset and high watermark.
    fn positions(&self, client: &KafkaClient, mark: &Mark) -> Result<Vec<Position>, SourceError> {
        let topic = &self.spec.topic;
        let remote = |e: ClientError| self.remote(e);
        let all = client.partitions(topic).map_err(remote)?;
        let parts = match &self.spec.partitions {
            None => all,
            Some(want) => {
                if let Some(p) = want.iter().find(|p| !all.contains(p)) {
                    return Err(SourceError::Config {
                        source_name: self.name.clone(),
                        message: format!("topic `{topic}` has no partition {p} (it has {})", list(&all)),
                    });
                }
                want.clone()
            }
        };
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            let (earliest, high) = client.bounds(topic, p).map_err(remote)?;
            let next = match mark.next.get(&p) {
                Some(&n) if n > high => {
                    return Err(SourceError::Format {
                        path: format!("kafka:{topic}/{p}"),
                        message: format!(
                            "the partition ends at offset {high}, below the committed next offset {n}: the topic \
                             was recreated or truncated, and reading on would skip or repeat records; a new topic \
                             needs a new dataset or sink"
                        ),
                    });
                }
                Some(&n) => n,
                None => self.start_of(client, p, earliest, high).map_err(remote)?,
            };
            let next = if next < earliest {
                if !self.spec.skip_retention_gap {
                    return Err(SourceError::Format {
                        path: format!("kafka:{topic}/{p}"),
                        message: format!(
                            "offsets {next} to {} were deleted by the broker (retention) before they were read; \
                             set `on_retention_gap: skip` to go on from offset {earliest}",
                            earliest - 1
                        ),
                    });
                }
                tracing::warn!(source = %self.name, partition = p, lost_from = next, lost_to = earliest - 1,
                    "offsets deleted by retention before they were read: going on from the earliest held");
                earliest
            } else {
                next
            };
            out.push(Position { partition: p, next, high: high.max(next) });
        }
        Ok(out)
    }

    fn discover_from(&self, high_water: Option<&str>) -> Result<Vec<SourceUnit>, SourceError> {
        let topic = self.spec.topic.clone();
        let mark = Mark::parse(high_water, &topic)
            .map_err(|message| SourceError::Config { source_name: self.name.clone(), message })?;
        let client = self.client()?;
        let positions = match self.positions(&client, &mark) {
            Ok(p) => p,
            Err(e) => {
                if matches!(e, SourceError::Remote { .. }) {
                    self.reset();
                }
                return Err(e);
            }
        };
        let now = Instant::now();
        let following = self.following.load(Ordering::Relaxed);
        let mut st = self.state.lock().expect("state lock");
        for p in &positions {
            st.lag.insert(p.partition, (p.next, p.high));
        }
        st.tails.retain(|(p, from), _| positions.iter().any(|q| q.partition == *p && q.next <= *from));
        let max_wait = self.spec.max_wait;
        let tails = std::cell::RefCell::new(std::mem::take(&mut st.tails));
        let take_tail = |p: i32, from: i64| {
            if !following {
                return true;
            }
            let mut t = tails.borrow_mut();
            let seen = *t.entry((p, from)).or_insert(now);
            now.duration_since(seen) >= max_wait
        };
        let ranges = plan::cut(&mark, &positions, self.spec.max_rows as i64, MAX_UNITS, &take_tail);
        st.tails = tails.into_inner();
        if st.marks.len() > 100_000 {
            st.marks.clear();
        }
        let mut units = Vec::with_capacity(ranges.len());
        for r in ranges {
            let locator = r.locator(&topic);
            let mark = serde_json::to_string(&r.mark).expect("a mark serializes");
            st.marks.insert(locator.clone(), mark);
            units.push(SourceUnit {
                source: self.name.clone(),
                location: format!("kafka:{locator}"),
                locator,
                member: None,
                size: (r.to - r.from) as u64,
                version: 0,
                content_hash: None,
            });
        }
        Ok(units)
    }
}

fn sasl(s: &Sasl) -> rskafka::client::SaslConfig {
    use crate::config::RawMechanism;
    use rskafka::client::{Credentials, SaslConfig};
    let c = Credentials::new(s.username.expose().to_string(), s.password.expose().to_string());
    match s.mechanism {
        RawMechanism::Plain => SaslConfig::Plain(c),
        RawMechanism::ScramSha256 => SaslConfig::ScramSha256(c),
        RawMechanism::ScramSha512 => SaslConfig::ScramSha512(c),
    }
}

fn list(ps: &[i32]) -> String {
    if ps.is_empty() {
        return "none".into();
    }
    ps.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
}

/// `<topic>/<partition>/<from>-<to>` back into its parts.
fn parse_locator(locator: &str) -> Option<(i32, i64, i64)> {
    let mut parts = locator.rsplitn(3, '/');
    let range = parts.next()?;
    let partition = parts.next()?.parse().ok()?;
    let (from, to) = range.split_once('-')?;
    Some((partition, from.parse().ok()?, to.parse().ok()?))
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> Option<SchemaRef> {
        Some(self.schema.clone())
    }

    /// Connects, and checks that the topic and the partitions asked for exist.
    fn describe(&self) -> Result<Option<SchemaRef>, SourceError> {
        let client = self.client()?;
        let all = client.partitions(&self.spec.topic).map_err(|e| self.remote(e))?;
        if let Some(p) = self.spec.partitions.iter().flatten().find(|p| !all.contains(p)) {
            return Err(SourceError::Config {
                source_name: self.name.clone(),
                message: format!("topic `{}` has no partition {p} (it has {})", self.spec.topic, list(&all)),
            });
        }
        Ok(Some(self.schema.clone()))
    }

    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
        self.discover_after(None)
    }

    fn discover_after(&self, high_water: Option<&str>) -> Result<Vec<SourceUnit>, SourceError> {
        // The last discovery, served once more (watch's pass after its scan); then afresh, so
        // that new records are seen at the next poll.
        if let Some(m) = self.state.lock().expect("state lock").memo.take()
            && m.mark.as_deref() == high_water
            && m.at.elapsed() < MEMO
        {
            return Ok(m.units);
        }
        let units = self.discover_from(high_water)?;
        if !units.is_empty() {
            self.state.lock().expect("state lock").memo =
                Some(Memo { mark: high_water.map(str::to_string), at: Instant::now(), units: units.clone() });
        }
        Ok(units)
    }

    fn incremental(&self) -> bool {
        true
    }

    fn follow(&self) {
        self.following.store(true, Ordering::Relaxed);
    }

    /// A committed range is never gone: the sink keeps what it read.
    fn is_gone(&self, _unit: &SourceUnit, _present: &[SourceUnit]) -> bool {
        false
    }

    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let bad = || SourceError::Format {
            path: unit.location.clone(),
            message: "not a range this source planned (`<topic>/<partition>/<from>-<to>`)".into(),
        };
        let (partition, from, to) = parse_locator(&unit.locator).ok_or_else(bad)?;
        let mark = self.state.lock().expect("state lock").marks.get(&unit.locator).cloned().ok_or_else(bad)?;
        let client = self.client()?;
        Ok(Box::new(RangeReader {
            client,
            spec: self.spec.clone(),
            format: self.format.clone(),
            schema: self.schema.clone(),
            policy: self.rejects,
            name: unit.location.clone(),
            partition,
            next: from,
            to,
            rows: 0,
            rejects: 0,
            batch_rows: self.batch_rows,
            pending: VecDeque::new(),
            mark: Some(mark),
            counters: self.counters.clone(),
            done: false,
        }))
    }

    fn settled(&self, unit: &SourceUnit, outcome: Settled) {
        if outcome != Settled::Committed {
            if outcome == Settled::Failed {
                // A broker that failed mid-read: connect afresh for the next attempt.
                self.reset();
            }
            return;
        }
        let Some((partition, _, to)) = parse_locator(&unit.locator) else { return };
        let mut st = self.state.lock().expect("state lock");
        if let Some(l) = st.lag.get_mut(&partition) {
            l.0 = l.0.max(to);
            l.1 = l.1.max(to);
        }
    }

    fn metrics(&self) -> Vec<SourceMetric> {
        let c = &self.counters;
        let mut out = vec![
            SourceMetric {
                name: "kafka_records_total",
                help: "Records read from the broker (including rejected ones).",
                counter: true,
                labels: vec![],
                value: c.records.load(Ordering::Relaxed) as f64,
            },
            SourceMetric {
                name: "kafka_bytes_total",
                help: "Bytes of record values read from the broker.",
                counter: true,
                labels: vec![],
                value: c.bytes.load(Ordering::Relaxed) as f64,
            },
            SourceMetric {
                name: "kafka_rejected_records_total",
                help: "Records set aside as rejects (malformed, empty, too long).",
                counter: true,
                labels: vec![],
                value: c.rejected.load(Ordering::Relaxed) as f64,
            },
            SourceMetric {
                name: "kafka_fetch_requests_total",
                help: "Fetch requests sent.",
                counter: true,
                labels: vec![],
                value: c.fetches.load(Ordering::Relaxed) as f64,
            },
            SourceMetric {
                name: "kafka_errors_total",
                help: "Requests that failed (the broker unreachable or refusing).",
                counter: true,
                labels: vec![],
                value: c.errors.load(Ordering::Relaxed) as f64,
            },
        ];
        let st = self.state.lock().expect("state lock");
        let mut lag: Vec<_> = st.lag.iter().collect();
        lag.sort();
        for (p, (next, high)) in lag {
            out.push(SourceMetric {
                name: "kafka_consumer_lag_records",
                help: "Records on the broker not yet committed to the sink, per partition (high watermark minus the committed offset, as of the last look).",
                counter: false,
                labels: vec![("partition", p.to_string())],
                value: (high - next).max(0) as f64,
            });
            out.push(SourceMetric {
                name: "kafka_committed_offset",
                help: "The next offset to read, per partition, as committed to the sink.",
                counter: false,
                labels: vec![("partition", p.to_string())],
                value: *next as f64,
            });
        }
        out
    }
}

/// Reads `[next, to)` of one partition, fetch by fetch.
struct RangeReader {
    client: Arc<KafkaClient>,
    spec: KafkaSpec,
    format: MessageFormat,
    schema: SchemaRef,
    policy: RejectPolicy,
    /// The unit's location, naming it in errors.
    name: String,
    partition: i32,
    next: i64,
    to: i64,
    rows: u64,
    rejects: u64,
    batch_rows: usize,
    pending: VecDeque<SourceItem>,
    /// Sent after the last batch.
    mark: Option<String>,
    counters: Arc<Counters>,
    done: bool,
}

/// Offsets probed one by one after an offset that returns nothing below the high watermark.
const PROBE_OFFSETS: i64 = 16;

impl RangeReader {
    fn fail(&mut self, e: SourceError) -> Option<Result<SourceItem, SourceError>> {
        self.done = true;
        Some(Err(e))
    }

    fn fetch(&mut self) -> Result<(), SourceError> {
        let (topic, p) = (self.spec.topic.clone(), self.partition);
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let (records, high) =
            self.client.fetch(&topic, p, self.next, 1..self.spec.fetch_bytes as i32, 200).map_err(|e| {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                SourceError::Remote { server: format!("kafka {}", e.brokers), message: e.message }
            })?;
        // Records at or after the range's end say the offsets before them that returned
        // nothing hold no data records.
        let beyond = records.iter().any(|r| r.offset >= self.to);
        let mut records: Vec<_> = records.into_iter().filter(|r| r.offset >= self.next && r.offset < self.to).collect();
        records.sort_by_key(|r| r.offset);
        records.truncate(self.batch_rows.max(1) * 4);
        if records.is_empty() {
            if beyond {
                self.next = self.to;
                return Ok(());
            }
            if high <= self.next {
                return Err(SourceError::Format {
                    path: self.name.clone(),
                    message: format!(
                        "the partition ends at offset {high}, before the range's end {}: records were deleted",
                        self.to
                    ),
                });
            }
            // Nothing readable at `next`, below the high watermark: offsets that hold no data
            // records (transaction markers, records compacted away), or records not readable
            // yet (an open transaction). A data record further on shows which.
            return match self.probe(high)? {
                Some(at) => {
                    tracing::debug!(unit = %self.name, from = self.next, to = at, "offsets without data records");
                    self.next = at.min(self.to);
                    Ok(())
                }
                None => Err(SourceError::Remote {
                    server: format!("kafka {}", self.spec.server()),
                    message: format!(
                        "{}: no readable record at offsets {} to {} below the high watermark {high} \
                         (an open transaction?); the range is read again later",
                        self.name,
                        self.next,
                        self.to - 1
                    ),
                }),
            };
        }
        self.next = records.last().map_or(self.next, |r| r.offset + 1);
        self.counters.records.fetch_add(records.len() as u64, Ordering::Relaxed);
        self.counters.bytes.fetch_add(
            records.iter().map(|r| r.record.value.as_ref().map_or(0, Vec::len) as u64).sum(),
            Ordering::Relaxed,
        );
        let meta = &self.spec.metadata;
        // Envelope problems first: a key that must become text and is not.
        let mut envelope: Vec<Option<String>> = vec![None; records.len()];
        if meta.key.is_some() {
            for (i, r) in records.iter().enumerate() {
                if let Some(k) = &r.record.key
                    && std::str::from_utf8(k).is_err()
                {
                    envelope[i] = Some("the record's key is not UTF-8 text".into());
                }
            }
        }
        let usable: Vec<usize> = (0..records.len()).filter(|&i| envelope[i].is_none()).collect();
        let messages: Vec<Option<&[u8]>> = usable.iter().map(|&i| records[i].record.value.as_deref()).collect();
        let decoded = self.format.decode(&messages, &self.name)?;
        let mut rejects: Vec<Reject> = Vec::new();
        for (i, why) in envelope.iter().enumerate() {
            if let Some(why) = why {
                let raw = records[i].record.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned());
                rejects.push(self.reject(records[i].offset, raw.unwrap_or_default(), why));
            }
        }
        for (j, raw, why) in &decoded.rejects {
            rejects.push(self.reject(records[usable[*j]].offset, raw.clone(), why));
        }
        rejects.sort_by_key(|r| r.line);
        let kept: Vec<usize> = decoded.kept.iter().map(|&j| usable[j]).collect();
        self.rows += (kept.len() + rejects.len()) as u64;
        if !rejects.is_empty() {
            self.rejects += rejects.len() as u64;
            self.counters.rejected.fetch_add(rejects.len() as u64, Ordering::Relaxed);
            if let Some(message) = self.policy.over_max_errors(self.rejects, None) {
                return Err(self.over(message, &rejects[0]));
            }
            self.pending.push_back(SourceItem::Rejects(rejects));
        }
        if let Some(batch) = decoded.batch {
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            let picked = || kept.iter().map(|&i| &records[i]);
            if meta.partition.is_some() {
                columns.push(Arc::new(Int32Array::from(vec![p; kept.len()])));
            }
            if meta.offset.is_some() {
                columns.push(Arc::new(Int64Array::from_iter_values(picked().map(|r| r.offset))));
            }
            if meta.key.is_some() {
                columns.push(Arc::new(StringArray::from_iter(
                    picked().map(|r| r.record.key.as_deref().map(|k| std::str::from_utf8(k).unwrap_or_default())),
                )));
            }
            if meta.timestamp.is_some() {
                let ts = TimestampMillisecondArray::from_iter_values(
                    picked().map(|r| r.record.timestamp.timestamp_millis()),
                )
                .with_timezone("UTC");
                columns.push(Arc::new(ts));
            }
            let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| SourceError::Format {
                path: self.name.clone(),
                message: format!("internal: envelope columns: {e}"),
            })?;
            self.pending.push_back(SourceItem::Batch(batch));
        }
        Ok(())
    }

    /// The first offset after `next` that returns a data record, looking at the next few
    /// offsets of the range and then at the range's end; `None` when none does (yet).
    fn probe(&mut self, high: i64) -> Result<Option<i64>, SourceError> {
        let (topic, p) = (self.spec.topic.clone(), self.partition);
        let ahead =
            (self.next + 1..self.to.min(self.next + 1 + PROBE_OFFSETS)).chain((self.to < high).then_some(self.to));
        for at in ahead {
            self.counters.fetches.fetch_add(1, Ordering::Relaxed);
            let (records, _) = self.client.fetch(&topic, p, at, 1..self.spec.fetch_bytes as i32, 10).map_err(|e| {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                SourceError::Remote { server: format!("kafka {}", e.brokers), message: e.message }
            })?;
            if let Some(first) = records.iter().map(|r| r.offset).filter(|&o| o >= at).min() {
                return Ok(Some(first));
            }
        }
        Ok(None)
    }

    fn reject(&self, offset: i64, raw: String, why: &str) -> Reject {
        Reject {
            line: offset as u64,
            raw,
            reason: format!("partition {} offset {offset}: {why}", self.partition),
            step: "parse".into(),
        }
    }

    fn over(&self, message: String, first: &Reject) -> SourceError {
        SourceError::Format { path: self.name.clone(), message: format!("{message} (first: {})", first.reason) }
    }
}

impl Iterator for RangeReader {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            if self.next >= self.to {
                if let Some(message) = self.policy.over_max_error_rate(self.rejects, self.rows, None) {
                    return self.fail(SourceError::Format { path: self.name.clone(), message });
                }
                self.done = true;
                return self.mark.take().map(|m| Ok(SourceItem::HighWater(m)));
            }
            if let Err(e) = self.fetch() {
                return self.fail(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locators_parse_back_with_dotted_topics() {
        assert_eq!(parse_locator("a.b-c/3/100-200"), Some((3, 100, 200)));
        assert_eq!(parse_locator("t/x/1-2"), None);
        assert_eq!(parse_locator("t/1/2"), None);
    }
}
