//! The lifecycle tools (`mem0_get`, `mem0_list`, `mem0_update`,
//! `mem0_delete`, `mem0_forget`, `mem0_entities`) through the real binary
//! and a real MCP client, against the Mem0 test server of both kinds:
//! changes are durable at once, applied locally while a memory was never
//! sent, delivered in order once it was, and shown at once by every read.

use mem0_queue_testkit::mem0_server::{Kind, Mem0Server};
use mem0_queue_testkit::worker::server;
use mem0_queue_testkit::{
    bin,
    mcp::{Server, is_error, structured, text},
    sandbox::Sandbox,
};
use serde_json::{Value, json};

const KINDS: [Kind; 2] = [Kind::Oss, Kind::Platform];

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Oss => "oss",
        Kind::Platform => "platform",
    }
}

/// `serve` against `srv` with no background delivery (each test runs
/// `sync` itself, so what reached the server when is known): its loop is
/// held by the breaker's next-probe time, set a day ahead, as after an
/// outage. Its reads (get, list, entities) still ask the server.
async fn serve(sb: &Sandbox, srv: &Mem0Server, kind: Kind) -> Server {
    let mut store = mem0_queue_testkit::db::store(&sb.data_dir());
    let tomorrow = mem0_queue::engine::clock::now_ms() + 86_400_000;
    store
        .meta_set("breaker_open_until", &tomorrow.to_string())
        .expect("hold the serve loop");
    drop(store);
    let mut cmd = sb.command(&["serve"]);
    cmd.env("MEM0_API_URL", srv.url())
        .env("MEM0_API_KIND", kind_name(kind))
        .env("MEM0_QUEUE_INFER", "false")
        .env("MEM0_QUEUE_SYNC_INTERVAL", "24h");
    Server::start(cmd).await
}

