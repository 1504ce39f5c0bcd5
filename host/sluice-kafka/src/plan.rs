//! Cutting partitions into units: half-open offset ranges `[from, to)`, cut at multiples of
//! `max_rows` so that the same offsets always make the same unit (a range replanned after a
//! crash keeps its id), ordered round-robin across partitions so that one busy partition does not
//! starve the others, each carrying the mark after it.

use crate::mark::Mark;

/// One unit: `[from, to)` of `partition`, and the source's mark once it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
    pub mark: Mark,
}

impl Range {
    /// `<topic>/<partition>/<from>-<to>`: what names the unit.
    pub fn locator(&self, topic: &str) -> String {
        format!("{topic}/{}/{}-{}", self.partition, self.from, self.to)
    }
}

/// Where each partition stands: the next offset to read and the high watermark (one past the
/// last record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: i32,
    pub next: i64,
    pub high: i64,
}

/// The units to read now, from `mark` and each partition's position (`next` from the mark, or
/// the start position for a partition the mark does not know yet). A tail shorter than
/// `max_rows` is a unit only when `take_tail` says so (its first record waited long enough:
/// `max_wait`); otherwise it waits for more records. At most `max_units` units.
pub fn cut(
    mark: &Mark,
    positions: &[Position],
    max_rows: i64,
    max_units: usize,
    take_tail: &dyn Fn(i32, i64) -> bool,
) -> Vec<Range> {
    let max_rows = max_rows.max(1);
    let mut per_partition: Vec<Vec<(i32, i64, i64)>> = Vec::new();
    for p in positions {
        let mut ranges = Vec::new();
        let mut from = p.next;
        while from < p.high {
            let boundary = (from / max_rows + 1) * max_rows;
            let to = boundary.min(p.high);
            if to < boundary && !take_tail(p.partition, from) {
                break;
            }
            ranges.push((p.partition, from, to));
            from = to;
        }
        per_partition.push(ranges);
    }
    // Round-robin: the first range of every partition, then the second, ...
    let mut out = Vec::new();
    let mut current = mark.clone();
    for p in positions {
        current.next.entry(p.partition).or_insert(p.next);
    }
    let longest = per_partition.iter().map(Vec::len).max().unwrap_or(0);
    'outer: for i in 0..longest {
        for ranges in &per_partition {
            if let Some(&(partition, from, to)) = ranges.get(i) {
                if out.len() >= max_units {
                    break 'outer;
                }
                current = current.with(partition, to);
                out.push(Range { partition, from, to, mark: current.clone() });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(partition: i32, next: i64, high: i64) -> Position {
        Position { partition, next, high }
    }

    #[test]
    fn ranges_are_cut_at_multiples_and_interleaved() {
        let m = Mark::new("t");
        let units = cut(&m, &[pos(0, 0, 250), pos(1, 130, 210)], 100, 100, &|_, _| true);
        let got: Vec<(i32, i64, i64)> = units.iter().map(|r| (r.partition, r.from, r.to)).collect();
        assert_eq!(got, vec![(0, 0, 100), (1, 130, 200), (0, 100, 200), (1, 200, 210), (0, 200, 250)]);
        // Each unit's mark is every earlier unit applied: a prefix commits a consistent mark.
        assert_eq!(units[1].mark.next, [(0, 100), (1, 200)].into());
        assert_eq!(units[4].mark.next, [(0, 250), (1, 210)].into());
        assert_eq!(units[0].locator("t"), "t/0/0-100");
    }

    #[test]
    fn a_short_tail_waits_unless_it_is_old_enough() {
        let m = Mark::new("t").with(0, 95);
        let wait = cut(&m, &[pos(0, 95, 130)], 100, 10, &|_, _| false);
        assert_eq!(wait.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>(), vec![(95, 100)]);
        let take = cut(&m, &[pos(0, 95, 130)], 100, 10, &|p, from| p == 0 && from == 100);
        assert_eq!(take.iter().map(|r| (r.from, r.to)).collect::<Vec<_>>(), vec![(95, 100), (100, 130)]);
        // Replanned from the same mark, the same ranges come back.
        assert_eq!(cut(&m, &[pos(0, 95, 130)], 100, 10, &|_, _| false), wait);
    }

    #[test]
    fn units_per_pass_are_bounded_and_nothing_to_read_is_nothing() {
        let m = Mark::new("t");
        assert_eq!(cut(&m, &[pos(0, 0, 1000), pos(1, 0, 1000)], 10, 3, &|_, _| true).len(), 3);
        assert!(cut(&m, &[pos(0, 40, 40)], 10, 3, &|_, _| true).is_empty());
    }
}
