//! `keel`: the one binary. Every capability is a subcommand; each lives in `cmd/<name>.rs`.
//!
//! Exit codes are owned by each subcommand (documented in its module); clap usage errors exit 2.

mod cmd;

use clap::{Parser, Subcommand};

/// `keel --version`: the package version and what the binary speaks and stores
/// (docs/upgrades.md).
const VERSION_LINE: &str = if cfg!(feature = "next-version") {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (protocol 1.1, data format 1..=2, cluster version up to 2; test build next-version)"
    )
} else {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (protocol 1.0, data format 1..=1, cluster version up to 1)"
    )
};

#[derive(Parser)]
#[command(
    name = "keel",
    version = VERSION_LINE,
    about = "Keel: a Raft-replicated key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a Keel node.
    Serve(cmd::serve::Args),
    /// Start a 3-node cluster on loopback with a guided tour (Ctrl-C stops it).
    Demo(cmd::demo::Args),
    /// Write a key.
    Put(cmd::kv::PutArgs),
    /// Read a key.
    Get(cmd::kv::GetArgs),
    /// Delete a key.
    Del(cmd::kv::DelArgs),
    /// Compare-and-swap a key on its value or mod revision.
    Cas(cmd::kv::CasArgs),
    /// Run a multi-key transaction (JSON from a file or stdin).
    Txn(cmd::kv::TxnArgs),
    /// Read keys by prefix or in [START, END).
    Range(cmd::kv::RangeArgs),
    /// Show every endpoint's view of the cluster.
    Status(cmd::cluster::StatusArgs),
    /// List, add, promote or remove cluster members.
    Members(cmd::cluster::MembersArgs),
    /// Hand leadership to another voter.
    TransferLeader(cmd::cluster::TransferLeaderArgs),
    /// Rolling upgrades: show every node's versions, or finalize the upgrade.
    Upgrade(cmd::cluster::UpgradeArgs),
    /// Check histories for linearizability (Jepsen EDN, Jepsen logs, Keel JSON lines).
    Check(cmd::check::Args),
    /// Model-check the consensus core exhaustively within bounds.
    Model(cmd::model::Args),
    /// Run the deterministic simulator over the real consensus core.
    Sim(cmd::sim::Args),
    /// Inspect and verify a node's data directory.
    Storage(cmd::storage::Args),
    /// Verify or show a node's hash-chained audit file.
    Audit(cmd::audit::Args),
    /// Load generator: closed/open loop against Keel (or etcd), HDR latency, server CPU and RSS.
    Bench(cmd::bench::Args),
    /// Jepsen-style fault campaign on real `keel serve` processes, checked for linearizability.
    Nemesis(cmd::nemesis::Args),
}

/// Exit code for a command-line usage error. `keel check` reserves 2 for an `unknown` verdict,
/// so its usage errors are 3; every other subcommand uses the conventional 2.
fn usage_error_code() -> i32 {
    match std::env::args().nth(1).as_deref() {
        Some("check") => 3,
        _ => 2,
    }
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                usage_error_code()
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Put(args) => cmd::kv::run_put(args),
        Command::Get(args) => cmd::kv::run_get(args),
        Command::Del(args) => cmd::kv::run_del(args),
        Command::Cas(args) => cmd::kv::run_cas(args),
        Command::Txn(args) => cmd::kv::run_txn(args),
        Command::Range(args) => cmd::kv::run_range(args),
        Command::Status(args) => cmd::cluster::run_status(args),
        Command::Members(args) => cmd::cluster::run_members(args),
        Command::TransferLeader(args) => cmd::cluster::run_transfer_leader(args),
        Command::Upgrade(args) => cmd::cluster::run_upgrade(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Model(args) => cmd::model::run(args),
        Command::Sim(args) => cmd::sim::run(args),
        Command::Storage(args) => cmd::storage::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Nemesis(args) => cmd::nemesis::run(args),
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_line_says_what_the_server_speaks() {
        let expected = format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            keel_server::version::describe()
        );
        assert_eq!(super::VERSION_LINE, expected);
    }
}
