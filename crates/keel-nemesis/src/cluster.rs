//! Cluster lifecycle: N real `keel serve` processes on loopback, every peer link routed
//! through a [`LinkProxy`], plus kill -9 / restart / SIGSTOP / SIGCONT and clock skew.
//!
//! Routing: with a server that has `--peer-routes`, node i dials `proxy(i -> j)` for peer j
//! and announces its real peer address. Without it (older builds), node i's `--peers` names
//! `proxy(i -> j)` for every j != i, which covers the initial voters.
//!
//! A noisy neighbour ([`Cluster::start_noisy`]) is a separate CPU-burning `sh` process pinned
//! to the same CPU as one node (the node's threads pinned there too for the hold), started
//! under `setpriv --pdeathsig KILL` when available and polling the harness's pid in any case.
//!
//! Every child runs with `--parent-pid <ours>`, so it exits by itself if the harness dies even
//! by SIGKILL; [`Cluster::stop_all`] (also run on drop) kills whatever is still running.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keel_client::{Client, ClientConfig, Status};

use crate::proxy::{LinkMode, LinkProxy};

/// Largest cluster the harness starts.
pub const NODES_MAX: usize = 7;
/// Node slots (initial voters plus spares) one cluster holds, at most.
pub const SLOTS_MAX: usize = 24;
const HTTP_TIMEOUT_MS: u64 = 1_000;
/// The servers' `clock_uncertainty_ms` a campaign configures unless told otherwise.
pub const CLOCK_UNCERTAINTY_MS_DEFAULT: u64 = 100;
/// A gracefully stopped node (SIGTERM) is killed if it has not exited within this.
pub const GRACEFUL_STOP_MS_MAX: u64 = 5_000;
/// What [`Cluster::start_expecting_refusal`] reads of a log, at most.
const LOG_EXCERPT_BYTES_MAX: u64 = 64 * 1024;
/// The burner's busy loop: iterations between checks that the harness is still alive.
const NOISY_SPIN_ITERATIONS: u64 = 20_000;

/// How the nodes are started.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub keel_bin: PathBuf,
    pub nodes: usize,
    pub dir: PathBuf,
    pub election_timeout_ms: u64,
    pub mutant: Option<String>,
    pub seed: u64,
    /// Written to each node's `node-N.toml` (`--config`); None: the server's default.
    pub clock_uncertainty_ms: Option<u64>,
    /// Extra node slots (ids after the initial voters), not started, with their proxies in
    /// place: the membership fault adds them as learners. A slot is used once (an id removed
    /// from the configuration never comes back).
    pub spares: usize,
    /// The build a rolling upgrade moves nodes to (`--upgrade-to`); None: every node runs
    /// `keel_bin` for the whole run.
    pub upgrade_bin: Option<PathBuf>,
}

/// Which build a node runs: the tested one (`keel_bin`) or the one a rolling upgrade moves
/// it to (`upgrade_bin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Binary {
    Old,
    Next,
}

impl Binary {
    pub fn name(self) -> &'static str {
        match self {
            Binary::Old => "old",
            Binary::Next => "next",
        }
    }
}

/// What became of a binary started on a node's data directory that was expected to refuse
/// it (see [`Cluster::start_expecting_refusal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRefusal {
    /// The exit status, or None: still running at the bound (killed then).
    pub exit: Option<String>,
    /// Exited with a non-zero status.
    pub failed: bool,
    /// The text expected in what the process wrote appeared.
    pub message_seen: bool,
    pub elapsed_ms: u64,
    /// The last line the process wrote (bounded).
    pub last_line: String,
}

/// Per-node clock skew through libfaketime (`FAKETIME` offset, seconds, and rate; monotonic
/// clock not faked, so timers keep their rate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockSkew {
    pub offset_ms: i64,
    /// Wall-clock drift from the (re)start on, parts per million (0: none): the error grows by
    /// `rate_ppm` µs per second.
    pub rate_ppm: i64,
}

