//! Desktop notifications (`notify = true`) on the real binary, with a fake
//! `notify-send` on a private PATH: the first `sync` that ends at WARNING
//! notifies once, a second one at the same level does not; the text holds
//! counts, never a memory's text. Without any notifier, `sync` is unaffected
//! and the worker log says so once.

use std::path::PathBuf;

use mem0_queue_testkit::{
    bin,
    db::store,
    ops::{enqueue, run, text},
    sandbox::Sandbox,
};

/// A loopback port with nothing listening.
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn config(home: &Sandbox, notify: bool) {
    let p = home.home().join(".config/mem0-queue/config.toml");
    std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &p,
        format!(
            "api_url = \"{}\"\nnotify = {notify}\nconnect_timeout = \"1s\"\n",
            closed_port_url()
        ),
    )
    .expect("write config");
}

fn sync(home: &Sandbox) -> Option<i32> {
    let o = run(home.ops_command(&["sync", "--max-duration", "20s"]));
    let (out, err) = text(&o);
    assert!(
        matches!(o.status.code(), Some(75)),
        "the server is down, entries remain: {out}{err}"
    );
    o.status.code()
}

#[cfg(not(target_os = "macos"))]
#[test]
fn a_warning_is_notified_once_until_it_clears() {
    let home = Sandbox::new(bin!());
    config(&home, true);
    let calls: PathBuf = home.home().join("notify.calls");
    home.fake_tool(
        "notify-send",
        &format!(
            "printf '%s|' \"$@\" >> '{}'; echo >> '{}'",
            calls.display(),
            calls.display()
        ),
    );
    enqueue(&mut store(&home.data_dir()), 21, "notify");

    sync(&home);
    let first = std::fs::read_to_string(&calls).unwrap_or_default();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 1, "one notification: {first}");
    assert!(lines[0].contains("--urgency=normal"), "{first}");
    assert!(lines[0].contains("mem0-queue WARNING"), "{first}");
    assert!(lines[0].contains("21 memories waiting"), "{first}");
    assert!(
        !first.contains("ops test memory"),
        "memory text in a notification: {first}"
    );

    sync(&home);
    let second = std::fs::read_to_string(&calls).unwrap_or_default();
    assert_eq!(second, first, "not notified again at the same level");
    let log = std::fs::read_to_string(home.data_dir().join("mem0_worker.log")).expect("log");
    assert_eq!(
        log.matches("notify: mem0-queue WARNING").count(),
        1,
        "{log}"
    );
}

#[test]
fn without_a_notifier_sync_is_unaffected_and_it_is_logged_once() {
    let home = Sandbox::new(bin!());
    config(&home, true);
    enqueue(&mut store(&home.data_dir()), 21, "nonotifier");
    sync(&home);
    // Reset the level so the next run tries to notify again.
    store(&home.data_dir())
        .meta_set("notified_level", "ok")
        .expect("meta");
    sync(&home);
    let log = std::fs::read_to_string(home.data_dir().join("mem0_worker.log")).expect("log");
    assert_eq!(
        log.matches("no desktop notification could be shown")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn notify_off_notifies_nothing() {
    let home = Sandbox::new(bin!());
    config(&home, false);
    let calls: PathBuf = home.home().join("notify.calls");
    home.fake_tool(
        "notify-send",
        &format!("echo called >> '{}'", calls.display()),
    );
    enqueue(&mut store(&home.data_dir()), 21, "off");
    sync(&home);
    assert!(!calls.exists());
}
