//! `sluice lake status` and `sluice lake verify`: what a lake holds (and which replaced files it
//! still keeps for readers of older catalog snapshots), and whether its ledger, the files on
//! disk and the catalog agree.

use std::path::PathBuf;

use anyhow::Context as _;
use sluice_catalog::{DuckCatalog, Totals};
use sluice_lake::LakeState;

use crate::cli::{CompareArgs, LakeArgs, LakeCommand};
use crate::{EXIT_DATA, Exit};

pub fn lake(cmd: LakeCommand) -> Result<u8, Exit> {
    match cmd {
        LakeCommand::Status(a) => status(&a),
        LakeCommand::Verify(a) => verify(&a),
        LakeCommand::Compare(a) => compare_cmd(&a),
        LakeCommand::Lineage(a) => lineage(&a),
        LakeCommand::Vacuum(a) => vacuum(&a),
        LakeCommand::Compact(a) => compact(&a),
        LakeCommand::Publish(a) => publish(&a),
    }
}

/// `sluice lake publish`: the catalog, again, from the ledger.
fn publish(args: &LakeArgs) -> Result<u8, Exit> {
    use sluice_core::catalog::Catalog as _;
    let lake = &crate::commands::lake_dir(args.path.as_ref().unwrap_or(&args.lake));
    let started = std::time::Instant::now();
    let snapshot = sluice_lake::read_snapshot(lake).map_err(Exit::config)?;
    let files: usize = snapshot.datasets.iter().map(|d| d.files.len()).sum();
    DuckCatalog::for_lake(&snapshot.root).publish(&snapshot).map_err(Exit::data)?;
    println!(
        "published {} view(s) over {files} file(s) in {} ms",
        snapshot.datasets.len(),
        started.elapsed().as_millis()
    );
    Ok(0)
}

/// `sluice lake compact`: bin-pack small files, report before and after.
fn compact(args: &crate::cli::CompactArgs) -> Result<u8, Exit> {
    let lake = &crate::commands::lake_dir(args.path.as_ref().unwrap_or(&args.lake));
    let target_size =
        sluice_config::size(&args.target_size).map_err(|e| Exit::config(anyhow::anyhow!("--target-size: {e}")))?;
    if target_size == 0 {
        return Err(Exit::config(anyhow::anyhow!("--target-size must be more than 0")));
    }
    let retain =
        sluice_config::duration_or_zero(&args.retain).map_err(|e| Exit::config(anyhow::anyhow!("--retain: {e}")))?;
    let opts =
        sluice_lake::CompactOptions { dataset: args.dataset.clone(), target_size, min_files: args.min_files, retain };
    let report = sluice_lake::compact::compact(lake, &opts).map_err(|e| match e {
        e @ (sluice_core::error::SinkError::Config(_) | sluice_core::error::SinkError::Io { .. }) => Exit::config(e),
        e => Exit::data(e),
    })?;
    // A Delta table's log follows the compaction (an OPTIMIZE commit, `dataChange: false`).
    let given = args.path.as_ref().unwrap_or(&args.lake);
    if report.files_out > 0 && lake != given {
        sluice_delta::follow(given).map_err(Exit::data)?;
    }
    // Catalog readers see the compacted files from now on (a running `watch` republishes too).
    if report.files_out > 0 {
        use sluice_core::catalog::Catalog as _;
        let snapshot = sluice_lake::read_snapshot(lake).map_err(Exit::data)?;
        DuckCatalog::for_lake(&snapshot.root).publish(&snapshot).map_err(Exit::data)?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        let mb = |b: u64| b as f64 / 1e6;
        println!(
            "compacted {} file(s) ({:.1} MB) into {} ({:.1} MB) in {} partition(s), {} rows; live files {} -> {}",
            report.files_in,
            mb(report.bytes_in),
            report.files_out,
            mb(report.bytes_out),
            report.partitions,
            report.rows,
            report.live_before,
            report.live_after
        );
        if report.conflicts > 0 {
            println!("{} bin(s) skipped: a writer replaced one of their files meanwhile", report.conflicts);
        }
    }
    Ok(0)
}

/// `sluice lake compare`: per group, the lake's rows and sums against the other table's.
/// `sluice lake vacuum`: delete (or list) replaced files past their retention.
fn vacuum(args: &crate::cli::VacuumArgs) -> Result<u8, Exit> {
    let lake = &crate::commands::lake_dir(args.path.as_ref().unwrap_or(&args.lake));
    let report = sluice_lake::Lake::vacuum(lake, args.dry_run).map_err(|e| match e {
        e @ (sluice_core::error::SinkError::Config(_) | sluice_core::error::SinkError::Io { .. }) => Exit::config(e),
        e => Exit::data(e),
    })?;
    for (f, size) in &report.files {
        println!("{}{f} ({size} bytes)", if args.dry_run { "would delete " } else { "deleted " });
    }
    let mb = report.bytes as f64 / 1e6;
    let n = report.files.len();
    if args.dry_run {
        println!("{n} replaced file(s) past their retention, {mb:.1} MB: nothing deleted (--dry-run)");
    } else {
        println!("freed {n} replaced file(s), {mb:.1} MB");
    }
    Ok(0)
}

