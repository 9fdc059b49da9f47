//! Invalid `mem0_save` / `mem0_recent` calls get an error result and change
//! nothing; a read-only data dir, a full disk and a corrupt queue file each
//! get a plain answer and leave the data as it was.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use mem0_queue_testkit::checker;
use mem0_queue_testkit::mem0_server::Kind;
use mem0_queue_testkit::worker;
use mem0_queue_testkit::{
    bin,
    db::{count, fingerprint, integrity},
    mcp::{Server, is_error, structured, text},
    sandbox::Sandbox,
};
use serde_json::{Value, json};

/// Asserts a refused save: an error result whose text starts "NOT QUEUED"
/// and names `reason`.
fn assert_not_queued(r: &rmcp::model::CallToolResult, reason: &str, what: &str) {
    let t = text(r);
    assert!(is_error(r), "{what}: expected an error result, got: {t}");
    assert!(t.starts_with("NOT QUEUED"), "{what}: {t}");
    assert!(
        t.to_lowercase().contains(&reason.to_lowercase()),
        "{what}: the reply should say `{reason}`: {t}"
    );
    assert_eq!(structured(r)["status"], "not_queued", "{what}");
}

#[tokio::test]
async fn invalid_saves_are_not_queued_and_change_nothing() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    let ok = server
        .save(json!({"content": "a valid memory first"}))
        .await;
    assert!(!is_error(&ok), "{}", text(&ok));
    let before = fingerprint(&sb.db());

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "content is a number",
            json!({"content": 5}),
            "invalid arguments",
        ),
        (
            "content is null",
            json!({"content": null}),
            "invalid arguments",
        ),
        (
            "content is missing",
            json!({"project": "p"}),
            "missing field `content`",
        ),
        ("content is empty", json!({"content": ""}), "empty"),
        ("content is blank", json!({"content": " \n\t "}), "empty"),
        (
            "content over 64 KiB",
            json!({"content": "x".repeat(64 * 1024 + 1)}),
            "65537 bytes, over the limit of 65536",
        ),
        (
            "metadata over 16 KiB",
            json!({"content": "m", "metadata": {"blob": "y".repeat(17 * 1024)}}),
            "metadata is",
        ),
        (
            "metadata a string",
            json!({"content": "m", "metadata": "tags"}),
            "invalid arguments",
        ),
        (
            "metadata a list",
            json!({"content": "m", "metadata": ["a"]}),
            "invalid arguments",
        ),
        (
            "metadata a number",
            json!({"content": "m", "metadata": 3}),
            "invalid arguments",
        ),
        (
            "project with a space",
            json!({"content": "m", "project": "my project"}),
            "whitespace",
        ),
        (
            "project with a tab",
            json!({"content": "m", "project": "a\tb"}),
            "whitespace",
        ),
        (
            "project empty",
            json!({"content": "m", "project": ""}),
            "empty",
        ),
        (
            "agent_id with a space",
            json!({"content": "m", "agent_id": "a b"}),
            "whitespace",
        ),
        (
            "run_id with a newline",
            json!({"content": "m", "run_id": "r\n1"}),
            "whitespace",
        ),
        (
            "project a number",
            json!({"content": "m", "project": 7}),
            "invalid arguments",
        ),
        (
            "an unknown field",
            json!({"content": "m", "tags": ["x"]}),
            "unknown field `tags`",
        ),
        (
            "a misspelt field",
            json!({"contents": "m"}),
            "unknown field `contents`",
        ),
    ];
    for (what, args, reason) in cases {
        let r = server.save(args).await;
        assert_not_queued(&r, reason, what);
        assert_eq!(fingerprint(&sb.db()), before, "{what} changed the queue");
    }

    // The boundary itself is accepted.
    let r = server.save(json!({"content": "z".repeat(64 * 1024)})).await;
    assert!(!is_error(&r), "exactly 64 KiB must be queued: {}", text(&r));
    assert_eq!(count(&sb.db()), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_smaller_max_content_bytes_is_enforced() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&["--set", "max_content_bytes=100"]).await;
    server.save(json!({"content": "seed the database"})).await;
    let before = fingerprint(&sb.db());
    let r = server.save(json!({"content": "a".repeat(101)})).await;
    assert_not_queued(&r, "101 bytes, over the limit of 100", "101 bytes");
    // Bytes, not characters: 51 two-byte characters are 102 bytes.
    let r = server.save(json!({"content": "é".repeat(51)})).await;
    assert_not_queued(&r, "102 bytes", "51 x é");
    assert_eq!(fingerprint(&sb.db()), before);
    let r = server.save(json!({"content": "a".repeat(100)})).await;
    assert!(!is_error(&r), "100 bytes must be queued: {}", text(&r));
    server.stop().await;
}