impl ClockSkew {
    /// libfaketime's `FAKETIME` value: `+1.500` (an offset) or `+0.000 x1.005000` (and a rate).
    pub fn faketime(&self) -> String {
        assert!(self.rate_ppm.abs() < 1_000_000, "a wall clock never stops");
        let seconds = self.offset_ms as f64 / 1000.0;
        if self.rate_ppm == 0 {
            format!("{seconds:+.3}")
        } else {
            format!("{seconds:+.3} x{:.6}", 1.0 + self.rate_ppm as f64 / 1e6)
        }
    }

    /// The largest wall-clock error after `elapsed_ms` of running with this skew.
    pub fn error_ms_after(&self, elapsed_ms: u64) -> u64 {
        self.offset_ms.unsigned_abs() + self.rate_ppm.unsigned_abs() * elapsed_ms / 1_000_000
    }
}

pub struct Node {
    pub id: u64,
    pub client_addr: String,
    pub peer_addr: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    child: Option<Child>,
    pub paused: bool,
    pub skew: Option<ClockSkew>,
    /// The node runs under libfaketime reading its offset from this file on every clock read
    /// (`FAKETIME_TIMESTAMP_FILE`): writing the file makes its wall clock jump at once.
    pub clock_file: Option<PathBuf>,
    /// `--test-fsync-delay-ms` while a slow-disk fault holds (0: none).
    pub fsync_delay_ms: u64,
    pub starts: u64,
    /// In the configuration (an initial voter, or a spare added; false once removed).
    pub member: bool,
    /// The build every (re)start of this node uses.
    pub binary: Binary,
    /// The node's ports held until it first starts: sockets bound but not listening
    /// (connections are refused, and no outgoing connection takes the port as its ephemeral
    /// port).
    reserved: Vec<rustix::fd::OwnedFd>,
}

/// Binds (without listening) a TCP socket on `address`, keeping the port for later.
fn reserve_port(address: &str) -> Result<rustix::fd::OwnedFd> {
    let address: std::net::SocketAddrV4 = address.parse().context("loopback address")?;
    // CLOEXEC: a child started meanwhile must not inherit the socket (and keep the port).
    let socket = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .context("socket")?;
    rustix::net::bind(&socket, &address).with_context(|| format!("reserve {address}"))?;
    Ok(socket)
}

impl Node {
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct Cluster {
    pub spec: ClusterSpec,
    pub nodes: Vec<Node>,
    /// Directed links (from, to) -> proxy.
    pub links: BTreeMap<(u64, u64), LinkProxy>,
    pub peer_routes_supported: bool,
    pub fsync_delay_supported: bool,
    faketime_lib: Option<PathBuf>,
    http: reqwest::Client,
    noisy: Option<Noisy>,
    /// The build a spare starts on: the old one until a rolling upgrade is finalized (a node
    /// joining mid-upgrade must be upgraded too), the next one after.
    spare_binary: Binary,
}

/// A running noisy neighbour.
struct Noisy {
    child: Child,
    node: u64,
    /// The node's threads' affinity before they were pinned beside the burner.
    node_affinity: Option<rustix::thread::CpuSet>,
}

/// Every thread id of process `pid` (from /proc).
fn threads_of(pid: u32) -> Vec<rustix::process::Pid> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let threads_max = 10_000;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(rustix::process::Pid::from_raw)
        .take(threads_max)
        .collect()
}

