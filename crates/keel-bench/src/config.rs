//! What one benchmark run does: the operation mix, the read level, the keys, the load shape.
//! Everything here is plain data parsed from text with clear errors (no panics on bad input).

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Largest key space a run may use (the Zipf table holds one f64 per key).
pub const KEYS_MAX: u64 = 10_000_000;
/// Largest key and value sizes, in bytes (the server's own limits are lower or equal).
pub const KEY_SIZE_BYTES_MAX: usize = 4096;
pub const VALUE_SIZE_BYTES_MAX: usize = 1 << 20;
/// Largest number of concurrent clients (each holds one connection).
pub const CLIENTS_MAX: usize = 4096;
/// Longest run and warm-up, in seconds.
pub const DURATION_S_MAX: f64 = 24.0 * 3600.0;
/// Highest open-loop arrival rate, in operations per second.
pub const RATE_PER_S_MAX: f64 = 10_000_000.0;

/// How a read is served. etcd has two levels: `linearizable` maps to its default (quorum) read,
/// every other level to its serializable (local) read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadLevel {
    Linearizable,
    /// Served by any node whose data is at most this many milliseconds stale.
    Bounded {
        staleness_ms: u64,
    },
    Any,
}

impl ReadLevel {
    pub fn parse(text: &str) -> Result<ReadLevel> {
        match text {
            "linearizable" => Ok(ReadLevel::Linearizable),
            "any" => Ok(ReadLevel::Any),
            _ => match text.strip_prefix("bounded:") {
                Some(ms) => {
                    let staleness_ms = ms.parse::<u64>().with_context(|| {
                        format!("bounded:<ms> needs a whole number, got {ms:?}")
                    })?;
                    Ok(ReadLevel::Bounded { staleness_ms })
                }
                None => bail!("read level must be linearizable, bounded:<ms> or any, got {text:?}"),
            },
        }
    }

    /// Keel's `read=` query value.
    pub fn as_query(&self) -> String {
        match self {
            ReadLevel::Linearizable => "linearizable".to_string(),
            ReadLevel::Bounded { staleness_ms } => format!("bounded:{staleness_ms}"),
            ReadLevel::Any => "any".to_string(),
        }
    }

    /// Whether the read must go through the leader (otherwise clients spread over all nodes).
    pub fn needs_leader(&self) -> bool {
        matches!(self, ReadLevel::Linearizable)
    }
}

/// The operation mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpMix {
    Put,
    Get,
    /// Compare-and-swap on the value (the expected value is the prefill value; the new value is
    /// the same bytes, so an uncontended CAS always succeeds and costs a full replicated write).
    Cas,
    /// A transaction: if key k still holds the prefill value, write it to k and to k+1 (two
    /// keys, one atomic replicated write).
    Txn,
    /// `get_percent` of operations are gets, the rest puts.
    Mixed {
        get_percent: u8,
    },
}

impl OpMix {
    /// `put`, `get`, `cas`, `txn` or `mixed:<get percent>` (e.g. `mixed:90` = 90% gets, 10% puts).
    pub fn parse(text: &str) -> Result<OpMix> {
        match text {
            "put" => Ok(OpMix::Put),
            "get" => Ok(OpMix::Get),
            "cas" => Ok(OpMix::Cas),
            "txn" => Ok(OpMix::Txn),
            _ => match text.strip_prefix("mixed:") {
                Some(p) => {
                    let get_percent = p
                        .parse::<u8>()
                        .ok()
                        .filter(|p| *p <= 100)
                        .with_context(|| format!("mixed:<get percent 0..=100>, got {p:?}"))?;
                    Ok(OpMix::Mixed { get_percent })
                }
                None => bail!("op must be put, get, cas, txn or mixed:<get percent>, got {text:?}"),
            },
        }
    }

    pub fn reads(&self) -> bool {
        !matches!(self, OpMix::Put | OpMix::Cas | OpMix::Txn)
    }

    pub fn writes(&self) -> bool {
        !matches!(self, OpMix::Get)
    }
}

/// How keys are drawn from `[0, keys)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDistribution {
    Uniform,
    /// Rank r (0-based) is drawn with probability proportional to 1/(r+1)^exponent.
    Zipf {
        exponent: f64,
    },
}

impl KeyDistribution {
    /// `uniform`, `zipf` (exponent 0.99, as YCSB) or `zipf:<exponent>`.
    pub fn parse(text: &str) -> Result<KeyDistribution> {
        match text {
            "uniform" => Ok(KeyDistribution::Uniform),
            "zipf" => Ok(KeyDistribution::Zipf { exponent: 0.99 }),
            _ => match text.strip_prefix("zipf:") {
                Some(s) => {
                    let exponent = s
                        .parse::<f64>()
                        .ok()
                        .filter(|e| e.is_finite() && *e > 0.0 && *e <= 10.0)
                        .with_context(|| format!("zipf:<exponent in (0, 10]>, got {s:?}"))?;
                    Ok(KeyDistribution::Zipf { exponent })
                }
                None => bail!("key distribution must be uniform, zipf or zipf:<s>, got {text:?}"),
            },
        }
    }
}

