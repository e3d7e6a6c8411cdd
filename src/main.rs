#![forbid(unsafe_code)]
//! The `roster` binary: parse the command line, run the command, report. Everything else lives
//! in the library (`roster::cli`).

use std::process::ExitCode;

use clap::Parser;
use roster::Reason;
use roster::cli::args::{Cli, dispatch};

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
