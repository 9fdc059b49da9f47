//! Recall: what a session starts with. The memories of one project, the
//! most relevant and the most recent, as a short text for the assistant's
//! context, each with its date and delivery state.
//!
//! - The local copy first, always: the project's memories matching the
//!   session's words (its project name, its folder's name, its git
//!   branch's words; at session start there is no question yet) and its
//!   newest ones. It answers whether Mem0 is up, down or not configured.
//! - Mem0's own search may add memories the local copy does not have
//!   (saved by another tool or machine, the facts Mem0 drew from a captured
//!   session), but only within the time left of `timeout`: a hard bound
//!   around the whole remote part. Past it, the answer is the local copy's.
//! - One memory is one line: a Mem0 result whose `mq_id` is a local memory
//!   shows as that local memory. Deleted memories, here or queued for the
//!   server, never show. Captured conversations are not memories: never
//!   shown (what Mem0 drew from them comes through its search).
//! - The size is bounded by `max_chars`, header included: up to half of it
//!   goes to the most relevant memories, the rest to the newest, then
//!   whatever fits of either. Each line is cut at [`MAX_LINE_CHARS`].
//!
//! It returns the text (None when the project has no memory to show); the
//! hook prints it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::engine::mem0::{Client, RemoteMemory};
use crate::engine::store::{EntryView, State, Store, StoreError};

/// The most memories matching the session's words that are considered.
const RELEVANT_MAX: usize = 8;

/// The most newest memories considered: more than a 9,000-character budget
/// holds at a line each.
const RECENT_MAX: usize = 60;

/// The longest line: one memory may not take the whole budget.
pub const MAX_LINE_CHARS: usize = 400;

/// The state shown for a memory only Mem0 has.
const REMOTE_ONLY: &str = "in Mem0";

/// Branch names that say nothing about the work.
const PLAIN_BRANCHES: &[&str] = &["main", "master", "trunk", "develop", "dev", "HEAD"];

/// What recall is asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub project: String,
    /// The session's words: folder and branch (the project is added).
    pub folder: Option<String>,
    pub branch: Option<String>,
    pub max_chars: usize,
    /// The bound on Mem0's part; zero: not asked.
    pub timeout: Duration,
}

