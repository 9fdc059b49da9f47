//! R7, secrets and files: the real binary is driven through every path that
//! writes a log or prints something (serve at trace level, a sync refused
//! with a wrong key, a sync through 500s and a reset, the hook, status, list,
//! doctor, config show), then every output and every file is searched for
//! the API keys and the memories' text. The memory text may live only in the
//! queue database (its job) and in the replies that exist to return it; a
//! key may live nowhere but the environment. The modes of the data dir and
//! of every file in it are checked while a server runs (the WAL exists
//! then). Last, a snooping policy component run by the real binary finds no
//! file, no environment variable (so not the key) and no network.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mem0_queue_testkit::bin;
use mem0_queue_testkit::checker;
use mem0_queue_testkit::db;
use mem0_queue_testkit::mcp::{Server, structured, text};
use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind};
use mem0_queue_testkit::policy;
use mem0_queue_testkit::process::{hook_sync_pid, run_session_end_hook, running};
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::wait::until_async;
use mem0_queue_testkit::worker::server;
use serde_json::{Value, json};

/// The key the test server wants. Distinctive, so a grep finds any copy.
const KEY: &str = "m0-r7KEY-3f9a1c7e5b2d4a6c8e0f1a2b";
/// A wrong key, refused with 401: it must not leak either.
const WRONG_KEY: &str = "m0-r7WRONG-77aa55cc33ee11dd99bb";

/// The memories saved; their text must appear in no log and no status output.
const MEMORIES: [&str; 3] = [
    "r7 private memory one: the vault passphrase is walrus-tangerine-42",
    "r7 private memory two: my bank pin is quasar-ochre-1187",
    "r7 private memory three: the staging password is marmot-cobalt-5531",
];

/// How long a delivery by the serve loop may take (the first attempt meets
/// a 500, the retry comes 2 s later).
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);

/// Everything the binary printed, labelled by the command that printed it.
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn add(&mut self, label: &str, text: impl Into<String>) {
        self.0.push((label.to_string(), text.into()));
    }

    /// Runs a command to its end and keeps its stdout and stderr.
    fn run(&mut self, label: &str, mut cmd: std::process::Command) -> std::process::Output {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {label}: {e}"));
        self.add(
            &format!("{label} stdout"),
            String::from_utf8_lossy(&out.stdout),
        );
        self.add(
            &format!("{label} stderr"),
            String::from_utf8_lossy(&out.stderr),
        );
        out
    }
}

/// `mem0-queue ARGS` on the sandbox with the test server and `key`, logging
/// at trace level: the most a log could ever say.
fn cmd(sb: &Sandbox, url: &str, key: &str, args: &[&str]) -> std::process::Command {
    let mut c = sb.command(args);
    c.env("MEM0_API_URL", url)
        .env("MEM0_API_KEY", key)
        .env("MEM0_QUEUE_LOG", "trace");
    c
}

