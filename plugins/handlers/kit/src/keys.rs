//! Multi-column row keys mapped to dense slot numbers.
//!
//! A batch's keys are built column at a time as fixed-width 64-bit words: tag
//! words (the column count and each column's kind: null, integer-like, string
//! or boolean), then one word per column (integers, dates, timestamps and float
//! bits as `i64`, booleans as 0/1, strings as ids interned per key column, so a
//! string repeated across batches keeps its id). Keys live back to back in one
//! arena of words with a fixed stride, and a hash table of slot numbers hashes
//! and compares them there: a key allocates once, when it is first seen. Runs
//! of equal keys skip the lookup.

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use sluice_plugin::arrow_array::ArrowPrimitiveType;
use sluice_plugin::arrow_array::types::*;
use sluice_plugin::arrow_buffer::NullBuffer;
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

const NONE: u32 = u32::MAX;

// A column's kind in the tag words, two bits per column. A null value of any
// type has kind `NULL` and value word 0. Floats are `INT` with their bits as
// the value, as integers of every width are `INT`: keys compare the `i64` word.
const NULL: u64 = 0;
const INT: u64 = 1;
const STR: u64 = 2;
const BOOL: u64 = 3;

/// The value word of a string never interned (only from `lookup`: no key can match).
const UNKNOWN: u64 = u64::MAX;
/// A dictionary value whose word is not known yet in this batch.
const UNSET: u64 = u64::MAX - 1;

/// Key columns whose kinds share the first tag word with the column count (in its low
/// 32 bits); each further tag word holds the kinds of 32 more columns.
const HEAD_COLS: usize = 16;

/// Tag words of a key with `ncols` columns.
fn tag_words(ncols: usize) -> usize {
    1 + ncols.saturating_sub(HEAD_COLS).div_ceil(32)
}

/// The tag word and bit offset of column `c`'s kind.
fn kind_at(c: usize) -> (usize, u32) {
    if c < HEAD_COLS { (0, 32 + 2 * c as u32) } else { (1 + (c - HEAD_COLS) / 32, 2 * ((c - HEAD_COLS) % 32) as u32) }
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Final avalanche so that both the low bits (bucket) and the top bits (tag) of a hash vary.
#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 32;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^ (h >> 32)
}

/// A fast 32-bit hash of a key's words.
#[inline]
fn hash_words(words: &[u64]) -> u32 {
    let mut h = 0u64;
    for &w in words {
        h = (h.rotate_left(23) ^ w).wrapping_mul(K);
    }
    mix(h) as u32
}

/// The table hash of a 32-bit hash, which the tables store next to each entry so that
/// growing them never rehashes keys: the low bits pick the bucket, the top 7 bits (the
/// tag byte hashbrown compares first) repeat bits 25..32.
#[inline]
fn wide(h: u32) -> u64 {
    u64::from(h) << 32 | u64::from(h)
}

/// A fast 32-bit hash of a string's bytes (multiply-rotate over 8-byte words, then a final mix).
#[inline]
fn hash_bytes(bytes: &[u8]) -> u32 {
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
    mix(h) as u32
}

/// Word-wise equality (a plain loop: keys are a few words, cheaper than a `memcmp` call).
#[inline]
fn same(a: &[u64], b: &[u64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The distinct strings of one key column, numbered densely from 0 in order of first appearance.
struct Interner {
    /// (id, hash) of each string.
    table: HashTable<(u32, u32)>,
    /// End of each string in `bytes` (its start is the previous one's end).
    ends: Vec<usize>,
    bytes: Vec<u8>,
    /// A direct-mapped cache of short strings seen lately: [`short_words`], then
    /// `len << 32 | id` (`u64::MAX`: empty). Hits skip hashing and comparing bytes.
    recent: Vec<[u64; 3]>,
    /// Scratch for a dictionary column: the id of each value of the batch's dictionary
    /// (`UNSET`: not known yet).
    dict_ids: Vec<u64>,
}

/// Entries of [`Interner::recent`] (a power of two).
const RECENT: usize = 256;

/// A string of at most 16 bytes as three words that determine it: its first and last 8
/// bytes (overlapping when shorter), or 4 bytes, or its first, middle and last byte; and its
/// length.
#[inline]
fn short_words(s: &[u8]) -> Option<[u64; 3]> {
    let n = s.len();
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let half = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let (a, b) = match n {
        8..=16 => (word(&s[..8]), word(&s[n - 8..])),
        4..8 => (half(&s[..4]), half(&s[n - 4..])),
        1..4 => (u64::from(s[0]) | u64::from(s[n / 2]) << 8 | u64::from(s[n - 1]) << 16, 0),
        0 => (0, 0),
        _ => return None,
    };
    Some([a, b, n as u64])
}

/// Equality of [`short_words`] in scalar operations (an array comparison may be vectorised
/// into a 16-byte load of words just stored one by one, which stalls).
#[inline]
fn same3(x: [u64; 3], y: [u64; 3]) -> bool {
    (x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) == 0
}

fn string_at<'a>(ends: &[usize], bytes: &'a [u8], id: u32) -> &'a [u8] {
    let i = id as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &bytes[start..ends[i]]
}

impl Interner {
    fn new() -> Interner {
        Interner {
            table: HashTable::new(),
            ends: Vec::new(),
            bytes: Vec::new(),
            recent: vec![[0, 0, u64::MAX]; RECENT],
            dict_ids: Vec::new(),
        }
    }

    /// As [`Interner::id`] for a short string `s` with [`short_words`] `fp`, through the cache
    /// of recent short strings.
    #[inline]
    fn cached_id(&mut self, [a, b, n]: [u64; 3], s: &[u8], add: bool, mask: u32) -> u64 {
        let len = n << 32;
        let i = ((a ^ b.rotate_left(29) ^ len).wrapping_mul(K) >> (64 - RECENT.trailing_zeros())) as usize;
        let e = self.recent[i];
        if e[0] == a && e[1] == b && e[2] >> 32 << 32 == len {
            return e[2] & 0xFFFF_FFFF;
        }
        let id = self.id(s, add, mask);
        if id != UNKNOWN {
            self.recent[i] = [a, b, len | id];
        }
        id
    }