impl Request {
    /// The words the memories are matched against.
    pub fn query(&self) -> String {
        let mut words = vec![self.project.clone()];
        words.extend(self.folder.clone());
        if let Some(b) = &self.branch
            && !PLAIN_BRANCHES.contains(&b.as_str())
        {
            words.push(b.clone());
        }
        let joined = words.join(" ");
        let mut seen = HashSet::new();
        joined
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() > 1 && seen.insert(w.to_lowercase()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How Mem0's part went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Not asked: no server configured, or a zero timeout.
    NotAsked,
    /// Answered in time, with this many results.
    Answered(usize),
    /// Failed (down, refused, misconfigured), in a few words.
    Failed(String),
    /// No answer within the bound.
    TimedOut,
}

/// What recall found.
#[derive(Debug, Clone)]
pub struct Recall {
    /// The context text; None when there is no memory to show.
    pub text: Option<String>,
    /// Memories shown.
    pub shown: usize,
    /// Memories the project has: in the local copy, plus those only Mem0
    /// returned.
    pub total: u64,
    pub remote: Remote,
}

/// One line to show.
#[derive(Debug, Clone)]
struct Item {
    /// The local id, or Mem0's for a memory the local copy lacks.
    key: String,
    date: String,
    state: &'static str,
    text: String,
    /// Unix ms, for the order (remote memories without a date: 0).
    at: i64,
}

fn state_word(s: State) -> &'static str {
    match s {
        State::Pending | State::InFlight | State::Failed => "queued",
        State::Delivered => "delivered",
        State::Dead => "rejected",
    }
}

fn day(ms: i64) -> String {
    crate::engine::text::rfc3339(ms).chars().take(10).collect()
}

fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_LINE_CHARS {
        return flat;
    }
    let mut cut: String = flat.chars().take(MAX_LINE_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn local_item(e: &EntryView) -> Item {
    Item {
        key: e.id.clone(),
        date: day(e.created_at),
        state: state_word(e.state),
        text: one_line(e.content.as_deref().unwrap_or("")),
        at: e.created_at,
    }
}

/// RFC 3339 to unix ms, roughly enough to order by (None when unreadable).
fn parse_ms(s: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(s.get(..19)?)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
}

/// Recall for one project: the local copy, then Mem0 within what is left
/// of the bound (measured from `started`).
pub async fn recall(
    store: &Store,
    client: Option<&Client>,
    req: &Request,
    started: Instant,
) -> Result<Recall, StoreError> {
    let query = req.query();
    let found = store.recall_candidates(&req.project, &query, RELEVANT_MAX, RECENT_MAX)?;
    let mut relevant: Vec<Item> = found.matches.iter().map(|(e, _)| local_item(e)).collect();
    let newest: Vec<Item> = found.newest.iter().map(local_item).collect();

    let mut remote = Remote::NotAsked;
    let mut known = found.total;
    if let Some(client) = client.filter(|_| !req.timeout.is_zero()) {
        let left = req.timeout.saturating_sub(started.elapsed());
        let asked = client.search(&query, &req.project, RELEVANT_MAX as u32);
        remote = match tokio::time::timeout(left, asked).await {
            Err(_) => Remote::TimedOut,
            Ok(Err(f)) => Remote::Failed(f.describe()),
            Ok(Ok(hits)) => {
                let n = hits.len();
                let items = remote_items(store, &req.project, hits)?;
                // Memories only Mem0 has count in "N of M".
                known += items.iter().filter(|i| i.state == REMOTE_ONLY).count() as u64;
                relevant.extend(items);
                Remote::Answered(n)
            }
        };
    }
    let text = render(req, &relevant, &newest, known, &remote);
    Ok(Recall {
        shown: text.as_ref().map_or(0, |(_, n)| *n),
        text: text.map(|(t, _)| t),
        total: known,
        remote,
    })
}

/// Mem0's results as lines: a local memory by its `mq_id` (as the local
/// copy has it), else the server's text; deleted ones and captured
/// conversations left out.
fn remote_items(
    store: &Store,
    project: &str,
    hits: Vec<RemoteMemory>,
) -> Result<Vec<Item>, StoreError> {
    let pending = store.pending_changes()?;
    let mq_ids: Vec<String> = hits
        .iter()
        .filter_map(|m| m.mq_id().map(str::to_string))
        .collect();
    let (live, gone) = store.local_ids(&mq_ids)?;
    let mut out = Vec::new();
    for mut m in hits {
        if crate::features::memories::hidden(&m, project, &pending, &gone) {
            continue;
        }
        if let Some(local) = m.mq_id().and_then(|id| live.get(id)) {
            if local.metadata.get("capture").is_some() {
                // A fact Mem0 drew from a captured conversation: its own text.
            } else {
                out.push(Item {
                    key: local.id.clone(),
                    date: day(local.created_at),
                    state: state_word(local.state),
                    text: one_line(&local.content),
                    at: local.created_at,
                });
                continue;
            }
        }
        if let Some(t) = pending.updated.get(&m.id).and_then(|c| c.text.clone()) {
            m.memory = t;
        }
        let at = m.created_at.as_deref().and_then(parse_ms);
        out.push(Item {
            key: m.id.clone(),
            date: at.map(day).unwrap_or_else(|| "----------".into()),
            state: REMOTE_ONLY,
            text: one_line(&m.memory),
            at: at.unwrap_or(0),
        });
    }
    Ok(out)
}

/// The context text, newest first, within the budget; and how many lines.
fn render(
    req: &Request,
    relevant: &[Item],
    newest: &[Item],
    total: u64,
    remote: &Remote,
) -> Option<(String, usize)> {
    let note = match remote {
        Remote::TimedOut => format!(
            " Mem0 did not answer within {} ms: from the local copy only.",
            req.timeout.as_millis()
        ),
        Remote::Failed(_) => " Mem0 did not answer: from the local copy only.".to_string(),
        Remote::NotAsked | Remote::Answered(_) => String::new(),
    };
    // The header's final form is only known once the lines are chosen; its
    // longest form (every memory shown) is reserved.
    let header = |shown: u64| {
        format!(
            "Memories of project \"{}\" (mem0-queue; {shown} of {total} shown, newest first; \
             more with mem0_search).{note}\n",
            req.project
        )
    };
    let budget = req.max_chars.saturating_sub(header(total).chars().count());
    // Each line is cut to a quarter of the budget (80 to MAX_LINE_CHARS
    // characters of text), so a small budget still holds several memories.
    let line_max = (budget / 4).clamp(80, MAX_LINE_CHARS);
    let line = |i: &Item| {
        let text = if i.text.chars().count() > line_max {
            let mut t: String = i.text.chars().take(line_max - 1).collect();
            t.push('…');
            t
        } else {
            i.text.clone()
        };
        format!("- {} [{}] {}\n", i.date, i.state, text)
    };
    let cost = |i: &Item| line(i).chars().count();
    let mut chosen: Vec<&Item> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut used = 0;
    // Half to the most relevant, then the newest, then what fits of either.
    for (items, limit) in [(relevant, budget / 2), (newest, budget), (relevant, budget)] {
        for i in items {
            let c = cost(i);
            if seen.contains(i.key.as_str()) || used + c > limit {
                continue;
            }
            used += c;
            seen.insert(i.key.as_str());
            chosen.push(i);
        }
    }
    if chosen.is_empty() {
        return None;
    }
    chosen.sort_by_key(|m| std::cmp::Reverse(m.at));
    let mut text = header(chosen.len() as u64);
    for i in &chosen {
        text.push_str(&line(i));
    }
    Some((text.trim_end().to_string(), chosen.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, at: i64, text: &str) -> Item {
        Item {
            key: key.into(),
            date: day(at),
            state: "delivered",
            text: text.into(),
            at,
        }
    }

    fn req(max_chars: usize) -> Request {
        Request {
            project: "acme".into(),
            folder: Some("api".into()),
            branch: Some("feature/recall-hook".into()),
            max_chars,
            timeout: Duration::from_millis(300),
        }
    }

    #[test]
    fn the_query_is_the_project_folder_and_branch_words() {
        assert_eq!(req(2000).query(), "acme api feature recall hook");
        let mut r = req(2000);
        r.branch = Some("main".into());
        r.folder = None;
        assert_eq!(r.query(), "acme");
        r.folder = Some("Acme".into());
        assert_eq!(r.query(), "acme", "a word once");
    }

    #[test]
    fn the_budget_holds_and_lines_are_newest_first_without_duplicates() {
        let day_ms = 86_400_000;
        let relevant = vec![item("old", day_ms, "an old decision about the api")];
        let newest: Vec<Item> = (0..100)
            .map(|i| {
                item(
                    &format!("n{i}"),
                    1_800_000_000_000 - i * day_ms,
                    &"word ".repeat(20),
                )
            })
            .chain(std::iter::once(item(
                "old",
                day_ms,
                "an old decision about the api",
            )))
            .collect();
        let (text, n) =
            render(&req(2000), &relevant, &newest, 101, &Remote::NotAsked).expect("text");
        assert!(text.chars().count() <= 2000, "{}", text.chars().count());
        assert_eq!(text.matches("an old decision").count(), 1);
        assert_eq!(text.lines().count(), n + 1);
        let dates: Vec<&str> = text.lines().skip(1).map(|l| &l[2..12]).collect();
        let mut sorted = dates.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(dates, sorted, "{text}");
        assert!(text.starts_with(&format!(
            "Memories of project \"acme\" (mem0-queue; {n} of 101 shown"
        )));
        assert!(render(&req(2000), &[], &[], 0, &Remote::NotAsked).is_none());
    }

    #[test]
    fn a_long_memory_is_cut_to_one_line() {
        let long = format!("line one\nline two {}", "x".repeat(1000));
        let l = one_line(&long);
        assert!(l.starts_with("line one line two"));
        assert_eq!(l.chars().count(), MAX_LINE_CHARS);
        assert!(l.ends_with('…'));
    }
}
