//! `sessionize`: gap-based sessions per key. A session of a key ends when the
//! next event of that key comes more than `gap` later.

use std::sync::Arc;

use handler_kit::agg::{time_array, time_type};
use handler_kit::keys::{KeyMap, check_key_columns, key_columns};
use handler_kit::num::to_i64;
use handler_kit::time::{Unit, parse_duration_ms};
use sluice_plugin::arrow_array::UInt32Array;
use sluice_plugin::arrow_select;
use sluice_plugin::prelude::*;
use sluice_plugin::reject::with_reject_column;

/// The columns `output: events` adds.
const EVENT_COLUMNS: [&str; 2] = ["session_start", "session_event"];

/// What the step outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// Every event, plus `session_start` and `session_event`.
    #[default]
    Events,
    /// One row per session: keys, session_start, session_end, events, duration.
    Sessions,
}

/// The step's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub keys: Vec<String>,
    /// The event time column (integer epoch or timestamp).
    pub time: String,
    /// The inactivity gap that ends a session: `30m`, `1h`, ...
    pub gap: String,
    /// Unit of an integer time column (default `ms`).
    #[serde(default)]
    pub unit: Option<Unit>,
    #[serde(default)]
    pub output: Output,
    /// What becomes of an event that comes more than `gap` before its key's open session.
    #[serde(default)]
    pub late: Late,
    /// `sessions` output: when a session is output.
    #[serde(default)]
    pub emit: Emit,
}

/// When `output: sessions` outputs a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emit {
    /// When a later event closes it, and the open ones at the end of each file.
    #[default]
    Finish,
    /// Only when a later event of its key closes it: open sessions carry over to the next
    /// file (keyed state), so a session is output once, whole, however the input is cut.
    Close,
}

/// What becomes of a late event that no open session can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Late {
    /// Set aside in the rejects with its reason (`events`), or a session of its own
    /// (`sessions`, whose rows are sessions, not events).
    #[default]
    Reject,
    /// A data error naming the row: the unit fails.
    Fail,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    start: i64,
    end: i64,
    events: i64,
}

/// The handler.
pub struct Sessionize {
    config: Config,
    gap_ms: i64,
    keys: KeyMap,
    /// Per key slot: the open session.
    open: Vec<Option<Session>>,
    /// Per key slot: the end of the key's last closed session (a late event within the gap of
    /// it would join two sessions, one of them already output).
    closed_end: Vec<Option<i64>>,
    /// Rows holding each slot's key values (sessions output).
    key_chunks: Vec<Vec<ArrayRef>>,
    /// Closed sessions waiting for output: (slot, session).
    closed: Vec<(u32, Session)>,
    slots: Vec<u32>,
    time_type: Option<DataType>,
    /// The output schema of the last batch (used by `finish`).
    schema: Option<SchemaRef>,
}

impl Sessionize {
    fn gap(&self, t: &DataType) -> i64 {
        let unit = match t {
            DataType::Timestamp(u, _) => Unit::of(*u),
            _ => self.config.unit.unwrap_or(Unit::Ms),
        };
        (self.gap_ms * unit.per_second() / 1000).max(1)
    }

    fn sessions_batch(&mut self, which: Vec<(u32, Session)>, schema: &SchemaRef) -> Result<Vec<RecordBatch>, Error> {
        if which.is_empty() {
            return Ok(vec![]);
        }
        let tt = self.time_type.clone().unwrap_or(DataType::Int64);
        let idx = UInt32Array::from_iter_values(which.iter().map(|(s, _)| *s));
        let mut cols: Vec<ArrayRef> = Vec::new();
        for chunks in &self.key_chunks {
            let refs: Vec<&dyn Array> = chunks.iter().map(|c| c.as_ref()).collect();
            let all = arrow_select::concat::concat(&refs)?;
            cols.push(arrow_select::take::take(all.as_ref(), &idx, None)?);
        }
        cols.push(time_array(which.iter().map(|(_, s)| s.start).collect(), None, &tt));
        cols.push(time_array(which.iter().map(|(_, s)| s.end).collect(), None, &tt));
        cols.push(Arc::new(Int64Array::from_iter_values(which.iter().map(|(_, s)| s.events))));
        cols.push(Arc::new(Int64Array::from_iter_values(which.iter().map(|(_, s)| s.end - s.start))));
        Ok(vec![RecordBatch::try_new(schema.clone(), cols)?])
    }
}

