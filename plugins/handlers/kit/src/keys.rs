//! Multi-column row keys mapped to dense slot numbers.
//!
//! Each row's key values are encoded (type-tagged, length-prefixed) into one
//! reused scratch buffer and looked up in a hash map; a key allocates once,
//! when it is first seen. Runs of equal keys skip the lookup.

use std::collections::HashMap;

use sluice_plugin::arrow_array::types::*;
use sluice_plugin::arrow_array::{ArrowPrimitiveType, PrimitiveArray};
use sluice_plugin::prelude::*;

/// Whether a column of this type can be a key column.
pub fn supported(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, v) => supported(v),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => true,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) | DataType::Float64 | DataType::Float32 => true,
        t => t.is_integer(),
    }
}

/// A typed view of one key column for encoding.
enum Enc<'a> {
    Str(&'a dyn Array, StrKind),
    I64(&'a dyn Array, Box<dyn Fn(usize) -> i64 + 'a>),
    Bool(&'a BooleanArray),
    Dict { array: &'a dyn Array, codes: Vec<usize>, values: Box<Enc<'a>> },
}

#[derive(Clone, Copy)]
enum StrKind {
    Small,
    Large,
    View,
}

fn prim<'a, T: ArrowPrimitiveType>(a: &'a dyn Array, f: fn(T::Native) -> i64) -> Enc<'a> {
    let p: &'a PrimitiveArray<T> = a.as_primitive::<T>();
    let v = p.values();
    Enc::I64(a, Box::new(move |i| f(v[i])))
}

impl<'a> Enc<'a> {
    fn new(a: &'a dyn Array) -> Result<Enc<'a>, Error> {
        Ok(match a.data_type() {
            DataType::Utf8 => Enc::Str(a, StrKind::Small),
            DataType::LargeUtf8 => Enc::Str(a, StrKind::Large),
            DataType::Utf8View => Enc::Str(a, StrKind::View),
            DataType::Boolean => Enc::Bool(a.as_boolean()),
            DataType::Int8 => prim::<Int8Type>(a, i64::from),
            DataType::Int16 => prim::<Int16Type>(a, i64::from),
            DataType::Int32 => prim::<Int32Type>(a, i64::from),
            DataType::Int64 => prim::<Int64Type>(a, |v| v),
            DataType::UInt8 => prim::<UInt8Type>(a, i64::from),
            DataType::UInt16 => prim::<UInt16Type>(a, i64::from),
            DataType::UInt32 => prim::<UInt32Type>(a, i64::from),
            DataType::UInt64 => prim::<UInt64Type>(a, |v| v as i64),
            DataType::Date32 => prim::<Date32Type>(a, i64::from),
            DataType::Date64 => prim::<Date64Type>(a, |v| v),
            DataType::Float32 => prim::<Float32Type>(a, |v| f64::from(v).to_bits() as i64),
            DataType::Float64 => prim::<Float64Type>(a, |v| v.to_bits() as i64),
            DataType::Timestamp(TimeUnit::Second, _) => prim::<TimestampSecondType>(a, |v| v),
            DataType::Timestamp(TimeUnit::Millisecond, _) => prim::<TimestampMillisecondType>(a, |v| v),
            DataType::Timestamp(TimeUnit::Microsecond, _) => prim::<TimestampMicrosecondType>(a, |v| v),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => prim::<TimestampNanosecondType>(a, |v| v),
            DataType::Dictionary(_, _) => {
                let d = a.as_any_dictionary();
                Enc::Dict { array: a, codes: d.normalized_keys(), values: Box::new(Enc::new(d.values().as_ref())?) }
            }
            t => return Err(Error::data(format!("unsupported key column type {t}"))),
        })
    }

    #[inline]
    fn write(&self, row: usize, out: &mut Vec<u8>) {
        match self {
            Enc::Str(a, kind) => {
                if a.is_null(row) {
                    out.push(0);
                    return;
                }
                let s = match kind {
                    StrKind::Small => a.as_string::<i32>().value(row),
                    StrKind::Large => a.as_string::<i64>().value(row),
                    StrKind::View => a.as_string_view().value(row),
                };
                out.push(1);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Enc::I64(a, f) => {
                if a.is_null(row) {
                    out.push(0);
                } else {
                    out.push(1);
                    out.extend_from_slice(&f(row).to_le_bytes());
                }
            }
            Enc::Bool(a) => out.push(if a.is_null(row) { 0 } else { 1 + a.value(row) as u8 }),
            Enc::Dict { array, codes, values } => {
                if array.is_null(row) {
                    out.push(0);
                } else {
                    values.write(codes[row], out);
                }
            }
        }
    }
}

/// A hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A fast 64-bit hash of an encoded key (multiply-rotate over 8-byte words, then a final mix).
#[inline]
fn hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().expect("8 bytes"))).wrapping_mul(K).rotate_left(31);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

