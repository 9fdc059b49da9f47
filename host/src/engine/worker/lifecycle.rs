//! One delivery attempt of a change: an update, a delete, a forget (Mem0's
//! delete-all), and an add deleted here while it was in flight.
//!
//! Every change names its Mem0 memory at claim time: the one it was queued
//! against, or the memory its add became once delivered. An attempt whose
//! last outcome is unknown reads the server first and sends nothing when the
//! change is already there; otherwise it sends (every change here is
//! idempotent given the queue's order: the same text again, a delete again).

use serde_json::Value;

use super::Attempt;
use crate::engine::config::ApiKind;
use crate::engine::mem0::{Client, Failure};
use crate::engine::store::{Changes, Claimed, Op, State};

/// Why a change died without being sent, or of Mem0's answer, in words.
const GONE: &str = "the memory no longer exists on the Mem0 server; the update was not applied";

/// Attempts a claimed change (any entry but a live add).
pub(super) async fn attempt(client: &Client, c: &Claimed) -> Attempt {
    match c.op {
        Op::Add => deleted_add(client, c).await,
        Op::Update => update(client, c).await,
        Op::Delete => delete(client, c).await,
        Op::DeleteAll => delete_all(client, c).await,
    }
}

/// An add deleted here while it was in flight, which came back unfinished:
/// if the server may have it, it is looked up (found: delivered, and the
/// delete queued behind it removes it); else it is never sent.
async fn deleted_add(client: &Client, c: &Claimed) -> Attempt {
    if !c.needs_reconcile {
        return Attempt::Dropped;
    }
    let req = super::add_request(c);
    match client.find_by_mq_id(&req).await {
        Ok(Some(ids)) => Attempt::Delivered {
            ids,
            reconciled: true,
        },
        Ok(None) => Attempt::Dropped,
        Err(f) => Attempt::Failed(f),
    }
}

/// The Mem0 memories a change is for, now.
enum Targets {
    These(Vec<String>),
    /// The memory never reached Mem0 (its add was rejected, or the save
    /// was cancelled): nothing to send, the change is moot.
    Moot,
    /// The save reached Mem0 and Mem0 kept nothing from it.
    Nothing,
    /// An update of a save that became several memories, queued before
    /// its add was delivered: which one to change is not known.
    Ambiguous(Vec<String>),
}

fn targets(c: &Claimed) -> Targets {
    if let Some(r) = &c.remote_target {
        return Targets::These(vec![r.clone()]);
    }
    match &c.target_now {
        Some((State::Delivered, ids)) if ids.is_empty() => Targets::Nothing,
        Some((State::Delivered, ids)) if c.op == Op::Update && ids.len() > 1 => {
            Targets::Ambiguous(ids.clone())
        }
        Some((State::Delivered, ids)) => Targets::These(ids.clone()),
        _ => Targets::Moot,
    }
}

async fn update(client: &Client, c: &Claimed) -> Attempt {
    let id = match targets(c) {
        Targets::These(ids) => ids.into_iter().next().unwrap_or_default(),
        Targets::Moot => return Attempt::Dropped,
        Targets::Nothing => return Attempt::delivered_nothing(),
        Targets::Ambiguous(ids) => {
            return Attempt::Rejected(format!(
                "the save became {} memories on Mem0 ({}); update one of them by its Mem0 id",
                ids.len(),
                ids.join(", ")
            ));
        }
    };
    let changes = c.changes.clone().unwrap_or_default();
    let current =
        if c.needs_reconcile || (changes.metadata.is_some() && needs_full_metadata(client)) {
            match client.get(&id).await {
                Ok(Some(m)) => Some(m),
                Ok(None) => return Attempt::Rejected(GONE.into()),
                Err(f) => return Attempt::Failed(f),
            }
        } else {
            None
        };
    if c.needs_reconcile
        && let Some(m) = &current
        && applied(&changes, &m.memory, &m.metadata)
    {
        return Attempt::Delivered {
            ids: Vec::new(),
            reconciled: true,
        };
    }
    // The platform may replace the metadata it is sent: it gets the whole
    // of it (the server's, with the changed keys), so `mq_id` survives.
    let metadata = match (&changes.metadata, &current) {
        (Some(patch), Some(m)) if needs_full_metadata(client) => Some(
            crate::engine::store::lifecycle::merge_metadata(&m.metadata, patch),
        ),
        (md, _) => md.clone(),
    };
    match client
        .update(&id, changes.text.as_deref(), metadata.as_ref())
        .await
    {
        Ok(()) => Attempt::Delivered {
            ids: Vec::new(),
            reconciled: false,
        },
        Err(Failure::NotFound) => Attempt::Rejected(GONE.into()),
        Err(f) => Attempt::Failed(f),
    }
}

fn needs_full_metadata(client: &Client) -> bool {
    client.kind() == ApiKind::Platform
}

/// Whether the server's memory already shows these changes.
fn applied(changes: &Changes, memory: &str, metadata: &Value) -> bool {
    let text_ok = changes.text.as_deref().is_none_or(|t| t == memory);
    let meta_ok = changes.metadata.as_ref().is_none_or(|patch| {
        patch
            .as_object()
            .is_some_and(|p| p.iter().all(|(k, v)| metadata.get(k) == Some(v)))
    });
    text_ok && meta_ok
}

/// A delete of a memory the server no longer has is a success.
async fn delete(client: &Client, c: &Claimed) -> Attempt {
    let ids = match targets(c) {
        Targets::These(ids) | Targets::Ambiguous(ids) => ids,
        Targets::Moot => return Attempt::Dropped,
        Targets::Nothing => return Attempt::delivered_nothing(),
    };
    let mut reconciled = c.needs_reconcile;
    for id in &ids {
        if c.needs_reconcile {
            match client.get(id).await {
                Ok(None) => continue,
                Ok(Some(_)) => reconciled = false,
                Err(f) => return Attempt::Failed(f),
            }
        }
        match client.delete(id).await {
            Ok(()) | Err(Failure::NotFound) => {}
            Err(f) => return Attempt::Failed(f),
        }
    }
    Attempt::Delivered {
        ids: Vec::new(),
        reconciled,
    }
}

/// A forget: its order in the queue makes a resend safe (nothing of the
/// project saved after it is sent before it is delivered), and a lookup
/// that finds the project empty needs none.
async fn delete_all(client: &Client, c: &Claimed) -> Attempt {
    if c.needs_reconcile {
        match client.list(&c.project, None, None, 1).await {
            Ok(left) if left.is_empty() => {
                return Attempt::Delivered {
                    ids: Vec::new(),
                    reconciled: true,
                };
            }
            Ok(_) => {}
            Err(f) => return Attempt::Failed(f),
        }
    }
    match client.delete_all(&c.project).await {
        Ok(()) => Attempt::Delivered {
            ids: Vec::new(),
            reconciled: false,
        },
        Err(f) => Attempt::Failed(f),
    }
}

impl Attempt {
    /// Done, with nothing sent: there was nothing on the server to change.
    fn delivered_nothing() -> Attempt {
        Attempt::Delivered {
            ids: Vec::new(),
            reconciled: false,
        }
    }
}
