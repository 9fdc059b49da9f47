//! R3, the network path: what stands between mem0-queue and Mem0 on a real
//! deployment (nginx or Caddy with TLS and a read timeout, `http → https`
//! redirects, login gates, wrong URLs), modelled by the testkit's proxy in
//! front of the Mem0 test server. Every scenario ends with the checker: 0
//! lost, 0 duplicated, 0 unexpected. Each bug of issue 12 has its
//! regression test here, named after it.

use std::collections::HashSet;
use std::time::Duration;

use mem0_queue::engine::mem0::ConfigProblem;
use mem0_queue::engine::store::State;
use mem0_queue::engine::worker::{RunReport, Stop};
use mem0_queue_testkit::checker;
use mem0_queue_testkit::mem0_server::{FaultPlan, Kind, Mem0Server};
use mem0_queue_testkit::proxy::{Proxy, ProxyMode, RedirectTarget};
use mem0_queue_testkit::tls::{TestCa, https_redirector, tls_front};
use mem0_queue_testkit::worker::{Harness, KINDS, Options, add_requests, server};

/// Entries per scenario: more than the worker's concurrency (4), so a
/// problem met by the first requests is seen before most entries are tried.
const ENTRIES: usize = 10;

/// The most runs a scenario may take to drain once the path is sound.
const MAX_RUNS: usize = 20;

/// The gateway's read timeout in the 504 scenarios: well under the server's
/// latency below and the client's add timeout (300 ms in the harness), as
/// nginx's 60 s is under an add with `infer` (4 to 140 s).
const GATEWAY_TIMEOUT: Duration = Duration::from_millis(100);

/// How long the server takes to answer an add in the 504 scenarios (it
/// stores first, then answers): longer than [`GATEWAY_TIMEOUT`].
const SLOW_ADD: Duration = Duration::from_millis(250);

/// A harness whose client goes through a proxy in `mode` in front of a test
/// server of `kind`.
async fn through(kind: Kind, mode: ProxyMode) -> (Harness, Proxy, Vec<String>) {
    let srv = server(kind, None, 7).await;
    let proxy = Proxy::start(srv.url(), mode).await;
    let h = Harness::with_server(Options::new(kind), srv, Some(proxy.url()));
    let ids = h.enqueue(ENTRIES).await;
    (h, proxy, ids)
}

/// Runs until nothing is left (at most [`MAX_RUNS`]); returns the runs' sum.
async fn drain(h: &Harness) -> RunReport {
    let mut total = RunReport::default();
    for _ in 0..MAX_RUNS {
        let r = h.run().await;
        total.attempts += r.attempts;
        total.delivered += r.delivered;
        total.reconciled += r.reconciled;
        total.dead += r.dead;
        total.remaining = r.remaining;
        if r.remaining == 0 {
            break;
        }
    }
    total
}

/// The checker over the acknowledged ids, the queue and the server; prints
/// the R3 line.
fn check(label: &str, kind: Kind, h: &Harness, ids: &[String]) {
    let acked: HashSet<String> = ids.iter().cloned().collect();
    let report = checker::check(&acked, &h.db_path(), &h.server.count_by_mq_id());
    assert!(report.ok(), "{label} {kind:?}: {}", report.summary());
    let states = h.rows();
    assert!(
        ids.iter().all(|id| states[id].state == State::Delivered),
        "{label} {kind:?}: all delivered"
    );
    println!("R3 network {label} {kind:?}: {}", report.summary());
}

/// After a configuration problem: nothing was delivered or charged, and
/// every entry is pending, due at once.
fn assert_all_waiting(label: &str, h: &Harness, ids: &[String]) {
    for id in ids {
        let row = h.row(id);
        assert_eq!(row.state, State::Pending, "{label}: {row:?}");
        assert_eq!(row.attempts, 0, "{label}: uncharged: {row:?}");
        assert!(row.remote_ids.is_empty(), "{label}: {row:?}");
    }
}

/// Points the harness's client at `url` (the fix a user makes).
fn fix(h: &mut Harness, url: String) {
    h.config.api_url = Some(url);
}

fn mem0_url(h: &Harness) -> String {
    h.server.url()
}

