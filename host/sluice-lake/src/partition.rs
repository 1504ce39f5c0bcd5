//! Hive-style partition paths: split batches by partition columns and escape values.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_row::{RowConverter, SortField};
use arrow_schema::{ArrowError, Schema, SchemaRef};

/// Hive's marker for a NULL or empty partition value.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// A partition value as [`escape_partition_value`] wrote it, decoded; `None` for
/// [`HIVE_DEFAULT_PARTITION`] (NULL or empty).
pub fn unescape_partition_value(v: &str) -> Option<String> {
    if v == HIVE_DEFAULT_PARTITION {
        return None;
    }
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 3 <= bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
            && let Ok(b) = u8::from_str_radix(&v[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The longest `col=value` directory name: the usual file-name limit.
pub const MAX_SEGMENT: usize = 255;

/// Escape a partition value the way Hive does (`FileUtils.escapePathName`): control characters
/// and `"#%'*/:=?\^{[]` and DEL become `%XX`, so no value can leave its directory or contain
/// `=`. Empty values become [`HIVE_DEFAULT_PARTITION`].
pub fn escape_partition_value(v: &str) -> String {
    if v.is_empty() {
        return HIVE_DEFAULT_PARTITION.to_string();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        let needs = (c as u32) < 0x20 || c == '\u{7f}' || "\"#%'*/:=?\\^{[]".contains(c);
        if needs {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One partition's rows of a batch: its relative directory and the batch without the
/// partition columns.
pub(crate) struct PartitionSlice {
    pub(crate) dir: String,
    pub(crate) batch: RecordBatch,
}

pub(crate) struct Partitioner {
    columns: Vec<usize>,
    names: Vec<String>,
    keep: Vec<usize>,
    data_schema: SchemaRef,
    converter: Option<RowConverter>,
}

impl Partitioner {
    pub(crate) fn new(schema: &Schema, partition_by: &[String]) -> Result<Self, String> {
        let mut columns = Vec::new();
        for name in partition_by {
            let idx = schema.index_of(name).map_err(|_| {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                format!("partition column `{name}` is not in the data (columns: {})", have.join(", "))
            })?;
            columns.push(idx);
        }
        let keep: Vec<usize> = (0..schema.fields().len()).filter(|i| !columns.contains(i)).collect();
        let data_schema = Arc::new(schema.project(&keep).map_err(|e| e.to_string())?);
        let converter = if columns.is_empty() {
            None
        } else {
            let fields = columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect();
            Some(RowConverter::new(fields).map_err(|e| e.to_string())?)
        };
        Ok(Partitioner { columns, names: partition_by.to_vec(), keep, data_schema, converter })
    }

    pub(crate) fn data_schema(&self) -> &SchemaRef {
        &self.data_schema
    }

    /// Split a batch into per-partition slices, in order of first appearance.
    pub(crate) fn split(&self, batch: &RecordBatch) -> Result<Vec<PartitionSlice>, ArrowError> {
        let data = batch.project(&self.keep)?;
        let Some(converter) = &self.converter else {
            return Ok(vec![PartitionSlice { dir: String::new(), batch: data }]);
        };
        let keys: Vec<ArrayRef> = self.columns.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&keys)?;
        // Group rows by key; runs of equal keys (the common case) cost one comparison per row.
        let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut index: std::collections::HashMap<arrow_row::OwnedRow, usize> = std::collections::HashMap::new();
        let mut run_start = 0usize;
        let n = batch.num_rows();
        for i in 1..=n {
            if i < n && rows.row(i) == rows.row(run_start) {
                continue;
            }
            let g = *index.entry(rows.row(run_start).owned()).or_insert_with(|| {
                groups.push((run_start, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.extend(run_start as u32..i as u32);
            run_start = i;
        }
        let mut out = Vec::with_capacity(groups.len());
        for (first, idx) in groups {
            let dir = self.dir_for(&keys, first)?;
            let batch = if idx.len() == n {
                data.clone()
            } else if idx.last().map(|&l| l as usize + 1 - idx[0] as usize) == Some(idx.len()) {
                data.slice(idx[0] as usize, idx.len())
            } else {
                let take = UInt32Array::from(idx);
                let cols = data
                    .columns()
                    .iter()
                    .map(|c| arrow_select::take::take(c.as_ref(), &take, None))
                    .collect::<Result<Vec<_>, _>>()?;
                RecordBatch::try_new(data.schema(), cols)?
            };
            out.push(PartitionSlice { dir, batch });
        }
        Ok(out)
    }

    fn dir_for(&self, keys: &[ArrayRef], row: usize) -> Result<String, ArrowError> {
        let opts = FormatOptions::default();
        let mut parts = Vec::with_capacity(keys.len());
        for (name, col) in self.names.iter().zip(keys) {
            let value = if col.is_null(row) {
                HIVE_DEFAULT_PARTITION.to_string()
            } else {
                escape_partition_value(&ArrayFormatter::try_new(col.as_ref(), &opts)?.value(row).to_string())
            };
            let segment = format!("{}={}", escape_partition_value(name), value);
            // One directory name: filesystems cap it at 255 bytes. Hive has no convention for
            // longer values, and truncating would lose the value readers get back, so refuse.
            if segment.len() > MAX_SEGMENT {
                let shown: String = value.chars().take(40).collect();
                return Err(ArrowError::InvalidArgumentError(format!(
                    "partition value for `{name}` (`{shown}...`) is {} bytes escaped; a partition directory \
                     name is at most {MAX_SEGMENT} bytes. Partition by a shorter derived column instead",
                    value.len()
                )));
            }
            parts.push(segment);
        }
        Ok(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_in_their_directory() {
        assert_eq!(escape_partition_value("a/b"), "a%2Fb");
        assert_eq!(escape_partition_value(".."), "..");
        assert_eq!(escape_partition_value("x=1"), "x%3D1");
        assert_eq!(escape_partition_value("nul\0"), "nul%00");
        assert_eq!(escape_partition_value(""), HIVE_DEFAULT_PARTITION);
        assert_eq!(escape_partition_value("100%"), "100%25");
    }
}
