//! `sluice source status`: where each unit of a source stands, from the source's own records.

use std::collections::BTreeMap;

use crate::Exit;
use crate::cli::{SourceCommand, SourceStatusArgs};

pub fn source(c: SourceCommand) -> Result<u8, Exit> {
    match c {
        SourceCommand::Status(a) => status(&a),
    }
}

fn status(a: &SourceStatusArgs) -> Result<u8, Exit> {
    // No request is made, so unset variables (credentials) stand for themselves; the paths
    // (the mirror) are resolved as for a run.
    let specs =
        super::load_specs_with(&a.pipelines, &|k| Some(std::env::var(k).unwrap_or_else(|_| format!("${{{k}}}"))))?;
    let connectors = crate::context::connectors();
    let mut found = false;
    let mut json = Vec::new();
    for spec in &specs {
        let sources = connectors.build_sources(spec).map_err(Exit::data)?;
        for src in sources {
            if a.source.as_deref().is_some_and(|s| s != src.name()) {
                continue;
            }
            found = true;
            let Some(mut rows) = src.status().map_err(Exit::data)? else {
                if !a.json {
                    println!("{} / {}: this kind of source keeps no records of its units", spec.name, src.name());
                }
                continue;
            };
            if !a.state.is_empty() {
                rows.retain(|r| a.state.iter().any(|s| s == &r.state));
            }
            let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
            for r in &rows {
                *counts.entry(r.state.as_str()).or_default() += 1;
            }
            if a.json {
                json.push(serde_json::json!({
                    "pipeline": spec.name, "source": src.name(), "counts": counts, "units": rows,
                }));
                continue;
            }
            let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
            println!(
                "{} / {}: {}",
                spec.name,
                src.name(),
                if summary.is_empty() { "no units".into() } else { summary.join(", ") }
            );
            for r in &rows {
                let error = r.error.as_deref().map(|e| format!("  {e}")).unwrap_or_default();
                let attempts = if r.attempts > 0 { format!("  attempts {}", r.attempts) } else { String::new() };
                println!("  {:<10} {:>12}  {}{attempts}{error}", r.state, r.size, r.key);
            }
        }
    }
    if let Some(name) = &a.source
        && !found
    {
        return Err(Exit::config(anyhow::anyhow!("no source `{name}` in the given pipelines")));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
    }
    Ok(0)
}
