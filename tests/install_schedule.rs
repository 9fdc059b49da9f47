//! `mem0-queue install schedule` / `uninstall schedule` on the real binary
//! in a temp HOME. On Linux: the systemd user units are written and right,
//! a second run changes nothing, uninstall removes them; systemctl is a
//! fake on a private PATH (one that works and records its calls, one that
//! fails like a machine without a user session, and none at all), and the
//! command succeeds in every case, saying what to run. `--cron` prints the
//! crontab line and writes nothing. (The real systemd is never touched.)

use std::path::PathBuf;

use mem0_queue_testkit::{
    bin,
    ops::{calls, canonical_bin, ok, working_systemctl},
    sandbox::Sandbox,
};

fn units(home: &Sandbox) -> (PathBuf, PathBuf) {
    let dir = home.home().join(".config/systemd/user");
    (
        dir.join("mem0-queue-sync.service"),
        dir.join("mem0-queue-sync.timer"),
    )
}

#[cfg(target_os = "linux")]
#[test]
fn systemd_units_are_written_enabled_idempotent_and_removed() {
    let home = Sandbox::new(bin!());
    let log = working_systemctl(&home);
    let (service, timer) = units(&home);
    let data = home.data_dir().display().to_string();

    // Dry run: the plan, nothing written, systemctl not called.
    let out = ok(home.ops_command(&["install", "schedule", "--dry-run"]));
    assert!(out.contains("+OnCalendar=*:0/10"), "{out}");
    assert!(!service.exists() && !timer.exists());
    assert!(calls(&log).is_empty());

    let out = ok(home.ops_command(&["install", "schedule"]));
    assert!(out.contains("ran: systemctl --user daemon-reload"), "{out}");
    assert!(
        out.contains("ran: systemctl --user enable --now mem0-queue-sync.timer"),
        "{out}"
    );
    let s = std::fs::read_to_string(&service).expect("service written");
    assert!(s.contains("Type=oneshot\n"), "{s}");
    assert!(
        s.contains(&format!(
            "\nExecStart={} --data-dir {data} sync --max-duration 9m\n",
            canonical_bin(bin!())
        )),
        "{s}"
    );
    assert!(s.contains("SuccessExitStatus=75"), "{s}");
    let t = std::fs::read_to_string(&timer).expect("timer written");
    assert!(t.contains("\nOnCalendar=*:0/10\n"), "{t}");
    assert!(t.contains("\nPersistent=true\n"), "{t}");
    assert!(t.contains("\nUnit=mem0-queue-sync.service\n"), "{t}");
    assert!(t.contains("\nWantedBy=timers.target\n"), "{t}");
    assert_eq!(
        calls(&log),
        [
            "--user daemon-reload",
            "--user enable --now mem0-queue-sync.timer"
        ]
    );

    // Second run: files byte-identical, said so, no re-enable.
    let before = (
        std::fs::read(&service).expect("read"),
        std::fs::read(&timer).expect("read"),
    );
    let out = ok(home.ops_command(&["install", "schedule"]));
    assert!(out.contains("up to date; unchanged"), "{out}");
    assert!(out.contains("active already; nothing to change"), "{out}");
    assert_eq!(std::fs::read(&service).expect("read"), before.0);
    assert_eq!(std::fs::read(&timer).expect("read"), before.1);
    assert_eq!(
        calls(&log),
        [
            "--user daemon-reload",
            "--user enable --now mem0-queue-sync.timer",
            "--user is-active mem0-queue-sync.timer"
        ]
    );

    // A hand-edited unit is backed up before it is rewritten.
    std::fs::write(&timer, "# my edit\n").expect("edit");
    let out = ok(home.ops_command(&["install", "schedule"]));
    assert!(out.contains("backup:"), "{out}");
    assert_eq!(std::fs::read(&timer).expect("read"), before.1);
    let backups: Vec<_> = std::fs::read_dir(timer.parent().expect("dir"))
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("mem0-queue-sync.timer.bak.")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).expect("read"),
        "# my edit\n"
    );

    // Uninstall: disabled, files gone.
    let out = ok(home.ops_command(&["uninstall", "schedule"]));
    assert!(out.contains("removed"), "{out}");
    assert!(!service.exists() && !timer.exists());
    assert!(calls(&log).contains(&"--user disable --now mem0-queue-sync.timer".to_string()));
    let out = ok(home.ops_command(&["uninstall", "schedule"]));
    assert!(out.contains("nothing to change"), "{out}");
}

#[cfg(target_os = "linux")]
#[test]
fn without_a_usable_systemctl_the_files_are_written_and_the_commands_printed() {
    // systemctl present but without a user session, as in a container.
    let home = Sandbox::new(bin!());
    home.fake_tool(
        "systemctl",
        "echo 'Failed to connect to bus: No medium found' >&2; exit 1",
    );
    let (service, timer) = units(&home);
    let out = ok(home.ops_command(&["install", "schedule"]));
    assert!(service.exists() && timer.exists());
    assert!(out.contains("Failed to connect to bus"), "{out}");
    assert!(
        out.contains("systemctl --user enable --now mem0-queue-sync.timer"),
        "{out}"
    );

    // No systemctl at all.
    let home = Sandbox::new(bin!());
    let (service, timer) = units(&home);
    let out = ok(home.ops_command(&["install", "schedule"]));
    assert!(service.exists() && timer.exists());
    assert!(out.contains("systemctl is not installed"), "{out}");
    assert!(out.contains("systemctl --user daemon-reload"), "{out}");
    let out = ok(home.ops_command(&["uninstall", "schedule"]));
    assert!(!service.exists() && !timer.exists(), "{out}");
}

#[test]
fn cron_prints_the_line_and_writes_nothing() {
    let home = Sandbox::new(bin!());
    let before: Vec<_> = std::fs::read_dir(home.home())
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    let out = ok(home.ops_command(&["install", "schedule", "--cron"]));
    let line = format!(
        "*/10 * * * * {} --data-dir {data} sync --max-duration 9m >> {data}/mem0_worker.log 2>&1",
        canonical_bin(bin!()),
        data = home.data_dir().display()
    );
    assert!(
        out.lines().any(|l| l == line),
        "expected\n{line}\nin\n{out}"
    );
    let after: Vec<_> = std::fs::read_dir(home.home())
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "nothing written");
    assert!(!home.home().join(".config").exists());
    assert!(!home.home().join("Library").exists());
}
