//! Claude Code's session transcript (a JSONL file), read defensively: the
//! user's and the assistant's words, nothing else.
//!
//! The file may be large (every API request's shape is kept in it, tens of
//! kilobytes each), still being written (Claude Code writes it
//! asynchronously), cut short, or missing. So only its last
//! [`READ_MAX`] bytes are read; the first line of that window, cut in two,
//! is dropped, and so is any line that is not one JSON object. Of the
//! lines left, only `type: "user"` and `type: "assistant"` ones count,
//! and of those only:
//!
//! - a user's prompt (`message.content` a string), and the `text` blocks of
//!   a user's content array;
//! - the `text` blocks of the assistant's messages (Claude Code writes each
//!   block of one message as its own line).
//!
//! Left out: tool calls (`tool_use`), tool outputs (`tool_result`, which
//! Claude Code files as user lines), thinking, images; lines marked
//! `isMeta`, `isSidechain` (a subagent's), `isCompactSummary` or
//! `isVisibleInTranscriptOnly`; texts that are Claude Code's own plumbing
//! (`<command-name>`, `<local-command-stdout>`, `<system-reminder>`, …);
//! and every other type of line (attachments, hook outputs, API requests,
//! summaries).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

/// The most of a transcript read: its last 8 MiB. What is captured is at
/// most the store's content limit (64 KiB by default) of words, and a
/// transcript is mostly other things: in Claude Code 2.1's files a single
/// API request's recorded shape is 75 KB, so a turn of a few hundred bytes
/// of words can cost 100 KB of file. 8 MiB holds the last hundred turns or
/// so of a tool-heavy session, and reading and parsing it takes tens of
/// milliseconds (measured in `tests/capture.rs`), well inside the 1.5 s
/// Claude Code gives a SessionEnd hook.
pub const READ_MAX: u64 = 8 << 20;

/// Who spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::User => "User",
            Role::Assistant => "Assistant",
        }
    }
}

/// One turn: consecutive lines of the same speaker, joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// What reading found.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub turns: Vec<Turn>,
    /// The file's size.
    pub file_bytes: u64,
    /// Bytes of it read (the tail, at most [`READ_MAX`]).
    pub read_bytes: u64,
    /// Lines skipped because they were not one JSON object.
    pub malformed: usize,
}

/// Reads the transcript's tail and takes its turns.
pub fn read(path: &Path) -> std::io::Result<Transcript> {
    read_at_most(path, READ_MAX)
}

/// [`read`] with another bound (the tests use a small one).
pub fn read_at_most(path: &Path, max: u64) -> std::io::Result<Transcript> {
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let size = meta.len();
    let start = size.saturating_sub(max);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((size - start) as usize);
    f.take(max).read_to_end(&mut buf)?;
    let mut body: &[u8] = &buf;
    if start > 0 {
        // The window starts inside a line: drop up to its end.
        body = match body.iter().position(|&b| b == b'\n') {
            Some(i) => &body[i + 1..],
            None => &[],
        };
    }
    let (turns, malformed) = turns(body);
    Ok(Transcript {
        turns,
        file_bytes: size,
        read_bytes: buf.len() as u64,
        malformed,
    })
}

/// The fields of a line that matter; everything else is skipped unread.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<Message>,
    #[serde(rename = "isMeta", default)]
    is_meta: Option<bool>,
    #[serde(rename = "isSidechain", default)]
    is_sidechain: Option<bool>,
    #[serde(rename = "isCompactSummary", default)]
    is_compact_summary: Option<bool>,
    #[serde(rename = "isVisibleInTranscriptOnly", default)]
    transcript_only: Option<bool>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<Value>,
}

/// Texts that are Claude Code's plumbing, not anyone's words: slash
/// commands and their output, shell-mode input and output, reminders and
/// hook texts it inserts.
const PLUMBING: &[&str] = &[
    "<command-name>",
    "<command-message>",
    "<command-args>",
    "<command-stdout>",
    "<local-command-",
    "<bash-input>",
    "<bash-stdout>",
    "<bash-stderr>",
    "<system-reminder>",
    "<user-prompt-submit-hook>",
    "[Request interrupted by user",
];

fn words(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.is_empty() && !PLUMBING.iter().any(|p| t.starts_with(p))).then_some(t)
}

/// The turns of JSONL `body` (whole lines), and how many lines were not
/// JSON objects.
pub fn turns(body: &[u8]) -> (Vec<Turn>, usize) {
    let mut out: Vec<Turn> = Vec::new();
    let mut malformed = 0;
    for raw in body.split(|&b| b == b'\n') {
        let raw = raw.trim_ascii();
        if raw.is_empty() {
            continue;
        }
        let Ok(line) = serde_json::from_slice::<Line>(raw) else {
            malformed += 1;
            continue;
        };
        let role = match line.kind.as_deref() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => continue,
        };
        if [
            line.is_meta,
            line.is_sidechain,
            line.is_compact_summary,
            line.transcript_only,
        ]
        .contains(&Some(true))
        {
            continue;
        }
        let Some(content) = line.message.and_then(|m| m.content) else {
            continue;
        };
        let mut texts = Vec::new();
        match &content {
            Value::String(s) => texts.extend(words(s)),
            Value::Array(blocks) => {
                for b in blocks {
                    if b.get("type").and_then(Value::as_str) == Some("text")
                        && let Some(t) = b.get("text").and_then(Value::as_str)
                    {
                        texts.extend(words(t));
                    }
                }
            }
            _ => {}
        }
        for t in texts {
            match out.last_mut() {
                Some(last) if last.role == role => {
                    last.text.push('\n');
                    last.text.push_str(t);
                }
                _ => out.push(Turn {
                    role,
                    text: t.to_string(),
                }),
            }
        }
    }
    (out, malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_words_are_taken_and_a_message_s_blocks_join() {
        let body = br#"{"type":"queue-operation","operation":"enqueue","content":"ignored"}
{"type":"user","message":{"role":"user","content":"use the ping tool"}}
{"type":"assistant","message":{"id":"m1","content":[{"type":"thinking","thinking":"secret plan"}]}}
{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"Loading ping."}]}}
{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"t","name":"Bash","input":{"command":"ls"}}]}}
{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","content":"file-list"}]},"toolUseResult":"file-list"}
{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"Done."}]}}
{"type":"attachment","attachment":{"type":"hook_additional_context","content":["recalled"]}}
{"type":"user","isMeta":true,"message":{"content":"<local-command-caveat>x</local-command-caveat>"}}
{"type":"user","message":{"content":"<command-name>/compact</command-name>"}}
{"type":"user","isCompactSummary":true,"isVisibleInTranscriptOnly":true,"message":{"content":"This session is being continued"}}
{"type":"user","isSidechain":true,"message":{"content":"a subagent's prompt"}}
not json at all
{"type":"user","message":{"content":[{"type":"text","text":"and thanks"},{"type":"image","source":{}}]}}
{"type":"user","message":{"content":"half a li"#;
        let (t, malformed) = turns(body);
        assert_eq!(
            t,
            vec![
                Turn {
                    role: Role::User,
                    text: "use the ping tool".into()
                },
                Turn {
                    role: Role::Assistant,
                    text: "Loading ping.\nDone.".into()
                },
                Turn {
                    role: Role::User,
                    text: "and thanks".into()
                },
            ]
        );
        assert_eq!(malformed, 2);
    }
}
