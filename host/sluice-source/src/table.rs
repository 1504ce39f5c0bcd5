//! Lookup tables: a step's `tables:` files, read whole by the host (through the same CSV and
//! Parquet readers as sources) and handed to the plugin's constructor.

use std::sync::Arc;

use sluice_core::plugin::LookupTable;
use sluice_core::source::{Source, SourceItem, SourceUnit};
use sluice_core::spec::{
    CsvSpec, DirSpec, FileOrder, FormatSpec, MAX_TABLE_BYTES, RejectPolicy, SourceCompression, SourceLimits,
    SourceSpec, TableFormat, TableSpec,
};

use crate::DirSource;

/// Checks a table file without reading it: it exists, is a file, and is at most
/// [`MAX_TABLE_BYTES`]. The message names the table and the file.
pub fn check_table_file(spec: &TableSpec) -> Result<u64, String> {
    let shown = spec.path.display();
    let meta = std::fs::metadata(&spec.path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("table `{}`: file {shown} does not exist", spec.name),
        _ => format!("table `{}`: {shown}: {e}", spec.name),
    })?;
    if !meta.is_file() {
        return Err(format!("table `{}`: {shown} is not a file", spec.name));
    }
    if meta.len() > MAX_TABLE_BYTES {
        return Err(format!(
            "table `{}`: {shown} is {} bytes; lookup tables may be at most {} MiB",
            spec.name,
            meta.len(),
            MAX_TABLE_BYTES >> 20
        ));
    }
    Ok(meta.len())
}

/// Reads a whole lookup table: a CSV file with a header line (types inferred, empty fields
/// null, every row must parse) or a Parquet file. Reading has no side effects.
pub fn read_table(spec: &TableSpec) -> Result<LookupTable, String> {
    let size = check_table_file(spec)?;
    let name = &spec.name;
    let fail = |m: String| format!("table `{name}`: {}: {m}", spec.path.display());
    let format = match spec.format {
        TableFormat::Csv => FormatSpec::Csv(CsvSpec { null_tokens: vec![String::new()], ..Default::default() }),
        TableFormat::Parquet => FormatSpec::Parquet,
    };
    let dir = spec.path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let file = spec.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let source = SourceSpec {
        name: format!("table:{name}"),
        config: std::sync::Arc::new(DirSpec {
            path: dir,
            include: vec![file.clone()],
            exclude: vec![],
            fields: None,
            format,
            order: FileOrder::Name,
            compression: SourceCompression::None,
            members: vec![],
            limits: SourceLimits { max_members: 1, max_unit_bytes: MAX_TABLE_BYTES, ..SourceLimits::default() },
        }),
        rejects: RejectPolicy { max_errors: Some(0), max_error_rate: None },
        retries: 0,
        ready: Default::default(),
        watch: Default::default(),
    };
    let reader = DirSource::new(&source, 65_536).map_err(|e| fail(e.to_string()))?;
    let unit = SourceUnit {
        source: source.name.clone(),
        location: spec.path.to_string_lossy().into_owned(),
        locator: file,
        member: None,
        size,
        version: 0,
        content_hash: None,
    };
    let mut batches = Vec::new();
    for item in reader.open(&unit).map_err(|e| fail(e.to_string()))? {
        match item.map_err(|e| fail(e.to_string()))? {
            SourceItem::Batch(b) => batches.push(b),
            SourceItem::ContentHash { .. } | SourceItem::HighWater(_) => {}
            SourceItem::Rejects(r) => {
                let first = r.first().map(|r| format!("line {}: {}", r.line, r.reason)).unwrap_or_default();
                return Err(fail(format!("a row does not parse ({first})")));
            }
        }
    }
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Err(fail("the table has no rows".into()));
    };
    if batches.iter().any(|b| b.schema() != schema) {
        return Err(fail("the table's batches have different schemas".into()));
    }
    Ok(LookupTable { name: name.clone(), schema, batches })
}

/// Reads every table of a step.
pub fn read_tables(specs: &[TableSpec]) -> Result<Vec<Arc<LookupTable>>, String> {
    specs.iter().map(|t| read_table(t).map(Arc::new)).collect()
}
