//! On-disk cache of compiled components, keyed by the component's bytes and the engine's
//! compatibility fingerprint. Entries are written atomically; a stale or corrupt entry is
//! recompiled and replaced.
//!
//! Trust: cached artifacts are native code and are loaded without re-verification, so the cache
//! directory must be writable only by the user running Sluice (it is under their cache home).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_fingerprint: u64,
}

impl CompileCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CompileCache { dir, engine_fingerprint: h.finish() }
    }

    fn entry(&self, bytes: &[u8]) -> Option<PathBuf> {
        let key = sluice_core::sha256_hex(&[bytes, &self.engine_fingerprint.to_le_bytes()]);
        self.dir.as_ref().map(|d| d.join(format!("{key}.cwasm")))
    }

    /// Compile `bytes`, or load the cached compilation.
    pub(crate) fn component(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let entry = self.entry(bytes);
        if let Some(path) = &entry
            && path.exists()
        {
            // SAFETY: the entry was written by `store` below from `Component::serialize` of the
            // same engine configuration (the key includes the engine's compatibility hash), in a
            // directory private to this user. wasmtime still checks the artifact's header.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(path = %path.display(), "discarding unusable cached compilation: {e:#}"),
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(path) = &entry
            && let Err(e) = store(path, &component)
        {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {e:#}");
        }
        Ok(component)
    }
}

fn store(path: &Path, component: &Component) -> wasmtime::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().unwrap().to_string_lossy(), std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
