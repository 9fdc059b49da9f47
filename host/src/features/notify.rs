//! Desktop notifications for alerts (config `notify = true`).
//!
//! A notification fires when an alert level is first reached (none →
//! WARNING, or up to CRITICAL) and not again until the level drops; the last
//! notified level lives in the store's meta table (`notified_level`) so the
//! `serve` windows, cron runs and the hook's sync agree. The text is the
//! alert's message, which holds counts only, never a memory's text.
//!
//! macOS: `osascript -e 'display notification …'`; elsewhere `notify-send`.
//! When the tool is missing or fails (no desktop session under cron), that
//! is logged once (meta `notify_unavailable`) and is never an error.

use std::time::Duration;

use crate::engine::app::App;
use crate::engine::policy::{Alert, Level};

/// The meta key holding the last notified level.
pub const META_LEVEL: &str = "notified_level";

/// The meta key set once a missing notifier was logged.
const META_UNAVAILABLE: &str = "notify_unavailable";

/// How long the notifier may take.
const NOTIFIER_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest notification body.
const MAX_BODY: usize = 240;

fn rank(level: &str) -> u8 {
    match level {
        "critical" => 2,
        "warning" => 1,
        _ => 0,
    }
}

/// The most severe level of `alerts`: "ok", "warning" or "critical".
pub fn level_of(alerts: &[Alert]) -> &'static str {
    if alerts.iter().any(|a| a.level == Level::Critical) {
        "critical"
    } else if alerts.is_empty() {
        "ok"
    } else {
        "warning"
    }
}

/// What to do given the last notified level and the current one: the new
/// level to record, and whether to notify.
pub fn transition(last: &str, now: &str) -> (Option<&'static str>, bool) {
    let now_s: &'static str = match now {
        "critical" => "critical",
        "warning" => "warning",
        _ => "ok",
    };
    match rank(now).cmp(&rank(last)) {
        std::cmp::Ordering::Greater => (Some(now_s), true),
        std::cmp::Ordering::Less => (Some(now_s), false),
        std::cmp::Ordering::Equal => (None, false),
    }
}

/// After a worker run: reads the stats, asks the policy for alerts, and
/// notifies. Does nothing (not even the reads) when `notify` is off.
pub async fn after_run(app: &App) {
    if !app.config().notify {
        return;
    }
    let Ok(stats) = app.store.run(|s| s.stats()).await else {
        return;
    };
    let alerts = app.alerts(&stats).await.unwrap_or_default();
    maybe_notify(app, &alerts).await;
}

/// Notifies when `alerts` reach a level not notified yet.
pub async fn maybe_notify(app: &App, alerts: &[Alert]) {
    if !app.config().notify {
        return;
    }
    let now = level_of(alerts);
    let decided = app
        .store
        .run(move |s| {
            let last = s.meta_get(META_LEVEL)?.unwrap_or_else(|| "ok".into());
            let (record, notify) = transition(&last, now);
            if let Some(level) = record {
                s.meta_set(META_LEVEL, level)?;
            }
            Ok(notify)
        })
        .await;
    let notify = match decided {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the notified level");
            return;
        }
    };
    if !notify {
        return;
    }
    let Some(top) = alerts
        .iter()
        .find(|a| a.level == Level::Critical)
        .or(alerts.first())
    else {
        return;
    };
    let title = format!(
        "mem0-queue {}",
        if now == "critical" {
            "CRITICAL"
        } else {
            "WARNING"
        }
    );
    let mut body = crate::engine::text::truncate(&top.message, MAX_BODY);
    if alerts.len() > 1 {
        body.push_str(&format!(" (+{} more: mem0-queue status)", alerts.len() - 1));
    }
    app.log.line(&format!("notify: {title} ({})", top.code));
    if let Err(why) = send(&title, &body, now == "critical").await {
        let first = app
            .store
            .run(move |s| {
                let seen = s.meta_get(META_UNAVAILABLE)?.as_deref() == Some("1");
                if !seen {
                    s.meta_set(META_UNAVAILABLE, "1")?;
                }
                Ok(!seen)
            })
            .await
            .unwrap_or(false);
        if first {
            app.log.line(&format!(
                "notify: no desktop notification could be shown ({why}); alerts stay in \
                 `mem0-queue status` (this is logged once)"
            ));
            tracing::warn!("desktop notifications unavailable: {why}");
        }
    } else {
        let _ = app.store.run(|s| s.meta_set(META_UNAVAILABLE, "0")).await;
    }
}

/// AppleScript string literal.
fn applescript(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Shows one notification with the platform's tool, bounded in time.
async fn send(title: &str, body: &str, critical: bool) -> Result<(), String> {
    let mut cmd = if cfg!(target_os = "macos") {
        let mut c = tokio::process::Command::new("osascript");
        c.arg("-e").arg(format!(
            "display notification {} with title {}",
            applescript(body),
            applescript(title)
        ));
        c
    } else {
        let mut c = tokio::process::Command::new("notify-send");
        c.args([
            "--app-name=mem0-queue",
            if critical {
                "--urgency=critical"
            } else {
                "--urgency=normal"
            },
            title,
            body,
        ]);
        c
    };
    let tool = if cfg!(target_os = "macos") {
        "osascript"
    } else {
        "notify-send"
    };
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{tool} is not installed")
        } else {
            format!("{tool}: {e}")
        }
    })?;
    match tokio::time::timeout(NOTIFIER_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(o)) if o.status.success() => Ok(()),
        Ok(Ok(o)) => Err(format!("{tool} exited with {}", o.status)),
        Ok(Err(e)) => Err(format!("{tool}: {e}")),
        Err(_) => Err(format!("{tool} did not finish within 5 s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_once_per_level_reached() {
        assert_eq!(transition("ok", "warning"), (Some("warning"), true));
        assert_eq!(transition("warning", "warning"), (None, false));
        assert_eq!(transition("warning", "critical"), (Some("critical"), true));
        assert_eq!(transition("critical", "critical"), (None, false));
        assert_eq!(transition("critical", "ok"), (Some("ok"), false));
        assert_eq!(transition("ok", "ok"), (None, false));
        assert_eq!(transition("critical", "warning"), (Some("warning"), false));
        assert_eq!(transition("warning", "critical"), (Some("critical"), true));
    }
}