const NONE: u32 = u32::MAX;

/// Maps multi-column keys to dense slots `0..len()`, across batches.
///
/// Encoded keys live back to back in one arena (no allocation per key); a map
/// from hash to the newest slot with that hash, plus a chain per slot, resolves
/// collisions by comparing the encoded bytes.
#[derive(Default)]
pub struct KeyMap {
    heads: HashMap<u64, u32, std::hash::BuildHasherDefault<PreHashed>>,
    chain: Vec<u32>,
    offsets: Vec<usize>,
    arena: Vec<u8>,
    scratch: Vec<u8>,
    last: Vec<u8>,
}

impl std::fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMap").field("keys", &self.len()).field("arena_bytes", &self.arena.len()).finish()
    }
}

impl KeyMap {
    /// Number of distinct keys seen.
    pub fn len(&self) -> usize {
        self.chain.len()
    }

    /// Whether no key was seen yet.
    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    fn key(&self, slot: u32) -> &[u8] {
        let s = slot as usize;
        let end = self.offsets.get(s + 1).copied().unwrap_or(self.arena.len());
        &self.arena[self.offsets[s]..end]
    }

    /// The slot of `bytes`, added if new.
    fn slot_of(&mut self, bytes: &[u8]) -> u32 {
        let h = hash(bytes);
        let head = self.heads.get(&h).copied().unwrap_or(NONE);
        let mut s = head;
        while s != NONE {
            if self.key(s) == bytes {
                return s;
            }
            s = self.chain[s as usize];
        }
        let new = self.chain.len() as u32;
        self.offsets.push(self.arena.len());
        self.arena.extend_from_slice(bytes);
        self.chain.push(head);
        self.heads.insert(h, new);
        new
    }

    /// Fills `out` with the slot of each of the `n` rows keyed by `cols` (no
    /// columns: every row is slot 0). Returns how many new keys were added.
    pub fn slots(&mut self, cols: &[&ArrayRef], n: usize, out: &mut Vec<u32>) -> Result<usize, Error> {
        out.clear();
        let before = self.len();
        if cols.is_empty() {
            if self.is_empty() {
                self.slot_of(&[]);
            }
            out.resize(n, 0);
            return Ok(self.len() - before);
        }
        let encs = cols.iter().map(|c| Enc::new(c.as_ref())).collect::<Result<Vec<_>, _>>()?;
        out.reserve(n);
        let mut last_slot = None;
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut last = std::mem::take(&mut self.last);
        for row in 0..n {
            scratch.clear();
            for e in &encs {
                e.write(row, &mut scratch);
            }
            let slot = match last_slot {
                Some(s) if scratch == last => s,
                _ => {
                    let s = self.slot_of(&scratch);
                    std::mem::swap(&mut scratch, &mut last);
                    s
                }
            };
            last_slot = Some(slot);
            out.push(slot);
        }
        self.scratch = scratch;
        self.last = last;
        Ok(self.len() - before)
    }
}

impl KeyMap {
    /// The slot of `bytes`, if that key was seen.
    fn find(&self, bytes: &[u8]) -> Option<u32> {
        let mut s = self.heads.get(&hash(bytes)).copied().unwrap_or(NONE);
        while s != NONE {
            if self.key(s) == bytes {
                return Some(s);
            }
            s = self.chain[s as usize];
        }
        None
    }