/// `sluice lake lineage PATH`: the lineage in a file's footer, or in every Parquet file under a
/// directory (outside `_sluice`), in path order.
fn lineage(args: &crate::cli::LineageArgs) -> Result<u8, Exit> {
    let mut files = Vec::new();
    if args.path.is_dir() {
        let mut stack = vec![args.path.clone()];
        while let Some(dir) = stack.pop() {
            let entries =
                std::fs::read_dir(&dir).map_err(|e| Exit::config(anyhow::anyhow!("{}: {e}", dir.display())))?;
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() && name != "_sluice" && !name.starts_with('.') {
                    stack.push(p);
                } else if name.ends_with(".parquet") {
                    files.push(p);
                }
            }
        }
        files.sort();
    } else {
        files.push(args.path.clone());
    }
    if files.is_empty() {
        return Err(Exit::config(anyhow::anyhow!("{}: no Parquet files", args.path.display())));
    }
    for f in &files {
        let lineage = sluice_lake::lineage::read(f).map_err(|e| Exit::config(anyhow::anyhow!(e)))?;
        match (lineage, args.json) {
            (None, true) => println!("{}", serde_json::json!({"file": f, "lineage": null})),
            (None, false) => {
                println!("{}: no lineage (written before Sluice recorded it, or by another tool)", f.display())
            }
            (Some(l), true) => println!("{}", serde_json::json!({"file": f, "lineage": l})),
            (Some(l), false) => {
                println!("{}", f.display());
                println!("  pipeline {} (definition {}), sluice {}", l.run.pipeline, l.run.definition, l.run.sluice);
                for s in &l.run.steps {
                    println!("  step {}: plugin {} {} ({})", s.name, s.plugin, s.version, s.component_hash);
                }
                for u in &l.units {
                    let member = u.member.as_deref().map(|m| format!("!{m}")).unwrap_or_default();
                    let hash = u.content_hash.as_deref().unwrap_or("no content hash");
                    println!("  unit {}:{}{member} ({hash}, {} bytes)", u.source, u.locator, u.size);
                }
            }
        }
    }
    Ok(0)
}

fn compare_cmd(args: &CompareArgs) -> Result<u8, Exit> {
    let lake = &crate::commands::lake_dir(args.path.as_ref().unwrap_or(&args.lake));
    let catalog = DuckCatalog::for_lake(lake);
    let ours = sluice_catalog::lake_group_totals(catalog.path(), &args.dataset, &args.by, &args.sum)
        .with_context(|| format!("lake {} dataset {}", lake.display(), args.dataset))
        .map_err(Exit::config)?;
    let (theirs, other) = match (&args.duckdb, &args.postgres) {
        (Some(file), _) => {
            if !file.is_file() {
                return Err(Exit::config(anyhow::anyhow!("no DuckDB file at {}", file.display())));
            }
            let t = sluice_catalog::duckdb_group_totals(file, &args.table, &args.by, &args.sum)
                .with_context(|| format!("{} table {}", file.display(), args.table))
                .map_err(Exit::config)?;
            (t, format!("{} table {}", file.display(), args.table))
        }
        (None, Some(url)) => {
            let password = match &args.password_env {
                Some(name) => Some(sluice_core::spec::Secret::new(
                    name,
                    std::env::var(name).map_err(|_| {
                        Exit::config(anyhow::anyhow!("--password-env names `{name}`, which is not set"))
                    })?,
                )),
                None => None,
            };
            let t = sluice_postgres::group_totals(url, password, &args.table, &args.by, &args.sum)
                .with_context(|| format!("postgres table {}", args.table))
                .map_err(Exit::config)?;
            (t, format!("postgres table {}", args.table))
        }
        (None, None) => return Err(Exit::config(anyhow::anyhow!("give --duckdb FILE or --postgres URL"))),
    };
    let c = sluice_core::catalog::compare_groups(&ours, &theirs, &args.sum, args.tolerance);
    let by = if args.by.is_empty() {
        "one group".to_string()
    } else {
        format!("{} group(s) by {}", c.groups, args.by.join(", "))
    };
    println!("lake {} dataset {}: {} rows; {other}: {} rows; {by}", lake.display(), args.dataset, c.rows.0, c.rows.1);
    if c.diffs.is_empty() {
        let sums = if args.sum.is_empty() { String::new() } else { format!(" and sums of {}", args.sum.join(", ")) };
        println!("same: every group has the same rows{sums}");
        return Ok(0);
    }
    let show = |v: Option<i64>| v.map_or_else(|| "missing".to_string(), |n| n.to_string());
    for d in &c.diffs {
        let group = if d.group.is_empty() {
            "(all)".to_string()
        } else {
            args.by.iter().zip(&d.group).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
        };
        if d.rows.0 != d.rows.1 {
            println!("differs: {group}: rows lake {} vs other {}", show(d.rows.0), show(d.rows.1));
        }
        for (col, a, b) in &d.sums {
            let f = |v: &Option<f64>| v.map_or_else(|| "NULL".to_string(), |x| format!("{x}"));
            println!("differs: {group}: sum({col}) lake {} vs other {}", f(a), f(b));
        }
    }
    println!("{} group(s) differ", c.diffs.len());
    Ok(EXIT_DATA)
}

