//! Sluice's Parquet lake: hive-partitioned files, committed atomically per source unit, recorded
//! in a ledger inside the lake (`<lake>/_sluice/`).
//!
//! Commit protocol for one unit: write each partition's file under a hidden in-progress name
//! (`.part-*.parquet.inprogress`, which no `*.parquet` glob matches), fsync it, rename it into
//! place, fsync its directory, then append the unit's record to the ledger and fsync that. The
//! ledger is the source of truth: on open, in-progress files and data files no ledger record
//! names (the orphans of a crash between rename and ledger append) are swept.

pub mod compact;
mod connector;
mod dictionary;
mod failures;
mod files;
mod keyed;
mod layout;
mod ledger;
pub mod lineage;
mod merge;
mod partition;
mod prints;
mod read;
mod schema;
mod state;
mod stats;
mod writer;

pub use compact::{CompactOptions, CompactReport};
pub use connector::LakeConnector;
pub use files::{same_file, stored, stored_root, visible};
pub use ledger::{LEDGER_DIR, LedgerRecord, LiveFile, RetainedFile, Segment, SharedFile};
pub use partition::{escape_partition_value, unescape_partition_value};
pub use read::ParquetBatches;
pub use schema::{Column, widens};
pub use state::{DatasetState, LakeState, UnitRecord, read_snapshot};
pub use writer::{FollowedState, Lake, LedgerFollower, REJECTS_DIR, VacuumReport, followed_state};
