//! The daemon delivers what any process saves (issue 16): with a daemon
//! running and two `serve` windows open, a save through either window and
//! one through the CLI (`import`) reach the test Mem0 server within a few
//! seconds, delivered by the daemon alone: the windows log that they leave
//! delivery to it, and every worker run that delivered something was the
//! daemon's (the worker log's lease owners carry the pid). Its own saves
//! over HTTP too. After the daemon is killed with SIGKILL, a window
//! delivers its next save itself, and logs that it took over.

use std::time::{Duration, Instant};

use mem0_queue_testkit::bin;
use mem0_queue_testkit::daemon::{Daemon, HttpMcp, delivering_pids};
use mem0_queue_testkit::mcp::{Server, structured};
use mem0_queue_testkit::mem0_server::{Kind, Mem0Server};
use mem0_queue_testkit::sandbox::Sandbox;
use mem0_queue_testkit::wait::until_async;
use mem0_queue_testkit::worker::server;
use serde_json::json;

/// The longest a save may wait for its delivery: the daemon looks every
/// second; the rest is margin for a loaded CI machine.
const DELIVERY_BOUND: Duration = Duration::from_secs(15);

fn log(sb: &Sandbox) -> String {
    std::fs::read_to_string(sb.data_dir().join("mem0_worker.log")).unwrap_or_default()
}

/// Waits for the entry `id` on the server; returns how long it took.
async fn delivered(srv: &Mem0Server, id: &str) -> Duration {
    let t = Instant::now();
    let ok = until_async(DELIVERY_BOUND, || srv.count_by_mq_id().contains_key(id)).await;
    assert!(ok, "{id} was not delivered within {DELIVERY_BOUND:?}");
    t.elapsed()
}

async fn window(sb: &Sandbox, url: &str) -> Server {
    let mut c = sb.command(&["serve"]);
    c.env("MEM0_API_URL", url);
    Server::start(c).await
}

async fn save(w: &Server, content: &str) -> String {
    let r = w
        .save(json!({"content": content, "project": "daemon"}))
        .await;
    structured(&r)["id"]
        .as_str()
        .unwrap_or_else(|| panic!("queued: {r:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_alone_delivers_every_save_and_a_window_takes_over_when_it_dies() {
    let sb = Sandbox::new(bin!());
    let srv = server(Kind::Oss, None, 16).await;
    let url = srv.url();
    let d = Daemon::delivering_to(&sb, &url, &[]).await;

    let w1 = window(&sb, &url).await;
    let w2 = window(&sb, &url).await;
    let mut took = Vec::new();
    for (i, w) in [&w1, &w2].into_iter().enumerate() {
        let id = save(
            w,
            &format!("saved through window {i}, delivered by the daemon"),
        )
        .await;
        took.push(delivered(&srv, &id).await);
    }

    // The CLI: an import of the seed's JSON queue.
    let seed = sb.file(
        "seed.json",
        json!({"queue": [{"content": "imported by the CLI, delivered by the daemon",
                          "project": "daemon", "timestamp": "2025-11-29T10:00:00"}]})
        .to_string()
        .as_bytes(),
    );
    let mut imp = sb.command(&["import", &seed.display().to_string()]);
    imp.env("MEM0_API_URL", &url);
    let out = tokio::task::spawn_blocking(move || {
        mem0_queue_testkit::wait::run(imp, mem0_queue_testkit::wait::PROCESS_LIMIT)
    })
    .await
    .expect("import");
    assert!(out.status.success(), "{out:?}");
    let imported: String = rusqlite::Connection::open(sb.db())
        .expect("open")
        .query_row(
            "SELECT id FROM entries WHERE content LIKE 'imported by the CLI%'",
            [],
            |r| r.get(0),
        )
        .expect("the imported entry");
    took.push(delivered(&srv, &imported).await);

    // The daemon's own save, over HTTP.
    let http = HttpMcp::connect(&d.url, &d.token).await.expect("connect");
    let id = http
        .save(json!({"content": "saved over HTTP, delivered at once", "project": "daemon"}))
        .await
        .expect("saved");
    took.push(delivered(&srv, &id).await);
    http.close().await;

    // A run logs its line once its bookkeeping is done, after the server
    // has the memory: wait for the four deliveries to be logged.
    let logged = until_async(DELIVERY_BOUND, || {
        delivering_pids(&log(&sb))
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
            == 4
    })
    .await;
    let text = log(&sb);
    assert!(logged, "four deliveries logged:\n{text}");
    for w in [&w1, &w2] {
        assert!(
            text.contains(&format!(
                "serve pid {}: the daemon (pid {}) delivers; this window leaves delivery to it",
                w.pid, d.pid
            )),
            "{text}"
        );
    }
    let deliverers = delivering_pids(&text);
    assert!(!deliverers.is_empty(), "{text}");
    assert!(
        deliverers.iter().all(|(pid, _)| *pid == d.pid),
        "only the daemon (pid {}) delivered: {deliverers:?}\n{text}",
        d.pid
    );
    assert_eq!(srv.stored().len(), 4, "each save once");
    println!("save to delivery with the daemon: {took:?}");

    // The daemon dies; the next save is delivered by its window.
    let daemon_pid = d.pid;
    tokio::task::spawn_blocking(move || d.kill9())
        .await
        .expect("kill the daemon");
    let id = save(&w1, "saved after the daemon died: the window delivers").await;
    delivered(&srv, &id).await;
    let by_window = until_async(DELIVERY_BOUND, || {
        delivering_pids(&log(&sb))
            .iter()
            .any(|(pid, _)| *pid == w1.pid || *pid == w2.pid)
    })
    .await;
    let text = log(&sb);
    assert!(
        by_window,
        "a window delivered after the daemon ({daemon_pid}) died:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "serve pid {}: no daemon runs any more; this window delivers",
            w1.pid
        )),
        "{text}"
    );
    assert_eq!(srv.stored().len(), 5);
    w1.stop().await;
    w2.stop().await;
}
