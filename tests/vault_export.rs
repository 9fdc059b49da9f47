//! `mem0-queue export --vault DIR`: the queue as Obsidian notes, checked
//! with an independent YAML parser (PyYAML, part of this machine's Python).
//!
//! - the round trip: each note's front matter and body match its entry;
//! - a second export changes nothing (same bytes, same mtimes), and a state
//!   change updates that entry's note only;
//! - the user's own notes, in the export's folders and elsewhere, are never
//!   touched, and nothing is ever deleted;
//! - odd project names and texts become safe names inside the vault;
//! - a read-only or missing vault is a clear error;
//! - with `vault_dir` set, `serve` mirrors each save as it happens, and a
//!   failing mirror never fails a save.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mem0_queue::engine::clock::now_ms;
use mem0_queue::engine::store::{EntryView, FailureRecord, State, Store};
use mem0_queue_testkit::bin;
use mem0_queue_testkit::db;
use mem0_queue_testkit::mcp::{is_error, text};
use mem0_queue_testkit::sandbox::Sandbox;
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

/// A sandbox with a `vault/` folder and the data dir made.
struct Vault {
    sb: Sandbox,
}

impl Vault {
    fn new() -> Self {
        let sb = Sandbox::new(bin!());
        for d in ["data", "vault"] {
            std::fs::create_dir(sb.root().join(d)).expect("mkdir");
        }
        Vault { sb }
    }
    fn root(&self) -> &Path {
        self.sb.root()
    }
    fn vault(&self) -> PathBuf {
        self.root().join("vault")
    }
    fn data(&self) -> PathBuf {
        self.sb.data_dir()
    }
    fn db(&self) -> PathBuf {
        self.sb.db()
    }
    fn store(&self) -> Store {
        db::store(&self.data())
    }
    fn command(&self, args: &[&str]) -> std::process::Command {
        self.sb.command(args)
    }
    /// `export --vault <vault>`; panics unless it succeeds. Returns stdout.
    fn export(&self) -> String {
        let out = self
            .command(&["export", "--vault"])
            .arg(self.vault())
            .output()
            .expect("run export");
        assert!(
            out.status.success(),
            "export failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn add(
    store: &mut Store,
    project: &str,
    content: &str,
    metadata: Value,
    created_at: i64,
) -> String {
    db::add(store, db::entry(project, content, metadata, created_at)).id
}

/// Takes the only due entry through one outcome.
fn deliver(store: &mut Store, id: &str, remote: &[&str]) {
    let remote: Vec<String> = remote.iter().map(|s| s.to_string()).collect();
    db::deliver_one(store, "t", id, &remote, now_ms(), now_ms());
}

fn fail(store: &mut Store, id: &str, dead: bool) {
    let record = if dead {
        FailureRecord::Dead {
            reason: "HTTP 422".into(),
            auth: false,
        }
    } else {
        FailureRecord::Fail
    };
    db::fail_one(store, "t", id, &record, "HTTP 503", now_ms(), now_ms());
}

/// Every entry, with its text.
fn entries(db: &Path) -> Vec<EntryView> {
    let s = Store::open(db).expect("open");
    let mut all = Vec::new();
    for st in State::ALL {
        all.extend(s.list(st, 10_000, true).expect("list"));
    }
    all
}

/// Every file under `dir`: path -> (bytes, mtime).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let meta = std::fs::symlink_metadata(&p).expect("stat");
            if meta.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.clone(),
                    (
                        std::fs::read(&p).expect("read"),
                        meta.modified().expect("mtime"),
                    ),
                );
            }
        }
    }
    out
}

