//! The delivery-worker tests' and benchmark's support.
//!
//! - [`Harness`]: a [`Worker`] built in-process over a temp data dir, the test
//!   Mem0 server's URL, the embedded default policy and (by default) a
//!   [`VirtualClock`], so backoff waits cost no real time.
//! - Helpers to enqueue entries, check the end state of the queue against
//!   the server (raw rows: [`crate::db::rows`]), and run the real binary
//!   against a sandbox's data dir.
//!
//! Every wait here is bounded in count and time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mem0_queue::engine::clock::{Clock, SystemClock, VirtualClock};
use mem0_queue::engine::config::{ApiKind, Config};
use mem0_queue::engine::mem0::Client;
use mem0_queue::engine::policy::{PolicyHandle, PolicySource};
use mem0_queue::engine::store::{SharedStore, State, Store};
use mem0_queue::engine::worker::log::WorkerLog;
use mem0_queue::engine::worker::{self, RunReport, Settings, Worker};
use tokio::sync::watch;

use crate::db::{self, Row};
use crate::mem0_server::{Kind, Mem0Server, RequestRecord, ServerOptions};
use crate::sandbox::{Sandbox, TempDir, clean_command};
/// Both API kinds, for the scenarios that run against each.
pub const KINDS: [Kind; 2] = [Kind::Oss, Kind::Platform];

/// The `created_at` given to enqueued entries: a fixed past instant with a
/// non-zero millisecond part, so the time preserved on the server can be
/// checked exactly (platform `timestamp` in seconds, oss `metadata.created_at`).
pub const CREATED_AT_MS: i64 = 1_700_000_000_123;

/// `CREATED_AT_MS` as the OSS body carries it.
pub const CREATED_AT_RFC3339: &str = "2023-11-14T22:13:20.123Z";

/// The project (Mem0 `user_id`) of enqueued entries.
pub const PROJECT: &str = "worker-tests";

/// The whole-request timeout of an add in the in-process tests: short, so a
/// hang fault resolves in a fraction of a second of real time.
pub const ADD_TIMEOUT: Duration = Duration::from_millis(300);

/// The connect timeout of the in-process tests. Loopback connects are
/// refused or made at once; this only bounds the unexpected.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest one in-process run may take in real time before the test
/// calls it stuck.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

pub fn api_kind(kind: Kind) -> ApiKind {
    match kind {
        Kind::Oss => ApiKind::Oss,
        Kind::Platform => ApiKind::Platform,
    }
}

/// Starts a test server of this kind.
pub async fn server(kind: Kind, api_key: Option<&str>, seed: u64) -> Mem0Server {
    Mem0Server::start(ServerOptions {
        kind,
        api_key: api_key.map(str::to_string),
        seed,
    })
    .await
}

/// How a [`Harness`] is built.
#[derive(Clone, Debug)]
pub struct Options {
    pub kind: Kind,
    /// The key the server wants (`None`: no auth).
    pub server_key: Option<String>,
    /// The key the client sends.
    pub client_key: Option<String>,
    pub concurrency: usize,
    pub connect_timeout: Duration,
    pub add_timeout: Duration,
    /// Use the system clock instead of a virtual one (the benchmark).
    pub real_clock: bool,
    /// The fault mix's seed.
    pub seed: u64,
}

impl Options {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            server_key: None,
            client_key: None,
            concurrency: 4,
            connect_timeout: CONNECT_TIMEOUT,
            add_timeout: ADD_TIMEOUT,
            real_clock: false,
            seed: 42,
        }
    }
}

/// A worker over a temp data dir and a test server.
pub struct Harness {
    pub dir: TempDir,
    pub server: Mem0Server,
    pub store: SharedStore,
    /// The virtual clock (also present, unused, when `real_clock` is set).
    pub vclock: Arc<VirtualClock>,
    pub clock: Arc<dyn Clock>,
    pub policy: PolicyHandle,
    pub config: Config,
    pub settings: Settings,
    pub log: Arc<WorkerLog>,
}

impl Harness {
    pub async fn start(opts: Options) -> Self {
        let server = server(opts.kind, opts.server_key.as_deref(), opts.seed).await;
        Self::with_server(opts, server, None)
    }

