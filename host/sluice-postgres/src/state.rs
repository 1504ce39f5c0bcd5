//! Sluice's state tables in the target database, and the sink's in-memory copy of them.
//!
//! Every row a unit's commit writes here (its record, keyed state, the source's mark, its
//! rejects) is written in the unit's own transaction, with its data: after any crash the
//! tables say exactly which units are in the target. The process holding the target's
//! advisory lock is the only writer, so its copy stays equal to the tables, except that a
//! stream unit's keyed row still lists the ranges later checkpoints superseded (the copy drops
//! them, and the row goes once all of them are).

use std::collections::{HashMap, HashSet};

use sluice_core::sink::{KeyRange, KeyStarts, KeyValues, record_range};
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
    /// (step, key) → (range start, unit_id) of the units that fed it, in order, and whether
    /// the unit's range came in arrival order ([`KeyRange::arrival`]).
    pub keys: HashMap<(String, KeyValues), KeyStarts>,
}

impl Cache {
    /// Put a unit's keyed state at `step`, replacing what it had.
    /// A checkpoint ([`KeyRange::cumulative`]) supersedes its key's earlier arrival ranges: they
    /// are taken out, and a unit left with none at the step is forgotten there (see
    /// [`Self::emptied_by`]).
    pub(crate) fn put_keyed(&mut self, unit_id: &str, step: &str, row: KeyedRow) {
        let mut superseded: HashMap<String, HashSet<KeyValues>> = HashMap::new();
        let units = &self.units;
        let source = units.get(unit_id).map(|u| u.unit.source.clone()).unwrap_or_default();
        let same_stream = |unit: &str| units.get(unit).is_some_and(|u| u.unit.source == source);
        for r in &row.ranges {
            let starts = self.keys.entry((step.to_string(), r.key.clone())).or_default();
            for unit in record_range(starts, unit_id, r, same_stream) {
                superseded.entry(unit).or_default().insert(r.key.clone());
            }
        }
        self.keyed.insert((unit_id.to_string(), step.to_string()), row);
        for (unit, keys) in superseded {
            let id = (unit, step.to_string());
            if let Some(old) = self.keyed.get_mut(&id) {
                old.ranges.retain(|g| !(g.arrival && keys.contains(&g.key)));
                if old.ranges.is_empty() {
                    self.keyed.remove(&id);
                }
            }
        }
    }

    /// The units (other than `unit_id`, a unit of `source`) whose every range at `step` a
    /// checkpoint in `ranges` supersedes: their keyed rows can be deleted with the commit that
    /// writes `ranges`. (Its stream's own: another stream's state is its own.)
    pub(crate) fn emptied_by(&self, unit_id: &str, source: &str, step: &str, ranges: &[KeyRange]) -> Vec<String> {
        let mut hit: HashMap<&str, usize> = HashMap::new();
        let same_stream = |unit: &String| self.units.get(unit).is_some_and(|u| u.unit.source == source);
        for r in ranges.iter().filter(|r| r.cumulative) {
            let Some(starts) = self.keys.get(&(step.to_string(), r.key.clone())) else { continue };
            for ((_, unit), &arrival) in starts {
                if arrival && unit != unit_id && same_stream(unit) {
                    *hit.entry(unit.as_str()).or_default() += 1;
                }
            }
        }
        hit.into_iter()
            .filter(|(unit, n)| {
                self.keyed
                    .get(&(unit.to_string(), step.to_string()))
                    .is_some_and(|row| row.ranges.iter().filter(|g| g.arrival).count() == *n && row.ranges.len() == *n)
            })
            .map(|(unit, _)| unit.to_string())
            .collect()
    }

    /// Forget a unit's keyed state at every step.
    pub(crate) fn drop_keyed(&mut self, unit_id: &str) {
        let steps: Vec<(String, String)> = self.keyed.keys().filter(|(u, _)| u == unit_id).cloned().collect();
        for k in steps {
            if let Some(row) = self.keyed.remove(&k) {
                for r in &row.ranges {
                    if let Some(starts) = self.keys.get_mut(&(k.1.clone(), r.key.clone())) {
                        starts.remove(&(r.min, unit_id.to_string()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(keys: &[&str], cumulative: bool) -> KeyedRow {
        let ranges = keys
            .iter()
            .map(|k| KeyRange {
                key: vec![Some(k.to_string())],
                min: 0,
                max: 1,
                rows: 1,
                next: None,
                arrival: cumulative,
                cumulative,
            })
            .collect();
        KeyedRow { lookback: 1, span: None, ranges }
    }

    fn units_of(c: &Cache, key: &str) -> Vec<String> {
        let k = ("st".to_string(), vec![Some(key.to_string())]);
        c.keys.get(&k).map(|m| m.keys().map(|(_, u)| u.clone()).collect()).unwrap_or_default()
    }

    fn unit(c: &mut Cache, id: &str, source: &str) {
        let unit = SourceUnit {
            source: source.into(),
            location: id.into(),
            locator: id.into(),
            member: None,
            size: 0,
            version: 0,
            content_hash: None,
        };
        c.units.insert(id.into(), UnitRow { unit, seq: 0 });
    }

    #[test]
    fn checkpoints_keep_only_each_keys_latest_unit() {
        let mut c = Cache::default();
        for id in ["f", "u1", "u2", "u3"] {
            unit(&mut c, id, "s");
        }
        // Another stream's unit of the same key is its own state: never superseded here.
        unit(&mut c, "o1", "other");
        c.put_keyed("o1", "st", row(&["a"], true));
        c.put_keyed("f", "st", row(&["a"], false));
        c.put_keyed("u1", "st", row(&["a", "b"], true));
        // u2 supersedes u1's `a` only: u1 stays for `b`.
        assert!(c.emptied_by("u2", "s", "st", &row(&["a"], true).ranges).is_empty());
        c.put_keyed("u2", "st", row(&["a"], true));
        assert_eq!(units_of(&c, "a"), ["f", "o1", "u2"], "a file's range and another stream's stay");
        assert_eq!(c.keyed[&("u1".into(), "st".into())].ranges.len(), 1);
        // u3 supersedes both: their rows can go with its commit.
        let mut emptied = c.emptied_by("u3", "s", "st", &row(&["a", "b"], true).ranges);
        emptied.sort();
        assert_eq!(emptied, ["u1", "u2"]);
        c.put_keyed("u3", "st", row(&["a", "b"], true));
        assert_eq!(
            (units_of(&c, "a"), units_of(&c, "b")),
            (vec!["f".into(), "o1".into(), "u3".into()], vec!["u3".to_string()])
        );
        assert!(
            !c.keyed.contains_key(&("u1".into(), "st".into())) && !c.keyed.contains_key(&("u2".into(), "st".into()))
        );
    }
}