/// PyYAML's reading of each note: path -> {"front": ..., "body": ...}.
/// None (and a SKIPPED line) where python3 with PyYAML is missing outside CI.
fn parse_notes(paths: &[PathBuf]) -> Option<BTreeMap<PathBuf, Value>> {
    const SCRIPT: &str = r#"
import json, sys, yaml
out = {}
for p in sys.argv[1:]:
    text = open(p, encoding="utf-8", newline="").read()
    assert text.startswith("---\n"), p
    end = text.index("\n---\n", 3)
    front = yaml.safe_load(text[4:end + 1])
    out[p] = {"front": front, "body": text[end + 5:]}
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .args(paths)
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'yaml'") => {
            if std::env::var_os("CI").is_some() {
                panic!("PyYAML is missing in CI");
            }
            eprintln!(
                "SKIPPED: python3 has no PyYAML (the yaml module); the notes' YAML is not checked"
            );
            return None;
        }
        Ok(o) => panic!(
            "PyYAML could not read the notes: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("python3 is missing in CI: {e}");
            }
            eprintln!("SKIPPED: no python3 ({e}); the notes' YAML is not checked");
            return None;
        }
    };
    let v: BTreeMap<String, Value> =
        serde_json::from_slice(&out.stdout).expect("the parser's JSON");
    Some(v.into_iter().map(|(k, v)| (PathBuf::from(k), v)).collect())
}

fn notes_under(root: &Path) -> Vec<PathBuf> {
    tree(root)
        .into_keys()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "md")
                && p.file_name().is_some_and(|n| n != "index.md")
        })
        .collect()
}

/// A note's file stem: lowercase ASCII letters, digits, `-`.
fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A project folder: ASCII letters (any case), digits, `-`, `_`.
fn is_safe_folder(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-', '_'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A varied queue: quoting hazards, tags, every state, a shared slug.
fn seed_varied(v: &Vault) -> BTreeMap<&'static str, String> {
    let mut s = v.store();
    let now = now_ms();
    let mut ids = BTreeMap::new();
    ids.insert(
        "wal",
        add(
            &mut s,
            "windsurf-project",
            "Use WAL mode for the queue.\nIt survives crashes: \"quotes\", back\\slash, #hash, [[link]], key: value\n\n- a list item",
            json!({"tags": ["sqlite", "design: \"quoted\"", "été"]}),
            now - 3 * DAY,
        ),
    );
    deliver(&mut s, &ids["wal"], &["mem-a1", "mem-a2"]);
    ids.insert(
        "failed",
        add(
            &mut s,
            "a/b:c",
            "../../etc/passwd should never become a path",
            json!({}),
            now - 2 * DAY,
        ),
    );
    fail(&mut s, &ids["failed"], false);
    ids.insert(
        "dead",
        add(
            &mut s,
            "secondbrain",
            "Rejected: 413 too large",
            json!({"tags": ["ok", 3]}),
            now - DAY,
        ),
    );
    fail(&mut s, &ids["dead"], true);
    let long = "Deploy notes for the staging cluster and the database migrations";
    ids.insert(
        "twin1",
        add(
            &mut s,
            "windsurf-project",
            &format!("{long}: part one"),
            json!({}),
            now - 1000,
        ),
    );
    ids.insert(
        "twin2",
        add(
            &mut s,
            "windsurf-project",
            &format!("{long}: part two"),
            json!({}),
            now - 500,
        ),
    );
    ids.insert(
        "pending",
        add(
            &mut s,
            "windsurf-project",
            "Pending: no trailing newline \u{2028} odd separator",
            json!({"tags": "not-a-list"}),
            now - 100,
        ),
    );
    ids
}