    /// A harness over an existing server; `url` overrides the server's URL
    /// (the blackhole benchmark points the client elsewhere).
    pub fn with_server(opts: Options, server: Mem0Server, url: Option<String>) -> Self {
        let dir = TempDir::new("worker");
        let store = Store::open(&dir.path().join("queue.db")).expect("open the queue");
        let config = Config {
            api_url: Some(url.unwrap_or_else(|| server.url())),
            api_kind: api_kind(opts.kind),
            api_key: opts.client_key.clone(),
            connect_timeout: opts.connect_timeout,
            add_timeout: opts.add_timeout,
            search_timeout: Duration::from_secs(2),
            concurrency: opts.concurrency,
            ..Config::default()
        };
        let mut settings = Settings::from_config(&config);
        // Platform events are polled on the (virtual) clock; give them room.
        settings.event_wait = Duration::from_secs(30);
        let vclock = Arc::new(VirtualClock::new(mem0_queue::engine::clock::now_ms()));
        let clock: Arc<dyn Clock> = if opts.real_clock {
            Arc::new(SystemClock)
        } else {
            vclock.clone()
        };
        let policy =
            PolicyHandle::start(PolicySource::Embedded, None).expect("the embedded policy loads");
        let log = Arc::new(WorkerLog::new(dir.path().join("mem0_worker.log"), 16 << 20));
        Self {
            dir,
            server,
            store: SharedStore::new(store),
            vclock,
            clock,
            policy,
            config,
            settings,
            log,
        }
    }

    /// The virtual clock's time, unix ms.
    pub fn now(&self) -> i64 {
        self.vclock.now_ms()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("queue.db")
    }

    /// A fresh worker (its own owner id, a seeded RNG) over this harness.
    pub fn worker(&self) -> Worker {
        Worker {
            store: self.store.clone(),
            client: Client::from_config(&self.config).expect("a client for the test server"),
            policy: self.policy.clone(),
            clock: self.clock.clone(),
            rng: Mutex::new(fastrand::Rng::with_seed(7)),
            settings: self.settings.clone(),
            log: self.log.clone(),
            owner: worker::owner_id(),
        }
    }

    /// One worker run, bounded by [`RUN_LIMIT`].
    pub async fn run(&self) -> RunReport {
        let (_tx, rx) = watch::channel(false);
        let w = self.worker();
        tokio::time::timeout(RUN_LIMIT, w.run(rx))
            .await
            .expect("a worker run ended within its real-time limit")
            .expect("a worker run succeeded")
    }

    /// Enqueues `n` distinct entries; returns their ids in order.
    pub async fn enqueue(&self, n: usize) -> Vec<String> {
        self.store
            .run(move |s| Ok(enqueue_into(s, n, "memory")))
            .await
            .expect("enqueue")
    }

    /// The worker log's text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mem0_worker.log")).unwrap_or_default()
    }

    pub fn rows(&self) -> HashMap<String, Row> {
        db::rows(&self.db_path())
    }

    pub fn row(&self, id: &str) -> Row {
        self.rows().remove(id).expect("the entry is in the queue")
    }

    pub async fn stats(&self) -> mem0_queue::engine::store::Stats {
        self.store.run(|s| s.stats()).await.expect("stats")
    }
}

/// Enqueues `n` distinct entries (`<prefix> number i`) with `created_at` =
/// [`CREATED_AT_MS`] and metadata `{"n": i}`.
pub fn enqueue_into(store: &mut Store, n: usize, prefix: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let e = db::add(
                store,
                db::entry(
                    PROJECT,
                    format!("{prefix} number {i}: the user prefers tabs"),
                    serde_json::json!({"n": i}),
                    CREATED_AT_MS,
                ),
            );
            assert!(!e.deduplicated, "entries are distinct");
            e.id
        })
        .collect()
}

/// Opens the queue of a data dir and enqueues `n` entries into it.
pub fn enqueue_in_dir(data_dir: &Path, n: usize) -> Vec<String> {
    std::fs::create_dir_all(data_dir).expect("create the data dir");
    let mut store = Store::open(&data_dir.join("queue.db")).expect("open the queue");
    enqueue_into(&mut store, n, "memory")
}