/// Points the harness's client at the Mem0 server itself.
fn fix_to_mem0(h: &mut Harness) {
    let url = mem0_url(h);
    fix(h, url);
}

/// Regression (issue 12, "a gateway's 504 makes duplicates"): the proxy
/// gives up at its read timeout and answers 504 while Mem0 finishes the add
/// and stores it. The 504 used to count as "not stored" and the add was
/// resent: 10 acked saves became 50 memories. Now a 504 is an unknown
/// outcome, reconciled by `mq_id` before any resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_504_after_the_server_stored_makes_no_duplicate() {
    for kind in KINDS {
        let (h, proxy, ids) = through(
            kind,
            ProxyMode::GatewayTimeout {
                read_timeout: GATEWAY_TIMEOUT,
            },
        )
        .await;
        // Mem0 is slower than the gateway on every add, and stays so.
        h.server.set_faults(FaultPlan {
            latency: Some(SLOW_ADD),
            ..FaultPlan::default()
        });
        let mut total = RunReport::default();
        for _ in 0..MAX_RUNS {
            let r = h.run().await;
            // The upstream calls the gateway gave up on finish meanwhile.
            proxy.settle().await;
            total.delivered += r.delivered;
            total.reconciled += r.reconciled;
            if r.remaining == 0 {
                break;
            }
        }
        assert_eq!(total.delivered, ENTRIES as u64, "{kind:?}: {total:?}");
        assert_eq!(
            total.reconciled, ENTRIES as u64,
            "{kind:?}: every add was stored behind its 504 and found by mq_id"
        );
        assert_eq!(
            add_requests(&h.server).len(),
            ENTRIES,
            "{kind:?}: no add was sent twice"
        );
        let gateway_504s = proxy
            .requests()
            .iter()
            .filter(|r| r.status == Some(504))
            .count();
        assert_eq!(gateway_504s, ENTRIES, "{kind:?}");
        check("gateway-504", kind, &h, &ids);
    }
}

/// A gateway's 502 page after the upstream stored the add (the connection
/// to Mem0 broke on the way back) is an unknown outcome too; a 502 page
/// for which nothing was forwarded is one that reconciles to "not there".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_gateway_page_makes_no_duplicate_and_loses_nothing() {
    for kind in KINDS {
        for forward in [true, false] {
            let (mut h, proxy, ids) = through(kind, ProxyMode::BadGatewayHtml { forward }).await;
            let first = h.run().await;
            proxy.settle().await;
            // A gateway's page is no answer from Mem0: the breaker counts it.
            assert_eq!(first.stopped, Some(Stop::Breaker), "{kind:?}: {first:?}");
            assert_eq!(first.delivered, 0);
            let stored_behind = h.server.stored().len();
            assert_eq!(stored_behind > 0, forward, "{kind:?} forward={forward}");
            // The gateway recovers.
            proxy.set_mode(ProxyMode::Pass);
            let url = proxy.url();
            fix(&mut h, url);
            let total = drain(&h).await;
            assert_eq!(total.remaining, 0, "{kind:?}: {total:?}");
            assert_eq!(
                total.reconciled as usize, stored_behind,
                "{kind:?} forward={forward}: what was stored behind a 502 is found, not resent"
            );
            check(&format!("bad-gateway-forward-{forward}"), kind, &h, &ids);
        }
    }
}

