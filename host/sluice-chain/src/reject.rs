//! Rows set aside: by a source that cannot parse them, or by a step through the reject column.

use sluice_contract::REJECT_COLUMN;

use arrow_array::RecordBatch;

/// A row that could not be parsed or cast. It goes to the lake's `_rejects` dataset, committed
/// with the unit's good rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// 1-based line number in the (decompressed) file or member where the row starts.
    pub line: u64,
    /// The row's text (invalid UTF-8 replaced by U+FFFD).
    pub raw: String,
    pub reason: String,
    /// Which stage rejected it: `parse` (structure, encoding) or `cast` (a value of the wrong type).
    pub step: String,
}

/// Split off the rows a handler set aside through [`REJECT_COLUMN`]: the batch
/// without the column and its flagged rows, and the rejects (each row rendered as text).
pub fn split_rejects(batch: &RecordBatch, step: &str) -> Result<(RecordBatch, Vec<Reject>), String> {
    use arrow_array::Array;
    let Ok(ci) = batch.schema().index_of(REJECT_COLUMN) else {
        return Ok((batch.clone(), Vec::new()));
    };
    let reasons = arrow_cast::cast(batch.column(ci), &arrow_schema::DataType::Utf8)
        .map_err(|e| format!("column `{}`: {e}", REJECT_COLUMN))?;
    let reasons = reasons.as_any().downcast_ref::<arrow_array::StringArray>().expect("cast to Utf8");
    let mut data = batch.clone();
    data.remove_column(ci);
    if reasons.null_count() == reasons.len() {
        return Ok((data, Vec::new()));
    }
    let opts = arrow_cast::display::FormatOptions::default().with_null("null");
    let formatters = data
        .columns()
        .iter()
        .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &opts))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let schema = data.schema();
    let mut rejects = Vec::new();
    for row in (0..reasons.len()).filter(|&r| reasons.is_valid(r)) {
        let raw = schema
            .fields()
            .iter()
            .zip(&formatters)
            .map(|(f, v)| format!("{}={}", f.name(), v.value(row)))
            .collect::<Vec<_>>()
            .join(", ");
        rejects.push(Reject { line: 0, raw, reason: reasons.value(row).to_string(), step: step.to_string() });
    }
    let keep = arrow_array::BooleanArray::from_iter((0..reasons.len()).map(|r| Some(reasons.is_null(r))));
    let data = arrow_select::filter::filter_record_batch(&data, &keep).map_err(|e| e.to_string())?;
    Ok((data, rejects))
}