fn read(args: &LakeArgs) -> Result<LakeState, Exit> {
    let lake = &crate::commands::lake_dir(args.path.as_ref().unwrap_or(&args.lake));
    let root = lake.canonicalize().with_context(|| format!("lake {}", lake.display())).map_err(Exit::config)?;
    LakeState::read(&root).with_context(|| format!("reading the ledger of {}", root.display())).map_err(Exit::config)
}

/// When a retained file goes, relative to now: `in 9m 58s`, or `due` (the next writer deletes it).
fn deadline(until_ms: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    if until_ms <= now {
        return "due (the next run deletes it)".into();
    }
    let secs = (until_ms - now).div_ceil(1000);
    match secs {
        0..60 => format!("in {secs}s"),
        60..3600 => format!("in {}m {}s", secs / 60, secs % 60),
        _ => format!("in {}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

fn status(args: &LakeArgs) -> Result<u8, Exit> {
    let state = read(args)?;
    let mut out = Vec::new();
    for (name, ds) in &state.datasets {
        let mut rows = 0u64;
        let mut bytes = 0u64;
        for (f, recorded) in &ds.files {
            rows += match recorded {
                Some(r) => *r,
                None => state.footer_rows(f).context("reading a footer")?,
            };
            bytes += std::fs::metadata(sluice_lake::stored(&state.root, f)).map(|m| m.len()).unwrap_or(0);
        }
        let retained: Vec<serde_json::Value> = ds
            .retained
            .iter()
            .map(|(f, r)| {
                serde_json::json!({"file": f, "replaced_at_ms": r.removed_at_ms, "retain_until_ms": r.retain_until_ms})
            })
            .collect();
        out.push(serde_json::json!({
            "dataset": name, "partitions": ds.partitions(), "files": ds.files.len(), "rows": rows, "bytes": bytes,
            "columns": ds.schema.len(), "retained": retained,
        }));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).context("encoding the status")?);
    } else {
        println!("lake {}", state.root.display());
        println!("{:<24} {:>10} {:>8} {:>14} {:>14}", "dataset", "partitions", "files", "rows", "bytes");
        for d in &out {
            println!(
                "{:<24} {:>10} {:>8} {:>14} {:>14}",
                d["dataset"].as_str().unwrap_or_default(),
                // Numbers, not JSON values: a `Value` ignores the column width.
                d["partitions"].as_u64().unwrap_or_default(),
                d["files"].as_u64().unwrap_or_default(),
                d["rows"].as_u64().unwrap_or_default(),
                d["bytes"].as_u64().unwrap_or_default()
            );
        }
        for (name, ds) in &state.datasets {
            if ds.retained.is_empty() {
                continue;
            }
            println!(
                "{name}: {} replaced file(s) kept for readers of older catalog snapshots (not in the dataset):",
                ds.retained.len()
            );
            for (f, r) in &ds.retained {
                println!("  {f}  deleted {}", deadline(r.retain_until_ms));
            }
        }
    }
    Ok(0)
}

/// Two sums agree when equal up to floating-point summation order.
fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
        (a, b) => a == b,
    }
}

fn compare(what: &str, dataset: &str, a: &Totals, b: &Totals, problems: &mut Vec<String>) {
    if a.rows != b.rows {
        problems.push(format!("{dataset}: {what}: {} rows vs {} rows", a.rows, b.rows));
    }
    for (col, sum) in &a.sums {
        let other = b.sums.get(col).copied().flatten();
        if !close(*sum, other) {
            problems.push(format!("{dataset}: {what}: sum({col}) {sum:?} vs {other:?}"));
        }
    }
}

