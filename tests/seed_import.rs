//! `mem0-queue import` of the seed's JSON queue file and `mem0-queue
//! export`: counts, idempotence, the file left as it was, the same shape
//! out, and a malformed file refused whole.

use std::path::Path;

use mem0_queue_testkit::{
    bin,
    db::{connect, count, scalar},
    sandbox::Sandbox,
};
use serde_json::{Value, json};

/// A seed file as the Python seed writes it: two queued, one failed, a
/// last_100 cache that repeats the two queued and holds one synced entry.
fn seed() -> Value {
    let q1 = json!({"content": "Decision: SQLite WAL for the local queue", "project": "windsurf-project",
                    "timestamp": "2025-11-29T10:00:00.123456", "retries": 0,
                    "metadata": {"tags": ["decision"]}});
    let q2 = json!({"content": "Preference: answers in French", "project": "windsurf-project",
                    "timestamp": "2025-11-29T10:05:00", "retries": 2});
    json!({
        "queue": [q1.clone(), q2.clone()],
        "failed": [{"content": "Note: the VPS timed out three times", "project": "windsurf-project",
                    "timestamp": "2025-11-29T09:00:00", "retries": 3}],
        "last_100": [
            {"content": "Fact: Mem0 runs on the VPS at port 8888", "project": "windsurf-project",
             "timestamp": "2025-11-28T18:00:00"},
            q1, q2
        ],
        "stats": {"total_queued": 12, "total_synced": 9, "total_failed": 1,
                  "last_sync": "2025-11-29T09:30:00"}
    })
}

fn write(sb: &Sandbox, name: &str, text: &str) -> std::path::PathBuf {
    let p = sb.root().join(name);
    std::fs::write(&p, text).expect("write the seed file");
    p
}

