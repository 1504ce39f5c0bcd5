//! `hostile-bad-patch`: declares a projection and returns patches that break its rules (tests
//! the host's checks of guest patches).
//!
//! Config `{reads: [...], mode: ...}`; every mode passes the SDK's own schema check, so only the
//! host stands between these patches and the lake:
//! - `out_of_range`: `_sluice_row` points past the input's rows;
//! - `short`: a row-for-row patch with one row fewer than the input;
//! - `holds`: keeps the rows and returns a patch from `finish`;
//! - `shadow`: returns a column named `shadow` (meant to exist in the input, unread) as new;
//! - `ok`: a valid selection of every other row, with a new column `first` (`row<i>`).

use std::sync::Arc;

use sluice_plugin::patch::{row_field, rows};
use sluice_plugin::prelude::*;

/// What to break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    OutOfRange,
    Short,
    Holds,
    Shadow,
    Ok,
}

/// Config.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub reads: Vec<String>,
    pub mode: Mode,
}

/// The handler.
pub struct BadPatch {
    config: Config,
    held: Option<RecordBatch>,
}

impl Handler for BadPatch {
    type Config = Config;

    fn new(config: Config) -> Result<Self, Error> {
        Ok(BadPatch { config, held: None })
    }

    fn projection(&self) -> Option<Vec<String>> {
        Some(self.config.reads.clone())
    }

    fn output_schema(&self, _input: &SchemaRef) -> Result<SchemaRef, Error> {
        let fields = match self.config.mode {
            Mode::OutOfRange | Mode::Holds => vec![row_field()],
            Mode::Short => vec![Arc::new(Field::new("n", DataType::UInt32, false))],
            Mode::Shadow => vec![Arc::new(Field::new("shadow", DataType::Utf8, false))],
            Mode::Ok => vec![Arc::new(Field::new("first", DataType::Utf8, true)), row_field()],
        };
        Ok(Arc::new(Schema::new(fields)))
    }

    fn process(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, Error> {
        let schema = self.output_schema(&batch.schema())?;
        let n = batch.num_rows() as u32;
        let patch = match self.config.mode {
            Mode::OutOfRange => RecordBatch::try_new(schema, vec![rows(vec![0, n + 5])])?,
            Mode::Short => {
                let n = n.saturating_sub(1);
                RecordBatch::try_new(schema, vec![Arc::new(UInt32Array::from((0..n).collect::<Vec<_>>()))])?
            }
            Mode::Holds => {
                self.held = Some(RecordBatch::try_new(schema, vec![rows((0..n).collect())])?);
                return Ok(vec![]);
            }
            Mode::Shadow => RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["x"; n as usize]))])?,
            Mode::Ok => {
                let keep: Vec<u32> = (0..n).step_by(2).collect();
                let tags: StringArray = keep.iter().map(|r| Some(format!("row{r}"))).collect();
                RecordBatch::try_new(schema, vec![Arc::new(tags), rows(keep)])?
            }
        };
        Ok(vec![patch])
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, Error> {
        Ok(self.held.take().into_iter().collect())
    }
}

sluice_plugin::export_handler!(BadPatch);

#[cfg(test)]
mod tests {
    //! Native unit tests: the SDK's own harness refuses what the host must refuse.

    use super::*;
    use sluice_plugin::patch;

    fn input() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("shadow", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(vec![1, 2, 3])), Arc::new(Int64Array::from(vec![4, 5, 6]))],
        )
        .unwrap()
    }

    fn handler(mode: &str) -> BadPatch {
        BadPatch::new(sluice_plugin::parse_config(&format!(r#"{{"reads":["a"],"mode":"{mode}"}}"#)).unwrap()).unwrap()
    }

    #[test]
    fn modes() {
        assert!(patch::process(&mut handler("out_of_range"), &input()).is_err());
        assert!(patch::process(&mut handler("short"), &input()).is_err());
        let ok = patch::process(&mut handler("ok"), &input()).unwrap();
        assert_eq!(ok[0].num_rows(), 2);
        assert_eq!(ok[0].column_by_name("first").unwrap().as_string::<i32>().value(1), "row2");
        assert_eq!(
            ok[0]
                .column_by_name("shadow")
                .unwrap()
                .as_primitive::<sluice_plugin::arrow_array::types::Int64Type>()
                .value(1),
            6
        );
        let mut h = handler("holds");
        assert!(patch::process(&mut h, &input()).unwrap().is_empty());
        assert_eq!(h.finish().unwrap().len(), 1);
    }
}