/// Closed loop: each client issues its next operation when the previous one completes.
/// Open loop: operations arrive at a fixed total rate whatever the server does; latency is
/// measured from each operation's intended start, so queueing behind a slow server is counted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadShape {
    Closed,
    Open { rate_per_s: f64 },
}

/// One run.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub op: OpMix,
    pub read_level: ReadLevel,
    pub shape: LoadShape,
    pub clients: usize,
    pub keys: u64,
    pub key_size_bytes: usize,
    pub value_size_bytes: usize,
    pub distribution: KeyDistribution,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Closed loop only: stop after this many measured operations (or at the duration).
    pub count_max: Option<u64>,
    /// Per-operation timeout; a timed-out operation counts as error `TIMEOUT`.
    pub op_timeout_ms: u64,
    pub seed: u64,
    /// Write every key once before the run when the mix reads or compares (so gets find values).
    pub prefill: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            op: OpMix::Put,
            read_level: ReadLevel::Linearizable,
            shape: LoadShape::Closed,
            clients: 16,
            keys: 10_000,
            key_size_bytes: 16,
            value_size_bytes: 128,
            distribution: KeyDistribution::Uniform,
            warmup_s: 2.0,
            duration_s: 10.0,
            count_max: None,
            op_timeout_ms: 10_000,
            seed: 1,
            prefill: true,
        }
    }
}

impl Config {
    /// Rejects settings outside the limits, with the reason.
    pub fn validate(&self) -> Result<()> {
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            bail!("clients must be in 1..={CLIENTS_MAX}, got {}", self.clients);
        }
        if self.keys == 0 || self.keys > KEYS_MAX {
            bail!("keys must be in 1..={KEYS_MAX}, got {}", self.keys);
        }
        if self.key_size_bytes < 8 || self.key_size_bytes > KEY_SIZE_BYTES_MAX {
            bail!(
                "key size must be in 8..={KEY_SIZE_BYTES_MAX} bytes, got {}",
                self.key_size_bytes
            );
        }
        let digits = self.keys.to_string().len();
        if digits + 1 > self.key_size_bytes {
            bail!(
                "key size {} bytes cannot hold {} distinct keys (needs {} bytes)",
                self.key_size_bytes,
                self.keys,
                digits + 1
            );
        }
        if self.value_size_bytes == 0 || self.value_size_bytes > VALUE_SIZE_BYTES_MAX {
            bail!(
                "value size must be in 1..={VALUE_SIZE_BYTES_MAX} bytes, got {}",
                self.value_size_bytes
            );
        }
        if !(self.duration_s > 0.0 && self.duration_s <= DURATION_S_MAX) {
            bail!(
                "duration must be in (0, {DURATION_S_MAX}] s, got {}",
                self.duration_s
            );
        }
        if !(self.warmup_s >= 0.0 && self.warmup_s <= DURATION_S_MAX) {
            bail!(
                "warm-up must be in [0, {DURATION_S_MAX}] s, got {}",
                self.warmup_s
            );
        }
        if let LoadShape::Open { rate_per_s } = self.shape {
            if !(rate_per_s > 0.0 && rate_per_s <= RATE_PER_S_MAX) {
                bail!("rate must be in (0, {RATE_PER_S_MAX}] ops/s, got {rate_per_s}");
            }
            if self.count_max.is_some() {
                bail!(
                    "--count applies to the closed loop only (the open loop runs for a duration)"
                );
            }
        }
        if self.count_max == Some(0) {
            bail!("count must be at least 1");
        }
        if self.op_timeout_ms == 0 || self.op_timeout_ms > 600_000 {
            bail!(
                "op timeout must be in 1..=600000 ms, got {}",
                self.op_timeout_ms
            );
        }
        Ok(())
    }

    /// The key with this index: `b` + zero-padded decimal, exactly `key_size_bytes` long.
    pub fn key(&self, index: u64) -> Vec<u8> {
        assert!(index < self.keys);
        let key = format!("b{:0width$}", index, width = self.key_size_bytes - 1).into_bytes();
        assert_eq!(key.len(), self.key_size_bytes);
        key
    }

    /// Every value written is the same printable bytes (JSON needs no escaping, the CAS
    /// expectation is known without a read).
    pub fn value(&self) -> Vec<u8> {
        vec![b'v'; self.value_size_bytes]
    }
}