/// Add requests (either kind's add route) the server received.
pub fn add_requests(server: &Mem0Server) -> Vec<RequestRecord> {
    server
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && matches!(
                    r.path.as_str(),
                    "/memories" | "/v3/memories/add/" | "/v1/memories/"
                )
        })
        .collect()
}

/// Every id is delivered in the DB and exactly once on the server, or dead
/// in the DB (and never stored); the server holds nothing else; and the
/// [checker](crate::checker) counts nothing lost, duplicated or unexpected.
/// Returns (delivered, dead).
pub fn assert_exactly_once_or_dead(
    server: &Mem0Server,
    db: &Path,
    ids: &[String],
) -> (usize, usize) {
    let rows = db::rows(db);
    let counts = server.count_by_mq_id();
    let (mut delivered, mut dead) = (0, 0);
    for id in ids {
        let row = rows
            .get(id)
            .unwrap_or_else(|| panic!("entry {id} was lost from the queue"));
        let on_server = counts.get(id).copied().unwrap_or(0);
        match row.state {
            State::Delivered => {
                assert_eq!(
                    on_server, 1,
                    "entry {id} is delivered and stored {on_server} times"
                );
                delivered += 1;
            }
            State::Dead => {
                assert_eq!(on_server, 0, "dead entry {id} is stored {on_server} times");
                assert!(row.dead_reason.is_some(), "dead entry {id} has a reason");
                dead += 1;
            }
            other => panic!("entry {id} ended {other:?}: neither delivered nor dead"),
        }
    }
    let known: std::collections::HashSet<&String> = ids.iter().collect();
    for m in server.stored() {
        let mq_id = m
            .metadata
            .get("mq_id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        assert!(
            mq_id.as_ref().is_some_and(|id| known.contains(id)),
            "the server holds an unexpected memory: {m:?}"
        );
        assert_eq!(m.user_id.as_deref(), Some(PROJECT));
    }
    assert_eq!(
        server.stored().len(),
        delivered,
        "one stored memory per delivered entry"
    );
    let acknowledged = ids.iter().cloned().collect();
    let report = crate::checker::check(&acknowledged, db, &counts);
    assert!(report.ok(), "the checker: {}", report.summary());
    (delivered, dead)
}

/// A `mem0-queue` command over the sandbox's data dir, with a clean
/// environment: HOME in the sandbox, no config file, no PATH, the Mem0 URL
/// and kind given (when `url` is set).
pub fn command(
    sb: &Sandbox,
    url: Option<&str>,
    kind: Kind,
    args: &[&str],
) -> tokio::process::Command {
    let mut c = clean_command(sb.bin(), &sb.home(), None);
    c.env("MEM0_QUEUE_LOG", "warn")
        .env(
            "MEM0_API_KIND",
            match kind {
                Kind::Oss => "oss",
                Kind::Platform => "platform",
            },
        )
        .arg("--data-dir")
        .arg(sb.data_dir())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(u) = url {
        c.env("MEM0_API_URL", u);
    }
    let mut c = tokio::process::Command::from(c);
    c.kill_on_drop(true);
    c
}

/// Runs a command to its end (bounded) and returns (exit code, stderr).
pub async fn run_to_end(mut cmd: tokio::process::Command) -> (Option<i32>, String) {
    let child = cmd.spawn().expect("spawn mem0-queue");
    let out = tokio::time::timeout(crate::wait::PROCESS_LIMIT, child.wait_with_output())
        .await
        .expect("mem0-queue exited within its limit")
        .expect("collect mem0-queue's output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `mem0-queue sync` on the sandbox, run to its end (bounded): (exit code,
/// stderr).
pub async fn sync(sb: &Sandbox, url: Option<&str>, kind: Kind) -> (Option<i32>, String) {
    run_to_end(command(sb, url, kind, &["sync"])).await
}

/// Sends SIGTERM to a process.
pub fn sigterm(pid: u32) {
    // SAFETY: kill(2) with a pid this test spawned and has not reaped; it
    // touches no memory.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM sent");
}
