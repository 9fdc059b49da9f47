//! A wrong API key is a configuration problem, not a death sentence: the
//! server answers 401, the run stops at once (one request), the entry stays
//! pending and uncharged (the requests already in flight get the same
//! answer), a CRITICAL `auth-rejected` alert names the fix, a
//! later run sends one probe and stops again, and the first run after the
//! key is fixed delivers it.

use mem0_queue::engine::app::config_problem_alert;
use mem0_queue::engine::mem0::ConfigProblem;
use mem0_queue::engine::policy::Level;
use mem0_queue::engine::store::State;
use mem0_queue::engine::worker::{CONFIG_PROBLEM_KEY, ConfigProblemRecord, Stop};
use mem0_queue_testkit::worker::{Harness, KINDS, Options, add_requests};

async fn recorded(h: &Harness) -> Option<ConfigProblemRecord> {
    h.store
        .run(|s| s.meta_get(CONFIG_PROBLEM_KEY))
        .await
        .expect("read meta")
        .map(|v| serde_json::from_str(&v).expect("a config problem record"))
}

/// Regression (issue 12): a rejected key sent every entry to `dead` after
/// one attempt, where `retry` alone could bring them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_kills_no_entry_and_the_first_run_after_the_fix_delivers() {
    for kind in KINDS {
        let mut opts = Options::new(kind);
        opts.server_key = Some("m0-right-key".into());
        opts.client_key = Some("m0-wrong-key".into());
        let mut h = Harness::start(opts).await;
        let ids = h.enqueue(3).await;

        let report = h.run().await;

        assert_eq!(report.stopped, Some(Stop::Config), "{kind:?}: {report:?}");
        // The requests already in flight when the first answer came (up to
        // `concurrency`, three entries here) all get the same answer; no new
        // one is sent after it.
        assert_eq!(report.attempts, 3, "{kind:?}: {report:?}");
        assert_eq!(
            (report.dead, report.retried, report.failed, report.delivered),
            (0, 0, 0, 0)
        );
        assert_eq!(report.remaining, 3, "{kind:?}: all still to deliver");
        assert_eq!(
            report.config_problem,
            Some(ConfigProblem::AuthRejected { status: 401 })
        );
        assert!(
            h.vclock.slept().is_empty(),
            "{kind:?}: no backoff for a 401"
        );
        let requests = h.server.requests();
        assert_eq!(requests.len(), 3, "{kind:?}: {requests:?}");
        assert!(requests.iter().all(|r| r.status == Some(401)));
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
        for id in &ids {
            let row = h.row(id);
            assert_eq!(row.state, State::Pending, "{kind:?}: {row:?}");
            assert_eq!(row.attempts, 0, "{kind:?}: uncharged");
            assert!(!row.dead_auth);
            assert!(!row.needs_reconcile, "a 401 stored nothing");
        }
        assert!(h.server.stored().is_empty());

        let rec = recorded(&h).await.expect("the problem is recorded");
        assert_eq!(rec.problem, ConfigProblem::AuthRejected { status: 401 });
        let alert = config_problem_alert(&rec, 3);
        assert_eq!(
            (alert.level, alert.code.as_str()),
            (Level::Critical, "auth-rejected")
        );
        assert!(
            alert.message.contains("CRITICAL") && alert.message.contains("3 memories wait"),
            "{}",
            alert.message
        );
        assert!(
            alert.actions.iter().any(|a| a.contains("api_key")),
            "{:?}",
            alert.actions
        );
        assert!(
            !alert.message.contains("m0-wrong-key") && !h.log_text().contains("m0-wrong-key"),
            "{kind:?}: neither the alert nor the worker log shows the key"
        );

        // A later run with the key still wrong: one probe, then it stops.
        let again = h.run().await;
        assert_eq!(
            (again.attempts, again.stopped),
            (1, Some(Stop::Config)),
            "{kind:?}: {again:?}"
        );
        assert_eq!(add_requests(&h.server).len(), 4, "{kind:?}");

        // The key is fixed: the first run delivers every entry, once, and
        // the problem is cleared.
        h.config.api_key = Some("m0-right-key".into());
        let fixed = h.run().await;
        assert_eq!(
            (fixed.delivered, fixed.remaining, fixed.stopped),
            (3, 0, None),
            "{kind:?}: {fixed:?}"
        );
        assert!(recorded(&h).await.is_none(), "{kind:?}: cleared");
        let counts = h.server.count_by_mq_id();
        for id in &ids {
            assert_eq!(counts.get(id), Some(&1), "{kind:?}: {id} once");
        }
    }
}
