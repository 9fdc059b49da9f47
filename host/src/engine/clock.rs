//! Time, injected: the worker's waits and timestamps go through a [`Clock`],
//! so a test can run the seed's 2 s / 4 s / 8 s schedule without waiting 14 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
    /// Waits `d` (or, for a virtual clock, moves time forward by `d`).
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Unix time in milliseconds from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A virtual clock for tests: a `sleep` ends at its first poll after a
/// yield, and moves time on then. A wait dropped before that (the other
/// branch of a `select!` won) moves nothing, as a real one would not have
/// elapsed. (Paused tokio time is not used for the worker: its requests go
/// through real loopback sockets, and paused time jumps to the request
/// timeouts whenever the runtime waits on the network.)
pub struct VirtualClock {
    now: Arc<AtomicI64>,
    slept: Arc<std::sync::Mutex<Vec<Duration>>>,
}

impl VirtualClock {
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(start_ms)),
            slept: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }

    /// Moves time on by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// Every wait that elapsed on this clock, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        let (now, slept) = (self.now.clone(), self.slept.clone());
        Box::pin(async move {
            tokio::task::yield_now().await;
            now.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
            if let Ok(mut s) = slept.lock() {
                s.push(d);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_virtual_sleep_moves_time_when_it_ends_and_not_when_dropped() {
        let c = VirtualClock::new(1_000);
        c.sleep(Duration::from_secs(2)).await;
        assert_eq!(c.now_ms(), 3_000);
        // A wait that loses a race elapses nothing.
        tokio::select! {
            biased;
            _ = std::future::ready(()) => {}
            _ = c.sleep(Duration::from_secs(60)) => panic!("the ready branch wins"),
        }
        assert_eq!(c.now_ms(), 3_000);
        assert_eq!(c.slept(), [Duration::from_secs(2)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_system_clock_sleeps_on_tokio_time() {
        let started = tokio::time::Instant::now();
        SystemClock.sleep(Duration::from_secs(8)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(8));
    }
}
