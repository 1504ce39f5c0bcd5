//! Entry points for the fuzz targets in `fuzz/`: arbitrary bytes as what a guest returns, through
//! the host's checks of guest output (IPC decode, declared-schema match) and the merge of a
//! projecting handler's patches into its input. Not a stable API.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use sluice_core::error::PluginError;
use sluice_core::plugin::{Handler, StateSpec};
use sluice_core::projection::{Projected, ROW_COLUMN};

use crate::ipc;

/// The output cap of these checks (the default limit is larger; small inputs are what fuzzing
/// explores).
const LIMIT: u64 = 1 << 20;

/// `data` as a guest's `output-schema` answer and as its `process` output, declared with the
/// schema the stream itself carries and with a fixed one. Valid output is re-encoded for the next
/// step, as the host does. Returns the rows accepted; errors are expected, a panic is a bug.
pub fn guest_output(data: &[u8]) -> Result<usize, PluginError> {
    let _ = ipc::declared_schema(data.to_vec());
    let _ = ipc::accept(data.to_vec(), &input_schema(), LIMIT);
    let (declared, _) = ipc::decode(data.to_vec())?;
    let (batches, _) = ipc::accept(data.to_vec(), &declared, LIMIT)?;
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let again = ipc::encode(&declared, &refs)?;
    let (_, round) = ipc::decode(again)?;
    Ok(round.iter().map(RecordBatch::num_rows).sum())
}

/// `data[0]` picks the input's row count and `data[1]` the columns the handler reads; the rest is
/// the guest's patch output (an IPC stream), checked as [`guest_output`] does and merged into the
/// input by [`Projected`]. Returns the rows out; errors are expected, a panic is a bug.
pub fn patch(data: &[u8]) -> Result<usize, PluginError> {
    let [rows, reads, stream @ ..] = data else { return Ok(0) };
    let n = usize::from(rows % 9);
    let names = ["s", "t", "v"];
    let reads = names.iter().enumerate().filter(|(i, _)| (reads >> i) & 1 == 1).map(|(_, c)| c.to_string()).collect();
    let guest = Guest { stream: stream.to_vec(), declared: None };
    let mut handler = Projected::new(Box::new(guest), reads);
    let input = input(n);
    let out = handler.process(&input)?;
    let schema = handler.output_schema(&input.schema())?;
    for b in &out {
        assert!(
            ipc::same_shape(&b.schema(), &schema),
            "a merged batch has the schema {}, not the output schema {}",
            ipc::describe(&b.schema()),
            ipc::describe(&schema)
        );
    }
    handler.finish()?;
    Ok(out.iter().map(RecordBatch::num_rows).sum())
}

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

/// The input of [`patch`]: `n` rows of `s` (text with a null), `t` and `v` (integers).
fn input(n: usize) -> RecordBatch {
    let s: StringArray = (0..n).map(|i| (i % 3 != 2).then(|| format!("r{i}"))).collect();
    let t = Int64Array::from_iter_values((0..n as i64).map(|i| 1_700_000_000_000 + i * 1000));
    let v = Int64Array::from_iter((0..n as i64).map(|i| (i % 4 != 3).then_some(i * 7)));
    let cols: Vec<ArrayRef> = vec![Arc::new(s), Arc::new(t), Arc::new(v)];
    RecordBatch::try_new(input_schema(), cols).expect("the fuzz input is valid")
}

/// A guest that declares the schema of its stream and returns the stream's batches, through the
/// same checks as a wasm handler's output.
struct Guest {
    stream: Vec<u8>,
    declared: Option<SchemaRef>,
}

impl Handler for Guest {
    fn output_schema(&mut self, _input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        let (schema, _) = ipc::decode(self.stream.clone())?;
        self.declared = Some(schema.clone());
        Ok(schema)
    }

    fn state(&mut self) -> Result<Option<StateSpec>, PluginError> {
        Ok(None)
    }

