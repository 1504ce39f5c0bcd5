//! CSV reading through arrow-csv: explicit schemas or inference from a sample, streamed in batches.

use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow_csv::reader::Format;
use arrow_schema::SchemaRef;
use sluice_core::error::SourceError;
use sluice_core::source::BatchStream;
use sluice_core::spec::CsvSpec;

/// Rows read to infer a schema when none is declared.
const INFER_ROWS: usize = 1000;

fn io_err(path: &Path, e: std::io::Error) -> SourceError {
    SourceError::Io { path: path.display().to_string(), source: e }
}

/// A regex matching exactly the declared null tokens.
fn null_regex(spec: &CsvSpec) -> Option<regex::Regex> {
    if spec.null_tokens.is_empty() {
        return None;
    }
    let alternatives: Vec<String> = spec.null_tokens.iter().map(|t| regex::escape(t)).collect();
    Some(regex::Regex::new(&format!("^(?:{})$", alternatives.join("|"))).expect("escaped tokens form a valid regex"))
}

fn format(spec: &CsvSpec) -> Format {
    let f = Format::default().with_header(spec.header).with_delimiter(spec.delimiter).with_quote(spec.quote);
    match null_regex(spec) {
        Some(re) => f.with_null_regex(re),
        None => f,
    }
}

pub(crate) fn open(
    path: &Path,
    spec: &CsvSpec,
    schema: Option<SchemaRef>,
    batch_rows: usize,
) -> Result<BatchStream, SourceError> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let fmt = format(spec);
    let schema = match schema {
        Some(s) => s,
        None => {
            let (inferred, _) = fmt
                .infer_schema(BufReader::new(&mut file), Some(INFER_ROWS))
                .map_err(|e| SourceError::Format { path: path.display().to_string(), message: e.to_string() })?;
            file.seek(SeekFrom::Start(0)).map_err(|e| io_err(path, e))?;
            Arc::new(inferred)
        }
    };
    let mut builder = arrow_csv::ReaderBuilder::new(schema)
        .with_header(spec.header)
        .with_delimiter(spec.delimiter)
        .with_quote(spec.quote)
        .with_batch_size(batch_rows);
    if let Some(re) = null_regex(spec) {
        builder = builder.with_null_regex(re);
    }
    let reader = builder
        .build(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| SourceError::Format { path: path.display().to_string(), message: e.to_string() })?;
    let display = path.display().to_string();
    Ok(Box::new(
        reader.map(move |r| r.map_err(|e| SourceError::Format { path: display.clone(), message: e.to_string() })),
    ))
}
