//! Server cost from /proc: CPU seconds (utime + stime of /proc/<pid>/stat, all threads) and
//! resident memory (VmRSS now, VmHWM = peak since the process started, of /proc/<pid>/status).

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Most PIDs one run watches.
pub const PIDS_MAX: usize = 64;

/// One reading of one process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
}

/// Parses utime + stime (fields 14 and 15) of a /proc/<pid>/stat line, in clock ticks.
/// The command name (field 2) may hold spaces and parentheses, so fields are counted after the
/// last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    let close = stat.rfind(')').context("stat line without ')'")?;
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    if rest.len() < 13 {
        bail!(
            "stat line has {} fields after the name, need 13",
            rest.len()
        );
    }
    let utime: u64 = rest[11].parse().context("utime is not a number")?;
    let stime: u64 = rest[12].parse().context("stime is not a number")?;
    Ok(utime + stime)
}

/// Parses `VmRSS` and `VmHWM` (kiB) of /proc/<pid>/status.
pub fn parse_status_rss_kib(status: &str) -> Result<(u64, u64)> {
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("status has no {name}"))?;
        let number = line[name.len()..].trim().trim_end_matches("kB").trim();
        number
            .parse::<u64>()
            .with_context(|| format!("{name} is not a number: {line:?}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

pub fn sample(pid: u32) -> Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    let (rss_kib, peak_rss_kib) = parse_status_rss_kib(&status)?;
    let hz = clock_ticks_per_second();
    assert!(hz > 0);
    Ok(ProcSample {
        cpu_seconds: ticks as f64 / hz as f64,
        rss_kib,
        peak_rss_kib,
    })
}

/// What the watched servers spent during the measured window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerCost {
    pub pids: Vec<u32>,
    /// Sum over the PIDs of CPU seconds spent in the measured window.
    pub cpu_seconds: f64,
    /// The same per PID (the leader's share shows here).
    pub cpu_seconds_by_pid: Vec<f64>,
    /// `cpu_seconds` / measured operations, in microseconds.
    pub cpu_us_per_op: f64,
    /// Per PID: the largest RSS seen while sampling (MiB) and the kernel's VmHWM at the end.
    pub peak_rss_mib: Vec<f64>,
    pub vm_hwm_mib: Vec<f64>,
    /// The largest of `peak_rss_mib` (one member's peak).
    pub peak_rss_mib_max: f64,
}

/// Samples the PIDs at the start of the measured window, then periodically for peak RSS.
pub struct ProcWatch {
    pids: Vec<u32>,
    start_cpu_seconds: Vec<f64>,
    peak_rss_kib: Vec<u64>,
}

impl ProcWatch {
    pub fn start(pids: &[u32]) -> Result<ProcWatch> {
        if pids.len() > PIDS_MAX {
            bail!("at most {PIDS_MAX} pids, got {}", pids.len());
        }
        let mut start_cpu_seconds = Vec::with_capacity(pids.len());
        let mut peak_rss_kib = Vec::with_capacity(pids.len());
        for pid in pids {
            let s = sample(*pid)?;
            start_cpu_seconds.push(s.cpu_seconds);
            peak_rss_kib.push(s.rss_kib);
        }
        Ok(ProcWatch {
            pids: pids.to_vec(),
            start_cpu_seconds,
            peak_rss_kib,
        })
    }

    /// Updates the peak RSS; a process that vanished is skipped (its last reading stays).
    pub fn poll(&mut self) {
        for (i, pid) in self.pids.iter().enumerate() {
            if let Ok(s) = sample(*pid) {
                self.peak_rss_kib[i] = self.peak_rss_kib[i].max(s.rss_kib);
            }
        }
    }

    pub fn finish(mut self, ops: u64) -> Result<ServerCost> {
        self.poll();
        let mut cpu_seconds = 0.0;
        let mut cpu_seconds_by_pid = Vec::with_capacity(self.pids.len());
        let mut vm_hwm_mib = Vec::with_capacity(self.pids.len());
        for (i, pid) in self.pids.iter().enumerate() {
            let s =
                sample(*pid).with_context(|| format!("server pid {pid} at the end of the run"))?;
            let spent = s.cpu_seconds - self.start_cpu_seconds[i];
            cpu_seconds_by_pid.push(spent);
            cpu_seconds += spent;
            vm_hwm_mib.push(s.peak_rss_kib as f64 / 1024.0);
        }
        let peak_rss_mib: Vec<f64> = self
            .peak_rss_kib
            .iter()
            .map(|k| *k as f64 / 1024.0)
            .collect();
        let peak_rss_mib_max = peak_rss_mib.iter().cloned().fold(0.0, f64::max);
        Ok(ServerCost {
            pids: self.pids,
            cpu_seconds,
            cpu_seconds_by_pid,
            cpu_us_per_op: if ops == 0 {
                0.0
            } else {
                cpu_seconds * 1e6 / ops as f64
            },
            peak_rss_mib,
            vm_hwm_mib,
            peak_rss_mib_max,
        })
    }
}
