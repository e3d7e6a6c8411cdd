#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// roster: organizations, projects and memberships as Kubernetes resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds {
        /// Write them to the repository's committed copies (crds/ and the Helm chart) instead.
        #[arg(long, conflicts_with = "out")]
        write: bool,
        /// Write them to these files instead of standard output.
        #[arg(long)]
        out: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { write, out } => crds(write, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn crds(write: bool, out: Vec<PathBuf>) -> Result<(), roster::crdgen::Error> {
    if write {
        let paths: Vec<PathBuf> = roster::crdgen::COMMITTED_PATHS.iter().map(PathBuf::from).collect();
        return roster::crdgen::write_to(&paths);
    }
    if !out.is_empty() {
        return roster::crdgen::write_to(&out);
    }
    print!("{}", roster::crdgen::render()?);
    Ok(())
}