#[tokio::test]
async fn recent_with_a_bad_limit_is_an_error_and_changes_nothing() {
    let sb = Sandbox::new(bin!());
    let server = sb.serve(&[]).await;
    server.save(json!({"content": "something to list"})).await;
    let before = fingerprint(&sb.db());
    for args in [
        json!({"limit": 0}),
        json!({"limit": 101}),
        json!({"limit": -5}),
        json!({"limit": "ten"}),
        json!({"limit": 2.5}),
        json!({"limit": 5, "state": "pending"}),
    ] {
        let r = server.call("mem0_recent", args.clone()).await;
        assert!(is_error(&r), "{args}: expected an error: {}", text(&r));
        assert_eq!(structured(&r)["status"], "error", "{args}");
        assert!(!text(&r).is_empty());
        assert_eq!(fingerprint(&sb.db()), before, "{args} changed the queue");
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// A read-only data dir.

/// Our effective uid: the owner of a file we just created.
fn euid(sb: &Sandbox) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let probe = sb.root().join(".euid");
    std::fs::write(&probe, b"").expect("write a probe file");
    let uid = std::fs::metadata(&probe).expect("stat").uid();
    std::fs::remove_file(&probe).expect("remove the probe");
    uid
}

/// The uid the server runs as. Root ignores permission bits, so as root the
/// server is started as `nobody` (65534), the way a user's own server meets
/// a dir they cannot write.
const NOBODY: u32 = 65534;

/// Makes the sandbox usable by the unprivileged server when we are root.
fn hand_over(sb: &Sandbox, dirs: &[&Path]) -> Option<u32> {
    if euid(sb) != 0 {
        return None;
    }
    std::fs::set_permissions(sb.root(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::chown(sb.home(), Some(NOBODY), Some(NOBODY)).expect("chown home");
    for d in dirs {
        chown_tree(d);
    }
    Some(NOBODY)
}

fn chown_tree(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).expect("chown");
    if p.is_dir() {
        for e in std::fs::read_dir(p).expect("read_dir") {
            chown_tree(&e.expect("entry").path());
        }
    }
}

/// `serve` on `data`, as `uid` when one is given.
fn serve_as(sb: &Sandbox, uid: Option<u32>, data: &Path) -> std::process::Command {
    let mut c = sb.command_in(data, &["serve"]);
    if let Some(uid) = uid {
        c.uid(uid).gid(uid);
    }
    c
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// Makes the data dir read-only (0500), starts `serve` on it and saves one
/// memory, then makes the dir writable again: the save's reply, or why the
/// server did not start.
async fn save_on_read_only_data_dir(sb: &Sandbox) -> Result<rmcp::model::CallToolResult, String> {
    let uid = hand_over(sb, &[&sb.data_dir()]);
    chmod(&sb.data_dir(), 0o500);
    let started = Server::try_start(serve_as(sb, uid, &sb.data_dir())).await;
    let reply = match started {
        Ok(server) => {
            let r = server.save(json!({"content": "cannot be written"})).await;
            server.stop().await;
            Ok(r)
        }
        Err(e) => Err(e),
    };
    chmod(&sb.data_dir(), 0o700);
    reply
}

#[tokio::test]
async fn a_read_only_data_dir_gets_a_plain_not_queued() {
    let sb = Sandbox::new(bin!());
    // The DB exists, with one entry, written by a first server.
    let first = sb.serve(&[]).await;
    let r = first
        .save(json!({"content": "saved before the dir became read-only"}))
        .await;
    assert!(!is_error(&r));
    first.stop().await;
    let before = fingerprint(&sb.db());

    let reply = save_on_read_only_data_dir(&sb).await;
    assert_eq!(fingerprint(&sb.db()), before, "the queue changed");
    match reply {
        Ok(r) => assert_not_queued(&r, "read-only", "read-only data dir"),
        Err(e) => panic!(
            "with a read-only data dir, serve should start and answer a save NOT QUEUED with the reason; instead {e}"
        ),
    }
}

#[tokio::test]
async fn a_fresh_read_only_data_dir_gets_a_plain_not_queued() {
    let sb = Sandbox::new(bin!());
    std::fs::create_dir(sb.data_dir()).expect("mkdir data");
    let reply = save_on_read_only_data_dir(&sb).await;
    assert!(
        !sb.db().exists() || count(&sb.db()) == 0,
        "nothing may be queued"
    );
    match reply {
        Ok(r) => assert_not_queued(&r, "read-only", "fresh read-only data dir"),
        Err(e) => panic!(
            "with a fresh read-only data dir, serve should start and answer a save NOT QUEUED with the reason; instead {e}"
        ),
    }
}

// ---------------------------------------------------------------------------
// A full disk.

/// A tiny tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// A `size` tmpfs at `disk/` in the sandbox, or `None` (said as a
    /// SKIPPED `case`) where it cannot be mounted.
    fn in_sandbox(sb: &Sandbox, size: &str, case: &str) -> Option<Self> {
        match Self::mount(sb.root().join("disk"), size) {
            Ok(d) => Some(d),
            Err(e) => {
                println!("SKIPPED {case} case: {e} (it needs root and tmpfs)");
                None
            }
        }
    }

    fn mount(at: PathBuf, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(&at).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(at))
    }

    /// Grows the filesystem, as a user freeing space on a full disk would.
    fn grow(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} with size={size}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

/// Writes a file until the filesystem refuses more; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("create the filler");
    let chunk = vec![0xA5u8; 4096];
    // A 1 MiB filesystem holds at most 256 such chunks; bound it anyway.
    for _ in 0..100_000 {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.sync_all();
    path
}

#[tokio::test]
async fn a_full_disk_gets_not_queued_and_the_db_stays_sound() {
    let sb = Sandbox::new(bin!());
    // Room for a fresh queue (schema 5: about 310 KB of WAL and shared
    // memory before the first checkpoint), the compiled policy (about 250
    // KB, written at start) and a few saves, before the filler takes the rest.
    let Some(disk) = Tmpfs::in_sandbox(&sb, "1m", "full-disk") else {
        return;
    };
    let data = disk.0.join("data");
    let server = Server::start(sb.command_in(&data, &["serve"])).await;
    let r = server
        .save(json!({"content": "saved while there is room"}))
        .await;
    assert!(
        !is_error(&r),
        "a save before the disk is full must be queued: {}",
        text(&r)
    );
    let mut acked = std::collections::HashSet::new();
    acked.insert(structured(&r)["id"].as_str().expect("an id").to_string());
    let db = data.join("queue.db");
    let before = fingerprint(&db);

    let filler = fill(&disk.0);
    let big = format!(
        "a memory too big for the last free bytes {}",
        "w".repeat(60_000)
    );
    let r = server.save(json!({"content": big})).await;
    assert_not_queued(&r, "disk is full", "full disk");
    assert_eq!(fingerprint(&db), before, "a refused save changed the queue");

    // Room again: the same server saves again.
    std::fs::remove_file(&filler).expect("remove the filler");
    let r = server
        .save(json!({"content": "saved once there is room again"}))
        .await;
    assert!(!is_error(&r), "after freeing space: {}", text(&r));
    acked.insert(structured(&r)["id"].as_str().expect("an id").to_string());
    server.stop().await;
    assert_eq!(integrity(&db), "ok");
    assert_eq!(count(&db), 2);

    // The checker: once the disk has room, the saves around the full disk
    // are delivered, once. (Removing the filler is not room enough: the
    // refused save's WAL frames hold that space until a checkpoint, which
    // itself needs room for the database to grow.)
    disk.grow("4m");
    let mem0 = worker::server(Kind::Oss, None, 6).await;
    // Async: the test server runs on this test's (single-threaded) runtime.
    let mut sync = sb.command_in(&data, &["sync"]);
    sync.env("MEM0_API_URL", mem0.url())
        .stdin(std::process::Stdio::null());
    let out = tokio::process::Command::from(sync)
        .output()
        .await
        .expect("run sync");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(data.join("mem0_worker.log")).unwrap_or_default()
    );
    let report = checker::check(&acked, &db, &mem0.count_by_mq_id());
    assert!(report.ok() && report.queued == 0, "{}", report.summary());
    println!(
        "R6 full disk: 1 save refused NOT QUEUED with the queue unchanged, 2 queued around it; {}",
        report.summary()
    );
    drop(disk);
}

/// A disk with room for the queue but not for the compiled-policy cache
/// (about 250 KB; the fresh queue takes about 310 KB): the failed cache
/// write must not leave a partial file that eats the space the queue needs.
#[tokio::test]
async fn a_failed_policy_cache_write_leaves_no_partial_file() {
    let sb = Sandbox::new(bin!());
    let Some(disk) = Tmpfs::in_sandbox(&sb, "420k", "small-disk") else {
        return;
    };
    let data = disk.0.join("data");
    let server = Server::start(sb.command_in(&data, &["serve"])).await;
    let r = server
        .save(json!({"content": "a small memory on a small disk"}))
        .await;
    server.stop().await;
    let leftovers: Vec<String> = std::fs::read_dir(data.join("cache"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "a failed cache write left {leftovers:?} in the data dir, filling the disk; the save said: {}",
        text(&r)
    );
    assert!(!is_error(&r), "there was room for this save: {}", text(&r));
    drop(disk);
}

// ---------------------------------------------------------------------------
// A corrupt queue file.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_queue_file_is_named_and_left_untouched() {
    let sb = Sandbox::new(bin!());
    std::fs::create_dir(sb.data_dir()).expect("mkdir data");
    // 8 KiB of pseudo-random bytes: not an SQLite header.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let garbage: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(sb.db(), &garbage).expect("write garbage");

    // serve still answers MCP, and every save says NOT QUEUED, naming the
    // file and the cause, so the assistant can tell the user.
    let server = Server::try_start(sb.command(&["serve"]))
        .await
        .expect("serve starts even on a corrupt queue file");
    let r = server.save(json!({"content": "a memory"})).await;
    assert!(is_error(&r));
    let t = text(&r);
    assert!(t.starts_with("NOT QUEUED"), "{t}");
    assert!(
        t.contains(&sb.db().display().to_string()),
        "the reply names the file: {t}"
    );
    assert!(t.contains("corrupt"), "the reply says corrupt: {t}");
    let stderr = server.stop().await;
    assert!(
        !stderr.contains("a memory"),
        "no memory text in the log: {stderr}"
    );
    assert_eq!(
        std::fs::read(sb.db()).expect("read back"),
        garbage,
        "the corrupt file must be left byte for byte"
    );
}
