//! `keel demo`: a real 3-node cluster on loopback, as child processes of this binary, with a
//! guided tour that really kills and restarts the leader.
//!
//! The children run `keel serve --parent-pid <ours>`, so they exit on their own if the demo dies
//! without cleaning up (even on SIGKILL). On Ctrl-C/SIGTERM, or when the demo fails, every child
//! gets SIGTERM (graceful), then SIGKILL after `STOP_GRACE_MS`, and the temporary data
//! directory is removed.
//!
//! Exit codes: 0 after Ctrl-C/SIGTERM, 1 if the cluster could not be started or the tour
//! failed, 2 usage.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_client::{Client, ClientConfig, ReadOptions, Status, WriteOptions};
use tokio::signal::unix::{signal, SignalKind};

use super::conn::{block_on, EXIT_FAILED, EXIT_OK, EXIT_USAGE};

const NODES_MAX: u64 = 7;
const STOP_GRACE_MS: u64 = 5_000;
const LEADER_WAIT_MS: u64 = 20_000;
const POLL_INTERVAL_MS: u64 = 50;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Start the cluster and print its endpoints, without the guided tour (for scripts).
    #[arg(long)]
    pub no_tour: bool,
    /// Number of nodes (1..=7).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Election timeout of every node.
    #[arg(long, default_value_t = 500)]
    pub election_timeout_ms: u64,
    /// Parent directory for the cluster's temporary data directory [default: the system's].
    #[arg(long)]
    pub base_dir: Option<PathBuf>,
    /// Keep the data directory on exit (it is removed by default).
    #[arg(long)]
    pub keep_data: bool,
}

struct Node {
    id: u64,
    client_addr: String,
    peer_addr: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

struct DemoCluster {
    exe: PathBuf,
    root: PathBuf,
    keep_data: bool,
    election_timeout_ms: u64,
    nodes: Vec<Node>,
}

/// Distinct free loopback ports: all listeners stay open until every port is chosen.
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl DemoCluster {
    fn create(args: &Args) -> Result<DemoCluster, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let base = args.base_dir.clone().unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let root = base.join(format!("keel-demo-{}-{nanos:08x}", std::process::id()));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let ports = free_ports(2 * args.nodes as usize).map_err(|e| format!("ports: {e}"))?;
        let nodes = (0..args.nodes)
            .map(|index| {
                let id = index + 1;
                Node {
                    id,
                    client_addr: format!("127.0.0.1:{}", ports[2 * index as usize]),
                    peer_addr: format!("127.0.0.1:{}", ports[2 * index as usize + 1]),
                    data_dir: root.join(format!("node-{id}")),
                    log_path: root.join(format!("node-{id}.log")),
                    child: None,
                }
            })
            .collect();
        Ok(DemoCluster {
            exe,
            root,
            keep_data: args.keep_data,
            election_timeout_ms: args.election_timeout_ms,
            nodes,
        })
    }

    fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    fn address_map(&self, client: bool) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let addr = if client { &n.client_addr } else { &n.peer_addr };
                format!("{}={addr}", n.id)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, index: usize) -> Result<(), String> {
        let peers = self.address_map(false);
        let peer_clients = self.address_map(true);
        let election_timeout_ms = self.election_timeout_ms;
        let heartbeat_interval_ms = (election_timeout_ms / 6).max(20);
        let node = &mut self.nodes[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .map_err(|e| format!("{}: {e}", node.log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let child = Command::new(&self.exe)
            .arg("serve")
            .args(["--id", &node.id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen-client", &node.client_addr])
            .args(["--listen-peer", &node.peer_addr])
            .args(["--peers", &peers])
            .args(["--peer-clients", &peer_clients])
            .args(["--cluster-id", "keel-demo"])
            .args(["--election-timeout-ms", &election_timeout_ms.to_string()])
            .args([
                "--heartbeat-interval-ms",
                &heartbeat_interval_ms.to_string(),
            ])
            .args([
                "--lease-duration-ms",
                &(2 * election_timeout_ms).to_string(),
            ])
            .args([
                "--lease-renew-interval-ms",
                &(election_timeout_ms / 2).to_string(),
            ])
            .args(["--parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot start node {}: {e}", node.id))?;
        node.child = Some(child);
        Ok(())
    }

    /// SIGKILL one node (the tour's crash).
    fn kill(&mut self, index: usize) -> Option<u32> {
        let child = self.nodes[index].child.as_mut()?;
        let pid = child.id();
        let _ = child.kill();
        let _ = child.wait();
        self.nodes[index].child = None;
        Some(pid)
    }

    /// Notes children that exited on their own; returns their ids.
    fn reap(&mut self) -> Vec<(u64, String)> {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited.push((node.id, status.to_string()));
                    node.child = None;
                }
            }
        }
        exited
    }

    /// SIGTERM every child, wait up to the grace period, SIGKILL the rest, remove the data.
    fn stop(&mut self) -> usize {
        let mut stopped = 0;
        for node in &mut self.nodes {
            if let Some(child) = &node.child {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else {
                continue;
            };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            stopped += 1;
        }
        if !self.keep_data {
            let _ = std::fs::remove_dir_all(&self.root);
        }
        assert!(self.nodes.iter().all(|n| n.child.is_none()));
        stopped
    }
}

impl Drop for DemoCluster {
    fn drop(&mut self) {
        // Also on error paths and panics: never leave children or data behind.
        self.stop();
    }
}

fn client_for(endpoints: &[String]) -> Result<Client, String> {
    let mut config = ClientConfig::new(endpoints);
    config.rng_seed = u64::from(std::process::id());
    config.attempt_timeout_ms = 1_000;
    Client::new(config).map_err(|e| e.to_string())
}

/// Waits until a live node says it leads and a majority of the live nodes agree.
async fn wait_leader(
    cluster: &DemoCluster,
    client: &Client,
    timeout_ms: u64,
) -> Result<(usize, Status), String> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let mut views: Vec<(usize, Status)> = Vec::new();
        for (index, node) in cluster.nodes.iter().enumerate() {
            if node.child.is_none() {
                continue;
            }
            if let Ok(status) = client.status_of(&node.client_addr).await {
                views.push((index, status));
            }
        }
        for (index, status) in &views {
            if status.role == "leader" {
                let agree = views
                    .iter()
                    .filter(|(_, v)| v.leader.as_ref().map(|(id, _)| *id) == Some(status.node_id))
                    .count();
                if agree * 2 > cluster.nodes.len() {
                    return Ok((*index, status.clone()));
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no leader elected within {timeout_ms} ms"));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

async fn start(cluster: &mut DemoCluster) -> Result<(), String> {
    for index in 0..cluster.nodes.len() {
        cluster.spawn(index)?;
    }
    let started = Instant::now();
    let client = client_for(&cluster.endpoints())?;
    let (leader, status) = wait_leader(cluster, &client, LEADER_WAIT_MS).await?;
    println!(
        "Keel demo: {} nodes on loopback, data in {}",
        cluster.nodes.len(),
        cluster.root.display()
    );
    for node in &cluster.nodes {
        println!(
            "  node {}  client http://{}  peer {}  log {}",
            node.id,
            node.client_addr,
            node.peer_addr,
            node.log_path.display()
        );
    }
    println!(
        "leader: node {} (term {}), elected {} ms after start",
        cluster.nodes[leader].id,
        status.term,
        started.elapsed().as_millis()
    );
    println!("KEEL_ENDPOINTS={}", cluster.endpoints().join(","));
    Ok(())
}

async fn tour(cluster: &mut DemoCluster) -> Result<(), String> {
    let endpoints = cluster.endpoints();
    let client = client_for(&endpoints)?;
    println!();
    println!("Tour (each step really happens; --no-tour skips it):");
    client
        .register_session()
        .await
        .map_err(|e| format!("session: {e}"))?;
    let key = "tour/greeting";
    let value = "hello from keel";
    let put = client
        .put(key, value, WriteOptions::default())
        .await
        .map_err(|e| format!("put: {e}"))?;
    println!(
        "  1. put {key} = {value:?}: committed by a majority at revision {}",
        put.revision
    );
    let (leader, status) = wait_leader(cluster, &client, LEADER_WAIT_MS).await?;
    let leader_id = cluster.nodes[leader].id;
    println!(
        "  2. the leader is node {leader_id} ({}), term {}",
        cluster.nodes[leader].client_addr, status.term
    );
    let killed_at = Instant::now();
    let pid = cluster.kill(leader).unwrap_or(0);
    println!("  3. kill -9 node {leader_id} (pid {pid})");
    let (new_leader, new_status) = wait_leader(cluster, &client, LEADER_WAIT_MS).await?;
    println!(
        "  4. node {} is the new leader (term {}), {} ms after the kill",
        cluster.nodes[new_leader].id,
        new_status.term,
        killed_at.elapsed().as_millis()
    );
    let get = client
        .get(key, ReadOptions::default())
        .await
        .map_err(|e| format!("get: {e}"))?;
    let found = get
        .kv
        .as_ref()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    println!(
        "  5. get {key} (linearizable, served by node {}): {:?}, mod_revision {}",
        get.served.node,
        found.as_deref().unwrap_or("(missing!)"),
        get.kv.as_ref().map_or(0, |kv| kv.mod_revision)
    );
    if found.as_deref() != Some(value) {
        return Err("the acknowledged write was not found after failover".to_string());
    }
    let restarted_at = Instant::now();
    cluster.spawn(leader)?;
    let target_index = new_status.commit_index.max(get.header.applied_index);
    let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
    let caught_up = loop {
        if let Ok(status) = client.status_of(&cluster.nodes[leader].client_addr).await {
            if status.applied_index >= target_index && status.leader.is_some() {
                break status;
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("node {leader_id} did not catch up after restart"));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    };
    println!(
        "  6. restarted node {leader_id} on its data: {} at applied index {}, caught up in {} ms",
        caught_up.role,
        caught_up.applied_index,
        restarted_at.elapsed().as_millis()
    );
    let exe = cluster.exe.display();
    println!();
    println!("The cluster keeps running. Try, in another shell:");
    println!("  export KEEL_ENDPOINTS={}", endpoints.join(","));
    println!("  {exe} status");
    println!("  {exe} put hello world");
    println!("  {exe} get hello --read any --json");
    println!("Ctrl-C stops every node and removes the data directory.");
    Ok(())
}

async fn run_demo(cluster: &mut DemoCluster, with_tour: bool) -> Result<(), String> {
    start(cluster).await?;
    if with_tour {
        tour(cluster).await?;
    }
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (id, status) in cluster.reap() {
            eprintln!("keel demo: node {id} exited on its own ({status})");
        }
    }
}

pub fn run(args: Args) -> i32 {
    if args.nodes == 0 || args.nodes > NODES_MAX {
        eprintln!("error: --nodes must be in 1..={NODES_MAX}");
        return EXIT_USAGE;
    }
    if args.election_timeout_ms < 100 {
        eprintln!("error: --election-timeout-ms must be at least 100");
        return EXIT_USAGE;
    }
    block_on(async move {
        let (mut term, mut interrupt) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(interrupt)) => (term, interrupt),
            _ => {
                eprintln!("error: cannot install signal handlers");
                return EXIT_FAILED;
            }
        };
        let mut cluster = match DemoCluster::create(&args) {
            Ok(cluster) => cluster,
            Err(message) => {
                eprintln!("error: {message}");
                return EXIT_FAILED;
            }
        };
        let outcome = tokio::select! {
            result = run_demo(&mut cluster, !args.no_tour) => result,
            _ = term.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        };
        if outcome.is_err() {
            cluster.keep_data = true;
        }
        let stopped = cluster.stop();
        match outcome {
            Ok(()) => {
                let data = if args.keep_data { "kept" } else { "removed" };
                println!(
                    "keel demo: stopped {stopped} nodes; {data} {}",
                    cluster.root.display()
                );
                EXIT_OK
            }
            Err(message) => {
                eprintln!(
                    "error: {message} (node logs kept in {})",
                    cluster.root.display()
                );
                EXIT_FAILED
            }
        }
    })
}
