//! keel-bench: a load generator for Keel and (feature `etcd`) etcd, so both face the same client.
//!
//! - [`config`]: the workload (op mix, read level, keys, closed/open loop) and its limits.
//! - [`keys`]: uniform and Zipf key choice from a seed.
//! - [`histogram`]: HDR latency histogram and percentiles.
//! - [`procstat`]: server CPU seconds and RSS from /proc.
//! - [`driver`]: what a system under test provides; [`keel`] (HTTP/JSON) and `etcd` (gRPC).
//! - [`runner`]: closed and open loop, warm-up, the report.
//! - [`report`]: text and JSON output.

pub mod config;
pub mod driver;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod histogram;
pub mod keel;
pub mod keys;
pub mod procstat;
pub mod report;
pub mod runner;
