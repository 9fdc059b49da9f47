//! `mem0-queue dashboard [--port P] [--open]`: the dashboard face
//! (`faces::dashboard`), until Ctrl-C.

use std::process::ExitCode;

use crate::engine::app::App;

/// `mem0-queue dashboard`.
pub fn run(app: App, port: u16, open: bool) -> anyhow::Result<ExitCode> {
    crate::faces::dashboard::run(app, port, open)?;
    Ok(ExitCode::SUCCESS)
}