#[test]
fn notes_match_their_entries() {
    let v = Vault::new();
    let ids = seed_varied(&v);
    let out = v.export();
    assert!(out.contains("6 notes written"), "{out}");
    let mem0 = v.vault().join("Mem0");
    let notes = notes_under(&mem0);
    assert_eq!(notes.len(), 6, "one note per memory: {notes:?}");
    let Some(parsed) = parse_notes(&notes) else {
        return;
    };
    for e in entries(&v.db()) {
        let (path, note) = parsed
            .iter()
            .find(|(_, n)| n["front"]["id"] == e.id.as_str())
            .unwrap_or_else(|| panic!("a note for {}", e.id));
        let f = &note["front"];
        assert_eq!(f["mem0_queue"], true, "{path:?}");
        assert_eq!(f["project"], e.project.as_str(), "{path:?}");
        let created =
            humantime::parse_rfc3339(f["created"].as_str().expect("created")).expect("RFC 3339");
        let created_ms = created
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        assert_eq!(created_ms, e.created_at, "{path:?}");
        let state = match e.state {
            State::InFlight => "pending",
            s => s.as_str(),
        };
        assert_eq!(f["state"], state, "{path:?}");
        assert_eq!(f["remote_ids"], json!(e.remote_ids), "{path:?}");
        let tags = match e.metadata.get("tags") {
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => json!(a),
            _ => json!([]),
        };
        assert_eq!(f["tags"], tags, "{path:?}");
        let content = e.content.clone().expect("content");
        let body = if content.ends_with('\n') {
            content.clone()
        } else {
            format!("{content}\n")
        };
        assert_eq!(note["body"], body.as_str(), "{path:?}");
        // Where it lives: Mem0/<safe folder>/<date>-<slug>.md
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let date = &f["created"].as_str().expect("created")[..10];
        assert!(name.starts_with(&format!("{date}-")), "{name}");
        let stem = name.strip_suffix(".md").expect(".md");
        assert!(is_safe_name(stem), "{name}");
        let folder = path.parent().expect("folder");
        assert_eq!(folder.parent(), Some(mem0.as_path()), "{path:?}");
        let folder = folder.file_name().expect("folder").to_string_lossy();
        assert!(is_safe_folder(&folder), "{folder}");
        if e.project == "windsurf-project" {
            assert_eq!(folder, "windsurf-project");
        }
    }
    let wal = &parsed
        .iter()
        .find(|(_, n)| n["front"]["id"] == ids["wal"].as_str())
        .expect("the WAL note")
        .0;
    assert!(
        wal.file_name().is_some_and(|n| n
            .to_string_lossy()
            .ends_with("-use-wal-mode-for-the-queue-it-survives-crashes.md")),
        "{wal:?}"
    );
    // The twins share a date and a slug: two notes, one with an id suffix.
    let twin = |k: &str| {
        parsed
            .iter()
            .find(|(_, n)| n["front"]["id"] == ids[k].as_str())
            .expect("a twin")
            .0
            .clone()
    };
    let (t1, t2) = (twin("twin1"), twin("twin2"));
    assert_ne!(t1, t2);
    let suffix = &ids["twin2"].replace('-', "")[24..];
    assert!(
        t2.to_string_lossy().ends_with(&format!("-{suffix}.md")),
        "the later twin gets its id's end: {t2:?}"
    );

    // The project's index links every note of it.
    let index = std::fs::read_to_string(mem0.join("windsurf-project/index.md")).expect("index");
    assert!(index.starts_with("---\nmem0_queue: true\n"), "{index}");
    for k in ["wal", "twin1", "twin2", "pending"] {
        let stem = parsed
            .iter()
            .find(|(_, n)| n["front"]["id"] == ids[k].as_str())
            .expect("note")
            .0
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        assert!(index.contains(&format!("[[{stem}|")), "{k}: {index}");
    }
    assert_eq!(
        index.matches("[[").count(),
        4,
        "only this project's notes: {index}"
    );
    // Nothing but Mem0/ in the vault.
    let top: Vec<_> = std::fs::read_dir(v.vault())
        .expect("read")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(top, vec![std::ffi::OsString::from("Mem0")]);
}

