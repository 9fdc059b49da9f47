//! Shared helpers of the operations tests (install, schedule, hook, status,
//! config, doctor): a temp HOME, the real binary run with a clean
//! environment, fake system tools on a private PATH, and queue seeding.
//!
//! The binary never sees the developer's own HOME, MEM0_* variables,
//! XDG dirs, Claude Code config dir or user systemd/D-Bus session: PATH is
//! a temp dir holding only the fake tools a test puts there.

#![allow(dead_code, reason = "each test file uses a part of these helpers")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use mem0_queue::store::{Limits, NewEntry, Origin, Store};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mem0-queue"))
}

/// A temp HOME with a data dir and a private PATH dir.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mq-ops-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir bin");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.path().join("bin")
    }

    /// Puts an executable shell script named `name` on the private PATH.
    pub fn fake_tool(&self, name: &str, script: &str) {
        let p = self.bin_dir().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).expect("write fake tool");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// `mem0-queue ARGS` with HOME here, the data dir in `MEM0_QUEUE_HOME`,
    /// and nothing of the caller's environment that could reach out.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("MEM0_")
                || k.starts_with("XDG_")
                || k.starts_with("CLAUDE")
                || k.starts_with("DBUS_")
            {
                c.env_remove(&k);
            }
        }
        c.env("HOME", self.path())
            .env("PATH", self.bin_dir())
            .env("MEM0_QUEUE_HOME", self.data())
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    }
}

/// Runs a command to its end, bounded: panics if it takes over 60 s.
pub fn run(mut c: Command) -> Output {
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mem0-queue");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("mem0-queue did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Opens the queue of a data dir (created 0700 if missing).
pub fn store(data: &Path) -> Store {
    if !data.exists() {
        std::fs::create_dir_all(data).expect("mkdir data");
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    Store::open(&data.join("queue.db")).expect("open the queue")
}

/// Enqueues `n` distinct entries; returns their ids.
pub fn enqueue(store: &mut Store, n: usize, tag: &str) -> Vec<String> {
    let limits = Limits {
        max_content_bytes: 1 << 16,
        max_metadata_bytes: 1 << 14,
        max_queue_len: 100_000,
    };
    (0..n)
        .map(|i| {
            store
                .enqueue(
                    NewEntry {
                        project: "ops-tests".into(),
                        agent_id: None,
                        run_id: None,
                        content: format!("ops test memory {tag} {i}"),
                        metadata: serde_json::json!({}),
                        created_at: mem0_queue::clock::now_ms(),
                        origin: Origin::Cli,
                        id: None,
                    },
                    &limits,
                )
                .expect("enqueue")
                .id
        })
        .collect()
}
