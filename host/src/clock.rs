//! Time, injected: the worker's waits and timestamps go through a [`Clock`],
//! so a test can run the seed's 2 s / 4 s / 8 s schedule without waiting 14 s.

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

/// A virtual clock for tests: `sleep` returns at once and moves time on.
pub struct VirtualClock {
    now: AtomicI64,
    slept: std::sync::Mutex<Vec<Duration>>,
}

impl VirtualClock {
    pub fn new(start_ms: i64) -> Self {
        Self {
            now: AtomicI64::new(start_ms),
            slept: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Moves time on by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// Every wait asked of this clock, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.advance(d);
        if let Ok(mut s) = self.slept.lock() {
            s.push(d);
        }
        Box::pin(tokio::task::yield_now())
    }
}