#[test]
fn a_second_export_changes_nothing_and_a_state_change_updates_its_note() {
    let v = Vault::new();
    let ids = seed_varied(&v);
    v.export();
    let first = tree(&v.vault());
    std::thread::sleep(Duration::from_millis(30));
    let out = v.export();
    assert!(
        out.contains("0 notes written, 6 unchanged, 0 index notes written"),
        "{out}"
    );
    assert_eq!(tree(&v.vault()), first, "byte-identical, same mtimes");

    // The pending entry is delivered: its note (and its project's index)
    // change, nothing else does.
    {
        let mut s = v.store();
        // Only `pending` and the twins are due; take them in order.
        for k in ["twin1", "twin2", "pending"] {
            deliver(&mut s, &ids[k], &[&format!("remote-{k}")]);
        }
    }
    std::thread::sleep(Duration::from_millis(30));
    let out = v.export();
    assert!(out.contains("3 notes written"), "{out}");
    let second = tree(&v.vault());
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>(),
        "no file added or removed"
    );
    let changed: Vec<&PathBuf> = second
        .iter()
        .filter(|(p, v)| first.get(*p) != Some(*v))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(changed.len(), 4, "three notes and one index: {changed:?}");
    let pending_note = changed
        .iter()
        .find(|p| {
            String::from_utf8_lossy(&second[**p].0).contains(&format!("id: \"{}\"", ids["pending"]))
        })
        .expect("the pending entry's note changed");
    let text = String::from_utf8_lossy(&second[*pending_note].0).into_owned();
    assert!(text.contains("state: \"delivered\""), "{text}");
    assert!(text.contains("remote_ids: [\"remote-pending\"]"), "{text}");
}

#[test]
fn the_users_notes_are_never_touched() {
    let v = Vault::new();
    let ids = seed_varied(&v);
    let mem0 = v.vault().join("Mem0");
    let proj = mem0.join("windsurf-project");
    std::fs::create_dir_all(&proj).expect("mkdir");
    std::fs::create_dir_all(mem0.join("secondbrain")).expect("mkdir");
    let wal_name = {
        let e = entries(&v.db())
            .into_iter()
            .find(|e| e.id == ids["wal"])
            .expect("wal");
        let date = humantime::format_rfc3339_millis(
            SystemTime::UNIX_EPOCH + Duration::from_millis(e.created_at as u64),
        )
        .to_string();
        format!(
            "{}-use-wal-mode-for-the-queue-it-survives-crashes.md",
            &date[..10]
        )
    };
    let users: Vec<(PathBuf, String)> = vec![
        (v.vault().join("Welcome.md"), "# My vault\n".into()),
        (
            proj.join("my-notes.md"),
            "My own notes about the project.\n".into(),
        ),
        // The very name the WAL memory's note would take, with front matter.
        (
            proj.join(&wal_name),
            "---\ntitle: mine\nid: \"not-a-memory\"\n---\nI wrote this first.\n".into(),
        ),
        // A memory's note the user took over.
        (
            proj.join("taken-over.md"),
            format!(
                "---\nmem0_queue: false\nid: \"{}\"\n---\nEdited by me.\n",
                ids["pending"]
            ),
        ),
        // A note of theirs named like our index.
        (mem0.join("secondbrain/index.md"), "My index.\n".into()),
    ];
    for (p, t) in &users {
        std::fs::write(p, t).expect("write a user note");
    }
    let before: BTreeMap<PathBuf, (Vec<u8>, SystemTime)> = tree(&v.vault())
        .into_iter()
        .filter(|(p, _)| users.iter().any(|(u, _)| u == p))
        .collect();
    assert_eq!(before.len(), users.len());
    std::thread::sleep(Duration::from_millis(30));
    let out = v.export();
    assert!(out.contains("1 kept as you edited them"), "{out}");
    assert!(out.contains("1 index notes not written"), "{out}");
    // State changes, then more exports.
    {
        let mut s = v.store();
        for k in ["twin1", "twin2", "pending"] {
            deliver(&mut s, &ids[k], &["r"]);
        }
    }
    v.export();
    v.export();
    let after = tree(&v.vault());
    for (p, (bytes, mtime)) in &before {
        let (b2, m2) = after.get(p).unwrap_or_else(|| panic!("{p:?} was deleted"));
        assert_eq!(b2, bytes, "{p:?} changed");
        assert_eq!(m2, mtime, "{p:?} was rewritten");
    }
    // The WAL memory got a name of its own; the taken-over one got none.
    let ours = notes_under(&mem0)
        .into_iter()
        .filter(|p| !users.iter().any(|(u, _)| u == p))
        .collect::<Vec<_>>();
    assert_eq!(ours.len(), 5, "{ours:?}");
    let wal_note = ours
        .iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .expect("read")
                .contains(&format!("id: \"{}\"", ids["wal"]))
        })
        .expect("the WAL note");
    let suffix = &ids["wal"].replace('-', "")[24..];
    assert_eq!(
        wal_note.file_name().expect("name").to_string_lossy(),
        wal_name.replace(".md", &format!("-{suffix}.md")),
        "the name was taken by the user's note: the memory's note gets an id suffix"
    );
    assert!(
        !ours.iter().any(|p| std::fs::read_to_string(p)
            .expect("read")
            .contains(&ids["pending"])),
        "the taken-over memory is not written again"
    );
}

