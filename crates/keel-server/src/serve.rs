//! Running a node as a process: logging set-up, the tokio runtime, signals (SIGTERM/SIGINT →
//! graceful shutdown) and the parent watch (`--parent-pid`: stop when the parent is gone, so
//! `keel demo` children never outlive it).

use crate::{Server, ServerConfig};
use std::time::Duration;

/// How often the parent watch polls.
const PARENT_POLL_MS: u64 = 200;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Exit (gracefully) when this process is no longer our parent.
    pub parent_pid: Option<u32>,
    /// JSON log lines (default) or human-readable text.
    pub log_text: bool,
    /// tracing filter, e.g. "info" or "keel_server=debug".
    pub log_filter: Option<String>,
}

/// Installs the global tracing subscriber (JSON lines on stderr). Safe to call twice.
pub fn init_logging(text: bool, filter: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if text {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

/// Runs a node until SIGTERM/SIGINT (or the parent's death), then shuts it down gracefully.
/// Returns the process exit code: 0 after a clean shutdown, 1 on a fatal error.
pub fn run(cfg: ServerConfig, opts: RunOptions) -> i32 {
    init_logging(opts.log_text, opts.log_filter.as_deref());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(%e, "cannot start the tokio runtime");
            return 1;
        }
    };
    rt.block_on(async move {
        let mut server = match Server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "node failed to start");
                // Humans get the reason on stdout too; stderr stays one log record per line.
                println!("keel serve: {e:#}");
                return 1;
            }
        };
        // The banner goes to stdout: stderr carries only log records (JSON lines by default).
        println!(
            "keel serve: node {} serving clients on http://{} (peers on {})",
            server.shared.node_id, server.client_addr, server.peer_addr
        );
        tracing::info!(
            node = server.shared.node_id,
            client = %server.client_addr,
            peer = %server.peer_addr,
            "serving"
        );
        let stopper = server.shutdown_sender();
        let reason = tokio::select! {
            r = stop_signal(opts.parent_pid) => Some(r),
            r = server.wait() => {
                return match r {
                    Ok(()) => 0,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "node stopped on a fatal error");
                        1
                    }
                };
            }
        };
        tracing::info!(reason = reason.unwrap_or("unknown"), "shutting down");
        stopper.shutdown().await;
        match server.shutdown().await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "shutdown failed");
                1
            }
        }
    })
}

async fn stop_signal(parent_pid: Option<u32>) -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let parent = async {
        match parent_pid {
            Some(pid) => loop {
                if std::os::unix::process::parent_id() != pid {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(PARENT_POLL_MS)).await;
            },
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = parent => "parent process exited",
    }
}
