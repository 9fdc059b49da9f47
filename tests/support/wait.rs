//! Bounded waits: every wait of a test has a limit in time, and a process
//! that outlives its limit is killed before the test fails.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest a spawned `mem0-queue` process may run before the test kills
/// it and fails.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

/// The pause between two looks of a bounded poll.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

/// Polls `f` every [`POLL_EVERY`] until it holds or `limit` passes.
pub fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// [`until`] for async tests: sleeps on the runtime between looks.
pub async fn until_async(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits for `child` to exit; past `limit` kills it and panics, naming it `what`.
pub fn child(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let mut status = None;
    let exited = until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} did not exit within {limit:?}");
    }
    status.expect("an exit status")
}

/// Waits for `child` to exit and collects its output (what it wrote on
/// piped stdout and stderr, read as it comes so a full pipe never blocks
/// it); past `limit` kills it and panics, naming it `what`.
pub fn output(mut c: Child, limit: Duration, what: &str) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut b);
            }
            b
        })
    }
    let stdout = drain(c.stdout.take());
    let stderr = drain(c.stderr.take());
    let status = child(&mut c, limit, what);
    Output {
        status,
        stdout: stdout.join().expect("the stdout reader"),
        stderr: stderr.join().expect("the stderr reader"),
    }
}

/// Runs `cmd` to its end with stdout and stderr piped, bounded by `limit`.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    let c = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mem0-queue");
    output(c, limit, "mem0-queue")
}

/// Waits for a tokio child with a bound; kills it and panics past the bound.
pub async fn child_async(child: &mut tokio::process::Child, limit: Duration) -> ExitStatus {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.expect("wait for mem0-queue"),
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            panic!("mem0-queue did not exit within {limit:?}");
        }
    }
}