async fn deliver(sb: &Sandbox, srv: &Mem0Server, kind: Kind) {
    let mut cmd = sb.command(&["sync"]);
    cmd.env("MEM0_API_URL", srv.url())
        .env("MEM0_API_KIND", kind_name(kind))
        .env("MEM0_QUEUE_INFER", "false");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("sync runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{kind:?}: sync drains: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn save(s: &Server, content: &str, project: &str) -> String {
    let r = s
        .save(json!({"content": content, "project": project}))
        .await;
    structured(&r)["id"].as_str().expect("id").to_string()
}

fn live_texts(srv: &Mem0Server) -> Vec<String> {
    let mut t: Vec<String> = srv
        .stored()
        .into_iter()
        .filter(|m| !m.deleted)
        .map(|m| m.memory)
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_never_sent_is_corrected_or_cancelled_locally() {
    for kind in KINDS {
        let srv = server(kind, None, 1).await;
        let sb = Sandbox::new(bin!());
        let s = serve(&sb, &srv, kind).await;
        let id = save(&s, "the staging db listens on 5432", "ops").await;

        let up = s
            .call(
                "mem0_update",
                json!({"id": id, "text": "the staging db listens on 5433"}),
            )
            .await;
        assert!(!is_error(&up), "{kind:?}: {}", text(&up));
        assert_eq!(structured(&up)["change"]["outcome"], "applied_locally");
        let got = structured(&s.call("mem0_get", json!({"id": id})).await);
        assert_eq!(got["memory"]["memory"], "the staging db listens on 5433");
        assert_eq!(got["memory"]["state"], "pending");
        assert_eq!(got["memory"]["source"], "local");

        let other = save(&s, "temporary note", "ops").await;
        let del = s.call("mem0_delete", json!({"id": other})).await;
        assert_eq!(structured(&del)["change"]["outcome"], "applied_locally");
        let gone = s.call("mem0_get", json!({"id": other})).await;
        assert!(is_error(&gone), "{kind:?}: deleted: {}", text(&gone));
        s.stop().await;

        deliver(&sb, &srv, kind).await;
        assert_eq!(
            live_texts(&srv),
            ["the staging db listens on 5433"],
            "{kind:?}: only the corrected text was ever sent"
        );
        assert_eq!(
            srv.stored().len(),
            1,
            "{kind:?}: the cancelled save never went"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_a_delivered_memory_reach_mem0_in_order_and_show_at_once() {
    for kind in KINDS {
        let srv = server(kind, None, 2).await;
        let sb = Sandbox::new(bin!());
        let s = serve(&sb, &srv, kind).await;
        let id = save(&s, "deploys happen on fridays", "ops").await;
        let keep = save(&s, "backups run at 02:00", "ops").await;
        s.stop().await;
        deliver(&sb, &srv, kind).await;
        let mem0_id = srv
            .stored()
            .into_iter()
            .find(|m| m.metadata["mq_id"] == id.as_str())
            .expect("stored")
            .id;

        let s = serve(&sb, &srv, kind).await;
        let up = s
            .call(
                "mem0_update",
                json!({"id": id, "text": "deploys never happen on fridays", "metadata": {"tags": ["rule"]}}),
            )
            .await;
        assert!(!is_error(&up), "{kind:?}: {}", text(&up));
        assert_eq!(structured(&up)["change"]["remote_ids"], json!([mem0_id]));
        // Read-your-writes, by either id, while the server still has the old text.
        for key in [&id, &mem0_id] {
            let got = structured(&s.call("mem0_get", json!({"id": key})).await);
            assert_eq!(
                got["memory"]["memory"], "deploys never happen on fridays",
                "{kind:?}"
            );
            assert_eq!(got["memory"]["edit_queued"], true, "{kind:?}");
        }
        let list = structured(&s.call("mem0_list", json!({"project": "ops"})).await);
        assert_eq!(list["total"], 2, "{kind:?}: one row per memory: {list}");
        assert!(
            list["memories"]
                .as_array()
                .expect("rows")
                .iter()
                .any(|m| m["memory"] == "deploys never happen on fridays"),
            "{kind:?}: {list}"
        );
        let on_server = |id: &str| {
            srv.stored()
                .into_iter()
                .find(|m| m.id == id)
                .expect("on the server")
        };
        assert_eq!(
            on_server(&mem0_id).memory,
            "deploys happen on fridays",
            "{kind:?}: nothing sent yet"
        );

        let del = s.call("mem0_delete", json!({"id": id})).await;
        assert!(!is_error(&del), "{kind:?}: {}", text(&del));
        let list = structured(&s.call("mem0_list", json!({"project": "ops"})).await);
        assert_eq!(list["total"], 1, "{kind:?}: hidden at once: {list}");
        assert_eq!(list["memories"][0]["id"], keep.as_str());
        s.stop().await;

        deliver(&sb, &srv, kind).await;
        assert_eq!(live_texts(&srv), ["backups run at 02:00"], "{kind:?}");
        // The update reached the server before the delete.
        let kinds: Vec<String> = srv
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT" || r.method == "DELETE")
            .map(|r| r.method)
            .collect();
        assert_eq!(kinds, ["PUT", "DELETE"], "{kind:?}");
        let stored = srv
            .stored()
            .into_iter()
            .find(|m| m.id == mem0_id)
            .expect("kept, deleted");
        assert!(stored.deleted);
        assert_eq!(stored.memory, "deploys never happen on fridays");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_needs_its_confirm_says_what_it_removes_and_spares_later_saves() {
    for kind in KINDS {
        let srv = server(kind, None, 3).await;
        let sb = Sandbox::new(bin!());
        let s = serve(&sb, &srv, kind).await;
        for t in ["a first fact", "a second fact"] {
            save(&s, t, "scratch").await;
        }
        save(&s, "another project's fact", "keep").await;
        s.stop().await;
        deliver(&sb, &srv, kind).await;

        let s = serve(&sb, &srv, kind).await;
        let pending = save(&s, "a third fact, never sent", "scratch").await;
        let refused = s.call("mem0_forget", json!({"project": "scratch"})).await;
        assert!(is_error(&refused), "{kind:?}: {}", text(&refused));
        let t = text(&refused);
        assert!(
            t.contains("NOT CHANGED")
                && t.contains("1 saves never sent")
                && t.contains("2 delivered")
                && t.contains("2 memories on the Mem0 server"),
            "{kind:?}: {t}"
        );
        let wrong = s
            .call(
                "mem0_forget",
                json!({"project": "scratch", "confirm": "keep"}),
            )
            .await;
        assert!(is_error(&wrong));
        let done = s
            .call(
                "mem0_forget",
                json!({"project": "scratch", "confirm": "scratch"}),
            )
            .await;
        assert!(!is_error(&done), "{kind:?}: {}", text(&done));
        let list = structured(&s.call("mem0_list", json!({"project": "scratch"})).await);
        assert_eq!(list["total"], 0, "{kind:?}: {list}");
        assert!(is_error(&s.call("mem0_get", json!({"id": pending})).await));
        let after = save(&s, "a fact saved after the forget", "scratch").await;
        s.stop().await;

        deliver(&sb, &srv, kind).await;
        assert_eq!(
            live_texts(&srv),
            ["a fact saved after the forget", "another project's fact"],
            "{kind:?}"
        );
        let _ = after;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_entities_merge_the_server_and_the_local_copy() {
    let kind = Kind::Oss;
    let srv = server(kind, None, 4).await;
    let sb = Sandbox::new(bin!());
    let s = serve(&sb, &srv, kind).await;
    save(&s, "saved and delivered", "ops").await;
    s.stop().await;
    deliver(&sb, &srv, kind).await;
    // A memory another tool saved straight to Mem0.
    let resp = reqwest_add(&srv, "saved by another tool", "ops").await;
    assert_eq!(resp, 200);

    let s = serve(&sb, &srv, kind).await;
    save(&s, "saved, not sent yet", "ops").await;
    let list = structured(&s.call("mem0_list", json!({"project": "ops"})).await);
    assert_eq!(list["total"], 3, "{list}");
    let rows: Vec<(String, String)> = list["memories"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|m| {
            (
                m["memory"].as_str().unwrap_or("").to_string(),
                m["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for want in [
        ("saved and delivered", "delivered"),
        ("saved by another tool", "delivered"),
        ("saved, not sent yet", "pending"),
    ] {
        assert!(
            rows.iter().any(|(m, st)| m == want.0 && st == want.1),
            "{want:?} in {rows:?}"
        );
    }
    let page = structured(
        &s.call(
            "mem0_list",
            json!({"project": "ops", "page": 2, "page_size": 2}),
        )
        .await,
    );
    assert_eq!(page["memories"].as_array().map(Vec::len), Some(1), "{page}");
    let ents = structured(&s.call("mem0_entities", json!({})).await);
    let ops = ents["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .find(|e| e["type"] == "user" && e["id"] == "ops")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(ops["local_memories"], 2, "{ents}");
    assert_eq!(ops["on_server"], true, "{ents}");
    s.stop().await;
}

/// Adds a memory straight to the test server, as another tool would.
async fn reqwest_add(srv: &Mem0Server, text: &str, user: &str) -> u16 {
    let body =
        json!({"messages": [{"role": "user", "content": text}], "user_id": user, "infer": false});
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import json,sys,urllib.request as u\n\
             r=u.Request(sys.argv[1]+'/memories',data=sys.argv[2].encode(),headers={'Content-Type':'application/json'})\n\
             print(u.urlopen(r).status)",
        )
        .arg(srv.url())
        .arg(body.to_string())
        .output()
        .await
        .expect("python3 runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changes_are_refused_plainly_and_write_nothing() {
    let kind = Kind::Oss;
    let srv = server(kind, None, 5).await;
    let sb = Sandbox::new(bin!());
    let s = serve(&sb, &srv, kind).await;
    let id = save(&s, "a fact", "ops").await;
    let big = "x".repeat(70 * 1024);
    for (tool, args) in [
        ("mem0_update", json!({"id": id})),
        ("mem0_update", json!({"id": id, "text": "   "})),
        ("mem0_update", json!({"id": id, "text": big})),
        ("mem0_update", json!({"id": "not-an-id", "text": "y"})),
        (
            "mem0_update",
            json!({"id": id, "text": "y", "colour": "red"}),
        ),
        (
            "mem0_update",
            json!({"id": id, "metadata": {"entities": "not a list"}}),
        ),
        // A well-formed id that neither the local copy nor the server has.
        (
            "mem0_delete",
            json!({"id": "0190c0de-0000-7000-8000-00000000dead"}),
        ),
        (
            "mem0_update",
            json!({"id": "0190c0de-0000-7000-8000-00000000dead", "text": "z"}),
        ),
        ("mem0_delete", json!({})),
        ("mem0_forget", json!({"project": "ops"})),
        ("mem0_forget", json!({"project": "ops", "confirm": "OPS"})),
        ("mem0_get", json!({"id": "nope"})),
    ] {
        let r = s.call(tool, args.clone()).await;
        assert!(is_error(&r), "{tool} {args}: {}", text(&r));
    }
    let got = structured(&s.call("mem0_get", json!({"id": id})).await);
    assert_eq!(got["memory"]["memory"], "a fact");
    let status = structured(&s.call("mem0_queue_status", json!({})).await);
    assert_eq!(status["counts"]["pending"], 1, "only the save: {status}");
    s.stop().await;
}