    /// Looks up the `n` rows keyed by `cols` without adding keys: `out` gets each row's slot,
    /// or `None` for a key never seen and (when `null_matches` is false) for a row with a null
    /// key value, as in a SQL join.
    pub fn lookup(
        &mut self,
        cols: &[&ArrayRef],
        n: usize,
        null_matches: bool,
        out: &mut Vec<Option<u32>>,
    ) -> Result<(), Error> {
        out.clear();
        let encs = cols.iter().map(|c| Enc::new(c.as_ref())).collect::<Result<Vec<_>, _>>()?;
        let mut scratch = std::mem::take(&mut self.scratch);
        for row in 0..n {
            if !null_matches && cols.iter().any(|c| c.is_null(row)) {
                out.push(None);
                continue;
            }
            scratch.clear();
            for e in &encs {
                e.write(row, &mut scratch);
            }
            out.push(self.find(&scratch));
        }
        self.scratch = scratch;
        Ok(())
    }
}

/// The key columns named `names` of `batch`, or a data error naming the missing one.
pub fn key_columns<'a>(batch: &'a RecordBatch, names: &[String]) -> Result<Vec<&'a ArrayRef>, Error> {
    names.iter().map(|n| batch.column_by_name(n).ok_or_else(|| Error::data("key column not found").column(n))).collect()
}

