//! Looking at processes the binary starts on its own: the sync the SessionEnd
//! hook leaves running in a session of its own.

/// Whether a process runs (a zombie waiting for its reaper does not).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat[stat.rfind(')')? + 2..].chars().next())
        .is_some_and(|state| state != 'Z')
}

/// The pid of the sync that `hook session-end` started for `session`, from
/// the worker log's line "hook session-end: session S (...); started sync (pid N)".
pub fn hook_sync_pid(worker_log: &str, session: &str) -> Option<u32> {
    worker_log
        .lines()
        .filter(|l| l.contains(&format!("hook session-end: session {session} ")))
        .find_map(|l| l.rsplit("pid ").next()?.trim_end_matches(')').parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hook_sync_pid_of_a_session() {
        let log = "x\n2026 hook session-end: session s1 (other); started sync (pid 4242)\n\
                   2026 hook session-end: session s2 (clear); started sync (pid 99)\n";
        assert_eq!(hook_sync_pid(log, "s1"), Some(4242));
        assert_eq!(hook_sync_pid(log, "s2"), Some(99));
        assert_eq!(hook_sync_pid(log, "s"), None);
    }

    #[test]
    fn this_process_runs_and_pid_zero_does_not() {
        assert!(running(std::process::id()));
        assert!(!running(0));
    }
}