    fn process(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, PluginError> {
        let declared = match &self.declared {
            Some(d) => d.clone(),
            None => self.output_schema(&batch.schema())?,
        };
        Ok(ipc::accept(self.stream.clone(), &declared, LIMIT)?.0)
    }

    fn finish(&mut self) -> Result<Vec<RecordBatch>, PluginError> {
        Ok(Vec::new())
    }
}

/// Small valid inputs for the `ipc` and `patch` corpora (`fuzz/corpus/`), by file name.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let stream = |fields: Vec<Field>, cols: Vec<ArrayRef>| {
        let schema = Arc::new(Schema::new(fields));
        let b = RecordBatch::try_new(schema.clone(), cols).expect("seed batches are valid");
        ipc::encode(&schema, &[&b]).expect("seed batches encode")
    };
    let with = |prefix: [u8; 2], bytes: Vec<u8>| [prefix.as_slice(), &bytes].concat();
    let t10 = || -> ArrayRef { Arc::new(Int64Array::from(vec![10, 20, 30, 40])) };
    let whole = stream(
        vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("t", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ],
        vec![Arc::new(StringArray::from(vec![Some("a"), None, Some("c"), Some("d")])), t10(), {
            Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)]))
        }],
    );
    // Replaces `t` row for row (reads `t`).
    let in_place = stream(vec![Field::new("t", DataType::Int64, false)], vec![t10()]);
    // Keeps rows 0, 2, 3 and adds `e` (reads `t`).
    let selected = stream(
        vec![
            Field::new("t", DataType::Int64, false),
            Field::new("e", DataType::Utf8, false),
            Field::new(ROW_COLUMN, DataType::UInt32, false),
        ],
        vec![
            Arc::new(Int64Array::from(vec![1, 3, 4])),
            Arc::new(StringArray::from(vec!["x", "y", "z"])),
            Arc::new(UInt32Array::from(vec![0, 2, 3])),
        ],
    );
    // Repeats and reorders rows (reads `s` and `v`).
    let gathered = stream(
        vec![Field::new("w", DataType::Int64, true), Field::new(ROW_COLUMN, DataType::UInt32, false)],
        vec![Arc::new(Int64Array::from(vec![Some(9), None, Some(7)])), Arc::new(UInt32Array::from(vec![3, 3, 0]))],
    );
    vec![
        ("ipc", "whole.arrows", whole.clone()),
        ("ipc", "selected.arrows", selected.clone()),
        ("patch", "in-place", with([4, 0b010], in_place)),
        ("patch", "selected", with([4, 0b010], selected)),
        ("patch", "gathered", with([4, 0b101], gathered)),
        ("patch", "whole", with([4, 0b111], whole)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed seeds are these generated ones, and each gets through every check (so the
    /// fuzzer starts from inputs that reach the merge). `SLUICE_BLESS=1` rewrites them.
    #[test]
    fn fuzz_seeds_are_valid_and_committed() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (target, name, bytes) in seeds() {
            let rows = match target {
                "ipc" => guest_output(&bytes),
                _ => patch(&bytes),
            };
            assert!(rows.is_ok_and(|r| r > 0), "seed {target}/{name}");
            let path = corpus.join(target).join(name);
            if std::env::var_os("SLUICE_BLESS").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(committed == bytes, "{} is stale: rerun with SLUICE_BLESS=1", path.display());
        }
    }

    #[test]
    fn patch_rows_add_up() {
        let seeds = seeds();
        let rows = |name: &str| patch(&seeds.iter().find(|s| s.0 == "patch" && s.1 == name).unwrap().2);
        assert_eq!(rows("in-place").unwrap(), 4);
        assert_eq!(rows("selected").unwrap(), 3);
        assert_eq!(rows("gathered").unwrap(), 3);
        // The same patch against a 2-row input names rows that do not exist.
        let mut short = seeds.iter().find(|s| s.1 == "selected" && s.0 == "patch").unwrap().2.clone();
        short[0] = 2;
        assert!(patch(&short).unwrap_err().to_string().contains("has row 2, but the input has 2 rows"));
    }
}
