//! The worker's side of the store: claims with leases, and the short
//! transactions that record each outcome. Every function here is one
//! `BEGIN IMMEDIATE` transaction and returns before any HTTP happens.
//!
//! `attempts_run` counts failed attempts since the entry's last fresh start
//! (its save, or its revival from `failed`): the policy's "attempts in this
//! run". It is not reset when a run stops early (breaker, `--max-duration`),
//! so an entry that was mid-schedule resumes where it was, and an entry that
//! was not tried is never charged.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::lifecycle::{CLAIMABLE, Changes, Op};
use super::{State, Store, StoreError, short_error};

/// An entry claimed for one delivery attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub project: String,
    pub agent_id: Option<String>,
    pub run_id: Option<String>,
    pub content: String,
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub attempts: u32,
    pub attempts_run: u32,
    pub runs_failed: u32,
    /// The last attempt's outcome is unknown: look it up before resending.
    pub needs_reconcile: bool,
    /// The platform event of an add whose processing is unconfirmed.
    pub event_id: Option<String>,
    /// What the entry does.
    pub op: Op,
    /// An add: the memory was deleted here while the add was in flight.
    pub deleted: bool,
    /// A change: the Mem0 memory it names, when it was known at queue time.
    pub remote_target: Option<String>,
    /// A change: the local memory it changes, when the local copy has it.
    pub target: Option<String>,
    /// A change of a local memory: that memory's state and Mem0 ids now
    /// (None when the memory is gone from the local copy).
    pub target_now: Option<(State, Vec<String>)>,
    /// An update: the new text and/or metadata.
    pub changes: Option<Changes>,
    /// An add: whether Mem0 infers facts from it; None: the config's.
    pub infer: Option<bool>,
}

/// What a run start did.
#[derive(Debug, Clone, Default)]
pub struct RunStart {
    /// Expired leases taken back (their worker died mid-request).
    pub reclaimed: u64,
}

/// How to record a failed attempt.
#[derive(Debug, Clone)]
pub enum FailureRecord {
    /// Back to pending, due after `delay_ms`.
    Retry { delay_ms: u64 },
    /// To `failed`, until a run start revives it.
    Fail,
    /// To `dead`, with a reason.
    Dead { reason: String, auth: bool },
}

