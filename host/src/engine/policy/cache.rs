//! The on-disk cache of compiled policy components.
//!
//! A worker started by cron would otherwise pay a Cranelift compile (70-180 ms)
//! on every run. The artifact is keyed by the component's SHA-256 and by the
//! engine's compatibility hash (wasmtime version and config), written
//! atomically with mode 0600 in the data dir (itself 0700), and loaded with
//! `Component::deserialize_file`. A cache that cannot be read or written is
//! never an error: the component is compiled in memory instead.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::PolicyError;
use crate::engine::text::one_line;

/// The engine's compatibility hash, as a short hex string. `DefaultHasher`
/// with its fixed keys is stable across processes of one build, which is all
/// the key needs: a new build may change the engine anyway.
fn engine_key(engine: &Engine) -> String {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// The cache file for these bytes on this engine.
pub fn path_for(engine: &Engine, hash: &str, dir: &Path) -> PathBuf {
    dir.join(format!(
        "policy-{}-{}.cwasm",
        &hash[..32],
        engine_key(engine)
    ))
}

/// Loads from the cache, or compiles and fills it.
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    hash: &str,
    dir: &Path,
) -> Result<(Component, bool), PolicyError> {
    let path = path_for(engine, hash, dir);
    if path.exists() {
        // SAFETY: the file is in the user's private data dir (mode 0700), was
        // written by this code with `Engine::precompile_component` for an
        // engine with the same compatibility hash (part of its name), and
        // wasmtime checks its header before use.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok((c, true)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "discarding a bad compiled-policy cache file");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|e| PolicyError::Invalid(one_line(&format!("{e:#}"))))?;
    if let Err(e) = write_atomic(&path, &compiled) {
        tracing::debug!(error = %e, "the compiled-policy cache could not be written");
    }
    // SAFETY: these bytes were produced just now by this engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| PolicyError::Invalid(format!("{e:#}")))?;
    Ok((component, false))
}

/// Compiles in memory, without the cache (no data dir to keep it in).
pub fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component, PolicyError> {
    Component::new(engine, bytes).map_err(|e| PolicyError::Invalid(one_line(&format!("{e:#}"))))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Unique per process and per call: two threads of one process that
    // compile the same component never share a temp file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("policy"),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // A full disk must not keep a partial artifact filling it further.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
