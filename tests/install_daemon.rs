//! `mem0-queue install daemon` / `uninstall daemon` on the real binary in a
//! temp HOME (issue 16). On Linux: the systemd user service is written
//! (the daemon command with the flags that find this data dir, restarted on
//! failure, its output appended to the worker log, started at login), the
//! user manager is told (reload, enable, restart), a second run changes
//! nothing, uninstall stops it and removes the file; systemctl is a fake on
//! a private PATH (one that works and records its calls, and none at all).
//! The schedule's files are another job's and stay as they are.

use std::path::PathBuf;

use mem0_queue_testkit::{
    bin,
    ops::{calls, canonical_bin, ok, working_systemctl},
    sandbox::Sandbox,
};

fn unit_dir(home: &Sandbox) -> PathBuf {
    home.home().join(".config/systemd/user")
}

#[cfg(target_os = "linux")]
#[test]
fn the_systemd_service_is_written_started_idempotent_and_removed() {
    let home = Sandbox::new(bin!());
    let log = working_systemctl(&home);
    let service = unit_dir(&home).join("mem0-queue-daemon.service");
    let data = home.data_dir().display().to_string();

    // Dry run: the plan, nothing written, systemctl not called.
    let out = ok(home.ops_command(&["install", "daemon", "--dry-run"]));
    assert!(out.contains("+Restart=on-failure"), "{out}");
    assert!(!service.exists());
    assert!(calls(&log).is_empty());

    let out = ok(home.ops_command(&["install", "daemon"]));
    assert!(out.contains("ran: systemctl --user daemon-reload"), "{out}");
    assert!(
        out.contains("ran: systemctl --user restart mem0-queue-daemon.service"),
        "{out}"
    );
    assert!(out.contains("loginctl enable-linger"), "{out}");
    let s = std::fs::read_to_string(&service).expect("service written");
    assert!(
        s.contains(&format!(
            "\nExecStart={} --data-dir {data} daemon\n",
            canonical_bin(bin!())
        )),
        "{s}"
    );
    assert!(s.contains("\nType=simple\n"), "{s}");
    assert!(s.contains("\nRestart=on-failure\nRestartSec=10\n"), "{s}");
    assert!(
        s.contains(&format!("\nStandardOutput=append:{data}/mem0_worker.log\n")),
        "{s}"
    );
    assert!(
        s.contains(&format!("\nStandardError=append:{data}/mem0_worker.log\n")),
        "{s}"
    );
    assert!(s.contains("\nWantedBy=default.target\n"), "{s}");
    assert_eq!(
        calls(&log),
        [
            "--user daemon-reload",
            "--user enable mem0-queue-daemon.service",
            "--user restart mem0-queue-daemon.service"
        ]
    );

    // Second run: byte-identical, said so, nothing restarted.
    let before = std::fs::read(&service).expect("read");
    let out = ok(home.ops_command(&["install", "daemon"]));
    assert!(out.contains("up to date; unchanged"), "{out}");
    assert!(out.contains("active already; nothing to change"), "{out}");
    assert_eq!(std::fs::read(&service).expect("read"), before);
    assert_eq!(calls(&log).len(), 4, "only is-active: {:?}", calls(&log));

    // The sync schedule is another job: its files come and go on their own.
    ok(home.ops_command(&["install", "schedule"]));
    assert!(unit_dir(&home).join("mem0-queue-sync.timer").exists());

    // Uninstall: stopped and disabled, the file gone, the schedule kept.
    let out = ok(home.ops_command(&["uninstall", "daemon"]));
    assert!(out.contains("removed"), "{out}");
    assert!(!service.exists());
    assert!(
        calls(&log).contains(&"--user disable --now mem0-queue-daemon.service".to_string()),
        "{:?}",
        calls(&log)
    );
    assert!(unit_dir(&home).join("mem0-queue-sync.timer").exists());
    let out = ok(home.ops_command(&["uninstall", "daemon"]));
    assert!(out.contains("nothing to change"), "{out}");
}

#[cfg(target_os = "linux")]
#[test]
fn without_systemctl_the_file_is_written_and_the_commands_printed() {
    let home = Sandbox::new(bin!());
    let service = unit_dir(&home).join("mem0-queue-daemon.service");
    let out = ok(home.ops_command(&["install", "daemon"]));
    assert!(service.exists());
    assert!(out.contains("systemctl is not installed"), "{out}");
    assert!(
        out.contains("systemctl --user restart mem0-queue-daemon.service"),
        "{out}"
    );
    assert!(out.contains("start `mem0-queue daemon` yourself"), "{out}");
    let out = ok(home.ops_command(&["uninstall", "daemon"]));
    assert!(!service.exists(), "{out}");
}
