//! `keel`: the one binary. Every capability is a subcommand; each lives in `cmd/<name>.rs`.
//!
//! Exit codes are owned by each subcommand (documented in its module); clap usage errors exit 2.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel: a Raft-replicated key-value store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Keel node.
    Serve(cmd::serve::Args),
    /// Check histories for linearizability (Jepsen EDN, Jepsen logs, Keel JSON lines).
    Check(cmd::check::Args),
    /// Model-check the consensus core exhaustively within bounds.
    Model(cmd::model::Args),
    /// Run the deterministic simulator over the real consensus core.
    Sim(cmd::sim::Args),
    /// Inspect and verify a node's data directory.
    Storage(cmd::storage::Args),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Model(args) => cmd::model::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Storage(args) => cmd::storage::run(args),
    };
    std::process::exit(code);
}
