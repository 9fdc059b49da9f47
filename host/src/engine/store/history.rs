//! Read-only history of the queue for the dashboard's charts: saves and
//! deliveries per time bucket.

use rusqlite::params;

use super::{Store, StoreError};

impl Store {
    /// Saves (by `created_at`) and deliveries (by `delivered_at`) in
    /// `buckets` consecutive buckets of `bucket_ms`, oldest first, as
    /// `(bucket start, saves, deliveries)`. Buckets are aligned on multiples
    /// of `bucket_ms` since the Unix epoch (UTC hours and days), and the last
    /// one holds `now_ms`. Entries dropped by `retention_days` are not
    /// counted any more.
    pub fn history(
        &self,
        now_ms: i64,
        bucket_ms: i64,
        buckets: usize,
    ) -> Result<Vec<(i64, u64, u64)>, StoreError> {
        if bucket_ms <= 0 || buckets == 0 {
            return Ok(Vec::new());
        }
        let buckets = buckets.min(10_000);
        let last_start = now_ms - now_ms.rem_euclid(bucket_ms);
        let start = last_start - bucket_ms * (buckets as i64 - 1);
        let end = last_start + bucket_ms;
        let mut out: Vec<(i64, u64, u64)> = (0..buckets)
            .map(|i| (start + bucket_ms * i as i64, 0, 0))
            .collect();
        for (column, deliveries) in [("created_at", false), ("delivered_at", true)] {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT ({column} - ?1) / ?2 AS b, count(*) FROM entries
                  WHERE {column} >= ?1 AND {column} < ?3
                  GROUP BY b"
            ))?;
            let rows = stmt.query_map(params![start, bucket_ms, end], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (b, n) = row?;
                if let Some(slot) = usize::try_from(b).ok().and_then(|b| out.get_mut(b)) {
                    if deliveries {
                        slot.2 = n.max(0) as u64;
                    } else {
                        slot.1 = n.max(0) as u64;
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, NewEntry, Origin};
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn save(s: &mut Store, text: &str, at: i64) -> String {
        let limits = Limits {
            max_content_bytes: 1 << 16,
            max_metadata_bytes: 1 << 14,
            max_queue_len: 1000,
        };
        s.enqueue(
            NewEntry {
                project: "p".into(),
                agent_id: None,
                run_id: None,
                content: text.into(),
                metadata: serde_json::json!({}),
                created_at: at,
                origin: Origin::Cli,
                infer: None,
                id: None,
            },
            &limits,
        )
        .expect("enqueue")
        .id
    }

    #[test]
    fn buckets_count_saves_and_deliveries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Store::open(&dir.path().join("q.db")).expect("open");
        // now = 10:30 on some day; hourly buckets 08:00, 09:00, 10:00.
        let now = 1_000 * 24 * HOUR + 10 * HOUR + 30 * 60_000;
        let day = now - now.rem_euclid(24 * HOUR);
        let a = save(&mut s, "at 08:00 sharp", day + 8 * HOUR);
        save(&mut s, "at 07:59, before the window", day + 8 * HOUR - 1);
        save(&mut s, "at 10:29", day + 10 * HOUR + 29 * 60_000);
        save(&mut s, "in the future", now + HOUR);
        let c = s.claim("t", now, 60_000, 1).expect("claim");
        assert_eq!(c[0].id, a, "the oldest save is claimed");
        s.record_delivered(&a, &[], day + 9 * HOUR + 5)
            .expect("deliver");
        let h = s.history(now, HOUR, 3).expect("history");
        assert_eq!(
            h,
            vec![
                (day + 8 * HOUR, 1, 0),
                (day + 9 * HOUR, 0, 1),
                (day + 10 * HOUR, 1, 0),
            ]
        );
        assert_eq!(s.history(now, 0, 3).expect("empty"), vec![]);
        assert_eq!(s.history(now, HOUR, 0).expect("empty"), vec![]);
    }
}