fn verify(args: &LakeArgs) -> Result<u8, Exit> {
    let state = read(args)?;
    let catalog = DuckCatalog::for_lake(&state.root);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for (name, ds) in &state.datasets {
        // Ledger vs disk: the same files, and the recorded rows match the footers.
        let (on_disk, inprogress) = state.on_disk(name)?;
        for f in ds.files.keys().filter(|f| !on_disk.contains(*f)) {
            problems.push(format!("{name}: {f} is in the ledger but not on disk"));
        }
        for f in on_disk.iter().filter(|f| !ds.files.contains_key(*f) && !ds.retained.contains_key(*f)) {
            problems.push(format!("{name}: {f} is on disk but no ledger record names it"));
        }
        if !ds.retained.is_empty() {
            let last = ds.retained.values().map(|r| r.retain_until_ms).max().unwrap_or(0);
            notes.push(format!(
                "{name}: {} replaced file(s) retained for readers of older catalog snapshots, the last deleted {}",
                ds.retained.len(),
                deadline(last)
            ));
        }
        if !inprogress.is_empty() {
            notes.push(format!(
                "{name}: {} in-progress file(s) (a writer is running, or the next start sweeps them)",
                inprogress.len()
            ));
        }
        // The hive layout glob readers list: exactly the live files, each linked to its stored copy.
        let (visible, _) = state.visible_on_disk(name)?;
        let mut expected = std::collections::BTreeSet::new();
        for f in ds.files.keys() {
            let v = f.clone();
            if !visible.contains(&v) {
                problems.push(format!("{name}: {f} is live but {v} is not in the hive layout"));
            } else if !sluice_lake::same_file(&sluice_lake::stored(&state.root, f), &state.root.join(&v)) {
                problems.push(format!("{name}: {v} in the hive layout is not the live file {f}"));
            }
            expected.insert(v);
        }
        for v in visible.difference(&expected) {
            problems.push(format!("{name}: {v} is in the hive layout but is not a live file (glob readers see it)"));
        }
        let mut ledger_rows = 0u64;
        for (f, recorded) in ds.files.iter().filter(|(f, _)| on_disk.contains(*f)) {
            let footer = state.footer_rows(f).context("reading a footer")?;
            ledger_rows += recorded.unwrap_or(footer);
            if recorded.is_some_and(|r| r != footer) {
                problems.push(format!(
                    "{name}: {f}: the ledger says {} rows, the file holds {footer}",
                    recorded.unwrap_or(0)
                ));
            }
        }
        // Per unit: the rows its live files hold are the rows the ledger says it wrote (units
        // whose files a later commit merged or replaced are not checked), and units that read rows
        // but wrote and rejected none are named.
        let mut empty = Vec::new();
        for u in ds.units.values() {
            let all_live = u.files.iter().all(|(f, _)| ds.files.contains_key(f) && on_disk.contains(f));
            let recorded: Option<u64> = u.files.iter().map(|(_, r)| *r).sum();
            if all_live && recorded == Some(u.rows) {
                let mut held = 0;
                for (f, _) in &u.files {
                    held += state.footer_rows(f).context("reading a footer")?;
                }
                if held != u.rows {
                    problems.push(format!(
                        "{name}: {}: the ledger says the unit wrote {} rows, its files hold {held}",
                        u.file, u.rows
                    ));
                }
            }
            if let Some(rows_in) =
                u.rows_in.filter(|&n| n > 0 && u.rows == 0 && u.rows_rejected == Some(0) && !u.continued)
            {
                empty.push(format!("{} ({rows_in} rows in)", u.file));
            }
        }
        if !empty.is_empty() {
            empty.sort();
            let text =
                format!("{name}: {} unit(s) read rows but wrote and rejected none: {}", empty.len(), empty.join(", "));
            if args.strict { problems.push(text) } else { notes.push(text) }
        }
        // Files vs catalog: row counts and per-column sums.
        let files: Vec<PathBuf> =
            ds.files.keys().filter(|f| on_disk.contains(*f)).map(|f| sluice_lake::stored(&state.root, f)).collect();
        if files.is_empty() {
            continue;
        }
        let from_files = catalog.file_totals(&files).context("reading the files")?;
        if from_files.rows != ledger_rows {
            problems.push(format!("{name}: the ledger records {ledger_rows} rows, the files hold {}", from_files.rows));
        }
        match catalog.view_totals(name) {
            Ok(from_catalog) => compare("files vs catalog", name, &from_files, &from_catalog, &mut problems),
            Err(e) => problems.push(format!("{name}: the catalog cannot read the dataset: {e}")),
        }
        println!(
            "{name}: {} file(s), {} rows, {} column sum(s) checked",
            files.len(),
            from_files.rows,
            from_files.sums.len()
        );
    }
    for n in &notes {
        println!("note: {n}");
    }
    if problems.is_empty() {
        println!("ok: the ledger, the files and the catalog agree");
        Ok(0)
    } else {
        for p in &problems {
            println!("DIFFERENCE {p}");
        }
        Ok(EXIT_DATA)
    }
}