    /// The id of `s` as a value word; a new string is added when `add`, else it is `UNKNOWN`.
    fn id(&mut self, s: &[u8], add: bool, mask: u32) -> u64 {
        let h = hash_bytes(s) & mask;
        let Interner { table, ends, bytes, .. } = self;
        let eq = |&(id, hh): &(u32, u32)| hh == h && string_at(ends, bytes, id) == s;
        if !add {
            return table.find(wide(h), eq).map_or(UNKNOWN, |&(id, _)| u64::from(id));
        }
        match table.entry(wide(h), eq, |&(_, hh)| wide(hh)) {
            Entry::Occupied(e) => u64::from(e.get().0),
            Entry::Vacant(e) => {
                let id = ends.len() as u32;
                bytes.extend_from_slice(s);
                ends.push(bytes.len());
                e.insert((id, h));
                u64::from(id)
            }
        }
    }
}

/// One key column's share of a batch's key words: every `w`th word of `rows` from `off`.
struct Out<'a> {
    rows: &'a mut [u64],
    w: usize,
    off: usize,
}

impl Out<'_> {
    fn words(&mut self) -> impl Iterator<Item = &mut u64> {
        self.rows[self.off..].iter_mut().step_by(self.w)
    }
}

/// A string column's interner, and how to use it for one chunk of rows.
struct Strings<'a> {
    interner: &'a mut Interner,
    /// Whether new strings are added.
    add: bool,
    /// Whether the chunk starts a batch (its dictionary's ids are not known yet).
    first: bool,
    mask: u32,
}

/// Writes primitive values (at `idx`, or rows `0..`) through `f`.
fn put_prim<T: ArrowPrimitiveType>(a: &dyn Array, idx: Option<&[usize]>, o: &mut Out, f: impl Fn(T::Native) -> u64) {
    let v = a.as_primitive::<T>().values();
    match idx {
        None => o.words().zip(v.iter()).for_each(|(w, &x)| *w = f(x)),
        Some(idx) => o.words().zip(idx).for_each(|(w, &i)| *w = f(v[i])),
    }
}

fn put_bool(a: &dyn Array, idx: Option<&[usize]>, o: &mut Out) {
    let b = a.as_boolean();
    match idx {
        None => o.words().zip(b.values().iter()).for_each(|(w, x)| *w = u64::from(x)),
        Some(idx) => o.words().zip(idx).for_each(|(w, &i)| *w = u64::from(b.value(i))),
    }
}

/// Writes interned string ids of the `n` rows (values at `idx`, or rows `0..`, read by `get`);
/// rows null in `valid` are skipped. Without `idx`, short strings go through the interner's
/// cache and a run of equal long strings is interned once; with it (dictionary codes), each
/// distinct code is.
fn put_str<'s>(
    n: usize,
    values: usize,
    get: impl Fn(usize) -> &'s [u8],
    idx: Option<&[usize]>,
    valid: Option<&NullBuffer>,
    st: &mut Strings,
    o: &mut Out,
) {
    let is_null = |r: usize| valid.is_some_and(|v| v.is_null(r));
    match idx {
        None => {
            // The previous row's string: as short words (no string has length `u64::MAX`)
            // or, if long, as bytes (empty: none, as a long string is never empty).
            let (mut short, mut long): ([u64; 3], &[u8]) = ([0, 0, u64::MAX], &[]);
            let mut id = UNKNOWN;
            for (r, w) in o.words().take(n).enumerate() {
                if is_null(r) {
                    continue;
                }
                let s = get(r);
                if let Some(fp) = short_words(s) {
                    if !same3(fp, short) {
                        id = st.interner.cached_id(fp, s, st.add, st.mask);
                        (short, long) = (fp, &[]);
                    }
                } else if s != long {
                    id = st.interner.id(s, st.add, st.mask);
                    (short, long) = ([0, 0, u64::MAX], s);
                }
                *w = id;
            }
        }
        Some(idx) => {
            let dict_ids = &mut st.interner.dict_ids;
            if st.first || dict_ids.len() != values {
                dict_ids.clear();
                dict_ids.resize(values, UNSET);
            }
            for (r, (w, &i)) in o.words().zip(idx).enumerate() {
                if is_null(r) {
                    continue;
                }
                let mut id = st.interner.dict_ids[i];
                if id == UNSET {
                    id = st.interner.id(get(i), st.add, st.mask);
                    st.interner.dict_ids[i] = id;
                }
                *w = id;
            }
        }
    }
}

/// Writes the value words of `a`'s first `n` rows (or of its values at `idx`) and returns
/// the column's kind. `valid` is the column's logical validity: its null rows are cleared
/// afterwards, and strings skip them.
fn put_column(
    a: &dyn Array,
    idx: Option<&[usize]>,
    n: usize,
    valid: Option<&NullBuffer>,
    st: &mut Strings,
    o: &mut Out,
) -> Result<u64, Error> {
    macro_rules! int {
        ($t:ty, $f:expr) => {{
            put_prim::<$t>(a, idx, o, $f);
            INT
        }};
    }
    Ok(match a.data_type() {
        DataType::Int8 => int!(Int8Type, |v| v as u64),
        DataType::Int16 => int!(Int16Type, |v| v as u64),
        DataType::Int32 => int!(Int32Type, |v| v as u64),
        DataType::Int64 => int!(Int64Type, |v| v as u64),
        DataType::UInt8 => int!(UInt8Type, u64::from),
        DataType::UInt16 => int!(UInt16Type, u64::from),
        DataType::UInt32 => int!(UInt32Type, u64::from),
        DataType::UInt64 => int!(UInt64Type, |v| v),
        DataType::Date32 => int!(Date32Type, |v| v as u64),
        DataType::Date64 => int!(Date64Type, |v| v as u64),
        DataType::Float32 => int!(Float32Type, |v| f64::from(v).to_bits()),
        DataType::Float64 => int!(Float64Type, |v| v.to_bits()),
        DataType::Timestamp(TimeUnit::Second, _) => int!(TimestampSecondType, |v| v as u64),
        DataType::Timestamp(TimeUnit::Millisecond, _) => int!(TimestampMillisecondType, |v| v as u64),
        DataType::Timestamp(TimeUnit::Microsecond, _) => int!(TimestampMicrosecondType, |v| v as u64),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => int!(TimestampNanosecondType, |v| v as u64),
        DataType::Boolean => {
            put_bool(a, idx, o);
            BOOL
        }
        DataType::Utf8 => {
            let s = a.as_string::<i32>();
            put_str(n, a.len(), |i| s.value(i).as_bytes(), idx, valid, st, o);
            STR
        }
        DataType::LargeUtf8 => {
            let s = a.as_string::<i64>();
            put_str(n, a.len(), |i| s.value(i).as_bytes(), idx, valid, st, o);
            STR
        }
        DataType::Utf8View => {
            let s = a.as_string_view();
            put_str(n, a.len(), |i| s.value(i).as_bytes(), idx, valid, st, o);
            STR
        }
        DataType::Dictionary(_, v) => {
            let d = a.as_any_dictionary();
            if d.values().is_empty() {
                // Only null keys can point into no values.
                if !supported(v) {
                    return Err(Error::data(format!("unsupported key column type {}", a.data_type())));
                }
                return Ok(NULL);
            }
            let keys = d.normalized_keys();
            let codes = match idx {
                None => keys,
                Some(idx) => idx.iter().map(|&i| keys[i]).collect(),
            };
            put_column(d.values().as_ref(), Some(&codes), n, valid, st, o)?
        }
        t => return Err(Error::data(format!("unsupported key column type {t}"))),
    })
}

