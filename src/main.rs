#![forbid(unsafe_code)]
//! The `roster` binary: parse the command line, run the command, report. Everything else lives
//! in the library (`roster::cli`).

use std::process::ExitCode;

use clap::Parser;
use roster::Reason;
use roster::cli::args::{Cli, dispatch};

// mimalloc, not the system allocator: with 20,000 Memberships cached (48 MB live), glibc's
// malloc stayed at 105 MiB resident after a cold start, mimalloc at 94 MiB (no per-allocation
// header on the cache's many small strings; freed pages returned). mimalloc 2, not 3: it left
// 54 MiB of anonymous memory where 3 left 60–65 (README, dependencies). BENCHMARKS.md, memory.
// The image sets MIMALLOC_PURGE_DELAY=0: pages freed by an idle thread are returned at once
// (scripts/oci-archive.py).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(roster::Error::Verdict { code, summary }) => {
            eprintln!("roster: {summary}");
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("roster: {e}");
            if matches!(e, roster::Error::Usage(_)) || e.reason() == "InvalidArgument" {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