impl Handler for Sessionize {
    type Config = Config;
    const CONFIG_DOC: &'static str = "\
Splits each key's events into sessions: a session ends when the key's next
event comes more than `gap` after the previous one.

- `keys` (optional): key columns, e.g. `[user]`.
- `time` (required): event time, integer epoch (`unit`, default `ms`) or timestamp.
- `gap` (required): the inactivity gap, e.g. `30m`.
- `output` (default `events`):
  - `events`: every input row plus `session_start` (the session's first event
    time, same type as `time`; with the keys, it identifies the session) and
    `session_event` (1-based position in the session);
  - `sessions`: one row per session: the keys, `session_start`,
    `session_end`, `events` and `duration` (end - start, in the time unit).
    A session is output when a later event of its key closes it, and, with
    `emit: finish` (the default), the open sessions at the end of each file:
    a file's end closes its sessions, so this output is per file and carries
    no state across files. With `emit: close` a session is output only when
    the key's next event comes more than `gap` after it: the open session
    carries over to the next file and across restarts (keyed state, as for
    `events`), so each session is output once, whole: the choice for a
    stream. Sessions still open at the end wait for their key's next event.

Late events: an event older than its key's latest one is *late*. One that is no
more than `gap` before the key's open session (its start minus `gap` up to its
end) joins that session: it counts as one of its events (`session_event` is its
position in arrival order), and the session reaches back to it: its start is
the earliest of its events (rows output before keep the start they had).
An event earlier than that, or one that would bring the open session within
the gap of the key's last closed one, belongs to a session already closed: with `late:
reject` (the default) it is set aside in the rejects with its reason
(`sessions` output: it is a session of its own); `late: fail` makes it a data
error, as any out-of-order event was before. State (`events`): the open session per key, declared on
`keys` ordered by `time` with a lookback *gap* of `gap`: the host keeps each
key's open session with the data and feeds it to a fresh instance, so a
session that runs across files, restarts and late files comes out the same as
in one pass. For a timestamp `time` in s, us or ns, set `unit` to its unit.

```yaml
config: {keys: [user], time: ts, gap: 30m}
```
";

    fn new(config: Config) -> Result<Self, Error> {
        let gap_ms = parse_duration_ms(&config.gap).map_err(|m| Error::config(m).key("gap"))?;
        if config.emit == Emit::Close && config.output != Output::Sessions {
            return Err(Error::config("`emit` applies to `output: sessions`").key("emit"));
        }
        let nkeys = config.keys.len();
        Ok(Sessionize {
            config,
            gap_ms,
            keys: KeyMap::default(),
            open: Vec::new(),
            closed_end: Vec::new(),
            key_chunks: vec![Vec::new(); nkeys],
            closed: Vec::new(),
            slots: Vec::new(),
            time_type: None,
            schema: None,
        })
    }

    fn output_schema(&self, input: &SchemaRef) -> Result<SchemaRef, Error> {
        check_key_columns(input, &self.config.keys, "keys")?;
        let t = handler_kit::column_index(input, &self.config.time, "time")?;
        let tt = input.field(t).data_type();
        if !(tt.is_integer() || matches!(tt, DataType::Timestamp(_, _))) {
            return Err(Error::config(format!("`{}` is {tt}: use an integer epoch or a timestamp", self.config.time))
                .key("time"));
        }
        if let DataType::Timestamp(u, _) = tt {
            let (have, want) = (Unit::of(*u), self.config.unit.unwrap_or(Unit::Ms));
            if have.per_second() > want.per_second() {
                let have = format!("{have:?}").to_lowercase();
                return Err(Error::config(format!(
                    "`{}` is a timestamp in {have}: set `unit: {have}` (sessions are kept across files in the \
                     time column's unit)",
                    self.config.time
                ))
                .key("unit"));
            }
        }
        let tt = time_type(tt);
        Ok(match self.config.output {
            Output::Events => {
                for name in EVENT_COLUMNS {
                    if input.index_of(name).is_ok() {
                        return Err(Error::config(format!("column `{name}` already exists in the input")).key("output"));
                    }
                }
                // A row-for-row patch of the two new columns, and the rejects of late events.
                with_reject_column(&Arc::new(Schema::new(vec![
                    Field::new(EVENT_COLUMNS[0], tt, true),
                    Field::new(EVENT_COLUMNS[1], DataType::Int64, true),
                ])))
            }
            Output::Sessions => {
                let mut fields: Vec<FieldRef> = self
                    .config
                    .keys
                    .iter()
                    .map(|k| Arc::new(input.field_with_name(k).expect("checked").clone()))
                    .collect();
                fields.push(Arc::new(Field::new("session_start", tt.clone(), false)));
                fields.push(Arc::new(Field::new("session_end", tt, false)));
                fields.push(Arc::new(Field::new("events", DataType::Int64, false)));
                fields.push(Arc::new(Field::new("duration", DataType::Int64, false)));
                Arc::new(Schema::new(fields))
            }
        })
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let n = batch.num_rows();
        let keys = key_columns(&batch, &self.config.keys)?;
        let before = self.keys.len();
        let mut slots = std::mem::take(&mut self.slots);
        self.keys.slots(&keys, n, &mut slots)?;
        if self.config.output == Output::Sessions && self.keys.len() > before {
            let mut firsts = Vec::new();
            let mut next = before as u32;
            for (row, &s) in slots.iter().enumerate() {
                if s >= next {
                    firsts.push(row as u32);
                    next = s + 1;
                }
            }
            let idx = UInt32Array::from(firsts);
            for (chunks, col) in self.key_chunks.iter_mut().zip(&keys) {
                chunks.push(arrow_select::take::take(col.as_ref(), &idx, None)?);
            }
        }
        self.open.resize(self.keys.len(), None);
        self.closed_end.resize(self.keys.len(), None);
        let tcol = batch
            .column_by_name(&self.config.time)
            .ok_or_else(|| Error::data("column not found").column(&self.config.time))?;
        self.time_type = Some(tcol.data_type().clone());
        self.schema = Some(schema.clone());
        let gap = self.gap(tcol.data_type());
        let times = to_i64(tcol.as_ref()).ok_or_else(|| Error::data("not a time column").column(&self.config.time))?;
        let tv = times.values();
        let events = self.config.output == Output::Events;
        let (mut starts, mut positions) = (Vec::with_capacity(if events { n } else { 0 }), Vec::new());
        if events {
            positions.reserve(n);
        }
        let mut rejects = Rejects::new(if events { n } else { 0 });
        for row in 0..n {
            if times.is_null(row) {
                return Err(Error::data("null event time").row(row).column(&self.config.time));
            }
            let t = tv[row];
            let slot = slots[row];
            let open = &mut self.open[slot as usize];
            let closed_end = self.closed_end[slot as usize];
            let bridges = closed_end.is_some_and(|e| t.saturating_sub(e) <= gap);
            match open {
                // Late, but within the open session's reach (and not within the gap of the
                // session before it, which is closed): it joins the session.
                Some(s) if t < s.end && t >= s.start.saturating_sub(gap) && !bridges => {
                    s.events += 1;
                    s.start = s.start.min(t);
                }
                Some(s) if t < s.end => {
                    let why = if bridges && t >= s.start.saturating_sub(gap) {
                        format!(
                            "late event: {t} is within the gap of its key's closed session (ending {}) and of the open one ({} to {}); sessions already output are not joined",
                            closed_end.unwrap_or_default(),
                            s.start,
                            s.end
                        )
                    } else {
                        format!(
                            "late event: {t} is more than the gap before its key's open session ({} to {}); its session was closed",
                            s.start, s.end
                        )
                    };
                    match (self.config.late, events) {
                        (Late::Fail, _) => {
                            return Err(Error::data(why).row(row).column(&self.config.time));
                        }
                        (Late::Reject, true) => {
                            rejects.reject(row, why);
                            starts.push(t);
                            positions.push(0);
                            continue;
                        }
                        // A session of its own, closed at once; the open one stays open.
                        (Late::Reject, false) => {
                            self.closed.push((slot, Session { start: t, end: t, events: 1 }));
                            continue;
                        }
                    }
                }
                Some(s) if t - s.end <= gap => {
                    s.end = t;
                    s.events += 1;
                }
                _ => {
                    if let Some(s) = open.take() {
                        self.closed_end[slot as usize] = Some(s.end);
                        if !events {
                            self.closed.push((slot, s));
                        }
                    }
                    *open = Some(Session { start: t, end: t, events: 1 });
                }
            }
            if events {
                let s = open.expect("set above");
                starts.push(s.start);
                positions.push(s.events);
            }
        }
        self.slots = slots;
        if events {
            let cols = vec![
                time_array(starts, None, tcol.data_type()),
                Arc::new(Int64Array::from(positions)),
                rejects.to_array(),
            ];
            return Ok(vec![RecordBatch::try_new(schema, cols)?]);
        }
        let closed = std::mem::take(&mut self.closed);
        self.sessions_batch(closed, &schema)
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        if self.config.output == Output::Events || self.time_type.is_none() {
            return Ok(vec![]);
        }
        if self.config.emit == Emit::Close {
            // Open sessions stay open: the host carries their rows to the next file.
            let closed = std::mem::take(&mut self.closed);
            let schema = self.schema.clone().expect("set with time_type");
            return self.sessions_batch(closed, &schema);
        }
        let mut all = std::mem::take(&mut self.closed);
        for (slot, s) in self.open.iter_mut().enumerate() {
            if let Some(s) = s.take() {
                all.push((slot as u32, s));
            }
        }
        let schema = self.schema.clone().expect("set with time_type");
        self.sessions_batch(all, &schema)
    }

    /// `events` reads the keys and the time (and the names of the columns it adds, to report
    /// a clash) and returns the two new columns. `sessions` outputs other rows, and holds the
    /// open sessions until the end of the file: whole batches.
    fn projection(&self) -> Option<Vec<String>> {
        let c = &self.config;
        (c.output == Output::Events).then(|| {
            let adds = EVENT_COLUMNS.iter().map(|s| s.to_string());
            c.keys.iter().chain([&c.time]).cloned().chain(adds).collect()
        })
    }

    fn state(&self) -> Option<StateSpec> {
        // `sessions` with `emit: finish` closes every session at the end of a file: nothing
        // carries over.
        if self.config.output == Output::Sessions && self.config.emit == Emit::Finish {
            return None;
        }
        // The open session: the rows after the last gap, in the configured unit (a timestamp in
        // a finer unit is refused by `output_schema`; in a coarser one the gap reads wider,
        // which keeps more rows, never fewer).
        Some(StateSpec {
            keys: self.config.keys.clone(),
            order_by: self.config.time.clone(),
            lookback_rows: 0,
            lookback_span: None,
            lookback_gap: Some((self.gap_ms * self.config.unit.unwrap_or(Unit::Ms).per_second() / 1000).max(1)),
            lookahead: false,
        })
    }
}

sluice_plugin::export_handler!(Sessionize);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin::arrow_array::types::Int64Type;
    use sluice_plugin::{parse_config, patch};

    fn batch(u: Vec<&str>, t: Vec<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(u)), Arc::new(Int64Array::from(t))]).unwrap()
    }

    fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
        b.column_by_name(name).unwrap().as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn events_across_batches() {
        let mut s = Sessionize::new(parse_config(r#"{"keys":["user"],"time":"ts","gap":"1s"}"#).unwrap()).unwrap();
        let out = patch::process(&mut s, &batch(vec!["a", "b", "a", "a"], vec![0, 0, 1000, 2500])).unwrap().remove(0);
        assert_eq!(ints(&out, "session_start"), vec![0, 0, 0, 2500]);
        assert_eq!(ints(&out, "session_event"), vec![1, 1, 2, 1]);
        let out = patch::process(&mut s, &batch(vec!["b", "a"], vec![900, 3000])).unwrap().remove(0);
        assert_eq!(ints(&out, "session_start"), vec![0, 2500]);
        assert_eq!(ints(&out, "session_event"), vec![2, 2]);
        let st = s.state().unwrap();
        assert_eq!((st.lookback_rows, st.lookback_gap), (0, Some(1000)), "the open session, by a 1 s gap in ms");
    }

    fn rejects(b: &RecordBatch) -> Vec<Option<String>> {
        let c = b.column_by_name(REJECT_COLUMN).unwrap().as_string::<i32>();
        c.iter().map(|v| v.map(str::to_string)).collect()
    }

    #[test]
    fn late_events_join_the_open_session_within_the_gap_and_are_rejected_beyond_it() {
        let mut s = Sessionize::new(parse_config(r#"{"keys":["user"],"time":"ts","gap":"1s"}"#).unwrap()).unwrap();
        patch::process(&mut s, &batch(vec!["a", "a", "a"], vec![0, 5000, 5600])).unwrap();
        // 5200 and 4200 are late but within the open session's reach (4000..5600): they join
        // it, and it reaches back to 4200. 3100 and 900 are more than the gap before it: rejects.
        // 6000 goes on.
        let out = patch::process(&mut s, &batch(vec!["a"; 5], vec![5200, 4200, 3100, 900, 6000])).unwrap().remove(0);
        assert_eq!(ints(&out, "session_start")[..2], [5000, 4200]);
        assert_eq!(ints(&out, "session_start")[4], 4200);
        assert_eq!(ints(&out, "session_event")[..2], [3, 4]);
        assert_eq!(ints(&out, "session_event")[4], 5);
        let r = rejects(&out);
        assert!(r[0].is_none() && r[1].is_none() && r[4].is_none(), "{r:?}");
        assert!(r[2].as_deref().unwrap().starts_with("late event: 3100 is more than the gap"), "{r:?}");
        assert!(r[3].as_deref().unwrap().starts_with("late event: 900 is more than the gap"), "{r:?}");
        // A late event within reach of the open session (1500..2100) but also within the gap of
        // the closed one (0): joining would merge a session already output; a reject.
        let mut s = Sessionize::new(parse_config(r#"{"keys":["user"],"time":"ts","gap":"1s"}"#).unwrap()).unwrap();
        patch::process(&mut s, &batch(vec!["a"; 3], vec![0, 1500, 2100])).unwrap();
        let out = patch::process(&mut s, &batch(vec!["a"], vec![800])).unwrap().remove(0);
        let r = rejects(&out);
        assert!(r[0].as_deref().unwrap().starts_with("late event: 800 is within the gap of its key's closed"), "{r:?}");
        // `late: fail`: a data error at the row.
        let cfg = r#"{"keys":["user"],"time":"ts","gap":"1s","late":"fail"}"#;
        let mut s = Sessionize::new(parse_config(cfg).unwrap()).unwrap();
        patch::process(&mut s, &batch(vec!["a", "a"], vec![0, 5000])).unwrap();
        let e = patch::process(&mut s, &batch(vec!["a"], vec![10])).unwrap_err();
        assert!(matches!(e, Error::Data { row: Some(0), .. }), "{e}");
        // `sessions`: the late event within the gap widens the session; one beyond it is a
        // session of its own.
        let cfg = r#"{"keys":["user"],"time":"ts","gap":"1s","output":"sessions"}"#;
        let mut s = Sessionize::new(parse_config(cfg).unwrap()).unwrap();
        let out = patch::process(&mut s, &batch(vec!["a", "a", "a", "a"], vec![5000, 5500, 4500, 100])).unwrap();
        assert_eq!(ints(&out[0], "session_start"), vec![100]);
        let rest = s.finish().unwrap().remove(0);
        assert_eq!((ints(&rest, "session_start"), ints(&rest, "events")), (vec![4500], vec![3]));
    }

    #[test]
    fn a_timestamp_finer_than_the_unit_is_a_config_error() {
        let s = Sessionize::new(parse_config(r#"{"keys":["user"],"time":"ts","gap":"1s"}"#).unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("user", DataType::Utf8, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), false),
        ]));
        let e = s.output_schema(&schema).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "unit"), "{e}");
        assert!(e.to_string().contains("set `unit: us`"), "{e}");
        let s = Sessionize::new(parse_config(r#"{"time":"ts","gap":"1s","unit":"us"}"#).unwrap()).unwrap();
        assert_eq!(s.state().unwrap().lookback_gap, Some(1_000_000));
    }

    #[test]
    fn events_read_keys_and_time_and_return_the_new_columns() {
        let mut s = Sessionize::new(parse_config(r#"{"keys":["user"],"time":"ts","gap":"1s"}"#).unwrap()).unwrap();
        assert_eq!(s.projection().unwrap(), ["user", "ts", "session_start", "session_event"]);
        let b = batch(vec!["a", "a"], vec![0, 5000]);
        let p = s.process(patch::project(&b, &s.projection().unwrap())).unwrap().remove(0);
        let names: Vec<_> = p.schema().fields().iter().map(|f| f.name().to_string()).collect();
        assert_eq!(names, ["session_start", "session_event", REJECT_COLUMN]);
        let schema = patch::output_schema(&s, &b.schema()).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["user", "ts", "session_start", "session_event", REJECT_COLUMN]);
        // An input that has one of the added columns: a config error, at `output`.
        let s = Sessionize::new(parse_config(r#"{"time":"ts","gap":"1s"}"#).unwrap()).unwrap();
        let mut schema: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        schema.push(Field::new("session_event", DataType::Int64, true));
        let e = patch::output_schema(&s, &Arc::new(Schema::new(schema))).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "output"), "{e}");
        assert!(e.message().contains("`session_event` already exists"), "{e}");
        // `sessions` takes whole batches.
        let cfg = r#"{"keys":["user"],"time":"ts","gap":"1s","output":"sessions"}"#;
        assert!(Sessionize::new(parse_config(cfg).unwrap()).unwrap().projection().is_none());
    }

    #[test]
    fn session_summaries() {
        let mut s =
            Sessionize::new(parse_config(r#"{"keys":["user"],"time":"ts","gap":"1s","output":"sessions"}"#).unwrap())
                .unwrap();
        let out =
            patch::process(&mut s, &batch(vec!["a", "b", "a", "a", "b"], vec![0, 100, 1000, 5000, 5000])).unwrap();
        let closed = &out[0];
        assert_eq!(closed.num_rows(), 2);
        assert_eq!(ints(closed, "session_start"), vec![0, 100]);
        assert_eq!(ints(closed, "events"), vec![2, 1]);
        assert_eq!(ints(closed, "duration"), vec![1000, 0]);
        let rest = s.finish().unwrap().remove(0);
        assert_eq!(rest.column(0).as_string::<i32>().iter().flatten().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(ints(&rest, "session_start"), vec![5000, 5000]);
    }

    #[test]
    fn sessions_emitted_on_close_carry_open_ones_over_the_end_of_a_file() {
        let cfg = r#"{"keys":["user"],"time":"ts","gap":"1s","output":"sessions","emit":"close"}"#;
        let mut s = Sessionize::new(parse_config(cfg).unwrap()).unwrap();
        assert_eq!(s.state().unwrap().lookback_gap, Some(1000));
        let out = patch::process(&mut s, &batch(vec!["a", "b", "a"], vec![0, 0, 500])).unwrap();
        assert!(out.iter().all(|b| b.num_rows() == 0), "nothing closed yet");
        assert!(s.finish().unwrap().iter().all(|b| b.num_rows() == 0), "open sessions are not output at the end");
        // The next file, on a fresh instance seeded with the open session's rows (as the host
        // does), closes `a`'s session whole.
        let mut s = Sessionize::new(parse_config(cfg).unwrap()).unwrap();
        patch::process(&mut s, &batch(vec!["a", "a"], vec![0, 500])).unwrap();
        let out = patch::process(&mut s, &batch(vec!["a"], vec![9000])).unwrap().remove(0);
        assert_eq!((ints(&out, "session_start"), ints(&out, "events")), (vec![0], vec![2]));
        let e = Sessionize::new(parse_config(r#"{"time":"ts","gap":"1s","emit":"close"}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "emit"), "{e}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = Sessionize::new(parse_config(r#"{"time":"ts","gap":"soon"}"#).unwrap()).err().unwrap();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "gap"), "{e}");
        let e = parse_config::<Config>(r#"{"time":"ts","gap":"1s","output":"rows"}"#).unwrap_err();
        assert!(matches!(e, Error::Config { key: Some(ref k), .. } if k == "output"), "{e}");
    }
}