#[test]
fn odd_names_become_safe_slugs_inside_the_vault() {
    let v = Vault::new();
    let now = now_ms();
    let odd = [
        ("a/b:c", "../../etc/passwd and more"),
        ("a:b/c", "../../etc/shadow"),
        ("..", ".."),
        ("A/B", "🙂🙂🙂"),
        ("Proj\"quote", "CON: <tricky> |name?* with \\ backslash"),
        ("%2e%2e", "/absolute/path/looking/text"),
        // Case-only twins: one folder each, even on a case-insensitive disk.
        ("SecondBrain", "kept readable"),
        ("secondbrain", "the lowercase twin"),
    ];
    {
        let mut s = v.store();
        for (i, (p, t)) in odd.iter().enumerate() {
            add(&mut s, p, t, json!({}), now - i as i64);
        }
    }
    v.export();
    let mem0 = v.vault().join("Mem0");
    let all = tree(v.root());
    for p in all.keys() {
        let rel = p.strip_prefix(v.root()).expect("under the temp root");
        let first = rel.components().next().expect("a component");
        assert!(
            ["vault", "data", "home"].contains(&first.as_os_str().to_string_lossy().as_ref()),
            "a file outside the vault: {p:?}"
        );
        if first.as_os_str() == "vault" {
            assert!(p.starts_with(&mem0), "{p:?}");
            let rel = p.strip_prefix(&mem0).expect("under Mem0");
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            assert_eq!(parts.len(), 2, "Mem0/<folder>/<note>: {p:?}");
            assert!(is_safe_folder(&parts[0]), "{parts:?}");
            let stem = parts[1].strip_suffix(".md").expect(".md");
            assert!(is_safe_name(stem), "{parts:?}");
            assert!(!stem.contains(".."), "{parts:?}");
        }
    }
    let folders: Vec<_> = std::fs::read_dir(&mem0)
        .expect("Mem0")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        folders.len(),
        odd.len(),
        "every project its own folder: {folders:?}"
    );
    let lower: std::collections::BTreeSet<String> = folders
        .iter()
        .map(|f| f.to_string_lossy().to_lowercase())
        .collect();
    assert_eq!(
        lower.len(),
        odd.len(),
        "distinct even ignoring case: {folders:?}"
    );
    assert!(
        folders.iter().any(|f| f == "secondbrain"),
        "a plain name stays as it is: {folders:?}"
    );
    let notes = notes_under(&mem0);
    assert_eq!(notes.len(), odd.len());
    if let Some(parsed) = parse_notes(&notes) {
        for (p, t) in odd {
            assert!(
                parsed
                    .values()
                    .any(|n| n["front"]["project"] == p && n["body"] == format!("{t}\n").as_str()),
                "{p}: {parsed:?}"
            );
        }
    }
    for n in &notes {
        let name = n.file_name().expect("name").to_string_lossy().into_owned();
        assert!(
            !name.contains("etc-passwd") || name.ends_with("-etc-passwd-and-more.md"),
            "{name}"
        );
    }
    assert!(!v.root().join("etc").exists());
}

