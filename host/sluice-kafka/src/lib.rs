//! `kind: kafka` (work in progress, issue 21): a Kafka-compatible stream read as offset ranges.
//!
//! - [`mark`]: the source's high-water mark, every partition's next offset in one JSON string,
//!   committed with each unit's data (the lake ledger, a Postgres transaction, a Delta `txn`).
//! - [`plan`]: cutting `[next, high watermark)` of each partition into units at multiples of
//!   `max_rows` (a range replanned after a crash gets the same id), in round-robin order, each
//!   with the mark after it.
//! - [`client`]: rskafka on a private runtime; the high watermark comes from a fetch, never from
//!   ListOffsets(latest) (Tansu 0.6.0 answers that wrongly after multi-record batches).
//!
//! Not yet here: the config kind, the Source implementation, record decoding into Arrow, watch
//! integration, metrics (see /work/notes/issue21-plan.md).

pub mod client;
pub mod mark;
pub mod plan;
