//! Entry points for the fuzz targets in `fuzz/`: arbitrary bytes through the CSV reader (schema
//! inferred and explicit) and through zip listing plus member reads. Not a stable API.

use std::io::Cursor;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};
use sluice_core::source::Source;
use sluice_core::spec::{
    CsvSpec, DirSpec, FileOrder, FormatSpec, RejectPolicy, SourceCompression, SourceLimits, SourceSpec,
};

use crate::csv::CsvItems;

fn csv_spec(header: bool) -> CsvSpec {
    CsvSpec { header, null_tokens: vec!["NA".into()], ..Default::default() }
}

/// Read `data` as CSV twice: with an inferred schema, and with a fixed typed one. Any panic is a bug.
/// The first byte also picks a tiny record limit (so oversized records are skipped) or a large one.
pub fn csv(data: &[u8]) {
    let spec = csv_spec(data.first().is_some_and(|b| b & 1 == 1));
    let max_record = if data.first().is_some_and(|b| b & 2 == 2) { 16 } else { 1 << 20 };
    if let Ok(items) = CsvItems::new(Box::new(Cursor::new(data.to_vec())), &spec, None, 7, max_record, "fuzz".into()) {
        items.for_each(drop);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int32, true),
        Field::new("f", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("t", DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None), true),
        Field::new("b", DataType::Boolean, true),
        Field::new("d", DataType::Date32, true),
    ]));
    if let Ok(items) =
        CsvItems::new(Box::new(Cursor::new(data.to_vec())), &spec, Some(schema), 7, max_record, "fuzz".into())
    {
        items.for_each(drop);
    }
}

/// Treat `data` as a zip archive in `dir`: list its members and read each as CSV, with small
/// limits. Any panic is a bug; errors are expected.
pub fn zip(dir: &std::path::Path, data: &[u8]) {
    let path = dir.join("fuzz.zip");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let spec = SourceSpec {
        name: "fuzz".into(),
        config: std::sync::Arc::new(DirSpec {
            path: dir.to_path_buf(),
            include: vec!["fuzz.zip".into()],
            exclude: vec![],
            fields: None,
            format: FormatSpec::Csv(csv_spec(false)),
            order: FileOrder::Name,
            compression: SourceCompression::Auto,
            members: vec![],
            limits: SourceLimits { max_members: 64, max_unit_bytes: 1 << 20, max_record_bytes: 4096, max_ratio: 100 },
        }),
        rejects: RejectPolicy::default(),
        retries: 3,
        ready: Default::default(),
        watch: Default::default(),
    };
    let Ok(source) = crate::DirSource::new(&spec, 64) else { return };
    let Ok(units) = source.discover() else { return };
    for unit in units {
        if let Ok(items) = source.open(&unit) {
            items.for_each(drop);
        }
    }
}

/// Split `data` at 0xFF bytes into messages (a lone 0xFE is a message without a value) and read
/// them as JSON and as CSV messages: never a panic, and every message is either a row or a
/// reject, exactly once, in order.
pub fn messages(data: &[u8]) {
    let messages: Vec<Option<&[u8]>> =
        data.split(|&b| b == 0xFF).map(|m| if m == [0xFE] { None } else { Some(m) }).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("i", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("t", DataType::Timestamp(arrow_schema::TimeUnit::Millisecond, None), true),
    ]));
    let max_record = if data.first().is_some_and(|b| b & 1 == 1) { 8 } else { 1 << 20 };
    for format in [FormatSpec::Jsonl(Default::default()), FormatSpec::Csv(csv_spec(false))] {
        let f = crate::MessageFormat::new(&format, schema.clone(), max_record).expect("a message format");
        let Ok(d) = f.decode(&messages, "fuzz") else { continue };
        let rows = d.batch.as_ref().map_or(0, |b| b.num_rows());
        assert_eq!(rows, d.kept.len(), "a row per kept message");
        let mut seen: Vec<usize> = d.kept.iter().copied().chain(d.rejects.iter().map(|r| r.0)).collect();
        assert!(d.kept.windows(2).all(|w| w[0] < w[1]), "rows in message order");
        seen.sort_unstable();
        assert_eq!(seen, (0..messages.len()).collect::<Vec<_>>(), "every message once");
    }
}