impl Store {
    /// Takes back expired leases, and the leases of workers that are gone
    /// (`owner_alive` says whether a lease owner's process still runs): the
    /// request may have reached the server, so they are marked for
    /// reconciliation; they are not charged an attempt.
    pub fn reclaim_expired(
        &mut self,
        now_ms: i64,
        owner_alive: &dyn Fn(&str) -> bool,
    ) -> Result<RunStart, StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let owners: Vec<String> = tx
            .prepare("SELECT DISTINCT lease_owner FROM entries WHERE state = 'in_flight' AND lease_owner IS NOT NULL")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut reclaimed = 0;
        let sql = "UPDATE entries SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                          needs_reconcile = 1, next_attempt_at = ?1
                    WHERE state = 'in_flight' AND (lease_until < ?1 OR lease_owner = ?2)";
        for owner in owners.iter().filter(|o| !owner_alive(o)) {
            reclaimed += tx.execute(sql, params![now_ms, owner])? as u64;
        }
        reclaimed += tx.execute(sql, params![now_ms, Option::<String>::None])? as u64;
        tx.commit()?;
        Ok(RunStart { reclaimed })
    }

    /// The failed entries, for the policy's run-start decision.
    pub fn failed_summaries(
        &self,
        now_ms: i64,
    ) -> Result<Vec<crate::engine::policy::FailedSummary>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, runs_failed, attempts, created_at, coalesce(last_attempt_at, created_at), op
               FROM entries WHERE state = 'failed' ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([], |r| {
                let created: i64 = r.get(3)?;
                let last: i64 = r.get(4)?;
                let op: String = r.get(5)?;
                let op = Op::parse(&op).unwrap_or(Op::Add);
                Ok(crate::engine::policy::FailedSummary {
                    id: r.get(0)?,
                    runs_failed: r.get(1)?,
                    total_attempts: r.get(2)?,
                    age_ms: (now_ms - created).max(0) as u64,
                    since_last_attempt_ms: (now_ms - last).max(0) as u64,
                    operation: op.into(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Gives these failed entries a fresh start: pending, due now, their
    /// per-run attempts reset. Returns how many moved.
    pub fn revive(&mut self, ids: &[String], now_ms: i64) -> Result<u64, StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE entries SET state = 'pending', attempts_run = 0, next_attempt_at = ?2
                  WHERE id = ?1 AND state = 'failed'",
            )?;
            for id in ids {
                n += stmt.execute(params![id, now_ms])? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Claims up to `limit` due pending entries, oldest first, for `owner`
    /// until `now_ms + lease_ms`.
    pub fn claim(
        &mut self,
        owner: &str,
        now_ms: i64,
        lease_ms: u64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let claimed = {
            let mut select = tx.prepare_cached(&format!(
                "SELECT id, project, agent_id, run_id, coalesce(sent_text, content),
                        coalesce(sent_metadata, metadata), created_at, attempts,
                        attempts_run, runs_failed, needs_reconcile, event_id,
                        op, deleted_at, remote_target, target, changes, infer
                   FROM entries e
                  WHERE state = 'pending' AND next_attempt_at <= ?1 AND {CLAIMABLE}
                  ORDER BY next_attempt_at, seq
                  LIMIT ?2"
            ))?;
            let mut rows = select
                .query_map(params![now_ms, limit as i64], |r| {
                    let metadata: String = r.get(5)?;
                    let op: String = r.get(12)?;
                    let changes: Option<String> = r.get(16)?;
                    Ok(Claimed {
                        id: r.get(0)?,
                        project: r.get(1)?,
                        agent_id: r.get(2)?,
                        run_id: r.get(3)?,
                        content: r.get(4)?,
                        metadata: serde_json::from_str(&metadata)
                            .unwrap_or_else(|_| serde_json::json!({})),
                        created_at: r.get(6)?,
                        attempts: r.get(7)?,
                        attempts_run: r.get(8)?,
                        runs_failed: r.get(9)?,
                        needs_reconcile: r.get::<_, i64>(10)? != 0,
                        event_id: r.get(11)?,
                        op: Op::parse(&op).unwrap_or(Op::Add),
                        deleted: r.get::<_, Option<i64>>(13)?.is_some(),
                        remote_target: r.get(14)?,
                        target: r.get(15)?,
                        target_now: None,
                        changes: changes
                            .and_then(|c| serde_json::from_str(&c).ok())
                            .map(|v| Changes::from_json(&v)),
                        infer: r.get(17)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut target = tx.prepare_cached(
                "SELECT state, remote_ids FROM entries WHERE id = ?1 AND op = 'add'",
            )?;
            for c in &mut rows {
                if let Some(t) = &c.target {
                    c.target_now = target
                        .query_row([t], |r| {
                            let state: String = r.get(0)?;
                            let ids: String = r.get(1)?;
                            Ok((
                                State::parse(&state).unwrap_or(State::Pending),
                                serde_json::from_str(&ids).unwrap_or_default(),
                            ))
                        })
                        .optional()?;
                }
            }
            // An add's first attempt fixes what it sends (see `sent_text`).
            let mut update = tx.prepare_cached(
                "UPDATE entries SET state = 'in_flight', lease_owner = ?2, lease_until = ?3,
                        sent_text = CASE WHEN op = 'add' THEN coalesce(sent_text, content) END,
                        sent_metadata = CASE WHEN op = 'add' THEN coalesce(sent_metadata, metadata) END
                  WHERE id = ?1 AND state = 'pending'",
            )?;
            let until = now_ms.saturating_add(lease_ms as i64);
            for c in &rows {
                update.execute(params![c.id, owner, until])?;
            }
            rows
        };
        tx.commit()?;
        Ok(claimed)
    }

    /// Records the platform event of an add before waiting on it, so a crash
    /// while waiting does not resend the add.
    pub fn set_event(&mut self, id: &str, event_id: Option<&str>) -> Result<(), StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE entries SET event_id = ?2 WHERE id = ?1",
            params![id, event_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Marks an entry delivered. A confirmed delivery is recorded whatever
    /// happened to the lease meanwhile: the server has the memory.
    pub fn record_delivered(
        &mut self,
        id: &str,
        remote_ids: &[String],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE entries SET state = 'delivered', delivered_at = ?2, remote_ids = ?3,
                    lease_owner = NULL, lease_until = NULL, needs_reconcile = 0,
                    event_id = NULL, last_error = NULL, last_attempt_at = ?2
              WHERE id = ?1 AND state != 'delivered'",
            params![
                id,
                now_ms,
                serde_json::to_string(remote_ids).unwrap_or_else(|_| "[]".into())
            ],
        )?;
        for r in remote_ids {
            tx.execute(
                "INSERT OR IGNORE INTO remote_memories (remote_id, entry_id)
                 SELECT ?1, id FROM entries WHERE id = ?2 AND op = 'add'",
                params![r, id],
            )?;
        }
        if n > 0 {
            tx.execute(
                "UPDATE stats SET value = value + 1 WHERE key = 'total_synced'",
                [],
            )?;
            tx.execute(
                "UPDATE stats SET value = ?1 WHERE key = 'last_success'",
                [now_ms],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Records a failed attempt and the policy's decision. `unknown` marks
    /// an attempt whose request may have reached the server.
    pub fn record_failure(
        &mut self,
        id: &str,
        owner: &str,
        record: &FailureRecord,
        error: &str,
        unknown: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (state, next, reason, auth) = match record {
            FailureRecord::Retry { delay_ms } => (
                State::Pending,
                now_ms.saturating_add(*delay_ms as i64),
                None,
                false,
            ),
            FailureRecord::Fail => (State::Failed, now_ms, None, false),
            FailureRecord::Dead { reason, auth } => {
                (State::Dead, now_ms, Some(short_error(reason)), *auth)
            }
        };
        tx.execute(
            "UPDATE entries SET state = ?3, attempts = attempts + 1,
                    attempts_run = attempts_run + 1,
                    runs_failed = runs_failed + (?3 = 'failed'),
                    next_attempt_at = ?4, last_attempt_at = ?5, last_error = ?6,
                    needs_reconcile = max(needs_reconcile, ?7),
                    dead_reason = ?8, dead_auth = ?9,
                    lease_owner = NULL, lease_until = NULL
              WHERE id = ?1 AND state = 'in_flight' AND lease_owner = ?2",
            params![
                id,
                owner,
                state.as_str(),
                next,
                now_ms,
                short_error(error),
                unknown as i64,
                reason,
                auth as i64
            ],
        )?;
        if state == State::Failed {
            tx.execute(
                "UPDATE stats SET value = value + 1 WHERE key = 'total_failed'",
                [],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Gives a claimed entry back without charging an attempt: shutdown or a
    /// stopped run. `maybe_sent` marks it for reconciliation.
    pub fn release(
        &mut self,
        id: &str,
        owner: &str,
        maybe_sent: bool,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE entries SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                    needs_reconcile = max(needs_reconcile, ?3), next_attempt_at = ?4
              WHERE id = ?1 AND state = 'in_flight' AND lease_owner = ?2",
            params![id, owner, maybe_sent as i64, due_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The earliest `next_attempt_at` of a pending entry that may be claimed
    /// (one waiting behind an earlier change of its memory is not due).
    pub fn next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT min(next_attempt_at) FROM entries e WHERE state = 'pending' AND {CLAIMABLE}"
                ),
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Whether a pending entry is due at `now_ms` and may be claimed: the
    /// daemon's cheap look, every second, for saves of other processes. It
    /// walks the `entries_due` index from the oldest due entry and stops at
    /// the first claimable one, so it costs one index probe when nothing is
    /// due, however long the queue.
    pub fn due_now(&self, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM entries e
                  WHERE state = 'pending' AND next_attempt_at <= ?1 AND {CLAIMABLE})"
            ),
            [now_ms],
            |r| r.get(0),
        )?)
    }

    /// Drops a claimed entry whose work has become moot: a change of a
    /// memory that never reached Mem0 (its add was rejected or cancelled),
    /// or an add deleted here while it was in flight that the server does
    /// not have. Changes queued behind a dropped add go with it.
    pub fn drop_claimed(&mut self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM entries WHERE id = ?1 AND state = 'in_flight' AND lease_owner = ?2",
            params![id, owner],
        )?;
        if n > 0 {
            tx.execute(
                "DELETE FROM entries WHERE target = ?1 AND op IN ('update', 'delete')
                   AND state IN ('pending', 'failed')",
                [id],
            )?;
            tx.execute("DELETE FROM graph_observations WHERE entry_id = ?1", [id])?;
            tx.execute("DELETE FROM graph_relations WHERE entry_id = ?1", [id])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Records a run's end: `last_sync`, and the failing-run streak.
    pub fn finish_run(
        &mut self,
        now_ms: i64,
        left_undelivered: bool,
        tripped: bool,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE stats SET value = ?1 WHERE key = 'last_sync'",
            [now_ms],
        )?;
        let streak: i64 = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'consecutive_failing_runs'",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let streak = if left_undelivered { streak + 1 } else { 0 };
        for (k, v) in [
            ("consecutive_failing_runs", streak.to_string()),
            ("previous_run_tripped", (tripped as u8).to_string()),
        ] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![k, v],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
