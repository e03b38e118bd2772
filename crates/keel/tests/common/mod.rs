//! Harness for end-to-end tests on real processes: `keel serve` nodes on loopback ports.
//!
//! Every node runs with `--parent-pid` of the test process, and the harness kills its children
//! on drop, so a failing test leaves nothing running.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_client::{Client, ClientConfig, Status, WriteOptions};
use serde_json::Value;

pub const ELECTION_TIMEOUT_MS: u64 = 300;
pub const LEADER_WAIT_MS: u64 = 15_000;

pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub fn temp_root(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let root = std::env::temp_dir().join(format!(
        "keel-e2e-{name}-{}-{nanos:08x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root).unwrap();
    root
}

pub struct Node {
    pub id: u64,
    pub client_addr: String,
    pub peer_addr: String,
    pub child: Option<Child>,
    /// Extra environment for this node's process (e.g. libfaketime).
    pub env: Vec<(String, String)>,
    /// Another keel binary to run this node with (None: this build's).
    pub bin: Option<PathBuf>,
}

pub struct Cluster {
    pub root: PathBuf,
    pub nodes: Vec<Node>,
    /// Voters at start: `--peers` of every node.
    pub initial_voters: usize,
    pub extra_args: Vec<String>,
}

impl Cluster {
    /// Starts `voters` nodes, plus `spares` nodes that are not started (for membership tests).
    pub fn start(name: &str, voters: usize, spares: usize, extra_args: &[&str]) -> Cluster {
        let mut cluster = Cluster::prepare(name, voters, spares, extra_args);
        for i in 0..voters {
            cluster.spawn(i);
        }
        cluster
    }

    /// Like `start`, but no node is started yet (the caller spawns them).
    pub fn prepare(name: &str, voters: usize, spares: usize, extra_args: &[&str]) -> Cluster {
        let total = voters + spares;
        let ports = free_ports(2 * total);
        let nodes = (0..total)
            .map(|i| Node {
                id: i as u64 + 1,
                client_addr: format!("127.0.0.1:{}", ports[2 * i]),
                peer_addr: format!("127.0.0.1:{}", ports[2 * i + 1]),
                child: None,
                env: Vec::new(),
                bin: None,
            })
            .collect();
        let cluster = Cluster {
            root: temp_root(name),
            nodes,
            initial_voters: voters,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        cluster
    }

    pub fn data_dir(&self, index: usize) -> PathBuf {
        self.root.join(format!("node-{}", self.nodes[index].id))
    }

    pub fn map(&self, client: bool, count: usize) -> String {
        self.nodes[..count]
            .iter()
            .map(|n| {
                let addr = if client { &n.client_addr } else { &n.peer_addr };
                format!("{}={addr}", n.id)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn spawn(&mut self, index: usize) {
        assert!(self.nodes[index].child.is_none());
        let node = &self.nodes[index];
        let log_path = self.root.join(format!("node-{}.log", node.id));
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let bin = node
            .bin
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keel")));
        let child = Command::new(bin)
            .arg("serve")
            .args(["--id", &node.id.to_string()])
            .arg("--data-dir")
            .arg(self.root.join(format!("node-{}", node.id)))
            .args(["--listen-client", &node.client_addr])
            .args(["--listen-peer", &node.peer_addr])
            .args(["--peers", &self.map(false, self.initial_voters)])
            .args(["--peer-clients", &self.map(true, self.nodes.len())])
            .args(["--election-timeout-ms", &ELECTION_TIMEOUT_MS.to_string()])
            .args(["--heartbeat-interval-ms", "50"])
            .args(["--lease-duration-ms", "600"])
            .args(["--lease-renew-interval-ms", "150"])
            .args(["--parent-pid", &std::process::id().to_string()])
            .args(&self.extra_args)
            .envs(node.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn keel serve");
        self.nodes[index].child = Some(child);
    }

    pub fn kill9(&mut self, index: usize) {
        let mut child = self.nodes[index].child.take().expect("node is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes[..self.initial_voters]
            .iter()
            .map(|n| n.client_addr.clone())
            .collect()
    }

    pub fn client(&self) -> Client {
        let mut config = ClientConfig::new(&self.endpoints());
        config.rng_seed = 7;
        config.attempt_timeout_ms = 1_000;
        config.call_timeout_ms = 10_000;
        config.retry_reserve_tokens = 20;
        Client::new(config).unwrap()
    }

    /// Every running node still running (none crashed)?
    pub fn all_alive(&mut self) -> bool {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.child.as_mut())
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let path = self.root.join(format!("node-{}.log", node.id));
            if let Ok(text) = std::fs::read_to_string(&path) {
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(15);
                out.push_str(&format!("--- node {} ---\n", node.id));
                for line in &lines[start..] {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Waits for a running node that leads with a majority of running nodes agreeing.
    pub async fn wait_leader(&self, client: &Client) -> (usize, Status) {
        let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
        loop {
            let mut views = Vec::new();
            for (index, node) in self.nodes.iter().enumerate() {
                if node.child.is_some() {
                    if let Ok(status) = client.status_of(&node.client_addr).await {
                        views.push((index, status));
                    }
                }
            }
            for (index, status) in &views {
                if status.role == "leader" {
                    let agree = views
                        .iter()
                        .filter(|(_, v)| v.leader.as_ref().map(|l| l.0) == Some(status.node_id))
                        .count();
                    let voters = status
                        .members
                        .iter()
                        .filter(|m| m.role == "voter")
                        .count()
                        .max(1);
                    if agree * 2 > voters {
                        return (*index, status.clone());
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {LEADER_WAIT_MS} ms\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `index` has applied at least `applied_index`.
    pub async fn wait_applied(&self, client: &Client, index: usize, applied_index: u64) -> Status {
        let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
        loop {
            if let Ok(status) = client.status_of(&self.nodes[index].client_addr).await {
                if status.applied_index >= applied_index {
                    return status;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not reach applied index {applied_index}\n{}",
                index + 1,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        } else {
            eprintln!("node logs kept in {}", self.root.display());
        }
    }
}

/// One raw HTTP/1.1 exchange (no client library in the way): status and JSON body.
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let (status, body) = http_raw(addr, method, path, body);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// One raw HTTP/1.1 exchange: status and the (de-chunked) body bytes.
pub fn http_raw(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..line_end]).trim(), 16)
                .unwrap();
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = decoded;
    }
    (status, body)
}

pub fn write_options() -> WriteOptions {
    WriteOptions::default()
}
