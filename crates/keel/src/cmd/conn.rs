//! What the client subcommands share: connection flags, the runtime, error reporting, tables.
//!
//! Exit codes of every client subcommand: 0 ok, 1 the request failed (the code and message are
//! printed on stderr; with `--json` the server's error body is printed on stdout too), 2 usage.

use std::future::Future;

use keel_client::{Client, ClientConfig, Error};
use serde_json::Value;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Flags every client subcommand takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// Client addresses of the nodes, comma-separated host:port.
    #[arg(long, env = "KEEL_ENDPOINTS", default_value = "127.0.0.1:7379")]
    pub endpoints: String,
    /// Print the server's JSON answer instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Deadline for the whole request, retries included.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Ask followers to forward writes to the leader instead of answering NOT_LEADER.
    #[arg(long)]
    pub forward: bool,
    /// Bearer token for nodes started with `--auth-tokens` (prefer the environment variable:
    /// command lines are visible to other users).
    #[arg(long, env = "KEEL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Conn {
    pub fn client(&self) -> Result<Client, Error> {
        let endpoints = ClientConfig::parse_endpoints(&self.endpoints)?;
        let mut config = ClientConfig::new(&endpoints);
        config.call_timeout_ms = self.timeout_ms.max(1);
        config.forward = self.forward;
        config.token = self.token.clone();
        // Jitter only needs to differ between processes here; tests seed the library directly.
        config.rng_seed = u64::from(std::process::id());
        Client::new(config)
    }
}

/// Runs `body` on a single-threaded runtime. The body returns the exit code.
pub fn block_on<F: Future<Output = i32>>(body: F) -> i32 {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(body),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            EXIT_FAILED
        }
    }
}

/// Reports a failed request; returns the exit code (2 for bad arguments, else 1).
pub fn report(error: &Error, json: bool) -> i32 {
    if json {
        let body = match error.server() {
            Some(server) if server.body.is_object() => server.body.clone(),
            _ => serde_json::json!({"code": error.code(), "message": error.to_string()}),
        };
        println!("{body}");
    }
    eprintln!("error: {error}");
    match error {
        Error::InvalidArgument(_) => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

/// Prints `raw` as one JSON line.
pub fn print_json(raw: &Value) {
    println!("{raw}");
}

/// Bytes for a terminal: UTF-8 text with control characters escaped, else `base64:...`.
pub fn display_bytes(bytes: &[u8]) -> String {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(text) => text
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect(),
        Err(_) => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    }
}

/// Prints rows as a left-aligned table with a header line.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if index < widths.len() {
                widths[index] = widths[index].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[index].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out
    };
    println!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        println!("{}", line(row.clone()));
    }
}

pub fn opt_u64(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(display_bytes(b"a\nb\x1b[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(display_bytes(&[0xff, 0xfe]), "base64://4=");
        assert_eq!(display_bytes("héllo".as_bytes()), "héllo");
    }
}
