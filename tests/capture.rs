//! Capture on the real binary: `hook session-end` with
//! `capture = "session-end"` and `hook pre-compact` with
//! `capture = "pre-compact"` queue a session's conversation once.
//!
//! - The sample transcript `tests/fixtures/hooks/transcript.jsonl` (Claude
//!   Code 2.1's format: thinking, tool calls, tool outputs, hook context,
//!   API request shapes, meta and sidechain lines, a compaction, a
//!   malformed line and a last line still being written) has fake secrets
//!   put in at run time: the queued entry's text is exactly the words of
//!   the user and the assistant, secrets redacted; its metadata, project
//!   and `infer` are checked, and the worker log holds no text.
//! - A session is captured once, whichever hook comes again.
//! - A missing, empty or truncated transcript, and one of 50 MB: exit 0,
//!   nothing on stdout, within Claude Code's SessionEnd budget, and what
//!   can be taken is (the end of the 50 MB one).
//! - With Mem0 up and `infer = false` in the config, the detached sync
//!   sends the capture with `infer = true`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mem0_queue::engine::store::State;
use mem0_queue::features::capture::entry_id;
use mem0_queue_testkit::mem0_server::Kind;
use mem0_queue_testkit::worker::server;
use mem0_queue_testkit::{bin, db, ops, sandbox::Sandbox, sandbox::workspace_root};
use serde_json::{Value, json};

/// Claude Code's budget for all SessionEnd hooks of a plugin.
const HOOK_BUDGET: Duration = Duration::from_millis(1500);

const SESSION: &str = "3fb04e1a-6a61-4166-a4eb-ac51285a0964";

