//! Scratch directories, and the sandbox the real binary runs in.
//!
//! [`clean_command`] is the one way a test builds a `mem0-queue` command:
//! nothing of the developer's environment reaches the binary (no MEM0_*,
//! XDG_*, CLAUDE*, DBUS_* variables, no real HOME), only what the test gives.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A scratch directory, removed on drop.
pub struct TempDir {
    dir: tempfile::TempDir,
}

impl TempDir {
    /// A fresh dir under the system temp dir, named `mq-<tag>-…`.
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("mq-{tag}-"))
            .tempdir()
            .expect("a temp dir");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `name` in this dir and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, bytes).expect("write a scratch file");
        p
    }
}

/// The caller's PATH (the tools a test may need: python, node, kill).
pub fn inherited_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_default()
}

/// `bin` with a clean environment: only HOME (`home`) and, when given, PATH.
pub fn clean_command(bin: impl AsRef<OsStr>, home: &Path, path: Option<&OsStr>) -> Command {
    let mut c = Command::new(bin);
    c.env_clear().env("HOME", home);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c
}

/// The workspace root (the parent of this package, like the host's).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// A fresh temp dir for one run of the binary: `home/` (HOME, so no real
/// config is read), `bin/` (a private PATH for fake system tools) and
/// `data/` (the data dir, created by the binary itself).
pub struct Sandbox {
    dir: TempDir,
    bin: &'static str,
}

impl Sandbox {
    /// A sandbox for `bin`, the binary under test: pass [`crate::bin!()`].
    pub fn new(bin: &'static str) -> Self {
        let dir = TempDir::new("test");
        std::fs::create_dir(dir.path().join("home")).expect("the sandbox HOME");
        std::fs::create_dir(dir.path().join("bin")).expect("the sandbox bin dir");
        Self { dir, bin }
    }

    /// The binary under test.
    pub fn bin(&self) -> &'static str {
        self.bin
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    pub fn db(&self) -> PathBuf {
        self.data_dir().join("queue.db")
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.root().join("bin")
    }

    /// Writes `bytes` to `name` in the sandbox root and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        self.dir.file(name, bytes)
    }

    /// Puts an executable shell script named `name` on the private PATH.
    pub fn fake_tool(&self, name: &str, script: &str) {
        let p = self.bin_dir().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).expect("write fake tool");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// The binary on this sandbox's data dir.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(&self.data_dir(), args)
    }

    /// The binary with a clean environment (only PATH, and HOME in the
    /// sandbox) and `--data-dir DIR`.
    pub fn command_in(&self, data_dir: &Path, args: &[&str]) -> Command {
        let mut c = clean_command(self.bin, &self.home(), Some(&inherited_path()));
        c.arg("--data-dir").arg(data_dir).args(args);
        c
    }

    /// The operations form: `mem0-queue ARGS` with PATH only the private
    /// `bin/` of fake tools, the data dir in `MEM0_QUEUE_HOME`, stdin null.
    pub fn ops_command(&self, args: &[&str]) -> Command {
        let mut c = clean_command(self.bin, &self.home(), Some(self.bin_dir().as_os_str()));
        c.env("MEM0_QUEUE_HOME", self.data_dir())
            .args(args)
            .stdin(Stdio::null());
        c
    }
}
