//! `keel serve`: run a Keel node.
//!
//! With no flags: a single-node cluster with data in `./keel-data`, clients on 127.0.0.1:7379,
//! peers on 127.0.0.1:7380. Settings come from defaults, then `--config FILE` (TOML, the field
//! names of `keel_server::ServerConfig`), then flags.
//!
//! Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT or the parent's death), 1 on a fatal
//! error, 2 on a usage or configuration error.

use keel_server::serve::RunOptions;
use keel_server::ServerConfig;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// This node's id (>= 1).
    #[arg(long)]
    id: Option<u64>,
    /// Data directory (WAL, hard state, snapshots).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Client (HTTP) listen address [default: 127.0.0.1:7379].
    #[arg(long)]
    listen_client: Option<String>,
    /// Peer (Raft) listen address [default: 127.0.0.1:7380].
    #[arg(long)]
    listen_peer: Option<String>,
    /// Client address announced to others (default: the listen address).
    #[arg(long)]
    advertise_client: Option<String>,
    /// Peer address announced to others (default: the listen address).
    #[arg(long)]
    advertise_peer: Option<String>,
    /// Initial voters' peer addresses: `1=host:port,2=host:port,...`.
    #[arg(long)]
    peers: Option<String>,
    /// Peers' client addresses (for NOT_LEADER hints and forwarding): `1=host:port,...`.
    #[arg(long)]
    peer_clients: Option<String>,
    /// Dial overrides, this process only: `2=host:port,...` connects to these addresses for
    /// those peers instead of their announced ones (the nemesis fault proxy uses this).
    #[arg(long)]
    peer_routes: Option<String>,
    /// Test only: delay every WAL sync batch by this many ms (a slow disk).
    #[arg(long)]
    test_fsync_delay_ms: Option<u64>,
    /// Repair mode: discard damaged synced log data instead of refusing to start; the node
    /// neither votes nor campaigns until it has caught up from a leader (multi-node only).
    #[arg(long)]
    repair: bool,
    /// Require bearer tokens: a file of `<role> <token>` lines, role read, write or admin
    /// (docs/security.md). Every node of a cluster reads the same file.
    #[arg(long)]
    auth_tokens: Option<PathBuf>,
    /// Cluster id; peers with another id are refused.
    #[arg(long)]
    cluster_id: Option<String>,
    /// TOML file with the same settings (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    election_timeout_ms: Option<u64>,
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    #[arg(long)]
    lease_duration_ms: Option<u64>,
    #[arg(long)]
    lease_renew_interval_ms: Option<u64>,
    #[arg(long)]
    snapshot_interval_entries: Option<u64>,
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Exit when this process is no longer the parent (used by `keel demo` and the nemesis).
    #[arg(long, env = "KEEL_PARENT_PID")]
    parent_pid: Option<u32>,
    /// Human-readable logs instead of JSON lines.
    #[arg(long)]
    log_text: bool,
    /// Log filter (tracing syntax), e.g. `info` or `keel_server=debug`.
    #[arg(long, env = "KEEL_LOG")]
    log: Option<String>,
    /// Switch on a known bug (builds with feature `mutants` only): `no-session-dedup`,
    /// `follower-reads-as-linearizable`, or a keel-core mutant name.
    #[arg(long)]
    mutant: Option<String>,
}

fn build_config(args: &Args) -> Result<ServerConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml_config(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    macro_rules! set {
        ($field:ident) => {
            if let Some(v) = &args.$field {
                cfg.$field = v.clone();
            }
        };
    }
    set!(id);
    set!(data_dir);
    set!(listen_client);
    set!(listen_peer);
    set!(cluster_id);
    set!(election_timeout_ms);
    set!(heartbeat_interval_ms);
    set!(lease_duration_ms);
    set!(lease_renew_interval_ms);
    set!(snapshot_interval_entries);
    set!(request_timeout_ms);
    set!(test_fsync_delay_ms);
    if args.repair {
        cfg.repair = true;
    }
    if args.auth_tokens.is_some() {
        cfg.auth_tokens_file = args.auth_tokens.clone();
    }
    if args.advertise_client.is_some() {
        cfg.advertise_client = args.advertise_client.clone();
    }
    if args.advertise_peer.is_some() {
        cfg.advertise_peer = args.advertise_peer.clone();
    }
    if args.mutant.is_some() {
        cfg.mutant = args.mutant.clone();
    }
    if let Some(p) = &args.peers {
        cfg.peers = ServerConfig::parse_address_map(p).map_err(|e| format!("--peers: {e}"))?;
    }
    if let Some(p) = &args.peer_clients {
        cfg.peer_clients =
            ServerConfig::parse_address_map(p).map_err(|e| format!("--peer-clients: {e}"))?;
    }
    if let Some(p) = &args.peer_routes {
        cfg.peer_routes =
            ServerConfig::parse_address_map(p).map_err(|e| format!("--peer-routes: {e}"))?;
    }
    if !cfg.peers.is_empty() && !cfg.peers.contains_key(&cfg.id) {
        println!(
            "keel serve: node {} is not among --peers: it starts outside the configuration (add it as a learner)",
            cfg.id
        );
    }
    cfg.validate()?;
    Ok(cfg)
}

fn toml_config(text: &str) -> Result<ServerConfig, String> {
    keel_server::config::from_toml(text)
}

pub fn run(args: Args) -> i32 {
    let cfg = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel serve: {e}");
            return 2;
        }
    };
    let opts = RunOptions {
        parent_pid: args.parent_pid,
        log_text: args.log_text,
        log_filter: args.log.clone(),
    };
    keel_server::serve::run(cfg, opts)
}
