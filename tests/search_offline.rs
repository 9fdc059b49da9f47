//! `mem0_search`: read-your-writes, offline answers, and a merge without
//! duplicates, through the real binary and a real MCP client, against the
//! test Mem0 server.

use mem0_queue_testkit::mem0_server::{Fault, FaultPlan, Kind, Mem0Server, ServerOptions};
use mem0_queue_testkit::{
    bin,
    mcp::{Server, structured, text},
    sandbox::Sandbox,
};
use serde_json::{Value, json};

async fn mem0(kind: Kind) -> Mem0Server {
    Mem0Server::start(ServerOptions {
        kind,
        api_key: None,
        seed: 7,
    })
    .await
}

async fn serve(sb: &Sandbox, url: Option<&str>) -> Server {
    let mut cmd = sb.command(&["serve"]);
    if let Some(url) = url {
        cmd.env("MEM0_API_URL", url);
    }
    // No background runs between saves unless nudged.
    cmd.env("MEM0_QUEUE_SYNC_INTERVAL", "1h");
    Server::start(cmd).await
}

fn sources(v: &Value) -> Vec<(String, String)> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| {
            (
                h["source"].as_str().unwrap_or("").to_string(),
                h["memory"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_is_found_at_once_before_any_delivery() {
    let sb = Sandbox::new(bin!());
    let server = serve(&sb, None).await;
    let saved = server
        .save(json!({"content": "the staging database lives on port 5433", "project": "ops"}))
        .await;
    let id = structured(&saved)["id"].as_str().expect("id").to_string();
    let found = server
        .call(
            "mem0_search",
            json!({"query": "staging database port", "project": "ops"}),
        )
        .await;
    let v = structured(&found);
    assert_eq!(v["results"][0]["mq_id"], id.as_str());
    assert_eq!(v["results"][0]["source"], "pending");
    assert!(v["results"][0]["score"].as_f64().expect("score") > 0.0);
    assert_eq!(v["local_only"], true, "no server is configured");
    assert!(text(&found).contains("LOCAL ONLY"), "{}", text(&found));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_down_search_answers_locally_and_says_so() {
    let sb = Sandbox::new(bin!());
    let m = mem0(Kind::Oss).await;
    let url = m.url();
    // Deliver one memory while the server is up.
    let server = serve(&sb, Some(&url)).await;
    server
        .save(json!({"content": "backups run nightly at 02:00", "project": "ops"}))
        .await;
    server.stop().await;
    let status = sb
        .command(&["sync"])
        .env("MEM0_API_URL", &url)
        .status()
        .expect("sync");
    assert!(status.success());
    assert_eq!(m.stored().len(), 1);
    m.go_down().await;

    let server = serve(&sb, Some(&url)).await;
    server
        .save(json!({"content": "backups are kept 30 days", "project": "ops"}))
        .await;
    let found = server
        .call("mem0_search", json!({"query": "backups", "project": "ops"}))
        .await;
    let v = structured(&found);
    assert_eq!(v["local_only"], true);
    assert!(text(&found).contains("LOCAL ONLY"));
    let mut got = sources(&v);
    got.sort();
    assert_eq!(
        got,
        [
            (
                "local".to_string(),
                "backups run nightly at 02:00".to_string()
            ),
            (
                "pending".to_string(),
                "backups are kept 30 days".to_string()
            ),
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_up_results_merge_without_duplicates() {
    for kind in [Kind::Oss, Kind::Platform] {
        let sb = Sandbox::new(bin!());
        let m = mem0(kind).await;
        let url = m.url();
        let kind_name = if kind == Kind::Oss { "oss" } else { "platform" };
        let server = serve(&sb, None).await;
        for t in ["deploys go through rsync", "rsync needs the -z flag"] {
            server.save(json!({"content": t, "project": "ops"})).await;
        }
        server.stop().await;
        let status = sb
            .command(&["sync"])
            .env("MEM0_API_URL", &url)
            .env("MEM0_API_KIND", kind_name)
            .env("MEM0_QUEUE_INFER", "false")
            .status()
            .expect("sync");
        assert!(status.success(), "{kind_name}");
        assert_eq!(m.stored().len(), 2, "{kind_name}");

        // A third memory stays pending: the server hangs on adds.
        m.set_faults(FaultPlan::script([Some(Fault::Hang)]));
        let mut cmd = sb.command(&["serve"]);
        cmd.env("MEM0_API_URL", &url)
            .env("MEM0_API_KIND", kind_name)
            .env("MEM0_QUEUE_SYNC_INTERVAL", "1h")
            .env("MEM0_QUEUE_ADD_TIMEOUT", "30s");
        let server = Server::start(cmd).await;
        server
            .save(json!({"content": "rsync over ssh only", "project": "ops"}))
            .await;
        let found = server
            .call(
                "mem0_search",
                json!({"query": "rsync", "project": "ops", "limit": 10}),
            )
            .await;
        let v = structured(&found);
        assert_eq!(v["local_only"], false, "{kind_name}: {v}");
        let mut got = sources(&v);
        got.sort();
        assert_eq!(
            got,
            [
                ("pending".to_string(), "rsync over ssh only".to_string()),
                ("remote".to_string(), "deploys go through rsync".to_string()),
                ("remote".to_string(), "rsync needs the -z flag".to_string()),
            ],
            "{kind_name}"
        );
        let ids: Vec<&str> = v["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|h| h["mq_id"].as_str())
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(ids.len(), 3, "every result names its entry: {v}");
        assert_eq!(unique.len(), 3, "no entry twice: {v}");
        let _ = server.kill9().await;
    }
}

/// Saves one memory per project through `serve` and delivers them with a
/// `sync` against `url`.
async fn deliver_to_projects(sb: &Sandbox, url: &str, memories: &[(&str, &str)]) {
    let server = serve(sb, None).await;
    for (project, content) in memories {
        server
            .save(json!({"content": content, "project": project}))
            .await;
    }
    server.stop().await;
    let status = sb
        .command(&["sync"])
        .env("MEM0_API_URL", url)
        .env("MEM0_QUEUE_INFER", "false")
        .status()
        .expect("sync");
    assert!(status.success());
}

/// Regression (issue 12, "search misses delivered memories"): without a
/// project, search asked the server about the default project only and
/// added only undelivered local entries, so a delivered memory of another
/// project was found while the server was down and not while it was up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_without_a_project_finds_delivered_memories_of_every_project() {
    let sb = Sandbox::new(bin!());
    let m = mem0(Kind::Oss).await;
    let url = m.url();
    deliver_to_projects(
        &sb,
        &url,
        &[
            ("alpha", "the alpha cluster runs postgres 16"),
            ("beta", "the beta cluster runs postgres 15"),
        ],
    )
    .await;
    assert_eq!(m.stored().len(), 2);

    let server = serve(&sb, Some(&url)).await;
    let found = server
        .call("mem0_search", json!({"query": "cluster postgres"}))
        .await;
    let v = structured(&found);
    assert_eq!(v["local_only"], false, "{v}");
    let mut got: Vec<(String, String)> = v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| {
            (
                h["project"].as_str().unwrap_or("").to_string(),
                h["source"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("alpha".to_string(), "remote".to_string()),
            ("beta".to_string(), "remote".to_string())
        ],
        "both projects asked, each memory once: {v}"
    );
    let searched: Vec<String> = m
        .requests()
        .into_iter()
        .filter(|r| r.path == "/search")
        .filter_map(|r| r.body.map(|b| b["filters"]["user_id"].to_string()))
        .collect();
    assert!(
        searched.iter().any(|p| p.contains("alpha")) && searched.iter().any(|p| p.contains("beta")),
        "{searched:?}"
    );
    server.stop().await;
}

/// Regression (issue 12): search sent `threshold: 0.0`, so memories with
/// nothing in common with the query came back as results scored 0.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_shows_no_zero_score_noise() {
    let sb = Sandbox::new(bin!());
    let m = mem0(Kind::Oss).await;
    let url = m.url();
    deliver_to_projects(&sb, &url, &[("ops", "the firewall allows port 22 only")]).await;

    let server = serve(&sb, Some(&url)).await;
    let found = server
        .call(
            "mem0_search",
            json!({"query": "favourite pizza topping", "project": "ops"}),
        )
        .await;
    let v = structured(&found);
    assert_eq!(v["local_only"], false, "{v}");
    assert_eq!(v["results"], json!([]), "no noise: {v}");
    let body = m
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/search")
        .and_then(|r| r.body)
        .expect("a search request");
    assert!(
        body.get("threshold").is_none(),
        "Mem0's own threshold applies: {body}"
    );
    server.stop().await;
}