/// Checks that every key column exists with a supported type (config error on `key`).
pub fn check_key_columns(schema: &Schema, names: &[String], key: &str) -> Result<(), Error> {
    for (i, n) in names.iter().enumerate() {
        let f = schema
            .field_with_name(n)
            .map_err(|_| Error::config(format!("key column `{n}` not found in the input")).key(format!("{key}.{i}")))?;
        if !supported(f.data_type()) {
            return Err(Error::config(format!("key column `{n}` has unsupported type {}", f.data_type()))
                .key(format!("{key}.{i}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod bench {
    //! `cargo test --release -p handler-kit -- --ignored --nocapture keymap_bench`: native ns per
    //! row of `KeyMap::slots` on a few key shapes, 7 files x 86,400 rows in 64K-row batches,
    //! a fresh map per file.

    use super::*;
    use std::sync::Arc;

    const FILES: usize = 7;
    const ROWS: usize = 86_400;
    const BATCH: usize = 65_536;

    /// Runs `slots` over every file's batches (a fresh map per file), best of 5; ns per row.
    fn time(files: &[Vec<Vec<ArrayRef>>]) -> f64 {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut out = Vec::new();
            let start = std::time::Instant::now();
            let mut rows = 0;
            for f in files {
                let mut m = KeyMap::default();
                for b in f {
                    let cols: Vec<&ArrayRef> = b.iter().collect();
                    m.slots(&cols, b[0].len(), &mut out).unwrap();
                    std::hint::black_box(&out);
                    rows += b[0].len();
                }
                std::hint::black_box(m.len());
            }
            best = best.min(start.elapsed().as_nanos() as f64 / rows as f64);
        }
        best
    }

    /// Splits each file's columns into `BATCH`-row batches.
    fn batches(files: Vec<Vec<ArrayRef>>) -> Vec<Vec<Vec<ArrayRef>>> {
        files
            .into_iter()
            .map(|cols| {
                (0..ROWS)
                    .step_by(BATCH)
                    .map(|o| cols.iter().map(|c| c.slice(o, BATCH.min(ROWS - o))).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    #[ignore]
    fn keymap_bench() {
        let syms = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "DOGEUSDT"];
        // dedup: [symbol (constant per file), open_time (1 s steps; 0.1% repeat a time 500 rows back)].
        let dedup = batches(
            (0..FILES)
                .map(|f| {
                    let sym: ArrayRef = Arc::new(StringArray::from(vec![syms[f]; ROWS]));
                    let base = 1_700_000_000_000i64 + (f * ROWS) as i64 * 1000;
                    let t: ArrayRef = Arc::new(Int64Array::from_iter_values(
                        (0..ROWS as i64).map(|i| base + 1000 * if i % 1000 == 999 { i - 500 } else { i }),
                    ));
                    vec![sym, t]
                })
                .collect(),
        );
        // indicators/aggregate: [symbol], three symbols interleaved row by row.
        let grouped = batches(
            (0..FILES)
                .map(|_| vec![Arc::new(StringArray::from_iter_values((0..ROWS).map(|i| syms[i % 3]))) as ArrayRef])
                .collect(),
        );
        // A high-cardinality string key (every row new).
        let ids = batches(
            (0..FILES)
                .map(|f| {
                    vec![Arc::new(StringArray::from_iter_values((0..ROWS).map(|i| format!("order-{f}-{i:08}"))))
                        as ArrayRef]
                })
                .collect(),
        );
        // One Int64 key, every row new.
        let ints = batches(
            (0..FILES)
                .map(|f| {
                    vec![Arc::new(Int64Array::from_iter_values((0..ROWS as i64).map(|i| i * 7 + f as i64))) as ArrayRef]
                })
                .collect(),
        );
        println!("keymap dedup [symbol, open_time]  {:>6.1} ns/row", time(&dedup));
        println!("keymap [symbol] x3 interleaved    {:>6.1} ns/row", time(&grouped));
        println!("keymap [order id] all distinct    {:>6.1} ns/row", time(&ids));
        println!("keymap [int64] all distinct       {:>6.1} ns/row", time(&ints));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn multi_column_keys_across_batches() {
        let mut m = KeyMap::default();
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), Some("x"), Some("y"), None, Some("x")]));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 1, 1, 2]));
        let mut out = Vec::new();
        assert_eq!(m.slots(&[&a, &b], 5, &mut out).unwrap(), 4);
        assert_eq!(out, vec![0, 0, 1, 2, 3]);
        let a2: ArrayRef = Arc::new(StringArray::from(vec!["y", "x"]));
        let b2: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        assert_eq!(m.slots(&[&a2, &b2], 2, &mut out).unwrap(), 0);
        assert_eq!(out, vec![1, 3]);
        // "ab"+"c" must differ from "a"+"bc".
        let c1: ArrayRef = Arc::new(StringArray::from(vec!["ab", "a"]));
        let c2: ArrayRef = Arc::new(StringArray::from(vec!["c", "bc"]));
        m.slots(&[&c1, &c2], 2, &mut out).unwrap();
        assert_ne!(out[0], out[1]);
    }

    #[test]
    fn lookup_finds_without_adding() {
        let mut m = KeyMap::default();
        let a: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), Some("y"), None]));
        let mut out = Vec::new();
        m.slots(&[&a], 3, &mut out).unwrap();
        let q: ArrayRef = Arc::new(StringArray::from(vec![Some("y"), Some("z"), None, Some("x")]));
        let mut found = Vec::new();
        m.lookup(&[&q], 4, false, &mut found).unwrap();
        assert_eq!(found, vec![Some(1), None, None, Some(0)]);
        m.lookup(&[&q], 4, true, &mut found).unwrap();
        assert_eq!(found[2], Some(2));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn many_keys_and_colliding_chains() {
        let mut m = KeyMap::default();
        let mut out = Vec::new();
        let a: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100_000));
        assert_eq!(m.slots(&[&a], 100_000, &mut out).unwrap(), 100_000);
        assert!(out.iter().enumerate().all(|(i, &s)| s as usize == i));
        let b: ArrayRef = Arc::new(Int64Array::from_iter_values((0..100_000).rev()));
        assert_eq!(m.slots(&[&b], 100_000, &mut out).unwrap(), 0);
        assert!(out.iter().enumerate().all(|(i, &s)| s as usize == 99_999 - i));
        // Force one chain: distinct keys under the same hash bucket still resolve.
        let mut c = KeyMap::default();
        for (i, k) in [b"x".as_slice(), b"y", b"z"].iter().enumerate() {
            c.offsets.push(c.arena.len());
            c.arena.extend_from_slice(k);
            c.chain.push(if i == 0 { NONE } else { i as u32 - 1 });
            c.heads.insert(hash(b"x"), i as u32);
        }
        assert_eq!(c.key(0), b"x");
        let h = c.heads[&hash(b"x")];
        let mut s = h;
        let mut seen = vec![];
        while s != NONE {
            seen.push(c.key(s).to_vec());
            s = c.chain[s as usize];
        }
        assert_eq!(seen, vec![b"z".to_vec(), b"y".to_vec(), b"x".to_vec()]);
        assert_eq!(c.slot_of(b"x"), 0);
    }

    #[test]
    fn dictionary_matches_plain_strings() {
        use sluice_plugin::arrow_array::DictionaryArray;
        let mut m = KeyMap::default();
        let mut out = Vec::new();
        let plain: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        m.slots(&[&plain], 2, &mut out).unwrap();
        let d: DictionaryArray<Int32Type> = vec!["b", "a", "b"].into_iter().collect();
        let d: ArrayRef = Arc::new(d);
        m.slots(&[&d], 3, &mut out).unwrap();
        assert_eq!(out, vec![1, 0, 1]);
    }
}
