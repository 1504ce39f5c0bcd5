//! Entry point for the `pipeline` fuzz target in `fuzz/`: arbitrary bytes as a pipeline file,
//! through the YAML parser, the structural check and resolution, and the error locating that
//! later stages use. Not a stable API.

use std::path::Path;

/// Parse `data` (lossily decoded as UTF-8) as pipeline documents. Returns how many resolved;
/// errors are expected, a panic is a bug.
pub fn pipeline(data: &[u8]) -> usize {
    let text = String::from_utf8_lossy(data);
    // `${VAR}`: names of even length are set, others are not.
    let env = |k: &str| k.len().is_multiple_of(2).then(|| format!("v{}", k.len()));
    let _ = crate::yaml_value(&text);
    match crate::parse_located(&text, Path::new("fuzz.yaml"), &env) {
        Ok(loaded) => {
            for l in &loaded {
                let doc = &l.doc;
                for step in 0..l.spec.steps.len() {
                    let _ = doc.config_value(step);
                    let _ = doc.config_key_error(step, Some("a.0.b"), "fuzz", None).to_string();
                    let _ = doc.config_key_error(step, None, "fuzz", None).to_string();
                }
                let _ = doc.locate(&["sources", "0", "format", "csv", "columns"]);
                let _ = doc.contains(&["steps", "0", "plugin"]);
            }
            loaded.len()
        }
        Err(errs) => {
            let _ = errs.to_string();
            0
        }
    }
}

#[cfg(test)]
mod tests {
    /// The committed seeds of the `pipeline` target include pipelines that resolve.
    #[test]
    fn pipeline_seeds_resolve() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pipeline");
        let mut resolved = 0;
        for entry in std::fs::read_dir(&corpus).unwrap_or_else(|e| panic!("{}: {e}", corpus.display())) {
            let path = entry.unwrap().path();
            resolved += super::pipeline(&std::fs::read(&path).unwrap());
        }
        assert!(resolved >= 2, "only {resolved} seed pipelines in {} resolve", corpus.display());
    }
}