/// The fake secrets put into the fixture, built from parts so that no
/// scanner takes this file for a leak. Each must be gone from the queue.
fn secrets() -> Vec<(&'static str, String)> {
    vec![
        ("{{PASSWORD}}", "correct-horse-battery".to_string()),
        (
            "{{ANTHROPIC_KEY}}",
            format!("sk-{}-api03-{}", "ant", "Zm9vYmFyYmF6cXV4cXV1eDAxMjM0NTY3"),
        ),
        (
            "{{GITHUB_TOKEN}}",
            format!("gh{}_{}", "p", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
        ),
        (
            "{{AWS_SECRET}}",
            format!("wJalrXUtnFEMI/K7MDENG/{}", "bPxRfiCYEXAMPLEKEY"),
        ),
        (
            "{{PEM}}",
            format!(
                "-----BEGIN OPENSSH {k}-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH {k}-----",
                k = "PRIVATE KEY"
            ),
        ),
        ("{{AWS_ID}}", format!("AK{}", "IAIOSFODNN7EXAMPLE")),
        (
            "{{SLACK}}",
            format!("xox{}-{}", "b", "1234567890-AbCdEfGhIj"),
        ),
    ]
}

/// The words of the sample transcript, as queued.
const EXPECTED: &str = "User: Set up the billing export for acme. The staging DB password=[redacted] and my key is [redacted].\n\n\
Assistant: I'll look at the export config first.\nThe export writes CSV files to s3://acme-exports/ every night.\n\n\
User: Here is the deploy key:\n[redacted private key]\nand the AWS id [redacted]. Keep exports in eu-west-1.\n\n\
Assistant: Noted: exports stay in eu-west-1. Use Bearer [redacted] only in CI.";

/// Markers of what must never be captured.
const NEVER: &[&str] = &[
    "MARKER",
    "THINKING",
    "cat .env",
    "toolu_",
    "This session is being continued",
    "/compact",
];

struct Home {
    sb: Sandbox,
    repo: PathBuf,
}

impl Home {
    fn new() -> Self {
        let sb = Sandbox::new(bin!());
        let repo = sb.root().join("code/acme");
        std::fs::create_dir_all(repo.join(".git")).expect("mkdir repo");
        Self { sb, repo }
    }

    /// The sample transcript with the fake secrets in it.
    fn sample(&self) -> PathBuf {
        let mut text =
            std::fs::read_to_string(workspace_root().join("tests/fixtures/hooks/transcript.jsonl"))
                .expect("the fixture");
        for (k, v) in secrets() {
            let escaped = serde_json::to_string(&v).expect("json");
            text = text.replace(k, &escaped[1..escaped.len() - 1]);
        }
        self.sb.file("transcript.jsonl", text.as_bytes())
    }

    fn payload(&self, event: &str, transcript: &Path) -> String {
        json!({
            "session_id": SESSION,
            "transcript_path": transcript,
            "cwd": self.repo,
            "hook_event_name": event,
            "reason": "prompt_input_exit",
            "trigger": "auto",
            "custom_instructions": "",
        })
        .to_string()
    }

    /// Runs `hook EVENT` with `capture = at` (and more env), checks exit 0
    /// and nothing on stdout, returns how long it took.
    fn hook(&self, event: &str, at: &str, transcript: &Path, env: &[(&str, &str)]) -> Duration {
        let mut c = self.sb.ops_command(&["hook", event]);
        c.env("MEM0_QUEUE_CAPTURE", at);
        for (k, v) in env {
            c.env(k, v);
        }
        let (o, took) = ops::hook(c, Some(self.payload(event, transcript).as_bytes()));
        let (out, err) = ops::text(&o);
        assert_eq!(o.status.code(), Some(0), "{event}: {err}");
        assert_eq!(out, "", "{event}: nothing on stdout");
        took
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.sb.data_dir().join("mem0_worker.log")).unwrap_or_default()
    }

    /// The captures in the queue: (id, content, metadata, project, infer).
    fn captures(&self) -> Vec<(String, String, Value, String, Option<i64>)> {
        let db = self.sb.db();
        if !db.exists() {
            return Vec::new();
        }
        let c = db::connect(&db);
        let mut stmt = c
            .prepare(
                "SELECT id, content, metadata, project, infer FROM entries
                  WHERE json_extract(metadata, '$.capture') IS NOT NULL",
            )
            .expect("prepare");
        stmt.query_map([], |r| {
            let meta: String = r.get(2)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                serde_json::from_str(&meta).unwrap_or_default(),
                r.get(3)?,
                r.get(4)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }
}

#[test]
fn session_end_queues_the_words_only_with_secrets_redacted() {
    let h = Home::new();
    let t = h.sample();
    let took = h.hook("session-end", "session-end", &t, &[]);
    assert!(took < HOOK_BUDGET, "took {took:?}");

    let caps = h.captures();
    assert_eq!(caps.len(), 1, "one capture");
    let (id, content, meta, project, infer) = &caps[0];
    assert_eq!(id, &entry_id(SESSION));
    assert_eq!(content, EXPECTED);
    assert_eq!(
        meta,
        &json!({"capture": {"session_id": SESSION, "source": "session-end"}})
    );
    assert_eq!(project, "acme", "the project of the session's folder");
    assert_eq!(*infer, Some(1), "always inferred");
    for (_, secret) in secrets() {
        for part in secret.lines().filter(|l| l.len() > 8) {
            assert!(!content.contains(part), "a secret was queued: {part}");
        }
    }
    for m in NEVER {
        assert!(!content.contains(m), "{m} was queued");
    }

    // The log says what was done, and holds no text.
    let log = h.log();
    assert!(
        log.contains(&format!(
            "hook session-end: session {SESSION}; captured 4 of 4 turns ({} bytes, 5 secrets redacted) as {id}",
            EXPECTED.len()
        )),
        "{log}"
    );
    assert!(!log.contains("billing"), "{log}");

    // A session is captured once: again at its end, or at a compaction.
    h.hook("session-end", "session-end", &t, &[]);
    h.hook("pre-compact", "pre-compact", &t, &[]);
    assert_eq!(h.captures().len(), 1);
    assert_eq!(
        h.log().matches("already captured as").count(),
        2,
        "{}",
        h.log()
    );
}

#[test]
fn pre_compact_captures_with_its_source_and_off_captures_nothing() {
    let h = Home::new();
    let t = h.sample();
    // Each hook captures only when `capture` names it.
    h.hook("session-end", "off", &t, &[]);
    h.hook("session-end", "pre-compact", &t, &[]);
    h.hook("pre-compact", "session-end", &t, &[]);
    assert!(h.captures().is_empty());

    h.hook("pre-compact", "pre-compact", &t, &[]);
    let caps = h.captures();
    assert_eq!(caps.len(), 1);
    assert_eq!(caps[0].1, EXPECTED);
    assert_eq!(caps[0].2["capture"]["source"], "pre-compact");
    assert!(h.log().contains(&format!(
        "hook pre-compact: session {SESSION} (auto); captured"
    )));
}

#[test]
fn missing_empty_and_truncated_transcripts_are_handled() {
    let h = Home::new();
    // Missing.
    let missing = h.sb.root().join("no-such.jsonl");
    h.hook("session-end", "session-end", &missing, &[]);
    assert!(h.captures().is_empty());
    assert!(
        h.log()
            .contains("nothing captured: the transcript does not exist"),
        "{}",
        h.log()
    );
    // Empty.
    let empty = h.sb.file("empty.jsonl", b"");
    h.hook("session-end", "session-end", &empty, &[]);
    assert!(h.captures().is_empty());
    assert!(
        h.log()
            .contains("nothing captured: no words in the transcript (0 bytes"),
        "{}",
        h.log()
    );
    // A directory, not a file.
    h.hook("pre-compact", "pre-compact", h.sb.root(), &[]);
    assert!(
        h.log()
            .contains("capture failed: cannot read the transcript"),
        "{}",
        h.log()
    );
    assert!(h.captures().is_empty());

    // Cut in the middle of a line: the lines before it count, the cut one
    // does not (the sample's own last line is such a line).
    let whole = std::fs::read(h.sample()).expect("sample");
    let cut_at = find(&whole, b"Here is the deploy key") + 10;
    let cut = h.sb.file("cut.jsonl", &whole[..cut_at]);
    h.hook("session-end", "session-end", &cut, &[]);
    let caps = h.captures();
    assert_eq!(caps.len(), 1);
    assert_eq!(
        caps[0].1,
        EXPECTED[..EXPECTED.find("\n\nUser: Here is").expect("turn")]
    );
}

#[test]
fn a_50_mb_transcript_is_read_from_its_end_within_the_budget() {
    let h = Home::new();
    let path = h.sb.root().join("big.jsonl");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let blob = "y".repeat(75_000);
        let mut i = 0;
        while f.get_ref().metadata().map(|m| m.len()).unwrap_or(0) < 50 << 20 {
            let user = json!({"type": "user", "message": {"role": "user", "content": format!("question number {i}")}});
            let shape = json!({"type": "api-request-shape", "shape": {"system": blob}});
            let assistant = json!({"type": "assistant", "message": {"id": format!("m{i}"), "content": [{"type": "text", "text": format!("answer number {i}")}]}});
            writeln!(f, "{user}\n{shape}\n{assistant}").expect("write");
            i += 1;
            if i % 64 == 0 {
                f.flush().expect("flush");
            }
        }
        f.flush().expect("flush");
        assert!(i > 600, "{i} turns");
    }
    let size = std::fs::metadata(&path).expect("size").len();
    assert!(size >= 50 << 20);

    let took = h.hook("session-end", "session-end", &path, &[]);
    eprintln!("a {size}-byte transcript: the session-end hook took {took:?}");
    assert!(took < HOOK_BUDGET, "took {took:?} for {size} bytes");
    let caps = h.captures();
    assert_eq!(caps.len(), 1);
    let text = &caps[0].1;
    assert!(text.len() <= 64 << 10);
    assert!(
        text.starts_with("User: question number ") || text.starts_with("Assistant: answer number "),
        "{}",
        &text[..80]
    );
    // The end of the file is there; its beginning is not.
    let last = text.lines().last().expect("a line");
    assert!(last.starts_with("Assistant: answer number "), "{last}");
    assert!(
        !text.contains("question number 0\n"),
        "the start of a 50 MB file was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detached_sync_sends_the_capture_with_infer_even_when_infer_is_off() {
    let srv = server(Kind::Oss, None, 21).await;
    let h = Home::new();
    let t = h.sample();
    let url = srv.url();
    let h = tokio::task::spawn_blocking(move || {
        h.hook(
            "session-end",
            "session-end",
            &t,
            &[("MEM0_API_URL", &url), ("MEM0_QUEUE_INFER", "false")],
        );
        h
    })
    .await
    .expect("join");
    let id = entry_id(SESSION);
    let deadline = Instant::now() + Duration::from_secs(20);
    while db::state_of(&h.sb.db(), &id) != State::Delivered {
        assert!(Instant::now() < deadline, "not delivered:\n{}", h.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let adds: Vec<Value> = srv
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/memories")
        .filter_map(|r| r.body)
        .collect();
    assert_eq!(adds.len(), 1, "{adds:?}");
    assert_eq!(adds[0]["infer"], true);
    assert_eq!(adds[0]["user_id"], "acme");
    assert_eq!(adds[0]["messages"][0]["content"], EXPECTED);
    assert_eq!(adds[0]["metadata"]["mq_id"], id.as_str());
    assert_eq!(adds[0]["metadata"]["capture"]["session_id"], SESSION);
    // Let the detached sync finish before the sandbox goes.
    if let Some(pid) = mem0_queue_testkit::process::hook_sync_pid(&h.log(), SESSION) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while mem0_queue_testkit::process::running(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("the needle")
}