/// Maps multi-column keys to dense slots `0..len()`, across batches.
///
/// Keys are rows of 64-bit words (see the module docs) stored back to back in
/// one arena, `stride` words per slot (a key narrower than the stride is padded
/// with zeros; the stride grows if a wider key comes). The table holds slot
/// numbers with their keys' hashes and compares keys in the arena, except for
/// keys of one non-null string column: those find their slot by the string's id.
pub struct KeyMap {
    /// (slot, hash) of each key, but those of one string column.
    table: HashTable<(u32, u32)>,
    arena: Vec<u64>,
    stride: usize,
    len: usize,
    /// Interned strings per key column position.
    strings: Vec<Interner>,
    /// For keys of one non-null string column: the slot of each interned id (`NONE`: none yet).
    by_id: Vec<u32>,
    /// Scratch: the keys of a chunk of rows, row-major.
    rows: Vec<u64>,
    /// Scratch: the last key of the previous chunk.
    carry: Vec<u64>,
    /// Applied to every hash; tests narrow it to force collisions.
    hash_mask: u32,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap {
            table: HashTable::new(),
            arena: Vec::new(),
            stride: 0,
            len: 0,
            strings: Vec::new(),
            by_id: Vec::new(),
            rows: Vec::new(),
            carry: Vec::new(),
            hash_mask: u32::MAX,
        }
    }
}

impl std::fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMap")
            .field("keys", &self.len())
            .field("arena_bytes", &(self.arena.len() * 8))
            .field("string_bytes", &self.strings.iter().map(|s| s.bytes.len()).sum::<usize>())
            .finish()
    }
}

/// Rows encoded and then looked up at a time, so that their key words stay in cache.
const CHUNK: usize = 2048;

/// The first tag word of a key of one non-null string column.
const STR_KEY: u64 = 1 | STR << 32;

/// Words per key of `ncols` columns.
fn key_width(ncols: usize) -> usize {
    tag_words(ncols) + ncols
}

impl KeyMap {
    /// Number of distinct keys seen.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `rows` with the keys of rows `start..start + len` of `cols` (`key_width` words
    /// each). New strings are interned only when `add`; `first` starts a batch.
    fn encode(
        &mut self,
        cols: &[&ArrayRef],
        (start, len): (usize, usize),
        add: bool,
        first: bool,
        rows: &mut Vec<u64>,
    ) -> Result<(), Error> {
        let ncols = cols.len();
        let t = tag_words(ncols);
        let w = t + ncols;
        rows.clear();
        rows.resize(len * w, 0);
        if self.strings.len() < ncols {
            self.strings.resize_with(ncols, Interner::new);
        }
        let mut tags = vec![0u64; t];
        tags[0] = ncols as u64;
        let mut nulls = Vec::new();
        for (c, col) in cols.iter().enumerate() {
            let sliced;
            let a: &dyn Array = if start == 0 && len == col.len() {
                col.as_ref()
            } else {
                sliced = col.slice(start, len);
                sliced.as_ref()
            };
            let valid = a.logical_nulls().filter(|v| v.null_count() > 0);
            let mut st = Strings { interner: &mut self.strings[c], add, first, mask: self.hash_mask };
            let mut o = Out { rows, w, off: t + c };
            let kind = put_column(a, None, len, valid.as_ref(), &mut st, &mut o)?;
            let (i, shift) = kind_at(c);
            tags[i] |= kind << shift;
            if let Some(v) = valid {
                nulls.push((c, v));
            }
        }
        if t == 1 {
            rows.iter_mut().step_by(w).for_each(|x| *x = tags[0]);
        } else {
            rows.chunks_exact_mut(w).for_each(|row| row[..t].copy_from_slice(&tags));
        }
        for (c, v) in nulls {
            let (i, shift) = kind_at(c);
            for (r, row) in rows.chunks_exact_mut(w).enumerate() {
                if v.is_null(r) {
                    row[t + c] = 0;
                    row[i] &= !(3 << shift);
                }
            }
        }
        Ok(())
    }

    /// Makes the arena's stride at least `w` words (keys keep their hashes: padding is not hashed).
    fn widen(&mut self, w: usize) {
        if w <= self.stride {
            return;
        }
        if self.len > 0 {
            let mut arena = Vec::with_capacity((self.len + self.len / 2) * w);
            for k in self.arena.chunks_exact(self.stride) {
                arena.extend_from_slice(k);
                arena.resize(arena.len() + w - self.stride, 0);
            }
            self.arena = arena;
        }
        self.stride = w;
    }

    /// Appends `key` to the arena as a new slot.
    #[inline]
    fn push(arena: &mut Vec<u64>, stride: usize, len: &mut usize, key: &[u64]) -> u32 {
        let s = *len as u32;
        arena.extend_from_slice(key);
        arena.resize(arena.len() + stride - key.len(), 0);
        *len += 1;
        s
    }

