//! The `mem0-queue` binary: parse the command line, set up logging, run.

use std::process::ExitCode;

fn main() -> ExitCode {
    mem0_queue::faces::cli::main()
}