/// Regression (issue 12, "a redirect loses memories"): the client followed
/// 301/302/303, turned the POST into a GET, and counted any 2xx as
/// delivered; behind an SSO gate every entry was marked delivered with
/// nothing on the server. Now a 3xx is never followed: a configuration
/// problem naming the `Location`, every entry pending and uncharged, and the
/// first run after the fix delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_never_followed_and_loses_nothing() {
    for kind in KINDS {
        // Every status to the right server; a login gate's usual ones.
        let cases = [301, 302, 303, 307, 308]
            .map(|s| (s, RedirectTarget::Upstream))
            .into_iter()
            .chain([302, 303].map(|s| (s, RedirectTarget::LoginPage)));
        for (status, to) in cases {
            {
                let label = format!("redirect-{status}-{to:?}");
                let (mut h, proxy, ids) = through(
                    kind,
                    ProxyMode::Redirect {
                        status,
                        to: to.clone(),
                    },
                )
                .await;
                let r = h.run().await;
                assert_eq!(r.stopped, Some(Stop::Config), "{label} {kind:?}: {r:?}");
                assert_eq!(r.delivered, 0, "{label} {kind:?}: {r:?}");
                let Some(ConfigProblem::Redirect {
                    status: got,
                    location: Some(location),
                    suggested_api_url,
                }) = r.config_problem.clone()
                else {
                    panic!("{label} {kind:?}: a redirect problem: {r:?}");
                };
                assert_eq!(got, status);
                match to {
                    RedirectTarget::Upstream => {
                        assert!(location.starts_with(&mem0_url(&h)), "{location}");
                        assert_eq!(suggested_api_url, Some(mem0_url(&h)), "{label}");
                    }
                    _ => {
                        assert!(location.contains("/login"), "{location}");
                        assert_eq!(suggested_api_url, None, "{label}: a login page");
                    }
                }
                assert_all_waiting(&label, &h, &ids);
                assert!(
                    h.server.requests().is_empty(),
                    "{label} {kind:?}: nothing reached Mem0"
                );
                // The next run probes once, and stops again.
                let again = h.run().await;
                assert_eq!((again.attempts, again.stopped), (1, Some(Stop::Config)));
                assert!(proxy.requests().iter().all(|p| !p.forwarded));
                fix_to_mem0(&mut h);
                let total = drain(&h).await;
                assert_eq!(total.remaining, 0, "{label} {kind:?}");
                check(&label, kind, &h, &ids);
            }
        }
    }
}

/// Regression (issue 12): a 200 that is not Mem0's answer (a login page, an
/// empty body, JSON of another application, as behind an SSO gate) counted
/// as delivered, and `remote_ids` took unrelated ids from it. Now it is a
/// configuration problem; since something answered 2xx, each entry is
/// looked up by `mq_id` before it is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_mem0s_answer_is_not_delivered() {
    for kind in KINDS {
        for mode in [
            ProxyMode::LoginPage,
            ProxyMode::Empty200,
            ProxyMode::JsonOfAnotherShape,
        ] {
            let label = format!("{mode:?}");
            let (mut h, _proxy, ids) = through(kind, mode).await;
            let r = h.run().await;
            assert_eq!(r.stopped, Some(Stop::Config), "{label} {kind:?}: {r:?}");
            assert!(
                matches!(
                    r.config_problem,
                    Some(ConfigProblem::NotMem0 { status: 200, .. })
                ),
                "{label} {kind:?}: {r:?}"
            );
            assert_eq!(r.delivered, 0);
            for id in &ids {
                let row = h.row(id);
                assert_eq!(row.state, State::Pending, "{label}: {row:?}");
                assert!(
                    row.remote_ids.is_empty(),
                    "{label}: no id from a foreign page"
                );
                if row.needs_reconcile {
                    assert!(r.attempts > 0);
                }
            }
            fix_to_mem0(&mut h);
            let total = drain(&h).await;
            assert_eq!(total.remaining, 0, "{label} {kind:?}");
            check(&label, kind, &h, &ids);
        }
    }
}

