//! Capture: a Claude Code session's conversation queued as one memory, for
//! Mem0's own LLM to turn into facts on the server, later, through the
//! queue (opt-in: `capture = "session-end"` or `"pre-compact"`).
//!
//! What is queued, exactly: the user's and the assistant's words of the
//! session ([`transcript`]: no tool calls, tool outputs, thinking or
//! Claude Code's plumbing), secrets replaced by `[redacted]` ([`redact`]),
//! as `User: …` and `Assistant: …` paragraphs in order, the most recent
//! turns that fit in the store's content limit (`max_content_bytes`, 64 KiB
//! by default; the oldest turns are left out first). One add, sent with
//! `infer = true` whatever the config's `infer` says (a conversation is
//! never a memory to store word for word), with
//! `metadata.capture = {"session_id", "source"}`.
//!
//! A session is captured at most once: the entry's id is derived from the
//! session id ([`entry_id`]), so a second capture of the same session (the
//! PreCompact hook then SessionEnd, the plugin's hook and an installed one
//! both firing, a resumed session) finds it and queues nothing.
//!
//! Recall never shows a captured conversation itself (it is not a memory,
//! and it is long): the facts Mem0 draws from it come back through Mem0's
//! search.

pub mod redact;
pub mod transcript;

use std::path::Path;

use serde_json::json;

use crate::engine::config::CaptureAt;
use crate::engine::store::{Limits, NewEntry, Origin, Store, StoreError};
use transcript::{Role, Turn};

/// The namespace of capture ids: a session id's capture is always the same
/// entry id.
const ID_NAMESPACE: &str = "mem0-queue capture v1";

/// The longest session id taken (Claude Code's are UUIDs).
const MAX_SESSION_ID: usize = 128;

/// What a capture did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The conversation was queued as entry `id`.
    Queued {
        id: String,
        /// Turns in the queued text, of `turns_found`.
        turns: usize,
        turns_found: usize,
        /// The queued text's length.
        bytes: usize,
        /// Secrets replaced.
        redacted: usize,
    },
    /// This session was captured before, as `id`: nothing queued.
    AlreadyCaptured { id: String },
    /// Nothing to queue, and why (no session id, no transcript, no words).
    Nothing(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read the transcript: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One capture to make.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Claude Code's session id (the dedup key).
    pub session_id: &'a str,
    /// The transcript file (`transcript_path` of the hook's input).
    pub transcript: Option<&'a Path>,
    /// The project it goes to (the folder's, as for saves).
    pub project: String,
    /// Which hook captures.
    pub source: CaptureAt,
    /// Unix ms, the entry's save time.
    pub now_ms: i64,
}

