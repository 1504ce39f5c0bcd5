//! `kind: kafka`: a Kafka-compatible stream read as offset ranges, exactly once.
//!
//! - [`config`]: the source's keys (`KafkaKind`, registered with `sluice-config`) and its
//!   validated settings (`KafkaSpec`).
//! - [`source`]: `KafkaSourceConnector` and `KafkaSource`: discovery after the committed mark,
//!   each range read fetch by fetch and decoded by the file readers (`sluice_source::
//!   MessageFormat`), one row per record, with the envelope's columns when asked for, and
//!   malformed records set aside as rejects naming their partition and offset.
//! - [`mark`]: the source's high-water mark, every partition's next offset in one JSON string,
//!   committed with each unit's data (the lake ledger, a Postgres transaction, a Delta `txn`).
//! - [`plan`]: cutting `[next, high watermark)` of each partition into units at multiples of
//!   `max_rows` (a range replanned after a crash gets the same id), in round-robin order, each
//!   with the mark after it.
//! - [`client`]: rskafka on a private runtime; the high watermark comes from a fetch, never from
//!   ListOffsets(latest) (Tansu 0.6.0 answers that wrongly after multi-record batches).

pub mod client;
pub mod config;
pub mod mark;
pub mod plan;
pub mod source;

pub use config::{KafkaKind, KafkaSpec};
pub use source::{KafkaSource, KafkaSourceConnector};