/// Regression (issue 12, "a wrong URL kills every entry"): with a path
/// prefix the server does not have, or the wrong `api_kind`, each add got
/// 404 and went to dead after one attempt. Now it is a configuration
/// problem; the entries wait, and the first run after the fix delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_url_or_api_kind_kills_no_entry() {
    for kind in KINDS {
        // nginx serves Mem0 under /mem0/; the client was given the bare host.
        let (mut h, proxy, ids) = through(
            kind,
            ProxyMode::PathPrefix {
                prefix: "/mem0".into(),
            },
        )
        .await;
        let r = h.run().await;
        assert_eq!(r.stopped, Some(Stop::Config), "{kind:?}: {r:?}");
        assert!(
            matches!(
                r.config_problem,
                Some(ConfigProblem::WrongRoute {
                    status: 404,
                    mem0: false,
                    ..
                })
            ),
            "{kind:?}: {r:?}"
        );
        assert_eq!(r.dead, 0);
        assert_all_waiting("prefix-missing", &h, &ids);
        let url = format!("{}/mem0", proxy.url());
        fix(&mut h, url);
        assert_eq!(drain(&h).await.remaining, 0, "{kind:?}");
        check("prefix-missing", kind, &h, &ids);

        // A prefix the server does not have, straight to Mem0 (FastAPI's 404).
        let srv = server(kind, None, 8).await;
        let url = format!("{}/api", srv.url());
        let mut h = Harness::with_server(Options::new(kind), srv, Some(url));
        let ids = h.enqueue(ENTRIES).await;
        let r = h.run().await;
        assert_eq!(r.stopped, Some(Stop::Config), "{kind:?}: {r:?}");
        assert!(
            matches!(
                r.config_problem,
                Some(ConfigProblem::WrongRoute { mem0: true, .. })
            ),
            "{kind:?}: {r:?}"
        );
        assert_all_waiting("prefix-extra", &h, &ids);
        fix_to_mem0(&mut h);
        assert_eq!(drain(&h).await.remaining, 0);
        check("prefix-extra", kind, &h, &ids);
    }

    // The wrong API kind: a platform client at a self-hosted server.
    let srv = server(Kind::Oss, None, 9).await;
    let mut h = Harness::with_server(Options::new(Kind::Platform), srv, None);
    let ids = h.enqueue(ENTRIES).await;
    let r = h.run().await;
    assert_eq!(r.stopped, Some(Stop::Config), "{r:?}");
    assert!(matches!(
        r.config_problem,
        Some(ConfigProblem::WrongRoute { .. })
    ));
    assert_all_waiting("wrong-kind", &h, &ids);
    h.config.api_kind = mem0_queue::engine::config::ApiKind::Oss;
    assert_eq!(drain(&h).await.remaining, 0);
    check("wrong-kind", Kind::Oss, &h, &ids);
}

/// Regression (issue 12, "a hung server makes a run last very long"): the
/// breaker counted only failures before the request was sent, so a server
/// that accepts and never answers cost a full add timeout per entry. Now a
/// request with no answer counts: the first run spends one round of
/// requests (the worker's concurrency), the next one a single probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_costs_one_round_of_requests_per_run() {
    for kind in KINDS {
        let (mut h, proxy, ids) = through(kind, ProxyMode::Tarpit).await;
        let first = h.run().await;
        assert_eq!(first.stopped, Some(Stop::Breaker), "{kind:?}: {first:?}");
        let concurrency = h.config.concurrency;
        assert!(
            proxy.requests().len() <= concurrency,
            "{kind:?}: {} requests to a tarpit for {ENTRIES} entries",
            proxy.requests().len()
        );
        let second = h.run().await;
        assert_eq!(second.stopped, Some(Stop::Breaker), "{kind:?}: {second:?}");
        assert_eq!(second.attempts, 1, "{kind:?}: one probe");
        // The server is back.
        fix_to_mem0(&mut h);
        assert_eq!(drain(&h).await.remaining, 0);
        check("tarpit", kind, &h, &ids);
    }
}

/// TLS as users run it: a self-signed server, trusted through `ca_file`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate_and_ca_file_delivers() {
    for kind in KINDS {
        let ca = TestCa::new();
        let srv = server(kind, None, 10).await;
        let front = tls_front(srv.url(), &ca).await;
        let mut h = Harness::with_server(Options::new(kind), srv, Some(front.url()));
        h.config.ca_file = Some(ca.ca_file().to_path_buf());
        let ids = h.enqueue(ENTRIES).await;
        assert_eq!(drain(&h).await.remaining, 0, "{kind:?}");
        check("tls-ca-file", kind, &h, &ids);
    }
}