fn run(sb: &Sandbox, args: &[&str]) -> (bool, String, String) {
    let out = sb.command(args).output().expect("run mem0-queue");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn import(sb: &Sandbox, file: &Path) -> (bool, String, String) {
    run(sb, &["import", file.to_str().expect("utf-8 path")])
}

fn stat(db: &Path, key: &str) -> Option<i64> {
    scalar(db, "SELECT value FROM stats WHERE key = ?1", [key])
}

fn state_count(db: &Path, state: &str) -> i64 {
    scalar(db, "SELECT count(*) FROM entries WHERE state = ?1", [state])
}

#[test]
fn import_counts_is_idempotent_and_leaves_the_file_alone() {
    let sb = Sandbox::new(bin!());
    let text = serde_json::to_string_pretty(&seed()).expect("json");
    let file = write(&sb, "mem0_queue.json", &text);

    let (ok, out, err) = import(&sb, &file);
    assert!(ok, "import failed: {err}");
    assert_eq!(
        out.trim(),
        "imported 2 pending, 1 failed, 1 delivered (from last_100); 2 already present; stats merged"
    );
    let db = sb.db();
    assert_eq!(count(&db), 4);
    assert_eq!(state_count(&db, "pending"), 2);
    assert_eq!(state_count(&db, "failed"), 1);
    assert_eq!(state_count(&db, "delivered"), 1);
    assert_eq!(stat(&db, "total_queued"), Some(12));
    assert_eq!(stat(&db, "total_synced"), Some(9));
    assert_eq!(stat(&db, "total_failed"), Some(1));
    let c = connect(&db);
    let (retries, origin, meta): (i64, String, String) = c
        .query_row(
            "SELECT attempts, origin, metadata FROM entries WHERE content LIKE 'Preference:%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the imported entry");
    assert_eq!(
        (retries, origin.as_str(), meta.as_str()),
        (2, "import", "{}")
    );
    let created: i64 = scalar(
        &db,
        "SELECT created_at FROM entries WHERE content LIKE 'Decision:%'",
        [],
    );
    // 2025-11-29T10:00:00.123456 UTC, kept from the seed, in ms.
    assert_eq!(created, 1_764_410_400_123);
    drop(c);

    let (ok, out, err) = import(&sb, &file);
    assert!(ok, "second import failed: {err}");
    assert_eq!(
        out.trim(),
        "imported 0 pending, 0 failed, 0 delivered (from last_100); 6 already present; stats already merged"
    );
    assert_eq!(count(&db), 4);
    assert_eq!(stat(&db, "total_queued"), Some(12));
    assert_eq!(
        std::fs::read_to_string(&file).expect("read back"),
        text,
        "the seed file must be left byte for byte"
    );
}

#[test]
fn export_prints_the_seed_shape() {
    let sb = Sandbox::new(bin!());
    let file = write(&sb, "seed.json", &seed().to_string());
    let (ok, _, err) = import(&sb, &file);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&sb, &["export"]);
    assert!(ok, "export failed: {err}");
    let v: Value = serde_json::from_str(&out).expect("export prints JSON");
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["failed", "last_100", "queue", "stats"]);

    let contents = |list: &str| -> Vec<String> {
        let mut c: Vec<String> = v[list]
            .as_array()
            .unwrap_or_else(|| panic!("`{list}` is a list"))
            .iter()
            .map(|e| e["content"].as_str().expect("content").to_string())
            .collect();
        c.sort();
        c
    };
    assert_eq!(
        contents("queue"),
        [
            "Decision: SQLite WAL for the local queue",
            "Preference: answers in French"
        ]
    );
    assert_eq!(contents("failed"), ["Note: the VPS timed out three times"]);
    assert_eq!(contents("last_100").len(), 4);
    for list in ["queue", "failed", "last_100"] {
        for e in v[list].as_array().expect("list") {
            for field in [
                "id",
                "project",
                "content",
                "timestamp",
                "retries",
                "metadata",
            ] {
                assert!(e.get(field).is_some(), "{list} entry without {field}: {e}");
            }
            assert_eq!(e["project"], "windsurf-project");
        }
    }
    let stats = &v["stats"];
    assert_eq!(stats["total_queued"], 12);
    assert_eq!(stats["total_synced"], 9);
    assert_eq!(stats["total_failed"], 1);
    assert!(stats.get("last_sync").is_some(), "{stats}");

    // What export prints, import takes back: a fresh queue gets the same entries.
    let other = Sandbox::new(bin!());
    let file = write(&other, "exported.json", &out);
    let (ok, _, err) = import(&other, &file);
    assert!(ok, "re-importing the export failed: {err}");
    let ids = |db: &Path| -> Vec<(String, String)> {
        let c = connect(db);
        let mut s = c
            .prepare("SELECT id, state FROM entries WHERE state != 'delivered' ORDER BY id")
            .expect("prepare");
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(ids(&other.db()), ids(&sb.db()));
}

#[test]
fn a_malformed_file_is_refused_whole() {
    let bad_entry = {
        let mut v = seed();
        v["queue"][1] = json!({"project": "windsurf-project", "timestamp": "2025-11-29T10:05:00"});
        v.to_string()
    };
    let cases = [
        (
            "bad JSON",
            r#"{"queue": [{"content": "x"}"#.to_string(),
            "invalid JSON",
        ),
        (
            "queue not a list",
            json!({"queue": {"content": "x"}}).to_string(),
            "`queue` is not a list",
        ),
        (
            "an entry without content",
            bad_entry,
            "queue[1]: no content",
        ),
        ("not an object", "[1, 2]".to_string(), "not an object"),
    ];
    for (what, text, reason) in cases {
        let sb = Sandbox::new(bin!());
        let file = write(&sb, "bad.json", &text);
        let (ok, out, err) = import(&sb, &file);
        assert!(!ok, "{what}: the import must fail; stdout {out}");
        assert!(
            err.contains("is not a seed queue file") && err.contains(reason),
            "{what}: unclear error: {err}"
        );
        assert!(err.contains("nothing was imported"), "{what}: {err}");
        assert!(
            err.contains(file.to_str().expect("path")),
            "{what}: the error names the file: {err}"
        );
        if sb.db().exists() {
            assert_eq!(count(&sb.db()), 0, "{what}: something was imported");
            assert_eq!(stat(&sb.db(), "total_queued"), Some(0), "{what}");
        }
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            text,
            "{what}"
        );
    }
}
