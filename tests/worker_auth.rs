//! A wrong API key: the server answers 401, the entry is dead at once (one
//! request, never retried, not even by a later run), counted in `dead_auth`,
//! and the policy raises a CRITICAL `auth-rejected` alert.

use mem0_queue::app::queue_stats;
use mem0_queue::policy::Level;
use mem0_queue::store::State;
use mem0_queue_testkit::worker::{Harness, KINDS, Options, add_requests};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_kills_the_entry_at_once_and_alerts() {
    for kind in KINDS {
        let mut opts = Options::new(kind);
        opts.server_key = Some("m0-right-key".into());
        opts.client_key = Some("m0-wrong-key".into());
        let h = Harness::start(opts).await;
        let ids = h.enqueue(1).await;
        let id = &ids[0];

        let report = h.run().await;

        assert_eq!(report.attempts, 1, "{kind:?}: {report:?}");
        assert_eq!(report.dead, 1, "{kind:?}");
        assert_eq!((report.retried, report.failed, report.delivered), (0, 0, 0));
        assert_eq!(
            report.remaining, 0,
            "{kind:?}: a dead entry is not undelivered work"
        );
        assert!(
            h.vclock.slept().is_empty(),
            "{kind:?}: no backoff for a 401"
        );
        let requests = h.server.requests();
        assert_eq!(
            requests.len(),
            1,
            "{kind:?}: one request only: {requests:?}"
        );
        assert_eq!(requests[0].status, Some(401));
        // The key travelled in the kind's own header.
        match kind {
            mem0_queue_testkit::mem0_server::Kind::Oss => {
                assert_eq!(requests[0].x_api_key.as_deref(), Some("m0-wrong-key"))
            }
            mem0_queue_testkit::mem0_server::Kind::Platform => assert_eq!(
                requests[0].authorization.as_deref(),
                Some("Token m0-wrong-key")
            ),
        }
        let row = h.row(id);
        assert_eq!(row.state, State::Dead, "{kind:?}");
        assert!(row.dead_auth, "{kind:?}");
        assert_eq!(row.attempts, 1);
        let reason = row.dead_reason.clone().unwrap_or_default();
        assert!(
            reason.contains("401") && reason.contains("API key"),
            "{kind:?}: {reason}"
        );
        assert!(h.server.stored().is_empty());

        let stats = h.stats().await;
        assert_eq!(
            (stats.counts.dead, stats.counts.dead_auth),
            (1, 1),
            "{kind:?}"
        );
        let q = queue_stats(&stats, h.clock.now_ms());
        let alerts = h
            .policy
            .run(move |p| p.alerts(q))
            .await
            .expect("the policy answers");
        let auth = alerts
            .iter()
            .find(|a| a.code == "auth-rejected")
            .unwrap_or_else(|| panic!("{kind:?}: an auth-rejected alert: {alerts:?}"));
        assert_eq!(auth.level, Level::Critical, "{kind:?}");
        assert!(auth.message.contains("CRITICAL"), "{}", auth.message);
        assert!(
            !auth.message.contains("m0-wrong-key"),
            "{kind:?}: the alert never shows the key"
        );
        assert!(
            !h.log_text().contains("m0-wrong-key"),
            "{kind:?}: the worker log never shows the key"
        );

        // Never retried: a later run sends nothing (dead entries are not revived).
        let again = h.run().await;
        assert_eq!(
            (again.attempts, again.revived),
            (0, 0),
            "{kind:?}: {again:?}"
        );
        assert_eq!(add_requests(&h.server).len(), 1, "{kind:?}");
        assert_eq!(h.row(id).state, State::Dead);
    }
}