/// An untrusted certificate is a configuration problem that says so, and
/// never a silent downgrade: nothing is sent, over https or plain http.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_configuration_problem_never_a_downgrade() {
    let ca = TestCa::new();
    let other = TestCa::untrusted();
    let srv: Mem0Server = server(Kind::Oss, None, 11).await;
    let front = tls_front(srv.url(), &ca).await;
    for ca_file in [None, Some(other.ca_file().to_path_buf())] {
        let mut h = Harness::with_server(
            Options::new(Kind::Oss),
            server(Kind::Oss, None, 12).await,
            Some(front.url()),
        );
        h.config.ca_file = ca_file.clone();
        let ids = h.enqueue(3).await;
        let r = h.run().await;
        assert_eq!(r.stopped, Some(Stop::Config), "{ca_file:?}: {r:?}");
        let Some(ConfigProblem::Tls { untrusted, detail }) = r.config_problem.clone() else {
            panic!("{ca_file:?}: a TLS problem: {r:?}");
        };
        assert!(untrusted, "{detail}");
        let fix_text = ConfigProblem::Tls { untrusted, detail }.fix(&front.url());
        assert!(fix_text[0].contains("ca_file"), "{fix_text:?}");
        assert_all_waiting("tls-untrusted", &h, &ids);
    }
    assert!(
        front.requests().is_empty() && srv.requests().is_empty(),
        "nothing got past the handshake, and nothing went elsewhere"
    );
}

/// An `http://` URL behind nginx's `return 301 https://...`: the problem
/// names the exact new `api_url`, and with it every entry is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_to_https_redirect_names_the_new_api_url() {
    let ca = TestCa::new();
    for kind in KINDS {
        let srv = server(kind, None, 13).await;
        let front = tls_front(srv.url(), &ca).await;
        let redirector = https_redirector(&front.url()).await;
        let mut h = Harness::with_server(Options::new(kind), srv, Some(redirector.url()));
        h.config.ca_file = Some(ca.ca_file().to_path_buf());
        let ids = h.enqueue(ENTRIES).await;
        let r = h.run().await;
        let Some(problem @ ConfigProblem::Redirect { .. }) = r.config_problem.clone() else {
            panic!("{kind:?}: a redirect: {r:?}");
        };
        let ConfigProblem::Redirect {
            suggested_api_url, ..
        } = &problem
        else {
            unreachable!()
        };
        assert_eq!(suggested_api_url.as_deref(), Some(front.url().as_str()));
        let steps = problem.fix(&redirector.url());
        assert!(
            steps[0].contains(&format!("api_url = \"{}\"", front.url())),
            "{steps:?}"
        );
        assert_all_waiting("http-to-https", &h, &ids);
        fix(&mut h, front.url());
        assert_eq!(drain(&h).await.remaining, 0, "{kind:?}");
        check("http-to-https", kind, &h, &ids);
    }
}