    /// The slot of `key`, added if new (the stride must fit it).
    #[inline]
    fn slot_of(&mut self, key: &[u64]) -> u32 {
        if key.len() == 2 && key[0] == STR_KEY {
            let id = key[1] as usize;
            if let Some(&s) = self.by_id.get(id)
                && s != NONE
            {
                return s;
            }
            let s = Self::push(&mut self.arena, self.stride, &mut self.len, key);
            if id >= self.by_id.len() {
                self.by_id.resize(id + 1, NONE);
            }
            self.by_id[id] = s;
            return s;
        }
        let mask = self.hash_mask;
        let h = hash_words(key) & mask;
        let KeyMap { table, arena, stride, len, .. } = self;
        let stride = *stride;
        let eq = |&(s, hh): &(u32, u32)| {
            let base = s as usize * stride;
            hh == h && same(&arena[base..base + key.len()], key)
        };
        match table.entry(wide(h), eq, |&(_, hh)| wide(hh)) {
            Entry::Occupied(e) => e.get().0,
            Entry::Vacant(e) => {
                let s = Self::push(arena, stride, len, key);
                e.insert((s, h));
                s
            }
        }
    }

    /// The slot of `key`, if that key was seen.
    #[inline]
    fn find(&self, key: &[u64]) -> Option<u32> {
        if key.len() == 2 && key[0] == STR_KEY {
            // An `UNKNOWN` id is past the end.
            return usize::try_from(key[1]).ok().and_then(|id| self.by_id.get(id)).copied().filter(|&s| s != NONE);
        }
        let h = hash_words(key) & self.hash_mask;
        let (arena, stride) = (&self.arena, self.stride);
        // A key wider than the stride reads into the next slot or past the end: its
        // first tag word (the column count) differs from that of any stored key.
        self.table
            .find(wide(h), |&(s, hh)| {
                let base = s as usize * stride;
                hh == h && arena.get(base..base + key.len()).is_some_and(|k| same(k, key))
            })
            .map(|&(s, _)| s)
    }

    /// Runs `f` on the keys of the `n` rows keyed by `cols`, a chunk at a time, with the
    /// row number of each chunk's first row.
    fn chunks(
        &mut self,
        cols: &[&ArrayRef],
        n: usize,
        add: bool,
        mut f: impl FnMut(&mut Self, usize, &[u64], &[u64]),
    ) -> Result<(), Error> {
        if let Some(c) = cols.iter().find(|c| c.len() < n) {
            return Err(Error::data(format!("a key column has {} rows, the batch {n}", c.len())));
        }
        let w = key_width(cols.len());
        let mut rows = std::mem::take(&mut self.rows);
        let mut carry = std::mem::take(&mut self.carry);
        carry.clear();
        let mut result = Ok(());
        for start in (0..n).step_by(CHUNK) {
            let len = CHUNK.min(n - start);
            if let Err(e) = self.encode(cols, (start, len), add, start == 0, &mut rows) {
                result = Err(e);
                break;
            }
            f(self, start, &rows, &carry);
            carry.clear();
            carry.extend_from_slice(&rows[rows.len() - w..]);
        }
        self.rows = rows;
        self.carry = carry;
        result
    }

