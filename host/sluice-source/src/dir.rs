//! A directory source: a root, include/exclude globs, a format, and file-name fields.

use std::path::Path;
use std::sync::Arc;

use arrow_schema::{Field, Schema, SchemaRef};
use globset::{Glob, GlobSet, GlobSetBuilder};
use sluice_core::error::SourceError;
use sluice_core::source::{BatchStream, Source, SourceItem, SourceUnit};
use sluice_core::spec::{DirSpec, FileOrder, FormatSpec, ReadyPolicy, RejectPolicy, SourceCompression, SourceSpec};

use crate::fields::FieldValues;
use crate::input;
use crate::input::file_path;

pub struct DirSource {
    spec: SourceSpec,
    /// The directory's own settings (`spec.config`).
    dir: DirSpec,
    include: GlobSet,
    exclude: GlobSet,
    /// Selects zip members (empty: every data member).
    members: GlobSet,
    batch_rows: usize,
    /// The format's own schema when declared explicitly (before file-name fields).
    format_schema: Option<SchemaRef>,
    /// The full output schema when known without reading.
    schema: Option<SchemaRef>,
    /// `path` made absolute with symlinks resolved, on first use (for watchers).
    resolved_root: std::sync::OnceLock<std::path::PathBuf>,
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
        let dir = spec.config_as::<DirSpec>().cloned().ok_or_else(|| SourceError::Config {
            source_name: spec.name.clone(),
            message: format!("a directory source cannot read a source of kind `{}`", spec.kind()),
        })?;
        let include = glob_set(&spec.name, &dir.include)?;
        let exclude = glob_set(&spec.name, &dir.exclude)?;
        let members = glob_set(&spec.name, &dir.members)?;
        let columns = match &dir.format {
            FormatSpec::Csv(csv) => csv.columns.as_ref(),
            FormatSpec::Jsonl(j) | FormatSpec::Json(j) => j.columns.as_ref(),
            FormatSpec::Parquet => None,
        };
        let format_schema = columns.map(|cols| {
            Arc::new(Schema::new(cols.iter().map(|(n, t)| Field::new(n, t.clone(), true)).collect::<Vec<_>>()))
        });
        let schema = format_schema.as_ref().map(|s| with_fields(s, &dir));
        Ok(DirSource {
            spec: spec.clone(),
            dir,
            include,
            exclude,
            members,
            batch_rows,
            format_schema,
            schema,
            resolved_root: Default::default(),
        })
    }

    /// The units of one file: the file itself, or each selected member of a zip archive. An
    /// archive that cannot be listed is one unit without a member, which fails when opened.
    fn units_of(&self, path: &Path, rel: String, out: &mut Vec<SourceUnit>) -> Result<(), SourceError> {
        let unit = self.unit_for(path, rel)?;
        if input::container(path, self.dir.compression) != SourceCompression::Zip {
            out.push(unit);
            return Ok(());
        }
        match input::list_members(path, &self.members, &self.dir.limits) {
            Ok(members) => {
                if members.is_empty() {
                    tracing::warn!(source = %self.spec.name, file = %path.display(), "archive has no matching members");
                }
                out.extend(members.into_iter().map(|m| SourceUnit {
                    member: Some(m.name),
                    size: m.size,
                    content_hash: Some(crate::hash::crc32_hash(m.crc32)),
                    ..unit.clone()
                }))
            }
            Err(e) => {
                tracing::warn!(source = %self.spec.name, "{e}");
                out.push(unit);
            }
        }
        Ok(())
    }

    /// The units of the file at `path`, whose path relative to the root is `locator`: the file,
    /// or each selected member of a zip archive (as [`Source::discover`] would list them), for a
    /// source that fetches files itself and opens each of these with [`Source::open`].
    pub fn file_units(&self, path: &Path, locator: &str) -> Result<Vec<SourceUnit>, SourceError> {
        let mut units = Vec::new();
        self.units_of(path, locator.to_string(), &mut units)?;
        Ok(units)
    }

    /// Whether `locator` (a path relative to the root, `/`-separated) is one this source
    /// selects, as `discover` would: no part of it is a temporary name (`.*`, `_*`,
    /// `*.partial`, ...: a writer's work in progress, `_SUCCESS`), its globs match, and it fits
    /// the `fields` pattern.
    pub fn selects(&self, locator: &str) -> bool {
        !locator.split('/').any(is_temporary)
            && !locator.rsplit('/').next().is_some_and(|n| self.is_marker(std::ffi::OsStr::new(n)))
            && self.include.is_match(locator)
            && !self.exclude.is_match(locator)
            && self.dir.fields.as_ref().is_none_or(|p| FieldValues::parse(p, locator).is_ok())
    }

    /// The root as event watchers report paths under it: absolute, symlinks resolved.
    fn resolved_root(&self) -> &Path {
        self.resolved_root.get_or_init(|| {
            self.dir.path.canonicalize().or_else(|_| std::path::absolute(&self.dir.path)).unwrap_or_default()
        })
    }

    /// A marker file of the `ready` policy: never data.
    fn is_marker(&self, name: &std::ffi::OsStr) -> bool {
        matches!(&self.spec.ready, ReadyPolicy::Marker(m) if m.matches(&name.to_string_lossy()))
    }

    fn unit_for(&self, path: &Path, rel: String) -> Result<SourceUnit, SourceError> {
        let meta =
            std::fs::metadata(path).map_err(|e| SourceError::Io { path: path.display().to_string(), source: e })?;
        Ok(SourceUnit {
            source: self.spec.name.clone(),
            location: path.to_string_lossy().into_owned(),
            locator: rel,
            member: None,
            size: meta.len(),
            version: sluice_core::source::mtime_ns(&meta),
            content_hash: None,
        })
    }
}

