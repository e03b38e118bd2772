//! In-process cluster harness: real servers (TCP, HTTP, disks in temp dirs) in one runtime.

#![allow(dead_code)]

use keel_server::{Server, ServerConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const ELECTION_TIMEOUT_MS: u64 = 300;

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

pub struct Cluster {
    pub dirs: Vec<tempfile::TempDir>,
    pub peer_ports: Vec<u16>,
    pub client_ports: Vec<u16>,
    pub servers: Vec<Option<Server>>,
    pub http: reqwest::Client,
    pub snapshot_interval_entries: u64,
    /// Nodes at index >= this are not initial voters (added at runtime).
    pub initial_voters: usize,
    pub mutant: Option<String>,
}

impl Cluster {
    pub async fn start(n: usize, snapshot_interval_entries: u64) -> Cluster {
        let mut c = Cluster {
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            peer_ports: (0..n).map(|_| free_port()).collect(),
            client_ports: (0..n).map(|_| free_port()).collect(),
            servers: (0..n).map(|_| None).collect(),
            // No pooled connections: a killed node must look dead, not answer from an old socket.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            snapshot_interval_entries,
            initial_voters: n,
            mutant: None,
        };
        for i in 0..n {
            c.boot(i).await;
        }
        c
    }

    pub fn config(&self, i: usize) -> ServerConfig {
        let n = self.initial_voters;
        let mut peers = BTreeMap::new();
        let mut clients = BTreeMap::new();
        for j in 0..self.peer_ports.len() {
            if j >= n {
                break;
            }
            peers.insert(j as u64 + 1, format!("127.0.0.1:{}", self.peer_ports[j]));
            clients.insert(j as u64 + 1, format!("127.0.0.1:{}", self.client_ports[j]));
        }
        ServerConfig {
            id: i as u64 + 1,
            data_dir: self.dirs[i].path().to_path_buf(),
            listen_client: format!("127.0.0.1:{}", self.client_ports[i]),
            listen_peer: format!("127.0.0.1:{}", self.peer_ports[i]),
            peers: if n > 1 { peers } else { BTreeMap::new() },
            peer_clients: clients,
            election_timeout_ms: ELECTION_TIMEOUT_MS,
            heartbeat_interval_ms: 50,
            lease_duration_ms: 300,
            lease_renew_interval_ms: 100,
            snapshot_interval_entries: self.snapshot_interval_entries,
            compaction_retain_entries: 5,
            mutant: self.mutant.clone(),
            ..ServerConfig::default()
        }
    }

    pub async fn boot(&mut self, i: usize) {
        let cfg = self.config(i);
        // The port may linger briefly after a kill: retry the bind.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Server::start(cfg.clone()).await {
                Ok(s) => {
                    self.servers[i] = Some(s);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("boot {i}: {e:#}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("node {} failed to start: {e:#}", i + 1),
            }
        }
    }

    /// Starts one more node outside the configuration (to be added as a learner). Returns its index.
    pub async fn add_node(&mut self) -> usize {
        self.dirs.push(tempfile::tempdir().unwrap());
        self.peer_ports.push(free_port());
        self.client_ports.push(free_port());
        self.servers.push(None);
        let i = self.servers.len() - 1;
        self.boot(i).await;
        i
    }

    pub async fn kill(&mut self, i: usize) {
        if let Some(s) = self.servers[i].take() {
            s.kill().await;
        }
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.client_ports[i], path)
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        let r = self.http.get(self.url(i, "/v1/status")).send().await.ok()?;
        r.json().await.ok()
    }

    /// Waits for a live node that reports itself leader and is acknowledged by a majority.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut views = Vec::new();
            for i in 0..self.servers.len() {
                if self.servers[i].is_some() {
                    if let Some(s) = self.status(i).await {
                        views.push((i, s));
                    }
                }
            }
            for (i, s) in &views {
                if s["role"] == "leader" {
                    let id = *i as u64 + 1;
                    let agree = views
                        .iter()
                        .filter(|(_, v)| v["leader"]["id"] == id)
                        .count();
                    if agree * 2 > self.servers.len() {
                        return *i;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {timeout:?}: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn put(&self, i: usize, key: &str, value: &str) -> (u16, Value) {
        self.put_body(i, key, serde_json::json!({ "value": value }), "")
            .await
    }

    pub async fn put_body(&self, i: usize, key: &str, body: Value, query: &str) -> (u16, Value) {
        let r = self
            .http
            .put(self.url(i, &format!("/v1/kv/{key}{query}")))
            .json(&body)
            .send()
            .await;
        match r {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    pub async fn get(&self, i: usize, key: &str, query: &str) -> (u16, Value) {
        match self
            .http
            .get(self.url(i, &format!("/v1/kv/{key}{query}")))
            .send()
            .await
        {
            Ok(r) => {
                let status = r.status().as_u16();
                (status, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Puts through whichever node is leader, retrying until acknowledged.
    pub async fn put_until_ok(&self, key: &str, value: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            for i in 0..self.servers.len() {
                if self.servers[i].is_none() {
                    continue;
                }
                let (code, _) = self.put(i, key, value).await;
                if code == 200 {
                    return Instant::now();
                }
            }
            assert!(
                Instant::now() < deadline,
                "write of {key} not acknowledged within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn shutdown_all(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i).await;
        }
    }
}
