//! Running the operations commands (install, schedule, hook, status,
//! config, doctor) in a [`Sandbox`](crate::sandbox::Sandbox) built with
//! [`ops_command`](crate::sandbox::Sandbox::ops_command), and seeding their
//! queue.
//!
//! The binary never sees the developer's own HOME, MEM0_* variables,
//! XDG dirs, Claude Code config dir or user systemd/D-Bus session: PATH is
//! a temp dir holding only the fake tools a test puts there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mem0_queue::engine::store::Store;

use crate::db;
use crate::sandbox::Sandbox;

/// Runs a command to its end, bounded: panics if it takes over
/// [`PROCESS_LIMIT`](crate::wait::PROCESS_LIMIT).
pub fn run(c: Command) -> Output {
    crate::wait::run(c, crate::wait::PROCESS_LIMIT)
}

/// stdout and stderr as text, for assertion messages.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs and expects exit 0; returns stdout.
pub fn ok(c: Command) -> String {
    let o = run(c);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    out
}

/// Enqueues `n` distinct entries of project `ops-tests`, created now;
/// returns their ids.
pub fn enqueue(store: &mut Store, n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let e = db::entry(
                "ops-tests",
                format!("ops test memory {tag} {i}"),
                serde_json::json!({}),
                mem0_queue::engine::clock::now_ms(),
            );
            db::add(store, e).id
        })
        .collect()
}

/// Runs a hook command (`mem0-queue hook EVENT`) with `input` on its stdin
/// (closed after it; `None`: stdin closed at once), bounded by
/// [`PROCESS_LIMIT`](crate::wait::PROCESS_LIMIT); returns its output and
/// how long the process took, spawn to exit.
pub fn hook(mut c: Command, input: Option<&[u8]>) -> (Output, std::time::Duration) {
    use std::io::Write;
    use std::process::Stdio;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let mut child = c.spawn().expect("spawn the hook");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        if let Some(b) = input {
            // A hook that exits without reading all of it is not an error here.
            let _ = stdin.write_all(b);
        }
    }
    let out = crate::wait::output(child, crate::wait::PROCESS_LIMIT, "the hook");
    (out, started.elapsed())
}

/// The binary's canonical path, as an install writes it.
pub fn canonical_bin(bin: &str) -> String {
    std::path::Path::new(bin)
        .canonicalize()
        .expect("canonical")
        .display()
        .to_string()
}

/// A fake systemctl that appends its arguments to `calls` and succeeds;
/// `is-active` answers "active" once `enable` was called.
pub fn working_systemctl(home: &Sandbox) -> PathBuf {
    let calls = home.home().join("systemctl.calls");
    home.fake_tool(
        "systemctl",
        &format!(
            // Shell builtins only: PATH holds nothing else.
            r#"echo "$@" >> '{calls}'
case "$*" in
  *is-active*) if [ -f '{enabled}' ]; then echo active; exit 0; else echo inactive; exit 3; fi ;;
  *enable*) : > '{enabled}' ;;
esac
exit 0"#,
            calls = calls.display(),
            enabled = home.home().join("systemctl.enabled").display()
        ),
    );
    calls
}

/// The lines a fake tool recorded in `p`, one call per line.
pub fn calls(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