/// Append the file-name field columns to a format schema.
pub(crate) fn with_fields(schema: &SchemaRef, dir: &DirSpec) -> SchemaRef {
    match &dir.fields {
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
        let root = &self.dir.path;
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
            if !self.include.is_match(&rel) || self.exclude.is_match(&rel) || self.is_marker(entry.file_name()) {
                continue;
            }
            if let Some(p) = &self.dir.fields
                && FieldValues::parse(p, &rel).is_err()
            {
                tracing::warn!(source = %self.spec.name, file = %entry.path().display(),
                    pattern = %p.pattern, "file name does not match the `fields` pattern; skipped");
                continue;
            }
            self.units_of(entry.path(), rel, &mut units)?;
        }
        match self.dir.order {
            FileOrder::Name => units.sort_by(|a, b| (&a.locator, &a.member).cmp(&(&b.locator, &b.member))),
            FileOrder::SizeDesc => {
                units.sort_by(|a, b| b.size.cmp(&a.size).then((&a.locator, &a.member).cmp(&(&b.locator, &b.member))))
            }
        }
        Ok(units)
    }

    fn unit_fields(&self, unit: &SourceUnit) -> Vec<(String, String)> {
        match &self.dir.fields {
            Some(p) => FieldValues::parse(p, &unit.locator).map(|f| f.texts()).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    fn watch_roots(&self) -> Vec<std::path::PathBuf> {
        vec![self.resolved_root().to_path_buf()]
    }

    /// A change matters when it is at a file `discover` could list, at a marker, or at a
    /// directory (whose new files an event watcher may not have seen one by one).
    fn affects(&self, path: &Path) -> bool {
        let Ok(rel) = path.strip_prefix(self.resolved_root()).or_else(|_| path.strip_prefix(&self.dir.path)) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return true;
        }
        if path.file_name().is_some_and(|n| self.is_marker(n)) {
            return true;
        }
        let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        if parts.iter().any(|p| is_temporary(p)) {
            return false;
        }
        if path.is_dir() {
            return true;
        }
        let rel = parts.join("/");
        self.include.is_match(&rel) && !self.exclude.is_match(&rel)
    }

    fn open(&self, unit: &SourceUnit) -> Result<BatchStream, SourceError> {
        let fields = match &self.dir.fields {
            Some(p) => Some(
                FieldValues::parse(p, &unit.locator)
                    .map_err(|message| SourceError::Format { path: unit.location.clone(), message })?,
            ),
            None => None,
        };
        let shown = unit.display_name();
        let (bytes, hashed) = input::open(unit, self.dir.compression, &self.dir.limits)?;
        let (schema, rows) = (self.format_schema.clone(), self.batch_rows);
        let max_record = self.dir.limits.max_record_bytes;
        // Plain Parquet is read by random access, not through `bytes`: hash it first (before,
        // never after, the read: a file that changes in between then looks changed next run).
        let mut hashed_first = None;
        let items: BatchStream = match &self.dir.format {
            FormatSpec::Csv(csv) => {
                Box::new(crate::csv::CsvItems::new(bytes, csv, schema, rows, max_record, shown.clone())?)
            }
            FormatSpec::Jsonl(_) => {
                Box::new(crate::jsonl::JsonlItems::new(bytes, schema, rows, max_record, shown.clone())?)
            }
            FormatSpec::Json(_) => {
                let lines: crate::input::Input = Box::new(crate::json::ArrayLines::new(bytes));
                Box::new(crate::jsonl::JsonlItems::new(lines, schema, rows, max_record, shown.clone())?)
            }
            FormatSpec::Parquet => {
                let plain = input::container(file_path(unit), self.dir.compression) == SourceCompression::None;
                if plain && let Some(h) = &hashed {
                    hashed_first = Some(h.finish()?);
                }
                crate::parquet::open(unit, bytes, plain, rows)?
            }
        };
        let items = Budget::wrap(items, self.spec.rejects, shown);
        let items: BatchStream = match fields {
            None => items,
            Some(f) => Box::new(items.map(move |item| match item {
                Ok(SourceItem::Batch(b)) => f.append_to(b).map(SourceItem::Batch),
                other => other,
            })),
        };
        // After the last batch: the hash of exactly the bytes read.
        Ok(match hashed {
            None => items,
            Some(h) => Box::new(items.chain(std::iter::once_with(move || {
                let (hash, bytes) = match hashed_first {
                    Some(done) => done,
                    None => h.finish()?,
                };
                Ok(SourceItem::ContentHash { hash, bytes })
            }))),
        })
    }

    fn nothing_found(&self) -> Option<String> {
        let globs: Vec<String> = self.dir.include.iter().map(|g| format!("`{g}`")).collect();
        Some(format!(
            "source `{}`: no file under {} matches {}",
            self.spec.name,
            self.dir.path.display(),
            globs.join(", ")
        ))
    }

    /// The file is still there with the modification time (and size) it was committed with.
    fn still_current(&self, unit: &SourceUnit) -> bool {
        std::fs::metadata(file_path(unit)).is_ok_and(|meta| {
            sluice_core::source::mtime_ns(&meta) == unit.version && (unit.member.is_some() || meta.len() == unit.size)
        })
    }

    /// The unit's marker exists and is at least as new as its file (the `ready: marker` policy).
    fn complete(&self, unit: &SourceUnit) -> bool {
        let ReadyPolicy::Marker(marker) = &self.spec.ready else { return true };
        let Ok(meta) = std::fs::metadata(marker.path_for(file_path(unit))) else { return false };
        sluice_core::source::mtime_ns(&meta) >= unit.version
    }

    /// The file does not exist, or its archive is still listed but no longer holds the member.
    fn is_gone(&self, unit: &SourceUnit, present: &[SourceUnit]) -> bool {
        let not_found =
            matches!(std::fs::metadata(file_path(unit)), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        not_found || (unit.member.is_some() && present.iter().any(|u| u.locator == unit.locator))
    }

    fn content_hash(&self, unit: &SourceUnit) -> Result<Option<String>, SourceError> {
        if unit.member.is_some() {
            return Ok(unit.content_hash.clone());
        }
        crate::hash::hash_file(file_path(unit)).map(Some)
    }
}

/// Enforces a unit's reject policy: too many rejects fail the unit (its writes are discarded).
/// Whatever the policy, a unit whose every row was rejected is not data in the declared format
/// (binary garbage, the wrong file type, the wrong delimiter) and fails as unreadable.
struct Budget {
    inner: BatchStream,
    policy: RejectPolicy,
    unit: String,
    rows: u64,
    rejects: u64,
    /// The first reject's line and reason, for the message of a unit that fails.
    first: Option<(u64, String)>,
    done: bool,
}

impl Budget {
    fn wrap(inner: BatchStream, policy: RejectPolicy, unit: String) -> BatchStream {
        Box::new(Budget { inner, policy, unit, rows: 0, rejects: 0, first: None, done: false })
    }

    fn fail(&mut self, message: String) -> Option<Result<SourceItem, SourceError>> {
        self.done = true;
        let message = match &self.first {
            Some((line, reason)) => format!("{message} (first: line {line}: {reason})"),
            None => message,
        };
        Some(Err(SourceError::Format { path: self.unit.clone(), message }))
    }
}

impl Iterator for Budget {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.inner.next() {
            Some(Ok(SourceItem::Batch(b))) => {
                self.rows += b.num_rows() as u64;
                Some(Ok(SourceItem::Batch(b)))
            }
            Some(Ok(SourceItem::Rejects(r))) => {
                self.rejects += r.len() as u64;
                self.rows += r.len() as u64;
                if self.first.is_none()
                    && let Some(first) = r.iter().min_by_key(|r| r.line)
                {
                    self.first = Some((first.line, first.reason.clone()));
                }
                if let Some(message) = self.policy.over_max_errors(self.rejects, None) {
                    return self.fail(message);
                }
                Some(Ok(SourceItem::Rejects(r)))
            }
            Some(Ok(other @ (SourceItem::ContentHash { .. } | SourceItem::HighWater(_)))) => Some(Ok(other)),
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            None => {
                self.done = true;
                if self.rows > 0 && self.rejects == self.rows {
                    return self
                        .fail(format!("none of its {} row(s) parsed: not data in the declared format", self.rows));
                }
                let message = self.policy.over_max_error_rate(self.rejects, self.rows, None)?;
                self.fail(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::spec::Marker;

    fn source(dir: &Path, marker: &str) -> DirSource {
        let spec = SourceSpec {
            name: "s".into(),
            config: std::sync::Arc::new(DirSpec {
                path: dir.to_path_buf(),
                include: vec!["*.jsonl".into()],
                exclude: vec![],
                fields: None,
                format: FormatSpec::Jsonl(Default::default()),
                order: Default::default(),
                compression: Default::default(),
                members: vec![],
                limits: Default::default(),
            }),
            rejects: Default::default(),
            retries: 2,
            ready: ReadyPolicy::Marker(Marker::parse(marker).unwrap()),
            watch: Default::default(),
        };
        DirSource::new(&spec, 1024).unwrap()
    }

    #[test]
    fn markers_per_file_and_per_directory_must_be_newer_than_the_data() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("a.jsonl"), "{\"x\": 1}\n").unwrap();

        let s = source(dir, "{file}.done");
        let units = s.discover().unwrap();
        assert_eq!(units.len(), 1);
        let a = units[0].clone();
        assert!(!s.complete(&a));
        std::fs::write(dir.join("a.jsonl.done"), "").unwrap();
        assert!(s.complete(&a));
        // A data file newer than its marker (rewritten after the marker) is not complete.
        let newer = SourceUnit { version: a.version + 60_000_000_000, ..a.clone() };
        assert!(!s.complete(&newer));
        // The marker is never data.
        assert_eq!(s.discover().unwrap().len(), 1);

        let s = source(dir, "_SUCCESS");
        assert!(!s.complete(&a));
        std::fs::write(dir.join("_SUCCESS"), "").unwrap();
        assert!(s.complete(&a));
    }

    #[test]
    fn a_committed_file_is_current_until_it_changes_and_gone_when_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("a.jsonl"), "{\"x\": 1}\n").unwrap();
        let s = source(dir, "_SUCCESS");
        let a = s.discover().unwrap().remove(0);
        assert!(s.still_current(&a));
        assert!(!s.is_gone(&a, &[]), "not listed but still there: no longer selected, not gone");
        assert!(!s.still_current(&SourceUnit { version: a.version - 1, ..a.clone() }));
        std::fs::remove_file(dir.join("a.jsonl")).unwrap();
        assert!(!s.still_current(&a));
        assert!(s.is_gone(&a, &[]));
    }
}
