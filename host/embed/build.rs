//! Builds the policy components for `wasm32-wasip2` and hands their paths to
//! `src/lib.rs`, which embeds the default one.
//!
//! The nested cargo gets its own target dir (`target/wasm`): sharing the outer
//! one deadlocks on its lock. RUSTFLAGS and wrappers meant for the host (such
//! as clippy's) are scrubbed from its environment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The components this crate builds: (package, the env var naming its .wasm).
const COMPONENTS: [(&str, &str); 2] = [
    (
        "mem0-queue-policy-default",
        "MEM0_QUEUE_DEFAULT_POLICY_WASM",
    ),
    ("mem0-queue-policy-jitter", "MEM0_QUEUE_JITTER_POLICY_WASM"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/embed sits two levels under the workspace root")
        .to_path_buf();
    for watched in ["component", "wit", "Cargo.lock"] {
        println!("cargo::rerun-if-changed={}", root.join(watched).display());
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm"))
        .unwrap_or_else(|| out_dir.join("wasm"));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    if !target_installed(&cargo) {
        println!("cargo::error=the {TARGET} target is missing; run: rustup target add {TARGET}");
        return;
    }

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "--target", TARGET, "--profile", "wasm"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in COMPONENTS {
        cmd.args(["-p", package]);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cargo can be spawned");
    if !status.success() {
        println!("cargo::error=building the policy components for {TARGET} failed (see above)");
        return;
    }
    for (package, var) in COMPONENTS {
        let file = wasm_path(&target_dir, package);
        println!("cargo::rustc-env={var}={}", file.display());
    }
}

fn wasm_path(target_dir: &Path, package: &str) -> PathBuf {
    target_dir
        .join(TARGET)
        .join("wasm")
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// True when rustup (or the sysroot) has the wasm32-wasip2 standard library.
fn target_installed(cargo: &str) -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| {
        Path::new(cargo)
            .with_file_name("rustc")
            .to_string_lossy()
            .into_owned()
    });
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return true; // Let the real build say what is wrong.
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
}