/// Every file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read a dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The data dir is 0700, every dir below it too, and no file in it can be
/// read by the group or others. Returns the names checked.
fn assert_private(data: &Path) -> Vec<String> {
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(data), 0o700, "{}", data.display());
    let mut checked = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read a dir").flatten() {
            let p = e.path();
            let m = mode(&p);
            let name = p.strip_prefix(data).expect("below").display().to_string();
            if p.is_dir() {
                assert_eq!(m, 0o700, "dir {name} is {m:o}");
                stack.push(p);
            } else {
                assert_eq!(m & 0o077, 0, "file {name} is {m:o}: readable by others");
            }
            checked.push(name);
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_no_key_and_no_memory_text_in_any_log_or_output_and_private_files() {
    let sb = Sandbox::new(bin!());
    let srv = server(Kind::Oss, Some(KEY), 7).await;
    let url = srv.url();
    let mut out = Outputs::default();
    let mut acked = HashSet::new();

    // 1. Saves while the server is unreachable for this process (no URL):
    //    queued only.
    let mut c = sb.command(&["serve"]);
    c.env("MEM0_QUEUE_LOG", "trace").env("MEM0_API_KEY", KEY);
    let s = Server::start(c).await;
    for m in &MEMORIES[..2] {
        let r = s
            .save(json!({"content": m, "metadata": {"topic": "r7"}}))
            .await;
        let v = structured(&r);
        assert_eq!(v["status"], "queued", "{v}");
        acked.insert(v["id"].as_str().expect("an id").to_string());
        out.add("serve save reply", serde_json::to_string(&r).expect("json"));
    }
    let r = s.call("mem0_queue_status", json!({})).await;
    out.add(
        "serve status reply",
        serde_json::to_string(&r).expect("json"),
    );
    out.add("serve (no url) stderr", s.stop().await);

    // 2. A sync with a wrong key: every add is refused (401), the run stops
    //    on a configuration problem, the entries wait, an auth alert.
    out.run("sync wrong key", cmd(&sb, &url, WRONG_KEY, &["sync"]));
    out.run("status wrong key", cmd(&sb, &url, WRONG_KEY, &["status"]));
    out.run(
        "status --json",
        cmd(&sb, &url, WRONG_KEY, &["status", "--json"]),
    );
    out.run(
        "list dead",
        cmd(&sb, &url, WRONG_KEY, &["list", "--state", "dead"]),
    );
    out.run("doctor wrong key", cmd(&sb, &url, WRONG_KEY, &["doctor"]));
    let pending = db::rows(&sb.db())
        .values()
        .filter(|r| r.state == mem0_queue::engine::store::State::Pending)
        .count();
    assert_eq!(pending, 2, "a 401 kills no entry");

    // 3. A sync with the right key through a 500 and a connection reset
    //    mid-response (error paths log the most).
    out.run("retry --dead", cmd(&sb, &url, KEY, &["retry", "--dead"]));
    srv.set_faults(FaultPlan::script([
        Some(Fault::Status500),
        Some(Fault::ResetMidResponse),
    ]));
    let o = out.run("sync right key", cmd(&sb, &url, KEY, &["sync"]));
    assert_eq!(o.status.code(), Some(0), "the sync drains");

    // 4. serve with the server configured: a save delivered by its loop
    //    after a 500; the modes are checked while it runs (WAL and all).
    srv.set_faults(FaultPlan::script([Some(Fault::Status500)]));
    let s = Server::start(cmd(&sb, &url, KEY, &["serve"])).await;
    let r = s.save(json!({"content": MEMORIES[2]})).await;
    let id = structured(&r)["id"].as_str().expect("an id").to_string();
    acked.insert(id.clone());
    out.add("serve save reply", serde_json::to_string(&r).expect("json"));
    let delivered = until_async(DELIVERY_LIMIT, || srv.count_by_mq_id().contains_key(&id)).await;
    assert!(delivered, "serve delivers after the 500");
    let r = s.call("mem0_queue_status", json!({})).await;
    out.add("serve status reply", text(&r));
    let checked = assert_private(&sb.data_dir());
    for must in ["queue.db", "queue.db-wal", "mem0_worker.log"] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} was checked: {checked:?}"
        );
    }
    out.add("serve stderr", s.stop().await);

    // 5. The hook (its sync's output goes to the worker log) and the
    //    read-only commands.
    let o = run_session_end_hook(cmd(&sb, &url, KEY, &["hook", "session-end"]), "r7");
    out.add("hook stdout", String::from_utf8_lossy(&o.stdout));
    out.add("hook stderr", String::from_utf8_lossy(&o.stderr));
    out.run("status", cmd(&sb, &url, KEY, &["status", "--json"]));
    out.run(
        "list delivered",
        cmd(&sb, &url, KEY, &["list", "--state", "delivered"]),
    );
    out.run("doctor", cmd(&sb, &url, KEY, &["doctor"]));
    let o = out.run("config show", cmd(&sb, &url, KEY, &["config", "show"]));
    assert!(o.status.success());
    // Let the hook's sync end before the files are read.
    let log_path = sb.data_dir().join("mem0_worker.log");
    let log = std::fs::read_to_string(&log_path).expect("the worker log");
    let pid =
        hook_sync_pid(&log, "r7").unwrap_or_else(|| panic!("the hook started no sync:\n{log}"));
    assert!(
        until_async(Duration::from_secs(30), || !running(pid)).await,
        "the hook's sync ended"
    );

    // The checker: both kinds of run delivered everything exactly once.
    let report = checker::check(&acked, &sb.db(), &srv.count_by_mq_id());
    assert!(report.ok() && report.queued == 0, "{}", report.summary());

    // The search: no output, no log file, no file but the database holds a
    // key or a memory's text.
    let secrets: Vec<&str> = [KEY, WRONG_KEY].into_iter().chain(MEMORIES).collect();
    let replies_may_hold_text = |label: &str| label.ends_with("reply");
    for (label, text) in &out.0 {
        for s in &secrets {
            let is_key = *s == KEY || *s == WRONG_KEY;
            if !is_key && replies_may_hold_text(label) {
                continue;
            }
            assert!(!text.contains(s), "{label} holds {s:?}:\n{text}");
        }
    }
    let (mut files_read, mut bytes_read, mut db_holds_text) = (0, 0, false);
    let contains = |hay: &[u8], s: &str| hay.windows(s.len()).any(|w| w == s.as_bytes());
    for f in files_below(sb.root()) {
        let bytes = std::fs::read(&f).expect("read a file");
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_db = name.starts_with("queue.db");
        for s in &secrets {
            let is_key = *s == KEY || *s == WRONG_KEY;
            if is_db && !is_key {
                // The control: the search does find a text where it is.
                db_holds_text |= contains(&bytes, s);
                continue;
            }
            assert!(!contains(&bytes, s), "{} holds {s:?}", f.display());
        }
        files_read += 1;
        bytes_read += bytes.len();
    }
    assert!(
        db_holds_text,
        "the search finds the memories in the database"
    );
    let log = std::fs::read_to_string(&log_path).expect("the worker log");
    // The logs are not empty talk: they name the entries and the refusals.
    for id in &acked {
        assert!(log.contains(id.as_str()), "the log names entry {id}");
    }
    assert!(log.contains("401"), "the log has the refusals:\n{log}");
    let output_bytes: usize = out.0.iter().map(|(_, t)| t.len()).sum();
    println!(
        "R7 secrets: {} outputs ({output_bytes} B) and {files_read} files ({bytes_read} B) searched \
         for 2 keys and {} memory texts: none found; {} data-dir paths private; {}",
        out.0.len(),
        MEMORIES.len(),
        checked.len(),
        report.summary()
    );
}

#[test]
fn r7_a_policy_run_by_the_binary_sees_no_file_no_env_and_no_network() {
    let snoop = policy::hostile("snoop");
    let sb = Sandbox::new(bin!());
    let out = sb
        .command(&["status", "--json"])
        .env("MEM0_QUEUE_POLICY", &snoop)
        .env("MEM0_API_KEY", KEY)
        .stdin(Stdio::null())
        .output()
        .expect("run status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let message = v
        .to_string()
        .split("read_dir_root=")
        .nth(1)
        .map(|rest| format!("read_dir_root={}", rest.split('"').next().unwrap_or("")))
        .unwrap_or_else(|| panic!("no snoop alert in {v:#}"));
    policy::assert_snoop_found_nothing(&message);
    assert!(!stdout.contains(KEY), "the key leaked through the policy");
    println!("R7 policy sandbox: {message}");
}