/// The entry id of a session's capture: a UUIDv8 made of the SHA-256 of
/// the namespace and the session id.
pub fn entry_id(session_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(ID_NAMESPACE.as_bytes());
    h.update([0]);
    h.update(session_id.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// A session id fit for an id and the metadata: printable, no spaces,
/// bounded. None when nothing is left.
pub fn clean_session_id(raw: &str) -> Option<String> {
    let s: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(MAX_SESSION_ID)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// The text queued for these turns: each redacted, as `User: …` /
/// `Assistant: …` paragraphs, the most recent that fit in `max_bytes`
/// (the last one cut to fit when it alone is longer). Returns the text,
/// how many turns it holds, and how many secrets were replaced.
pub fn text_of(turns: &[Turn], max_bytes: usize) -> (String, usize, usize) {
    const SEP: &str = "\n\n";
    const CUT: &str = " […]";
    let mut kept: Vec<String> = Vec::new();
    let mut total = 0;
    let mut redacted = 0;
    for t in turns.iter().rev() {
        let (text, n) = redact::redact(&t.text);
        let para = format!("{}: {}", t.role.label(), text.trim());
        let need = para.len() + if kept.is_empty() { 0 } else { SEP.len() };
        if total + need <= max_bytes {
            total += need;
            redacted += n;
            kept.push(para);
            continue;
        }
        if kept.is_empty() && max_bytes > CUT.len() {
            // The last turn alone is too long: its beginning.
            let mut end = max_bytes - CUT.len();
            while !para.is_char_boundary(end) {
                end -= 1;
            }
            redacted += n;
            kept.push(format!("{}{CUT}", &para[..end]));
        }
        break;
    }
    kept.reverse();
    let count = kept.len();
    (kept.join(SEP), count, redacted)
}

/// Captures one session into the queue, at most once.
pub fn capture(
    store: &mut Store,
    limits: &Limits,
    req: &Request<'_>,
) -> Result<Outcome, CaptureError> {
    let Some(session) = clean_session_id(req.session_id) else {
        return Ok(Outcome::Nothing("no session id".into()));
    };
    let id = entry_id(&session);
    if store.contains(&id)? {
        return Ok(Outcome::AlreadyCaptured { id });
    }
    let Some(path) = req.transcript else {
        return Ok(Outcome::Nothing("no transcript path".into()));
    };
    let found = match transcript::read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Outcome::Nothing("the transcript does not exist".into()));
        }
        Err(e) => return Err(CaptureError::Read(e)),
    };
    let (text, turns, redacted) = text_of(&found.turns, limits.max_content_bytes);
    if turns == 0 || !found.turns.iter().any(|t| t.role == Role::User) {
        return Ok(Outcome::Nothing(format!(
            "no words in the transcript ({} bytes, {} lines not JSON)",
            found.file_bytes, found.malformed
        )));
    }
    let bytes = text.len();
    let new = NewEntry {
        project: req.project.clone(),
        agent_id: None,
        run_id: None,
        content: text,
        metadata: json!({"capture": {"session_id": session, "source": req.source.as_str()}}),
        created_at: req.now_ms,
        origin: Origin::Cli,
        id: Some(id.clone()),
        infer: Some(true),
    };
    match store.enqueue(new, limits) {
        Ok(e) if e.id == id => Ok(Outcome::Queued {
            id,
            turns,
            turns_found: found.turns.len(),
            bytes,
            redacted,
        }),
        // The same text, undelivered, under another id (the same
        // conversation captured under another session id): one copy.
        Ok(e) => Ok(Outcome::AlreadyCaptured { id: e.id }),
        // Two hooks of one session at once: the other one's insert won.
        Err(e) if store.contains(&id).unwrap_or(false) => {
            tracing::debug!(error = %e, "a concurrent capture of the same session");
            Ok(Outcome::AlreadyCaptured { id })
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: Role, text: &str) -> Turn {
        Turn {
            role,
            text: text.into(),
        }
    }

    #[test]
    fn the_id_is_stable_per_session_and_a_v8_uuid() {
        let a = entry_id("3fb04e1a-0000-4000-8000-000000000001");
        assert_eq!(a, entry_id("3fb04e1a-0000-4000-8000-000000000001"));
        assert_ne!(a, entry_id("3fb04e1a-0000-4000-8000-000000000002"));
        let u = uuid::Uuid::parse_str(&a).expect("uuid");
        assert_eq!(u.get_version_num(), 8);
        assert_eq!(clean_session_id(" a b/c\n"), Some("abc".into()));
        assert_eq!(clean_session_id("  "), None);
    }

    #[test]
    fn the_most_recent_turns_that_fit_are_kept_in_order() {
        let turns = vec![
            turn(Role::User, "first question"),
            turn(Role::Assistant, "first answer"),
            turn(Role::User, "second question"),
            turn(Role::Assistant, "second answer"),
        ];
        let (all, n, _) = text_of(&turns, 10_000);
        assert_eq!(n, 4);
        assert_eq!(
            all,
            "User: first question\n\nAssistant: first answer\n\nUser: second question\n\nAssistant: second answer"
        );
        let budget = "User: second question\n\nAssistant: second answer".len();
        let (two, n, _) = text_of(&turns, budget);
        assert_eq!(
            (two.as_str(), n),
            ("User: second question\n\nAssistant: second answer", 2)
        );
        // One turn longer than the budget: its beginning, marked.
        let long = vec![turn(Role::User, &"é".repeat(100))];
        let (cut, n, _) = text_of(&long, 51);
        assert_eq!(n, 1);
        assert!(cut.len() <= 51 && cut.ends_with(" […]"), "{cut}");
        assert!(cut.starts_with("User: éé"));
    }
}
