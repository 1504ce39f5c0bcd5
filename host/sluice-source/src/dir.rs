//! A directory source: a root, include/exclude globs, a format, and file-name fields.

use std::path::Path;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use globset::{Glob, GlobSet, GlobSetBuilder};
use sluice_core::error::SourceError;
use sluice_core::source::{BatchStream, Source, SourceUnit};
use sluice_core::spec::{FileOrder, FormatSpec, SourceSpec};

use crate::fields::FieldValues;

pub struct DirSource {
    spec: SourceSpec,
    include: GlobSet,
    exclude: GlobSet,
    batch_rows: usize,
    /// The format's own schema when declared explicitly (before file-name fields).
    format_schema: Option<SchemaRef>,
    /// The full output schema when known without reading.
    schema: Option<SchemaRef>,
}

fn glob_set(source: &str, patterns: &[String]) -> Result<GlobSet, SourceError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| SourceError::Config {
            source_name: source.to_string(),
            message: format!("bad glob `{p}`: {e}"),
        })?;
        b.add(g);
    }
    b.build().map_err(|e| SourceError::Config { source_name: source.to_string(), message: e.to_string() })
}

/// Names that writers use while a file is incomplete; never picked up.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with('_')
        || name.ends_with(".partial")
        || name.ends_with(".tmp")
        || name.ends_with(".inprogress")
        || name.ends_with(".crdownload")
}

impl DirSource {
    pub fn new(spec: &SourceSpec, batch_rows: usize) -> Result<Self, SourceError> {
        let include = glob_set(&spec.name, &spec.include)?;
        let exclude = glob_set(&spec.name, &spec.exclude)?;
        let format_schema = match &spec.format {
            FormatSpec::Csv(csv) => csv.columns.as_ref().map(|cols| {
                Arc::new(Schema::new(cols.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>()))
            }),
        };
        let schema = format_schema.as_ref().map(|s| with_fields(s, spec));
        Ok(DirSource { spec: spec.clone(), include, exclude, batch_rows, format_schema, schema })
    }

    fn unit_for(&self, path: &Path, rel: String) -> Result<SourceUnit, SourceError> {
        let meta =
            std::fs::metadata(path).map_err(|e| SourceError::Io { path: path.display().to_string(), source: e })?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        Ok(SourceUnit {
            source: self.spec.name.clone(),
            path: path.to_path_buf(),
            rel_path: rel,
            member: None,
            size: meta.len(),
            mtime_ns,
        })
    }
}

/// Append the file-name field columns to a format schema.
pub(crate) fn with_fields(schema: &SchemaRef, spec: &SourceSpec) -> SchemaRef {
    match &spec.fields {
        None => schema.clone(),
        Some(p) => {
            let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.extend(p.fields().map(|(n, k)| Field::new(n, k.data_type(), false)));
            Arc::new(Schema::new(fields))
        }
    }
}

impl Source for DirSource {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn schema(&self) -> Option<SchemaRef> {
        self.schema.clone()
    }

    fn discover(&self) -> Result<Vec<SourceUnit>, SourceError> {
        let root = &self.spec.path;
        if !root.is_dir() {
            return Err(SourceError::Io {
                path: root.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "source directory does not exist"),
            });
        }
        let mut units = Vec::new();
        let walk = walkdir::WalkDir::new(root).follow_links(true).sort_by_file_name();
        for entry in
            walk.into_iter().filter_entry(|e| e.depth() == 0 || !is_temporary(&e.file_name().to_string_lossy()))
        {
            let entry = entry.map_err(|e| SourceError::Io {
                path: e.path().map(|p| p.display().to_string()).unwrap_or_else(|| root.display().to_string()),
                source: e.into_io_error().unwrap_or_else(|| std::io::Error::other("walk error")),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(root)
                .expect("walkdir yields paths under its root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if !self.include.is_match(&rel) || self.exclude.is_match(&rel) {
                continue;
            }
            if let Some(p) = &self.spec.fields
                && FieldValues::parse(p, &rel).is_err()
            {
                tracing::warn!(source = %self.spec.name, file = %entry.path().display(),
                    pattern = %p.pattern, "file name does not match the `fields` pattern; skipped");
                continue;
            }
            units.push(self.unit_for(entry.path(), rel)?);
        }
        match self.spec.order {
            FileOrder::Name => units.sort_by(|a, b| a.rel_path.cmp(&b.rel_path)),
            FileOrder::SizeDesc => units.sort_by(|a, b| b.size.cmp(&a.size).then(a.rel_path.cmp(&b.rel_path))),
        }
        Ok(units)
    }

    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let fields = match &self.spec.fields {
            Some(p) => Some(
                FieldValues::parse(p, &unit.rel_path)
                    .map_err(|message| SourceError::Format { path: unit.path.display().to_string(), message })?,
            ),
            None => None,
        };
        let batches = match &self.spec.format {
            FormatSpec::Csv(csv) => crate::csv::open(&unit.path, csv, self.format_schema.clone(), self.batch_rows)?,
        };
        Ok(match fields {
            None => batches,
            Some(f) => Box::new(batches.map(move |b| b.and_then(|b| f.append_to(b)))),
        })
    }
}