    /// Fills `out` with the slot of each of the `n` rows keyed by `cols` (no
    /// columns: every row is slot 0). Returns how many new keys were added.
    pub fn slots(&mut self, cols: &[&ArrayRef], n: usize, out: &mut Vec<u32>) -> Result<usize, Error> {
        out.clear();
        let before = self.len();
        if cols.is_empty() {
            if self.is_empty() {
                self.widen(1);
                self.slot_of(&[0]);
            }
            out.resize(n, 0);
            return Ok(self.len() - before);
        }
        let w = key_width(cols.len());
        self.widen(w);
        out.reserve(n);
        let mut last = NONE;
        self.chunks(cols, n, true, |m, start, rows, carry| {
            // Runs of equal keys (across chunks too) take the slot of the first.
            let mut prev = carry;
            for key in rows.chunks_exact(w) {
                if !same(key, prev) {
                    last = m.slot_of(key);
                    prev = key;
                }
                out.push(last);
            }
            if start == 0 && n > CHUNK && m.len - before > CHUNK / 2 {
                // Mostly new keys so far: make room for the rest of the batch at once
                // rather than growing (and moving) the table and the arena step by step.
                if rows[0] == STR_KEY {
                    m.by_id.reserve(n - CHUNK);
                } else {
                    m.table.reserve(n - CHUNK, |&(_, h)| wide(h));
                }
                m.arena.reserve((n - CHUNK) * m.stride);
            }
        })?;
        Ok(self.len() - before)
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
        out.reserve(n);
        // As `Array::is_null`: a dictionary's null keys, not its null values.
        let nulls: Vec<&NullBuffer> = if null_matches {
            vec![]
        } else {
            cols.iter().filter_map(|c| c.nulls()).filter(|v| v.null_count() > 0).collect()
        };
        if cols.is_empty() {
            let slot = self.find(&[0]);
            out.resize(n, slot);
            return Ok(());
        }
        let w = key_width(cols.len());
        let mut last = None;
        self.chunks(cols, n, false, |m, start, rows, carry| {
            let mut prev = carry;
            for (r, key) in (start..).zip(rows.chunks_exact(w)) {
                if nulls.iter().any(|v| v.is_null(r)) {
                    out.push(None);
                    continue;
                }
                if !same(key, prev) {
                    last = m.find(key);
                    prev = key;
                }
                out.push(last);
            }
        })
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
    //!
    //! glibc hands the maps' large blocks back to the kernel when a map is dropped, and the
    //! next file's map page-faults them in again: a cost that a WASM guest (whose linear
    //! memory never shrinks) does not have, and that varies with the machine's load. To leave
    //! it out, run with
    //! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=536870912`.

    use super::*;
    use std::sync::Arc;

    const FILES: usize = 7;
    const ROWS: usize = 86_400;
    const BATCH: usize = 65_536;
    const SYMS: [&str; FILES] = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "DOGEUSDT"];

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
        type Case = (&'static str, fn(usize) -> Vec<ArrayRef>);
        let cases: [Case; 4] = [
            // dedup: [symbol (constant per file), open_time (1 s steps; 0.1% repeat a time 500 rows back)].
            ("dedup [symbol, open_time]", |f| {
                let sym: ArrayRef = Arc::new(StringArray::from(vec![SYMS[f]; ROWS]));
                let base = 1_700_000_000_000i64 + (f * ROWS) as i64 * 1000;
                let t: ArrayRef = Arc::new(Int64Array::from_iter_values(
                    (0..ROWS as i64).map(|i| base + 1000 * if i % 1000 == 999 { i - 500 } else { i }),
                ));
                vec![sym, t]
            }),
            // indicators/aggregate: [symbol], three symbols interleaved row by row.
            ("[symbol] x3 interleaved", |_| {
                vec![Arc::new(StringArray::from_iter_values((0..ROWS).map(|i| SYMS[i % 3])))]
            }),
            // A high-cardinality string key (every row new).
            ("[order id] all distinct", |f| {
                vec![Arc::new(StringArray::from_iter_values((0..ROWS).map(|i| format!("order-{f}-{i:08}"))))]
            }),
            // One Int64 key, every row new.
            ("[int64] all distinct", |f| {
                vec![Arc::new(Int64Array::from_iter_values((0..ROWS as i64).map(|i| i * 7 + f as i64)))]
            }),
        ];
        // KEYMAP_BENCH=name runs only the cases whose name contains it (for profiling).
        let only = std::env::var("KEYMAP_BENCH").unwrap_or_default();
        for (name, make) in cases {
            if name.contains(only.as_str()) {
                let files = batches((0..FILES).map(make).collect());
                println!("keymap {name:<28} {:>6.1} ns/row", time(&files));
            }
        }
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

    use sluice_plugin::arrow_array::{
        DictionaryArray, Float32Array, Int8Array, Int16Array, StringViewArray, UInt32Array, UInt64Array as U64,
    };

    fn arr(a: impl Array + 'static) -> ArrayRef {
        Arc::new(a)
    }

    fn slots(m: &mut KeyMap, cols: &[&ArrayRef]) -> Vec<u32> {
        let mut out = Vec::new();
        m.slots(cols, cols.first().map_or(0, |c| c.len()), &mut out).unwrap();
        out
    }

    fn lookup(m: &mut KeyMap, cols: &[&ArrayRef], null_matches: bool) -> Vec<Option<u32>> {
        let mut out = Vec::new();
        m.lookup(cols, cols[0].len(), null_matches, &mut out).unwrap();
        out
    }

    #[test]
    fn many_keys_in_both_orders() {
        let mut m = KeyMap::default();
        let a = arr(Int64Array::from_iter_values(0..100_000));
        assert!(slots(&mut m, &[&a]).iter().enumerate().all(|(i, &s)| s as usize == i));
        let b = arr(Int64Array::from_iter_values((0..100_000).rev()));
        assert!(slots(&mut m, &[&b]).iter().enumerate().all(|(i, &s)| s as usize == 99_999 - i));
        assert_eq!(m.len(), 100_000);
    }

    /// `[x, null, x, y, null]` of each key type gets slots `[0, 1, 0, 2, 1]`, alone and
    /// as one of 21 columns (more kinds than the first tag word holds).
    #[test]
    fn every_type_with_nulls() {
        use sluice_plugin::arrow_array::{
            Date64Array, Int16Array as I16, TimestampNanosecondArray, TimestampSecondArray, UInt8Array, UInt16Array,
        };
        let cols: Vec<ArrayRef> = vec![
            arr(Int8Array::from(vec![Some(-1), None, Some(-1), Some(0), None])),
            arr(I16::from(vec![Some(300), None, Some(300), Some(0), None])),
            arr(Int32Array::from(vec![Some(7), None, Some(7), Some(0), None])),
            arr(Int64Array::from(vec![Some(i64::MIN), None, Some(i64::MIN), Some(0), None])),
            arr(UInt8Array::from(vec![Some(255), None, Some(255), Some(0), None])),
            arr(UInt16Array::from(vec![Some(1), None, Some(1), Some(0), None])),
            arr(UInt32Array::from(vec![Some(u32::MAX), None, Some(u32::MAX), Some(0), None])),
            arr(U64::from(vec![Some(u64::MAX), None, Some(u64::MAX), Some(0), None])),
            arr(Date32Array::from(vec![Some(19_000), None, Some(19_000), Some(0), None])),
            arr(Date64Array::from(vec![Some(1), None, Some(1), Some(0), None])),
            arr(TimestampSecondArray::from(vec![Some(5), None, Some(5), Some(0), None]).with_timezone("UTC")),
            arr(TimestampMillisecondArray::from(vec![Some(5), None, Some(5), Some(0), None])),
            arr(TimestampMicrosecondArray::from(vec![Some(5), None, Some(5), Some(0), None])),
            arr(TimestampNanosecondArray::from(vec![Some(5), None, Some(5), Some(0), None])),
            arr(Float32Array::from(vec![Some(1.5), None, Some(1.5), Some(0.0), None])),
            arr(Float64Array::from(vec![Some(-2.5), None, Some(-2.5), Some(0.0), None])),
            arr(BooleanArray::from(vec![Some(true), None, Some(true), Some(false), None])),
            arr(StringArray::from(vec![Some("x"), None, Some("x"), Some(""), None])),
            arr(LargeStringArray::from(vec![
                Some("a long string, longer than 16"),
                None,
                Some("a long string, longer than 16"),
                Some(""),
                None,
            ])),
            arr(StringViewArray::from(vec![Some("view"), None, Some("view"), Some(""), None])),
            arr(DictionaryArray::<Int8Type>::from_iter([Some("d"), None, Some("d"), Some(""), None])),
        ];
        for c in &cols {
            let mut m = KeyMap::default();
            assert_eq!(slots(&mut m, &[c]), vec![0, 1, 0, 2, 1], "{}", c.data_type());
            // A later batch, reversed: the same keys, the same slots.
            let rev: Vec<u32> = (0..5).rev().map(|i| i as u32).collect();
            let r = sluice_plugin::arrow_select::take::take(c.as_ref(), &UInt32Array::from(rev), None).unwrap();
            assert_eq!(slots(&mut m, &[&r]), vec![1, 2, 0, 1, 0], "{}", c.data_type());
            assert_eq!(m.len(), 3);
        }
        let all: Vec<&ArrayRef> = cols.iter().collect();
        let mut m = KeyMap::default();
        assert_eq!(slots(&mut m, &all), vec![0, 1, 0, 2, 1]);
        assert_eq!(slots(&mut m, &all[..20]), vec![3, 4, 3, 5, 4]);
        assert_eq!(lookup(&mut m, &all, true), vec![Some(0), Some(1), Some(0), Some(2), Some(1)]);
        assert_eq!(lookup(&mut m, &all, false), vec![Some(0), None, Some(0), Some(2), None]);
        // One null among non-null values is its own key, per column.
        for c in 0..cols.len() {
            let mixed: Vec<ArrayRef> =
                cols.iter().enumerate().map(|(i, a)| if i == c { a.slice(1, 1) } else { a.slice(0, 1) }).collect();
            let mixed: Vec<&ArrayRef> = mixed.iter().collect();
            assert_eq!(slots(&mut m, &mixed), vec![6 + c as u32]);
        }
    }

    #[test]
    fn null_is_not_zero_false_or_empty() {
        let mut m = KeyMap::default();
        let i = arr(Int64Array::from(vec![Some(0), None]));
        let b = arr(BooleanArray::from(vec![Some(false), None]));
        let s = arr(StringArray::from(vec![Some(""), None]));
        for c in [&i, &b, &s] {
            let mut m = KeyMap::default();
            assert_eq!(slots(&mut m, &[c]), vec![0, 1]);
        }
        // Nulls equal each other whatever the column's type (as the byte encoding had it).
        let ni = arr(Int64Array::from(vec![None::<i64>]));
        let ns = arr(StringArray::from(vec![None::<&str>]));
        assert_eq!(slots(&mut m, &[&ni]), vec![0]);
        assert_eq!(slots(&mut m, &[&ns]), vec![0]);
    }

    #[test]
    fn integer_widths_and_floats_compare_as_i64_bits() {
        let mut m = KeyMap::default();
        let a = arr(Int64Array::from(vec![5, -1]));
        assert_eq!(slots(&mut m, &[&a]), vec![0, 1]);
        let b = arr(Int32Array::from(vec![-1, 5]));
        assert_eq!(slots(&mut m, &[&b]), vec![1, 0]);
        let c = arr(U64::from(vec![u64::MAX]));
        assert_eq!(slots(&mut m, &[&c]), vec![1]);
        // Floats: bitwise, so 0.0 and -0.0 differ and a NaN equals the same NaN only.
        let mut f = KeyMap::default();
        let other_nan = f64::from_bits(f64::NAN.to_bits() | 1);
        let x = arr(Float64Array::from(vec![0.0, -0.0, f64::NAN, f64::NAN, other_nan, 1.5]));
        assert_eq!(slots(&mut f, &[&x]), vec![0, 1, 2, 2, 3, 4]);
        let y = arr(Float32Array::from(vec![1.5, -0.0, 0.0]));
        assert_eq!(slots(&mut f, &[&y]), vec![4, 1, 0]);
        // Booleans are not integers.
        let t = arr(BooleanArray::from(vec![true]));
        let one = arr(Int64Array::from(vec![1]));
        let mut g = KeyMap::default();
        assert_eq!(slots(&mut g, &[&t]), vec![0]);
        assert_eq!(slots(&mut g, &[&one]), vec![1]);
    }

    #[test]
    fn strings_keep_their_slots_across_batches_and_encodings() {
        let long = "a string of more than sixteen bytes";
        let mut m = KeyMap::default();
        let a = arr(StringArray::from(vec!["a", long, "b"]));
        assert_eq!(slots(&mut m, &[&a]), vec![0, 1, 2]);
        let b = arr(LargeStringArray::from(vec!["c", "b", long, "a"]));
        assert_eq!(slots(&mut m, &[&b]), vec![3, 2, 1, 0]);
        let c = arr(StringViewArray::from(vec![long, "c", "d"]));
        assert_eq!(slots(&mut m, &[&c]), vec![1, 3, 4]);
        let d = arr(DictionaryArray::<Int16Type>::from_iter([long, "e", "a"]));
        assert_eq!(slots(&mut m, &[&d]), vec![1, 5, 0]);
        // The same strings with a second column: new keys, then stable.
        let n = arr(Int64Array::from(vec![1, 1, 1]));
        assert_eq!(slots(&mut m, &[&a, &n]), vec![6, 7, 8]);
        let n2 = arr(Int64Array::from(vec![1, 1, 2, 1]));
        assert_eq!(slots(&mut m, &[&b, &n2]), vec![9, 8, 10, 6]);
        // And without: the one-column keys are still there.
        assert_eq!(slots(&mut m, &[&a]), vec![0, 1, 2]);
        assert_eq!(m.len(), 11);
        // Strings that differ only inside (the short-string cache must see every byte).
        let mut s = KeyMap::default();
        let tricky = ["aXc", "aYc", "abcXefg", "abcYefg", "abcdefgXijkl", "abcdefgYijkl", "", "a", "aa", "aaa"];
        let t = arr(StringArray::from(tricky.to_vec()));
        assert_eq!(slots(&mut s, &[&t]), (0..tricky.len() as u32).collect::<Vec<_>>());
        assert_eq!(slots(&mut s, &[&t]), (0..tricky.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn dictionaries_with_nulls_slices_and_unused_values() {
        // Values with an unused entry and a null; keys with a null.
        let values = arr(StringArray::from(vec![Some("unused"), Some("b"), None, Some("a")]));
        let keys = Int8Array::from(vec![Some(3), Some(1), None, Some(2), Some(3)]);
        let d = arr(DictionaryArray::try_new(keys, values).unwrap());
        let mut m = KeyMap::default();
        // A null key and a null value are both null.
        assert_eq!(slots(&mut m, &[&d]), vec![0, 1, 2, 2, 0]);
        let plain = arr(StringArray::from(vec![Some("b"), None, Some("a"), Some("unused")]));
        assert_eq!(slots(&mut m, &[&plain]), vec![1, 2, 0, 3]);
        // A slice of the dictionary: the same values, fewer keys.
        assert_eq!(slots(&mut m, &[&d.slice(1, 3)]), vec![1, 2, 2]);
        // Dictionaries of integers match plain integers.
        let di = arr(DictionaryArray::try_new(
            Int16Array::from(vec![Some(1), None, Some(0)]),
            arr(Int64Array::from(vec![10, 20])),
        )
        .unwrap());
        let pi = arr(Int64Array::from(vec![Some(10), Some(20), None]));
        let mut n = KeyMap::default();
        assert_eq!(slots(&mut n, &[&pi]), vec![0, 1, 2]);
        assert_eq!(slots(&mut n, &[&di]), vec![1, 2, 0]);
        // An empty dictionary (only null keys).
        let empty = arr(DictionaryArray::try_new(
            Int8Array::from(vec![None, None]),
            arr(StringArray::from(Vec::<&str>::new())),
        )
        .unwrap());
        assert_eq!(slots(&mut m, &[&empty]), vec![2, 2]);
        // As `Array::is_null` has it, lookup skips rows with a null dictionary key but not
        // those whose key points at a null value: those match the null key.
        assert_eq!(lookup(&mut m, &[&d], false), vec![Some(0), Some(1), None, Some(2), Some(0)]);
    }

    #[test]
    fn lookup_interns_nothing() {
        let mut m = KeyMap::default();
        let a = arr(StringArray::from(vec!["x", "y"]));
        let i = arr(Int64Array::from(vec![1, 2]));
        slots(&mut m, &[&a, &i]);
        slots(&mut m, &[&a]);
        let q = arr(StringArray::from(vec!["z", "x", "a string never seen before, and long"]));
        let qi = arr(Int64Array::from(vec![1, 1, 1]));
        let qd = arr(DictionaryArray::<Int8Type>::from_iter(["z", "y", "w"]));
        let bytes = m.strings[0].bytes.len();
        assert_eq!(lookup(&mut m, &[&q, &qi], false), vec![None, Some(0), None]);
        assert_eq!(lookup(&mut m, &[&q], false), vec![None, Some(2), None]);
        assert_eq!(lookup(&mut m, &[&qd], true), vec![None, Some(3), None]);
        assert_eq!(m.strings[0].bytes.len(), bytes);
        assert_eq!(m.strings[0].ends.len(), 2);
        // Keys wider than any seen are not found either.
        assert_eq!(lookup(&mut m, &[&q, &qi, &qi], false), vec![None; 3]);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn no_key_columns() {
        let mut m = KeyMap::default();
        let mut out = Vec::new();
        assert_eq!(m.slots(&[], 3, &mut out).unwrap(), 1);
        assert_eq!(out, vec![0, 0, 0]);
        let mut found = Vec::new();
        m.lookup(&[], 2, false, &mut found).unwrap();
        assert_eq!(found, vec![Some(0), Some(0)]);
        let a = arr(Int64Array::from(vec![0]));
        assert_eq!(slots(&mut m, &[&a]), vec![1]);
    }

    #[test]
    fn colliding_hashes_still_resolve() {
        for (mask, n) in [(0, 600), (1, 2000), (0xF, 3000)] {
            let mut m = KeyMap { hash_mask: mask, ..KeyMap::default() };
            let ints = arr(Int64Array::from_iter_values(0..n));
            let strs = arr(StringArray::from_iter_values((0..n).map(|i| format!("k{i}"))));
            let long = arr(StringArray::from_iter_values((0..n).map(|i| format!("a much longer key string {i}"))));
            let expect: Vec<u32> = (0..n as u32).collect();
            assert_eq!(slots(&mut m, &[&ints]), expect);
            assert_eq!(slots(&mut m, &[&strs, &ints]), expect.iter().map(|s| s + n as u32).collect::<Vec<_>>());
            assert_eq!(slots(&mut m, &[&long]), expect.iter().map(|s| s + 2 * n as u32).collect::<Vec<_>>());
            // Again, reversed: every key found, none added.
            let rev = |a: &ArrayRef| {
                let idx = UInt32Array::from_iter_values((0..n as u32).rev());
                sluice_plugin::arrow_select::take::take(a.as_ref(), &idx, None).unwrap()
            };
            let (ri, rs, rl) = (rev(&ints), rev(&strs), rev(&long));
            let back: Vec<u32> = expect.iter().rev().copied().collect();
            assert_eq!(slots(&mut m, &[&ri]), back);
            assert_eq!(slots(&mut m, &[&rs, &ri]), back.iter().map(|s| s + n as u32).collect::<Vec<_>>());
            assert_eq!(lookup(&mut m, &[&rl], false), back.iter().map(|s| Some(s + 2 * n as u32)).collect::<Vec<_>>());
            assert_eq!(m.len(), 3 * n as usize);
        }
    }

    #[test]
    fn many_columns_and_changing_widths() {
        let mut m = KeyMap::default();
        let a = arr(Int64Array::from(vec![1, 2]));
        assert_eq!(slots(&mut m, &[&a]), vec![0, 1]);
        let wide: Vec<&ArrayRef> = std::iter::repeat_n(&a, 40).collect();
        assert_eq!(slots(&mut m, &wide), vec![2, 3]);
        assert_eq!(slots(&mut m, &wide[..39]), vec![4, 5]);
        assert_eq!(slots(&mut m, &[&a]), vec![0, 1]);
        assert_eq!(slots(&mut m, &wide), vec![2, 3]);
        let b = arr(Int64Array::from(vec![Some(2), None]));
        let mut mixed = wide.clone();
        mixed[35] = &b;
        assert_eq!(slots(&mut m, &mixed), vec![6, 7]);
        assert_eq!(lookup(&mut m, &mixed, true), vec![Some(6), Some(7)]);
    }

    #[test]
    fn long_batches_across_chunks() {
        // Runs and dictionary ids spanning chunk boundaries.
        let n = 3 * CHUNK + 17;
        let mut m = KeyMap::default();
        let runs = arr(Int64Array::from_iter_values((0..n as i64).map(|i| i / 1000)));
        let d = arr(DictionaryArray::<Int16Type>::from_iter((0..n).map(|i| ["p", "q", "r"][i % 3])));
        let out = slots(&mut m, &[&runs, &d]);
        let mut seen = std::collections::HashMap::new();
        for (i, &s) in out.iter().enumerate() {
            let next = seen.len() as u32;
            assert_eq!(*seen.entry((i / 1000, i % 3)).or_insert(next), s);
        }
        assert_eq!(m.len(), seen.len());
    }

    /// A tiny deterministic generator for the randomized test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    enum V {
        I(i64),
        S(String),
        B(bool),
    }

    /// One random column of `n` values: strings (in one of their encodings), integers
    /// (as Int64, Int32 or a dictionary) or booleans; about one value in eight is null.
    fn random_column(rng: &mut Rng, kind: usize, n: usize, pool: &[String]) -> (ArrayRef, Vec<Option<V>>) {
        let mut vals: Vec<Option<V>> = Vec::with_capacity(n);
        let mut prev: Option<V> = None;
        for _ in 0..n {
            // Runs: repeat the previous value half of the time.
            let v = if prev.is_some() && rng.below(2) == 0 {
                prev.clone()
            } else if rng.below(8) == 0 {
                None
            } else {
                Some(match kind {
                    0 => V::S(pool[rng.below(pool.len())].clone()),
                    1 => V::I(rng.below(40) as i64 - 20),
                    _ => V::B(rng.below(2) == 0),
                })
            };
            vals.push(v.clone());
            prev = v;
        }
        // Sometimes build a longer array and slice it.
        let (pad, total) = if rng.below(3) == 0 { (3, n + 5) } else { (0, n) };
        let padded: Vec<Option<V>> =
            (0..total).map(|i| if i >= pad && i < pad + n { vals[i - pad].clone() } else { None }).collect();
        let s = |v: &Option<V>| match v {
            Some(V::S(s)) => Some(s.clone()),
            _ => None,
        };
        let i = |v: &Option<V>| match v {
            Some(V::I(i)) => Some(*i),
            _ => None,
        };
        let a: ArrayRef = match (kind, rng.below(4)) {
            (0, 0) => arr(StringArray::from(padded.iter().map(s).collect::<Vec<_>>())),
            (0, 1) => arr(LargeStringArray::from(padded.iter().map(s).collect::<Vec<_>>())),
            (0, 2) => arr(StringViewArray::from(padded.iter().map(s).collect::<Vec<_>>())),
            (0, _) => {
                // A dictionary over the whole pool, shuffled, with a null value never used.
                let mut order: Vec<usize> = (0..pool.len()).collect();
                for k in (1..order.len()).rev() {
                    order.swap(k, rng.below(k + 1));
                }
                let mut values: Vec<Option<&str>> = order.iter().map(|&k| Some(pool[k].as_str())).collect();
                values.push(None);
                let keys: Vec<Option<i16>> = padded
                    .iter()
                    .map(|v| s(v).map(|s| values.iter().position(|x| *x == Some(s.as_str())).unwrap() as i16))
                    .collect();
                arr(DictionaryArray::try_new(Int16Array::from(keys), arr(StringArray::from(values))).unwrap())
            }
            (1, 0) => arr(Int32Array::from(padded.iter().map(|v| i(v).map(|x| x as i32)).collect::<Vec<_>>())),
            (1, 1) => {
                let keys: Vec<Option<i8>> = padded.iter().map(|v| i(v).map(|x| (x + 20) as i8)).collect();
                arr(DictionaryArray::try_new(Int8Array::from(keys), arr(Int64Array::from_iter_values(-20..20)))
                    .unwrap())
            }
            (1, _) => arr(Int64Array::from(padded.iter().map(i).collect::<Vec<_>>())),
            _ => arr(BooleanArray::from(
                padded
                    .iter()
                    .map(|v| match v {
                        Some(V::B(b)) => Some(*b),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )),
        };
        (a.slice(pad, n), vals)
    }

    #[test]
    fn randomized_against_a_reference() {
        // Short and long strings, strings equal but for one inner byte, more than `RECENT`.
        let mut pool: Vec<String> =
            ["", "a", "aXc", "aYc", "abcdefgh", "abcdefgX", "0123456789abcdef", "0123456789abcdeX"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        pool.extend((0..300).map(|i| format!("s{i}")));
        pool.extend((0..20).map(|i| format!("a longer string that does not fit in two words #{i}")));
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut m = if seed % 4 == 0 { KeyMap { hash_mask: 0x3F, ..KeyMap::default() } } else { KeyMap::default() };
            let mut reference: std::collections::HashMap<Vec<Option<V>>, u32> = Default::default();
            // Key shapes used with this map: column kinds (0 string, 1 integer, 2 boolean).
            let shapes: [&[usize]; 5] = [&[0, 1], &[0], &[1, 0, 2], &[1], &[0, 0]];
            for _ in 0..12 {
                let shape = shapes[rng.below(if seed % 2 == 0 { 1 } else { shapes.len() })];
                let n = [0, 1, 5, 100, 3000][rng.below(5)];
                let (cols, vals): (Vec<ArrayRef>, Vec<Vec<Option<V>>>) =
                    shape.iter().map(|&k| random_column(&mut rng, k, n, &pool)).unzip();
                let refs: Vec<&ArrayRef> = cols.iter().collect();
                let key = |r: usize| vals.iter().map(|c| c[r].clone()).collect::<Vec<_>>();
                if rng.below(3) == 0 {
                    let mut found = Vec::new();
                    let null_matches = rng.below(2) == 0;
                    m.lookup(&refs, n, null_matches, &mut found).unwrap();
                    for (r, f) in found.iter().enumerate() {
                        let k = key(r);
                        let expect = if !null_matches && k.iter().any(|v| v.is_none()) {
                            None
                        } else {
                            reference.get(&k).copied()
                        };
                        assert_eq!(*f, expect, "seed {seed} row {r} key {k:?}");
                    }
                } else {
                    let mut out = Vec::new();
                    let before = reference.len();
                    let added = m.slots(&refs, n, &mut out).unwrap();
                    for (r, &s) in out.iter().enumerate() {
                        let next = reference.len() as u32;
                        assert_eq!(s, *reference.entry(key(r)).or_insert(next), "seed {seed} row {r}");
                    }
                    assert_eq!(added, reference.len() - before);
                }
                assert_eq!(m.len(), reference.len());
            }
        }
    }
}
