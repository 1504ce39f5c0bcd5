//! Per-dataset `stats.json` (`<lake>/_sluice/stats/<dataset>.json`), rewritten after each commit
//! from the Parquet footers of the live files: rows, partitions, files, the min and max of the
//! sink's `time_column` (when it is stored in the files), and the null rate per column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;

/// What one file's footer says.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileStats {
    rows: u64,
    nulls: BTreeMap<String, u64>,
    time: Option<(i64, i64)>,
}

fn read(path: &Path, time_column: Option<&str>) -> Result<FileStats, String> {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = SerializedFileReader::new(f).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = reader.metadata();
    let mut out = FileStats { rows: meta.file_metadata().num_rows() as u64, ..Default::default() };
    for rg in meta.row_groups() {
        for col in rg.columns() {
            let name = col.column_descr().name().to_string();
            let stats = col.statistics();
            *out.nulls.entry(name.clone()).or_default() += stats.and_then(|s| s.null_count_opt()).unwrap_or(0);
            if Some(name.as_str()) == time_column {
                let range = match stats {
                    Some(Statistics::Int64(s)) => s.min_opt().copied().zip(s.max_opt().copied()),
                    Some(Statistics::Int32(s)) => s.min_opt().map(|&v| v as i64).zip(s.max_opt().map(|&v| v as i64)),
                    _ => None,
                };
                if let Some((lo, hi)) = range {
                    out.time = Some(out.time.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
                }
            }
        }
    }
    Ok(out)
}

/// Footer stats cached per live file, so each commit reads only the new files' footers.
#[derive(Default)]
pub(crate) struct StatsCache {
    files: HashMap<String, FileStats>,
}

impl StatsCache {
    /// Rewrite `<lake>/_sluice/stats/<dataset>.json` for the dataset's live files (relative
    /// paths). Best effort: a failure is logged, never fails the commit.
    pub(crate) fn write(&mut self, root: &Path, dataset: &str, live: &[String], time_column: Option<&str>) {
        if let Err(e) = self.try_write(root, dataset, live, time_column) {
            tracing::warn!(dataset, "cannot update stats.json: {e}");
        }
    }

    fn try_write(
        &mut self,
        root: &Path,
        dataset: &str,
        live: &[String],
        time_column: Option<&str>,
    ) -> Result<(), String> {
        let keep: BTreeSet<&String> = live.iter().collect();
        self.files.retain(|f, _| keep.contains(f));
        let (mut rows, mut nulls, mut time) = (0u64, BTreeMap::<String, u64>::new(), None::<(i64, i64)>);
        let mut partitions = BTreeSet::new();
        for f in live {
            if !self.files.contains_key(f) {
                self.files.insert(f.clone(), read(&root.join(f), time_column)?);
            }
            let s = &self.files[f];
            rows += s.rows;
            partitions.insert(f.rsplit_once('/').map_or("", |(d, _)| d));
            for (c, n) in &s.nulls {
                *nulls.entry(c.clone()).or_default() += n;
            }
            // A column missing from a file reads as NULL for all its rows.
            if let Some((lo, hi)) = s.time {
                time = Some(time.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            }
        }
        let mut null_rate = BTreeMap::new();
        for c in nulls.keys() {
            let null_rows: u64 =
                live.iter().map(|f| &self.files[f]).map(|s| s.nulls.get(c).copied().unwrap_or(s.rows)).sum();
            null_rate.insert(c.clone(), if rows == 0 { 0.0 } else { null_rows as f64 / rows as f64 });
        }
        let json = serde_json::json!({
            "dataset": dataset,
            "rows": rows,
            "files": live.len(),
            "partitions": partitions.len(),
            "time_column": time_column,
            "time_min": time.map(|t| t.0),
            "time_max": time.map(|t| t.1),
            "null_rate": null_rate,
        });
        let dir = root.join(crate::ledger::LEDGER_DIR).join("stats");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{dataset}.json"));
        let tmp = dir.join(format!(".{dataset}.json.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&json).unwrap_or_default())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}
