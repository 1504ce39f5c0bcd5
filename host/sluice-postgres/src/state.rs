//! Sluice's state tables in the target database, and the sink's in-memory copy of them.
//!
//! Every row a unit's commit writes here (its record, keyed state, the source's mark, its
//! rejects) is written in the unit's own transaction, with its data: after any crash the
//! tables say exactly which units are in the target. The process holding the target's
//! advisory lock is the only writer, so its copy stays equal to the tables.

use std::collections::{BTreeSet, HashMap};

use sluice_core::sink::{KeyRange, KeyValues};
use sluice_core::source::SourceUnit;

use crate::conn::{ident, qualified};

/// The DDL of the state tables (idempotent), in schema `schema`.
pub(crate) fn ddl(schema: &str) -> String {
    let t = |name: &str| qualified(schema, name);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE SEQUENCE IF NOT EXISTS {seq};
         CREATE TABLE IF NOT EXISTS {units} (
             target text NOT NULL, unit_id text NOT NULL, seq bigint NOT NULL, unit text NOT NULL,
             rows bigint NOT NULL, rows_in bigint, rows_rejected bigint,
             committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (target, unit_id));
         CREATE TABLE IF NOT EXISTS {marks} (
             target text NOT NULL, source text NOT NULL, mark text NOT NULL, PRIMARY KEY (target, source));
         CREATE TABLE IF NOT EXISTS {keyed} (
             target text NOT NULL, unit_id text NOT NULL, step text NOT NULL, lookback bigint NOT NULL,
             span bigint, ranges text NOT NULL, tails bytea, PRIMARY KEY (target, unit_id, step));
         CREATE TABLE IF NOT EXISTS {failures} (
             target text NOT NULL, unit_id text NOT NULL, fingerprint text NOT NULL, definition text NOT NULL,
             attempts integer NOT NULL, error text NOT NULL, at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (target, unit_id));
         CREATE TABLE IF NOT EXISTS {dead} (
             target text NOT NULL, unit_id text NOT NULL, unit text NOT NULL, step text, error text NOT NULL,
             at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS {rejects} (
             target text NOT NULL, unit_id text NOT NULL, file text NOT NULL, member text, line bigint NOT NULL,
             raw text NOT NULL, reason text NOT NULL, step text NOT NULL);
         CREATE INDEX IF NOT EXISTS {rejects_idx} ON {rejects} (target, unit_id);",
        s = ident(schema),
        seq = t("unit_seq"),
        units = t("units"),
        marks = t("marks"),
        keyed = t("keyed"),
        failures = t("failures"),
        dead = t("dead_letters"),
        rejects = t("rejects"),
        rejects_idx = ident("rejects_target_unit"),
    )
}

/// A committed unit, as the `units` table has it.
#[derive(Debug, Clone)]
pub(crate) struct UnitRow {
    pub unit: SourceUnit,
    /// Its rows' `_sluice_unit` value (append mode).
    pub seq: i64,
}

/// One unit's keyed state at one step.
#[derive(Debug, Clone)]
pub(crate) struct KeyedRow {
    pub lookback: u64,
    pub span: Option<i64>,
    pub ranges: Vec<KeyRange>,
}

/// The state tables' rows for one target, in memory.
#[derive(Default)]
pub(crate) struct Cache {
    pub units: HashMap<String, UnitRow>,
    pub marks: HashMap<String, String>,
    /// (unit_id, step) → the unit's state at that step.
    pub keyed: HashMap<(String, String), KeyedRow>,
    /// (step, key) → (range start, unit_id) of the units that fed it, in order.
    pub keys: HashMap<(String, KeyValues), BTreeSet<(i64, String)>>,
}

impl Cache {
    /// Put a unit's keyed state at `step`, replacing what it had.
    pub(crate) fn put_keyed(&mut self, unit_id: &str, step: &str, row: KeyedRow) {
        for r in &row.ranges {
            self.keys.entry((step.to_string(), r.key.clone())).or_default().insert((r.min, unit_id.to_string()));
        }
        self.keyed.insert((unit_id.to_string(), step.to_string()), row);
    }

    /// Forget a unit's keyed state at every step.
    pub(crate) fn drop_keyed(&mut self, unit_id: &str) {
        let steps: Vec<(String, String)> = self.keyed.keys().filter(|(u, _)| u == unit_id).cloned().collect();
        for k in steps {
            if let Some(row) = self.keyed.remove(&k) {
                for r in &row.ranges {
                    if let Some(set) = self.keys.get_mut(&(k.1.clone(), r.key.clone())) {
                        set.remove(&(r.min, unit_id.to_string()));
                    }
                }
            }
        }
    }
}

/// A unit's fingerprint, for failure counting: the same file content fails the same way.
pub(crate) fn fingerprint(unit: &SourceUnit) -> String {
    format!("{}:{}:{}", unit.size, unit.version, unit.content_hash.as_deref().unwrap_or(""))
}
