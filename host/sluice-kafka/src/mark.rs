//! The high-water mark of a kafka source: the next offset to read of every partition, as one
//! JSON string (`{"v":1,"topic":"events","next":{"0":1200,"1":980}}`). A unit's mark is the
//! mark before it with its own range applied; units commit in order, so the committed mark is
//! always a prefix of what was planned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub v: u32,
    pub topic: String,
    /// Partition → the next offset to read.
    pub next: BTreeMap<i32, i64>,
}

impl Mark {
    pub fn new(topic: &str) -> Mark {
        Mark { v: 1, topic: topic.to_string(), next: BTreeMap::new() }
    }

    /// The committed mark of `topic`, or a fresh one. A mark of another topic (the pipeline's
    /// topic changed) or of an unknown version is an error: reading on from it would skip or
    /// repeat records.
    pub fn parse(text: Option<&str>, topic: &str) -> Result<Mark, String> {
        let Some(text) = text else { return Ok(Mark::new(topic)) };
        let m: Mark =
            serde_json::from_str(text).map_err(|e| format!("the committed mark {text:?} does not parse: {e}"))?;
        if m.v != 1 {
            return Err(format!("the committed mark has version {}, this build reads version 1", m.v));
        }
        if m.topic != topic {
            return Err(format!(
                "the committed mark is for topic `{}`, the pipeline reads `{topic}`: a new topic needs a new sink or dataset",
                m.topic
            ));
        }
        Ok(m)
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("a mark serializes")
    }

    /// This mark with `partition` read up to (not including) `to`.
    pub fn with(&self, partition: i32, to: i64) -> Mark {
        let mut m = self.clone();
        m.next.insert(partition, to);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_refuse_another_topic() {
        let m = Mark::new("events").with(0, 1200).with(2, 7);
        let text = m.to_text();
        assert_eq!(text, r#"{"v":1,"topic":"events","next":{"0":1200,"2":7}}"#);
        assert_eq!(Mark::parse(Some(&text), "events").unwrap(), m);
        assert_eq!(Mark::parse(None, "events").unwrap(), Mark::new("events"));
        assert!(Mark::parse(Some(&text), "other").unwrap_err().contains("topic `events`"));
        assert!(Mark::parse(Some("{"), "events").is_err());
        assert!(
            Mark::parse(Some(r#"{"v":2,"topic":"events","next":{}}"#), "events").unwrap_err().contains("version 2")
        );
    }
}
