//! `sluice validate`: check pipelines without side effects.

use std::sync::Arc;

use sluice_core::plugin::PluginRuntime;
use sluice_core::runner::chain_schema;
use sluice_core::source::Source;
use sluice_source::DirSource;

use crate::Exit;
use crate::cli::{Global, ValidateArgs};

pub fn validate(args: &ValidateArgs, g: &Global) -> Result<u8, Exit> {
    let specs = super::load_specs(&args.pipelines)?;
    if args.no_environment {
        for s in &specs {
            println!("ok: pipeline `{}` ({})", s.name, s.origin.display());
        }
        return Ok(0);
    }
    let rt = crate::context::runtime(g.plugin_dir.clone())?;
    let mut problems = Vec::new();
    for spec in &specs {
        let before = problems.len();
        let origin = spec.origin.display();
        let mut plugins = Vec::new();
        for (i, step) in spec.steps.iter().enumerate() {
            match rt.load(&step.plugin) {
                Ok(p) => plugins.push(p),
                Err(e) => problems.push(format!("{origin}: step {} `{}`: {e}", i + 1, step.name)),
            }
        }
        let mut sources: Vec<Arc<dyn Source>> = Vec::new();
        for s in &spec.sources {
            if !s.path.is_dir() {
                problems.push(format!("{origin}: source `{}`: directory {} does not exist", s.name, s.path.display()));
            }
            match DirSource::new(s, spec.settings.batch_rows) {
                Ok(src) => sources.push(Arc::new(src)),
                Err(e) => problems.push(format!("{origin}: {e}")),
            }
        }
        if problems.len() == before {
            match chain_schema(spec, &sources, &plugins) {
                Ok(Some(schema)) => {
                    for col in &spec.sink.partition_by {
                        if schema.index_of(col).is_err() {
                            problems.push(format!(
                                "{origin}: sink: partition column `{col}` is not in the pipeline's output"
                            ));
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => problems.push(format!("{origin}: {e}")),
            }
        }
        if problems.len() == before {
            println!("ok: pipeline `{}` ({origin})", spec.name);
        }
    }
    if problems.is_empty() {
        Ok(0)
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        Ok(crate::EXIT_CONFIG)
    }
}
