//! The lifecycle on the command line (`get`, `list`, `update`, `delete`,
//! `forget`, `entities`), and the queue's views counting changes by kind
//! (`list --state`, `status`, the seed JSON `export`), on the real binary.

use mem0_queue_testkit::{
    bin,
    db::store,
    ops::{enqueue, run, text},
    sandbox::Sandbox,
};

fn cli(sb: &Sandbox, args: &[&str]) -> (Option<i32>, String, String) {
    let o = run(sb.ops_command(args));
    let (out, err) = text(&o);
    (o.status.code(), out, err)
}

#[test]
fn the_lifecycle_commands_mirror_the_tools() {
    let sb = Sandbox::new(bin!());
    let ids = enqueue(&mut store(&sb.data_dir()), 2, "cli");
    let (a, b) = (&ids[0], &ids[1]);

    let (code, out, err) = cli(&sb, &["get", a]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(a.as_str()) && out.contains("pending"), "{out}");

    let (code, out, err) = cli(
        &sb,
        &["update", a, "--text", "corrected on the command line"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("nothing will be sent"), "{out}");
    let (_, out, _) = cli(&sb, &["get", a, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["memory"]["memory"], "corrected on the command line");

    let (code, _, err) = cli(&sb, &["update", a, "--metadata", "not json"]);
    assert_eq!(code, Some(1), "refused: {err}");
    assert!(err.contains("NOT CHANGED"), "{err}");
    let (code, _, err) = cli(&sb, &["update", a]);
    assert_eq!(code, Some(1), "nothing to change: {err}");

    let (code, out, err) = cli(&sb, &["delete", b]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("deleted"), "{out}");
    let (code, _, _) = cli(&sb, &["get", b]);
    assert_eq!(code, Some(1), "gone");

    let project = {
        let (_, out, _) = cli(&sb, &["get", a, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["memory"]["project"]
            .as_str()
            .expect("project")
            .to_string()
    };
    let (code, out, err) = cli(&sb, &["list", "--project", &project]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("1 memories") && out.contains("corrected on the command line"),
        "{out}"
    );
    let (code, out, _) = cli(&sb, &["entities"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(&project), "{out}");

    // forget: refused without --yes off a terminal, and says what it would do.
    let (code, _, err) = cli(&sb, &["forget", &project]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("NOT CHANGED") && err.contains("1 saves never sent") && err.contains("--yes"),
        "{err}"
    );
    let (code, out, err) = cli(&sb, &["forget", &project, "--yes"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("forgotten"), "{out}");
    let (_, out, _) = cli(&sb, &["list", "--project", &project]);
    assert!(out.contains("0 memories"), "{out}");
}

#[test]
fn queue_views_count_changes_by_kind() {
    let sb = Sandbox::new(bin!());
    let mut s = store(&sb.data_dir());
    let ids = enqueue(&mut s, 1, "kinds");
    let claimed = s.claim("w", 1, 60_000, 1).expect("claim");
    assert_eq!(claimed.len(), 1);
    s.record_delivered(&ids[0], &["55555555-5555-4555-8555-555555555555".into()], 2)
        .expect("delivered");
    drop(s);
    let (code, _, err) = cli(&sb, &["update", &ids[0], "--text", "a later correction"]);
    assert_eq!(code, Some(0), "{err}");

    let (_, out, _) = cli(&sb, &["list", "--state", "pending"]);
    assert!(out.contains("operation") && out.contains("update"), "{out}");
    let (_, out, _) = cli(&sb, &["status", "--no-probe"]);
    assert!(
        out.contains("changes among them (not delivered): 1 update"),
        "{out}"
    );
    let (_, out, _) = cli(&sb, &["status", "--no-probe", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["changes"]["update"]["pending"], 1, "{v}");
    let (_, out, _) = cli(&sb, &["export"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let queued = v["queue"].as_array().expect("queue");
    assert!(
        queued.iter().any(|e| e["operation"] == "update"
            && e["mem0_id"] == "55555555-5555-4555-8555-555555555555"),
        "{v}"
    );
}