/// Issue 14's changes take the same network path as the adds: an update
/// and a delete of a delivered memory, sent through a gateway that answers
/// 504 after Mem0 applied them, a 502 page after forwarding, a redirect to
/// a login page, or a login page served as 200. A 504 or a forwarded 502 is
/// an unknown outcome (the change may be applied): resending it must change
/// nothing more. A redirect or an HTML 200 is a configuration problem: the
/// changes wait, uncharged and not dead, and go once the URL is fixed. In
/// every case the server ends with exactly the edited memories, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_through_the_network_path_are_neither_lost_nor_doubled() {
    use mem0_queue::engine::store::{Changes, Limits};
    use mem0_queue_testkit::mem0_server::FaultScope;
    use mem0_queue_testkit::worker::PROJECT;

    let modes = [
        (
            "gateway-504",
            ProxyMode::GatewayTimeout {
                read_timeout: GATEWAY_TIMEOUT,
            },
        ),
        (
            "bad-gateway-forward",
            ProxyMode::BadGatewayHtml { forward: true },
        ),
        (
            "redirect-302-LoginPage",
            ProxyMode::Redirect {
                status: 302,
                to: RedirectTarget::LoginPage,
            },
        ),
        ("LoginPage", ProxyMode::LoginPage),
    ];
    for kind in KINDS {
        for (label, mode) in modes.clone() {
            let (h, proxy, ids) = through(kind, ProxyMode::Pass).await;
            assert_eq!(drain(&h).await.remaining, 0, "{label} {kind:?}");
            let (edited, deleted) = ids.split_at(ENTRIES / 2);
            let now = h.now();
            let limits = Limits {
                max_content_bytes: 65_536,
                max_metadata_bytes: 16_384,
                max_queue_len: 100_000,
            };
            for (i, id) in edited.iter().enumerate() {
                let changes = Changes {
                    text: Some(format!("edited memory {i}: the user prefers spaces")),
                    metadata: None,
                };
                h.store
                    .run_blocking(|s| s.update_memory(id, &changes, PROJECT, &limits, now))
                    .expect("update queued");
            }
            for id in deleted {
                h.store
                    .run_blocking(|s| s.delete_memory(id, PROJECT, now))
                    .expect("delete queued");
            }
            let before = h.server.mutations().len();

            proxy.set_mode(mode.clone());
            let unknown = matches!(
                mode,
                ProxyMode::GatewayTimeout { .. } | ProxyMode::BadGatewayHtml { .. }
            );
            if unknown {
                // Mem0 applies each write, then answers after the gateway
                // gave up (504), or the proxy answers its 502 page after
                // forwarding. A few runs, then the proxy is fixed.
                h.server.set_faults(FaultPlan {
                    latency: Some(SLOW_ADD),
                    scope: FaultScope::Writes,
                    ..FaultPlan::default()
                });
                for _ in 0..3 {
                    let r = h.run().await;
                    proxy.settle().await;
                    assert_eq!(r.dead, 0, "{label} {kind:?}: {r:?}");
                }
                h.server.set_faults(FaultPlan::default());
            } else {
                let r = h.run().await;
                assert_eq!(r.stopped, Some(Stop::Config), "{label} {kind:?}: {r:?}");
                assert_eq!(
                    h.server.mutations().len(),
                    before,
                    "{label} {kind:?}: nothing reached Mem0"
                );
                assert_eq!(h.server.live().len(), ENTRIES, "{label} {kind:?}");
            }
            proxy.set_mode(ProxyMode::Pass);
            assert_eq!(drain(&h).await.remaining, 0, "{label} {kind:?}");
            proxy.settle().await;

            let live = h.server.live();
            let mut texts: Vec<String> = live.iter().map(|m| m.memory.clone()).collect();
            texts.sort();
            let mut want: Vec<String> = (0..edited.len())
                .map(|i| format!("edited memory {i}: the user prefers spaces"))
                .collect();
            want.sort();
            assert_eq!(texts, want, "{label} {kind:?}: exactly the edited memories");
            assert_eq!(
                add_requests(&h.server).len(),
                ENTRIES,
                "{label} {kind:?}: no add was sent again"
            );
            assert!(
                h.rows().values().all(|r| r.state == State::Delivered),
                "{label} {kind:?}: every change delivered, none dead"
            );
            println!(
                "R3 network lifecycle {label} {kind:?}: {} updates, {} deletes; live={} lost=0 duplicated=0",
                edited.len(),
                deleted.len(),
                live.len()
            );
        }
    }
}

/// The reads (search, list, get: what `mem0_search`, recall, `mem0_list`
/// and `mem0_get` ask Mem0) judge an answer as the writes do: a login page,
/// a redirect to one, another app's JSON or an empty 200 is never taken for
/// Mem0's results (an error, so the callers fall back to the local copy);
/// the same reads through a plain proxy find the delivered memories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_take_a_page_that_is_not_mem0s_for_results() {
    use mem0_queue::engine::mem0::Client;
    use mem0_queue_testkit::worker::PROJECT;

    for kind in KINDS {
        let (h, proxy, ids) = through(kind, ProxyMode::Pass).await;
        assert_eq!(drain(&h).await.remaining, 0, "{kind:?}");
        let remote = h.row(&ids[0]).remote_ids[0].clone();
        let client = Client::from_config(&h.config).expect("a client");
        let found = client
            .search("tabs", PROJECT, 10)
            .await
            .expect("search through a plain proxy");
        assert!(!found.is_empty(), "{kind:?}: the delivered memories");
        assert!(
            client.get(&remote).await.expect("get").is_some(),
            "{kind:?}: get through a plain proxy"
        );
        for mode in [
            ProxyMode::LoginPage,
            ProxyMode::Redirect {
                status: 302,
                to: RedirectTarget::LoginPage,
            },
            ProxyMode::JsonOfAnotherShape,
            ProxyMode::Empty200,
        ] {
            proxy.set_mode(mode.clone());
            let search = client.search("tabs", PROJECT, 10).await;
            assert!(search.is_err(), "{kind:?} {mode:?}: search took {search:?}");
            let get = client.get(&remote).await;
            assert!(get.is_err(), "{kind:?} {mode:?}: get took {get:?}");
        }
    }
}
