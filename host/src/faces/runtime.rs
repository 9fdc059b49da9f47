//! What the faces that wait on I/O share from the process: the async
//! runtime, and the stop signal (SIGTERM, SIGINT). `serve`, `sync`, the
//! dashboard and the one-shot commands that ask Mem0 each build their
//! runtime here.

use anyhow::Context;

/// Worker threads of the async runtime. Two: the work is I/O bound, and
/// the machine this runs on is a laptop shared with an editor.
const WORKER_THREADS: usize = 2;

/// The async runtime of one command: `WORKER_THREADS` threads, timers
/// and I/O.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
