//! What every benchmark prints and saves: the machine line at the top of
//! its output, and a memory of a typical size.

/// One line naming the machine and the time: cores, architecture, kernel,
/// and when it was measured (the figures of one run are compared with each
/// other, never with another machine's).
pub fn machine() -> String {
    let cmd = |c: &str, args: &[&str]| {
        std::process::Command::new(c)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "machine: nproc {}, {}, {}; measured {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH,
        cmd("uname", &["-sr"]),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )
}

/// A memory of a typical size (about 200 bytes), numbered.
pub fn memory(tag: &str, i: usize) -> String {
    format!(
        "{tag} {i}: decided to keep the queue in one SQLite file in WAL mode with synchronous=FULL, \
         so that a save is on disk before the reply; the worker delivers to Mem0 in the background."
    )
}