/// Pins every thread of `pid` to `set` (best effort: threads may come and go).
fn pin_threads(pid: u32, set: &rustix::thread::CpuSet) -> usize {
    threads_of(pid)
        .into_iter()
        .filter(|&tid| rustix::thread::sched_setaffinity(Some(tid), set).is_ok())
        .count()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Distinct free loopback ports (all listeners stay open until every port is chosen).
fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Whether `keel serve` of this binary knows `flag`.
fn serve_supports(keel_bin: &Path, flag: &str) -> Result<bool> {
    let output = Command::new(keel_bin)
        .args(["serve", "--help"])
        .output()
        .with_context(|| format!("cannot run {}", keel_bin.display()))?;
    if !output.status.success() {
        bail!(
            "{} serve --help failed: {}",
            keel_bin.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).contains(flag))
}

/// libfaketime's preload library, if installed (Debian `faketime`).
pub fn find_faketime_lib() -> Option<PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

impl Cluster {
    /// Creates directories and proxies; starts no process yet.
    pub async fn create(spec: ClusterSpec) -> Result<Cluster> {
        if !(1..=NODES_MAX).contains(&spec.nodes) {
            bail!("--nodes must be 1..={NODES_MAX}, got {}", spec.nodes);
        }
        if spec.election_timeout_ms < 50 {
            bail!("--election-timeout-ms must be at least 50");
        }
        let peer_routes_supported = serve_supports(&spec.keel_bin, "--peer-routes")?;
        if let Some(upgrade_bin) = &spec.upgrade_bin {
            // Runs at all (`serve --help`): a bad path is a usage error now, not mid-run.
            serve_supports(upgrade_bin, "--peer-routes")
                .with_context(|| format!("--upgrade-to {}", upgrade_bin.display()))?;
        }
        let fsync_delay_supported = serve_supports(&spec.keel_bin, "--test-fsync-delay-ms")?;
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("cannot create {}", spec.dir.display()))?;
        if spec.nodes + spec.spares > SLOTS_MAX {
            bail!("at most {SLOTS_MAX} nodes and spares together");
        }
        let slots = spec.nodes + spec.spares;
        let ports = free_ports(2 * slots).context("free ports")?;
        let nodes: Vec<Node> = (0..slots)
            .map(|index| {
                let id = index as u64 + 1;
                Node {
                    id,
                    client_addr: format!("127.0.0.1:{}", ports[2 * index]),
                    peer_addr: format!("127.0.0.1:{}", ports[2 * index + 1]),
                    data_dir: spec.dir.join(format!("node-{id}")),
                    log_path: spec.dir.join(format!("node-{id}.log")),
                    child: None,
                    paused: false,
                    skew: None,
                    clock_file: None,
                    fsync_delay_ms: 0,
                    starts: 0,
                    member: index < spec.nodes,
                    binary: Binary::Old,
                    reserved: Vec::new(),
                }
            })
            .collect();
        let mut nodes = nodes;
        // Every slot's ports held from now until its first start (other processes' outgoing
        // connections would otherwise take them as ephemeral ports meanwhile).
        for node in nodes.iter_mut() {
            node.reserved = vec![
                reserve_port(&node.client_addr)?,
                reserve_port(&node.peer_addr)?,
            ];
        }
        let mut links = BTreeMap::new();
        for from in &nodes {
            for to in &nodes {
                if from.id == to.id {
                    continue;
                }
                let seed = spec.seed ^ ((from.id << 32) | to.id);
                let proxy = LinkProxy::start(from.id, to.id, to.peer_addr.clone(), seed)
                    .await
                    .context("proxy listener")?;
                links.insert((from.id, to.id), proxy);
            }
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(HTTP_TIMEOUT_MS))
            .build()
            .context("http client")?;
        Ok(Cluster {
            spec,
            nodes,
            links,
            peer_routes_supported,
            fsync_delay_supported,
            faketime_lib: find_faketime_lib(),
            http,
            noisy: None,
            spare_binary: Binary::Old,
        })
    }

    /// The members (initial voters, spares added, minus nodes removed).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.member)
            .map(|n| n.id)
            .collect()
    }

    /// A spare slot never started, if any is left.
    pub fn spare(&self) -> Option<u64> {
        self.nodes
            .iter()
            .find(|n| !n.member && n.starts == 0)
            .map(|n| n.id)
    }

    pub fn set_member(&mut self, id: u64, member: bool) {
        let index = self.index(id);
        self.nodes[index].member = member;
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[self.index(id)]
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.client_addr.clone()).collect()
    }

    pub fn faketime_available(&self) -> bool {
        self.faketime_lib.is_some()
    }

    fn index(&self, id: u64) -> usize {
        let index = self
            .nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node id");
        assert_eq!(self.nodes[index].id, id);
        index
    }

    /// `id=value` for every slot (`initial_only`: the initial voters).
    fn map(&self, initial_only: bool, f: impl Fn(&Node) -> String) -> String {
        let count = if initial_only {
            self.spec.nodes
        } else {
            self.nodes.len()
        };
        self.nodes[..count]
            .iter()
            .map(|n| format!("{}={}", n.id, f(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub async fn start_all(&mut self) -> Result<()> {
        for id in self.ids() {
            self.start(id)?;
        }
        Ok(())
    }

    /// The path of build `binary`.
    pub fn binary_path(&self, binary: Binary) -> Result<&Path> {
        match (binary, &self.spec.upgrade_bin) {
            (Binary::Old, _) => Ok(&self.spec.keel_bin),
            (Binary::Next, Some(path)) => Ok(path),
            (Binary::Next, None) => bail!("no --upgrade-to build to run"),
        }
    }

    /// Starts (or restarts) node `id` on its data directory, on the node's current build.
    pub fn start(&mut self, id: u64) -> Result<()> {
        let index = self.index(id);
        if self.nodes[index].running() {
            return Ok(());
        }
        if self.nodes[index].starts == 0 && index >= self.spec.nodes {
            // A spare joins on the build the cluster is on now.
            self.nodes[index].binary = self.spare_binary;
        }
        let mut command = self.command(id, self.nodes[index].binary)?;
        // The held ports go to the server now.
        self.nodes[index].reserved.clear();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        let node = &mut self.nodes[index];
        node.child = Some(child);
        node.paused = false;
        node.starts += 1;
        Ok(())
    }

    /// The `keel serve` command line of node `id` on build `binary`, output to its log.
    fn command(&self, id: u64, binary: Binary) -> Result<Command> {
        let index = self.index(id);
        let peer_clients = self.map(false, |n| n.client_addr.clone());
        let (peers, routes) = if self.peer_routes_supported {
            let routes = self
                .nodes
                .iter()
                .filter(|n| n.id != id)
                .map(|n| format!("{}={}", n.id, self.links[&(id, n.id)].listen_addr))
                .collect::<Vec<_>>()
                .join(",");
            // `--peers` is always the initial configuration (a spare starts outside it and
            // joins as a learner; a restarted node replays its configuration changes).
            (self.map(true, |n| n.peer_addr.clone()), Some(routes))
        } else {
            let peers = self.map(true, |n| {
                if n.id == id {
                    n.peer_addr.clone()
                } else {
                    self.links[&(id, n.id)].listen_addr.clone()
                }
            });
            (peers, None)
        };
        let election_timeout_ms = self.spec.election_timeout_ms;
        let node = &self.nodes[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log_path)
            .with_context(|| format!("{}", node.log_path.display()))?;
        let log_err = log.try_clone()?;
        let config_path = self.spec.dir.join(format!("node-{id}.toml"));
        if let Some(clock_uncertainty_ms) = self.spec.clock_uncertainty_ms {
            std::fs::write(
                &config_path,
                format!("clock_uncertainty_ms = {clock_uncertainty_ms}\n"),
            )
            .with_context(|| format!("{}", config_path.display()))?;
        }
        let mut command = Command::new(self.binary_path(binary)?);
        if self.spec.clock_uncertainty_ms.is_some() {
            command.arg("serve").arg("--config").arg(&config_path);
        } else {
            command.arg("serve");
        }
        command
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--listen-client", &node.client_addr])
            .args(["--listen-peer", &node.peer_addr])
            .args(["--advertise-peer", &node.peer_addr])
            .args(["--peers", &peers])
            .args(["--peer-clients", &peer_clients])
            .args(["--cluster-id", "keel-nemesis"])
            .args(["--election-timeout-ms", &election_timeout_ms.to_string()])
            .args([
                "--heartbeat-interval-ms",
                &(election_timeout_ms / 6).max(10).to_string(),
            ])
            .args(["--parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(routes) = routes {
            command.args(["--peer-routes", &routes]);
        }
        if node.fsync_delay_ms > 0 && self.fsync_delay_supported {
            command.args(["--test-fsync-delay-ms", &node.fsync_delay_ms.to_string()]);
        }
        if let Some(mutant) = &self.spec.mutant {
            command.args(["--mutant", mutant]);
        }
        if let (Some(skew), Some(lib)) = (node.skew, &self.faketime_lib) {
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME", skew.faketime())
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        } else if let (Some(file), Some(lib)) = (&node.clock_file, &self.faketime_lib) {
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", file)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        Ok(command)
    }

    fn signal(&self, id: u64, signal: rustix::process::Signal) -> Result<()> {
        let node = &self.nodes[self.index(id)];
        let Some(pid) = node.pid() else {
            bail!("node {id} is not running");
        };
        let pid = rustix::process::Pid::from_raw(pid as i32).context("pid")?;
        rustix::process::kill_process(pid, signal).context("kill")?;
        Ok(())
    }

    /// kill -9 and reap.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        let index = self.index(id);
        if !self.nodes[index].running() {
            return Ok(());
        }
        self.signal(id, rustix::process::Signal::KILL)?;
        let node = &mut self.nodes[index];
        if let Some(mut child) = node.child.take() {
            let _ = child.wait();
        }
        node.paused = false;
        assert!(!node.running());
        Ok(())
    }

    pub fn pause(&mut self, id: u64) -> Result<()> {
        self.signal(id, rustix::process::Signal::STOP)?;
        let index = self.index(id);
        self.nodes[index].paused = true;
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<()> {
        let index = self.index(id);
        if self.nodes[index].paused && self.nodes[index].running() {
            self.signal(id, rustix::process::Signal::CONT)?;
        }
        self.nodes[index].paused = false;
        Ok(())
    }

    /// Stops node `id` with SIGTERM (a graceful shutdown), kill -9 if it has not exited within
    /// `GRACEFUL_STOP_MS_MAX`; then starts it again on its data. Returns how it stopped.
    pub async fn restart_graceful(&mut self, id: u64) -> Result<&'static str> {
        let how = self.stop_graceful(id).await?;
        self.start(id)?;
        Ok(how)
    }

    /// Stops node `id` gracefully (see [`Cluster::restart_graceful`]) and starts it again on
    /// build `binary`, which it runs from then on. Returns how it stopped.
    pub async fn restart_on(&mut self, id: u64, binary: Binary) -> Result<&'static str> {
        self.binary_path(binary)?;
        let how = self.stop_graceful(id).await?;
        let index = self.index(id);
        self.nodes[index].binary = binary;
        self.start(id)?;
        assert_eq!(self.nodes[index].binary, binary);
        Ok(how)
    }

    /// A rolling upgrade was finalized: spares not yet started join on the next build.
    pub fn upgrade_finalized(&mut self) {
        self.spare_binary = Binary::Next;
        for node in self.nodes.iter_mut().filter(|n| n.starts == 0) {
            node.binary = Binary::Next;
        }
    }

    /// Starts build `binary` on the data directory of node `id` (which must be stopped) once,
    /// expecting it to refuse to run: waits up to `bound_ms` for it to exit (killed at the
    /// bound) and looks for `message` in what it wrote to the node's log. The node's own
    /// build and state are unchanged.
    pub async fn start_expecting_refusal(
        &mut self,
        id: u64,
        binary: Binary,
        message: &str,
        bound_ms: u64,
    ) -> Result<StartRefusal> {
        let index = self.index(id);
        if self.nodes[index].running() {
            bail!("node {id} must be stopped before another build is tried on its data");
        }
        let log_path = self.nodes[index].log_path.clone();
        let log_offset = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let started = std::time::Instant::now();
        let mut child = self
            .command(id, binary)?
            .spawn()
            .with_context(|| format!("cannot start {} on node {id}'s data", binary.name()))?;
        let polls_max = bound_ms / 50 + 1;
        let mut exit = None;
        for _ in 0..polls_max {
            if let Ok(Some(status)) = child.try_wait() {
                exit = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if exit.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let written = read_from(&log_path, log_offset, LOG_EXCERPT_BYTES_MAX);
        let last_line_chars_max = 300;
        let last_line = written
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .chars()
            .take(last_line_chars_max)
            .collect();
        assert!(!self.nodes[index].running());
        Ok(StartRefusal {
            exit: exit.map(|s| s.to_string()),
            failed: exit.is_some_and(|s| !s.success()),
            message_seen: written.contains(message),
            elapsed_ms,
            last_line,
        })
    }

    /// Stops node `id` with SIGTERM, kill -9 if it has not exited within
    /// `GRACEFUL_STOP_MS_MAX`. Returns how it stopped.
    pub async fn stop_graceful(&mut self, id: u64) -> Result<&'static str> {
        let index = self.index(id);
        let mut how = "not running";
        if self.nodes[index].running() {
            self.resume(id)?;
            self.signal(id, rustix::process::Signal::TERM)?;
            how = "killed after the grace period";
            let polls_max = GRACEFUL_STOP_MS_MAX / 50;
            for _ in 0..polls_max {
                let node = &mut self.nodes[index];
                let exited = node
                    .child
                    .as_mut()
                    .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited {
                    node.child = None;
                    how = "stopped gracefully";
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.kill(id)?;
        }
        assert!(!self.nodes[index].running());
        Ok(how)
    }

    /// Starts a CPU-burning process beside node `id`: both pinned to one CPU for the hold.
    /// Returns a description. Any previous neighbour is stopped first.
    pub fn start_noisy(&mut self, id: u64) -> Result<String> {
        self.stop_noisy();
        let pid = self.nodes[self.index(id)].pid();
        let harness = std::process::id();
        let script = format!(
            "while kill -0 {harness} 2>/dev/null; do i=0; while [ $i -lt {NOISY_SPIN_ITERATIONS} ]; do i=$((i+1)); done; done"
        );
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut command = if setpriv.exists() {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--", "sh", "-c", &script]);
            c
        } else {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the noisy neighbour (sh)")?;
        // Pin the burner and the node to the node's last allowed CPU.
        let mut detail = format!("CPU burner pid {} beside node {id}", child.id());
        let mut node_affinity = None;
        if let Some(pid) = pid {
            let node_pid = rustix::process::Pid::from_raw(pid as i32);
            if let Ok(current) = rustix::thread::sched_getaffinity(node_pid) {
                let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
                    .rev()
                    .find(|&c| current.is_set(c));
                if let Some(cpu) = cpu {
                    let mut one = rustix::thread::CpuSet::new();
                    one.set(cpu);
                    let burner = rustix::process::Pid::from_raw(child.id() as i32);
                    let pinned = rustix::thread::sched_setaffinity(burner, &one).is_ok();
                    let threads = pin_threads(pid, &one);
                    node_affinity = Some(current);
                    if pinned {
                        detail.push_str(&format!(", both on CPU {cpu} ({threads} node threads)"));
                    }
                }
            }
        }
        self.noisy = Some(Noisy {
            child,
            node: id,
            node_affinity,
        });
        Ok(detail)
    }

    /// Kills the noisy neighbour (if any) and gives its node back its CPUs. Idempotent.
    pub fn stop_noisy(&mut self) {
        let Some(mut noisy) = self.noisy.take() else {
            return;
        };
        let _ = noisy.child.kill();
        let _ = noisy.child.wait();
        let index = self.index(noisy.node);
        if let (Some(pid), Some(set)) = (self.nodes[index].pid(), noisy.node_affinity.as_ref()) {
            pin_threads(pid, set);
        }
    }

    pub fn noisy_running(&self) -> bool {
        self.noisy.is_some()
    }

    /// Restarts node `id` with its wall clock read through a jump file (offset 0 for now), or
    /// back to a true clock (`false`). See [`Cluster::jump_clock`].
    pub fn restart_with_clock_file(&mut self, id: u64, on: bool) -> Result<()> {
        self.kill(id)?;
        let index = self.index(id);
        let file = self.spec.dir.join(format!("node-{id}.faketime"));
        if on {
            std::fs::write(&file, "+0\n").with_context(|| format!("{}", file.display()))?;
        }
        let node = &mut self.nodes[index];
        node.skew = None;
        node.clock_file = on.then_some(file);
        self.start(id)
    }

    /// Moves node `id`'s wall clock to `offset_ms` from true time at once (it must run with a
    /// jump file). The node should see the jump as a discontinuity.
    pub fn jump_clock(&self, id: u64, offset_ms: i64) -> Result<()> {
        let node = &self.nodes[self.index(id)];
        let Some(file) = &node.clock_file else {
            bail!("node {id} has no clock jump file");
        };
        let seconds = offset_ms as f64 / 1000.0;
        std::fs::write(file, format!("{seconds:+.3}\n"))
            .with_context(|| format!("{}", file.display()))
    }

    /// Restarts node `id` with a clock offset (or none).
    /// Restarts with a true clock every member whose skew matches `skewed`.
    pub fn restart_true_clock_where(&mut self, skewed: impl Fn(&ClockSkew) -> bool) -> Result<()> {
        let ids: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.member && n.skew.as_ref().is_some_and(&skewed))
            .map(|n| n.id)
            .collect();
        for id in ids {
            self.restart_with_skew(id, None)?;
        }
        Ok(())
    }

    pub fn restart_with_skew(&mut self, id: u64, skew: Option<ClockSkew>) -> Result<()> {
        self.kill(id)?;
        let index = self.index(id);
        self.nodes[index].skew = skew;
        self.nodes[index].clock_file = None;
        self.start(id)
    }

    /// Restarts node `id` with a slow disk (`--test-fsync-delay-ms`; 0 = normal).
    pub fn restart_with_fsync_delay(&mut self, id: u64, fsync_delay_ms: u64) -> Result<()> {
        self.kill(id)?;
        let index = self.index(id);
        self.nodes[index].fsync_delay_ms = fsync_delay_ms;
        self.start(id)
    }

    /// Nodes that exited on their own since the last call (id, status).
    pub fn reap(&mut self) -> Vec<(u64, String)> {
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

    /// The last non-empty line of node `id`'s log (for error messages).
    pub fn log_tail(&self, id: u64) -> String {
        let node = &self.nodes[self.index(id)];
        let text = std::fs::read_to_string(&node.log_path).unwrap_or_default();
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let line_chars_max = 300;
        line.chars().take(line_chars_max).collect()
    }

    /// Kills every child (SIGCONT first so a paused one can die), idempotent.
    pub fn stop_all(&mut self) {
        self.stop_noisy();
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            node.paused = false;
        }
    }

    // ---- the network ----

    pub fn set_link(&self, from: u64, to: u64, mode: LinkMode) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.set_mode(mode);
        }
    }

    /// Cuts every link between a node of `a` and a node of `b`, both ways.
    pub fn cut_between(&self, a: &[u64], b: &[u64], mode: LinkMode) {
        for &x in a {
            for &y in b {
                self.set_link(x, y, mode);
                self.set_link(y, x, mode);
            }
        }
    }

    pub fn set_all_links(&self, mode: LinkMode) {
        for link in self.links.values() {
            link.set_mode(mode);
        }
    }

    pub fn heal_network(&self) {
        self.set_all_links(LinkMode::Pass);
    }

    pub fn reset_connections(&self) {
        for link in self.links.values() {
            link.reset();
        }
    }

    /// Peer frames the proxies wrote twice (`duplicate`), over every link.
    pub fn frames_duplicated(&self) -> u64 {
        self.links
            .values()
            .map(|l| {
                l.counters
                    .frames_duplicated
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    }

    pub fn link_bytes_passed(&self, from: u64, to: u64) -> u64 {
        self.links
            .get(&(from, to))
            .map_or(0, LinkProxy::bytes_passed)
    }

    // ---- observation ----

    pub fn client_for(&self, id: u64) -> Result<Client> {
        let node = &self.nodes[self.index(id)];
        let mut config = ClientConfig::new(&[node.client_addr.as_str()]);
        config.call_timeout_ms = HTTP_TIMEOUT_MS;
        config.attempt_timeout_ms = HTTP_TIMEOUT_MS;
        config.attempts_max = 1;
        Client::new(config).map_err(|e| anyhow::anyhow!("client: {e}"))
    }

    /// Status of every running, unpaused node that answers.
    pub async fn statuses(&self) -> Vec<Status> {
        let mut out = Vec::new();
        for node in &self.nodes {
            if !node.running() || node.paused {
                continue;
            }
            if let Ok(client) = self.client_for(node.id) {
                if let Ok(status) = client.status_of(&node.client_addr).await {
                    out.push(status);
                }
            }
        }
        out
    }

    /// The leader of the highest term any answering node reports itself leader in.
    pub async fn leader(&self) -> Option<u64> {
        self.statuses()
            .await
            .into_iter()
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term)
            .map(|s| s.node_id)
    }

    /// Scrapes one node's `/metrics`; returns the value of `name` (summed over label sets).
    pub async fn metric(&self, id: u64, name: &str) -> Option<f64> {
        parse_metric(&self.metrics_text(id).await?, name)
    }

    /// One node's whole `/metrics` text (None: not running, paused or not answering).
    pub async fn metrics_text(&self, id: u64) -> Option<String> {
        let node = &self.nodes[self.index(id)];
        if !node.running() || node.paused {
            return None;
        }
        let url = format!("http://{}/metrics", node.client_addr);
        self.http.get(url).send().await.ok()?.text().await.ok()
    }
}

/// Up to `bytes_max` of the file at `path` from byte `offset` on (lossy UTF-8; empty if
/// unreadable).
fn read_from(path: &Path, offset: u64, bytes_max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.take(bytes_max).read_to_end(&mut bytes);
        }
    }
    assert!(bytes.len() as u64 <= bytes_max);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sums every sample of metric `name` in Prometheus text; None if absent.
pub fn parse_metric(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(value) = value {
            total = Some(total.unwrap_or(0.0) + value);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faketime_values_and_drift_error() {
        let offset = ClockSkew {
            offset_ms: -1500,
            rate_ppm: 0,
        };
        assert_eq!(offset.faketime(), "-1.500");
        assert_eq!(offset.error_ms_after(10_000), 1500);
        let drift = ClockSkew {
            offset_ms: 0,
            rate_ppm: 5_000,
        };
        assert_eq!(drift.faketime(), "+0.000 x1.005000");
        assert_eq!(drift.error_ms_after(10_000), 50, "5,000 ppm for 10 s");
        let slow = ClockSkew {
            offset_ms: 0,
            rate_ppm: -200_000,
        };
        assert_eq!(slow.faketime(), "+0.000 x0.800000");
    }

    /// A stand-in `keel` script: `serve --help` succeeds; `serve ...` runs `body`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        let text = format!("#!/bin/sh\n[ \"$2\" = --help ] && exit 0\n{body}\n");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_refusing_build_is_recognised_and_a_hanging_one_is_killed_at_the_bound() {
        let dir = std::env::temp_dir().join(format!("keel-nemesis-refusal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let refuses = script(
            &dir,
            "old.sh",
            "echo 'data format 2 is newer than this binary (up to 1)' >&2\nexit 3",
        );
        let hangs = script(&dir, "next.sh", "echo serving\nexec sleep 30");
        let spec = ClusterSpec {
            keel_bin: refuses,
            nodes: 1,
            dir: dir.join("cluster"),
            election_timeout_ms: 300,
            mutant: None,
            seed: 1,
            clock_uncertainty_ms: None,
            spares: 0,
            upgrade_bin: Some(hangs),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut cluster = Cluster::create(spec).await.unwrap();
            let message = "newer than this binary";
            let old = cluster
                .start_expecting_refusal(1, Binary::Old, message, 5_000)
                .await
                .unwrap();
            assert!(old.failed && old.message_seen, "{old:?}");
            assert!(
                old.exit.is_some() && old.last_line.contains(message),
                "{old:?}"
            );
            // Only what this start wrote counts (the log already holds the message once).
            let next = cluster
                .start_expecting_refusal(1, Binary::Next, message, 300)
                .await
                .unwrap();
            assert_eq!(next.exit, None, "still running at the bound: {next:?}");
            assert!(!next.failed && !next.message_seen, "{next:?}");
            assert!(next.elapsed_ms >= 300);
            assert_eq!(next.last_line, "serving");
            assert!(!cluster.node(1).running(), "the node itself stays stopped");
            assert_eq!(cluster.node(1).binary, Binary::Old);
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn metric_parsing() {
        let text = "# HELP x y\nkeel_a_total 3\nkeel_a_total_other 9\nkeel_b{x=\"1\"} 2\nkeel_b{x=\"2\"} 5\n";
        assert_eq!(parse_metric(text, "keel_a_total"), Some(3.0));
        assert_eq!(parse_metric(text, "keel_b"), Some(7.0));
        assert_eq!(parse_metric(text, "keel_c"), None);
    }
}