/// Root ignores permission bits: as root the export runs as `nobody`.
const NOBODY: u32 = 65534;

fn is_root(v: &Vault) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(v.root()).expect("stat").uid() == 0
}

fn chown_tree(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).expect("chown");
    if p.is_dir() {
        for e in std::fs::read_dir(p).expect("read_dir") {
            chown_tree(&e.expect("entry").path());
        }
    }
}

#[test]
fn a_read_only_vault_is_a_clear_error() {
    let v = Vault::new();
    seed_varied(&v);
    let mut cmd = v.command(&["export", "--vault"]);
    cmd.arg(v.vault());
    if is_root(&v) {
        std::fs::set_permissions(v.root(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        chown_tree(&v.data());
        chown_tree(&v.vault());
        chown_tree(&v.root().join("home"));
        cmd.uid(NOBODY).gid(NOBODY);
    }
    std::fs::set_permissions(v.vault(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let out = cmd.output().expect("run export");
    std::fs::set_permissions(v.vault(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a read-only vault must fail: {err}");
    assert!(
        err.contains(&v.vault().display().to_string()),
        "the error names the vault: {err}"
    );
    assert!(
        err.contains("cannot write") && err.to_lowercase().contains("permission denied"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(v.vault()).expect("read").count(),
        0,
        "nothing was written"
    );

    // A vault that does not exist is named too, and not created.
    let missing = v.root().join("no-such-vault");
    let out = v
        .command(&["export", "--vault"])
        .arg(&missing)
        .output()
        .expect("run export");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(!missing.exists());
}

#[test]
fn export_without_vault_still_prints_the_seed_json() {
    let v = Vault::new();
    seed_varied(&v);
    let out = v.command(&["export"]).output().expect("run export");
    assert!(out.status.success());
    let j: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(j.get("queue").is_some() || j.get("stats").is_some(), "{j}");
    assert!(!v.vault().join("Mem0").exists());
}

/// Waits up to 20 s for a note whose body holds `needle` under `dir`.
async fn wait_for_note(dir: &Path, needle: &str) -> Option<PathBuf> {
    for _ in 0..200 {
        if dir.exists()
            && let Some(p) = notes_under(dir)
                .into_iter()
                .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(needle)))
        {
            return Some(p);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn serve_mirrors_each_save_and_a_failing_mirror_never_fails_one() {
    let sb = Sandbox::new(bin!());
    // The vault does not exist yet: the mirror fails, the saves do not.
    let vault = sb.root().join("vault");
    let set = format!("vault_dir={}", vault.display());
    let server = sb.serve(&["--set", &set]).await;
    let r = server
        .save(json!({"content": "Saved while the vault is missing", "project": "live"}))
        .await;
    assert!(!is_error(&r), "{}", text(&r));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!vault.exists(), "the mirror never creates the vault itself");

    // The vault appears; the next save brings both notes.
    std::fs::create_dir(&vault).expect("mkdir vault");
    let r = server
        .save(json!({"content": "Mirrored as it happens", "project": "live"}))
        .await;
    assert!(!is_error(&r), "{}", text(&r));
    let mem0 = vault.join("Mem0");
    let note = wait_for_note(&mem0, "Mirrored as it happens").await;
    assert!(note.is_some(), "the save was mirrored within 20 s");
    assert!(
        wait_for_note(&mem0, "Saved while the vault is missing")
            .await
            .is_some(),
        "the earlier save was mirrored at the next change"
    );
    let index = std::fs::read_to_string(mem0.join("live/index.md")).expect("the index");
    assert_eq!(index.matches("[[").count(), 2, "{index}");
    server.stop().await;
}
