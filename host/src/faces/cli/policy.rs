//! `mem0-queue policy check [PATH]` and `policy show`: a policy component's
//! decisions on a fixed scenario, and the active policy.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::engine::app::{RunningPolicy, read_running_policy};
use crate::engine::config::Resolved;
use crate::engine::paths::Paths;
use crate::engine::policy::{self, PolicySource, Runtime};
use crate::faces::cli::args::PolicyCommand;
use crate::faces::cli::exit;

fn policy_source(resolved: &Resolved) -> PolicySource {
    match &resolved.config.policy {
        Some(p) => PolicySource::File(p.clone()),
        None => PolicySource::Embedded,
    }
}

/// The compiled-policy cache dir, when the data dir exists or can be made.
fn cache_dir(paths: &Paths) -> Option<PathBuf> {
    paths.ensure_dir().ok().map(|()| paths.cache_dir())
}

/// The policy a running `serve` or daemon of this data dir decides with,
/// from the queue's records (none when no queue exists yet).
fn running(paths: &Paths) -> Option<RunningPolicy> {
    if !paths.db().exists() {
        return None;
    }
    crate::engine::store::Store::open(&paths.db())
        .ok()
        .and_then(|s| read_running_policy(&s))
}

/// `mem0-queue policy check [PATH]` and `policy show`.
pub fn run(
    command: &PolicyCommand,
    resolved: &Resolved,
    paths: &Paths,
) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        PolicyCommand::Check { path } => {
            let rt = Runtime::new(PolicySource::Embedded, cache_dir(paths).as_deref())
                .context("the embedded default policy does not load")?;
            let report = match path {
                Some(p) => policy::check::run(&rt, p),
                None => policy::check::run(
                    &rt,
                    std::path::Path::new(mem0_queue_embed::DEFAULT_POLICY_PATH),
                ),
            };
            match report {
                Ok(text) => {
                    out.write_all(text.as_bytes())?;
                    writeln!(out, "\nusable: yes")?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let shown = path
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "the embedded default".into());
                    eprintln!("mem0-queue: policy {shown} is not usable: {e}");
                    Ok(exit::policy(false))
                }
            }
        }
        PolicyCommand::Show { json } => {
            let rt = Runtime::new(policy_source(resolved), cache_dir(paths).as_deref())
                .context("the embedded default policy does not load")?;
            let info = rt.info();
            let from = match &resolved.config.policy {
                None => "embedded default (no `policy` configured)".to_string(),
                Some(_) => format!(
                    "{} (set by {})",
                    rt.source(),
                    resolved
                        .sources
                        .get("policy")
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                ),
            };
            let running = running(paths);
            if *json {
                let mut v = serde_json::to_value(&info)?;
                v["configured"] = serde_json::Value::String(from);
                v["running"] = serde_json::to_value(&running)?;
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(
                    out,
                    "active policy: {} {} (WIT {})",
                    info.name, info.version, info.wit_version
                )?;
                writeln!(out, "source:        {}", info.source)?;
                writeln!(out, "configured:    {from}")?;
                writeln!(out, "sha256:        {}", info.sha256)?;
                writeln!(
                    out,
                    "compiled:      {}",
                    if info.from_cache {
                        "from the on-disk cache"
                    } else {
                        "just now"
                    }
                )?;
                writeln!(
                    out,
                    "loaded:        {}",
                    crate::engine::text::rfc3339(info.loaded_at)
                )?;
                if let Some(b) = &info.broken {
                    writeln!(
                        out,
                        "BROKEN:        {b}\n               the embedded default decides instead"
                    )?;
                }
                if let Some(r) = &running {
                    writeln!(
                        out,
                        "in use:        {} {} from {}, loaded {}, by the running serve/daemon (pid {})",
                        r.policy.name,
                        r.policy.version,
                        r.policy.source,
                        crate::engine::text::rfc3339(r.policy.loaded_at),
                        r.pid
                    )?;
                    if let Some(f) = &r.policy.refused {
                        writeln!(
                            out,
                            "REFUSED:       {} at {}: {}\n               the policy in use keeps deciding",
                            f.source,
                            crate::engine::text::rfc3339(f.at_ms),
                            f.reason
                        )?;
                    }
                }
            }
            Ok(exit::policy(info.broken.is_none()))
        }
    }
}
