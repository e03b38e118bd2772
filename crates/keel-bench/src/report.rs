//! Human-readable report (JSON is `serde_json::to_string(&report)`).

use crate::config::{LoadShape, OpMix};
use crate::runner::Report;
use std::fmt::Write;

pub fn op_label(report: &Report) -> String {
    let c = &report.config;
    let op = match c.op {
        OpMix::Put => "put".to_string(),
        OpMix::Get => format!("get/{}", c.read_level.as_query()),
        OpMix::Cas => "cas".to_string(),
        OpMix::Txn => "txn (compare 1, put 2)".to_string(),
        OpMix::Mixed { get_percent } => {
            format!("mixed {get_percent}% get/{}", c.read_level.as_query())
        }
    };
    let shape = match c.shape {
        LoadShape::Closed => format!("{} clients", c.clients),
        LoadShape::Open { rate_per_s } => {
            format!("open loop {rate_per_s:.0}/s over {} conns", c.clients)
        }
    };
    format!("{} {op}, {shape}", report.system)
}

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let l = &report.latency;
    let _ = writeln!(out, "{}", op_label(report));
    let _ = writeln!(
        out,
        "  ops {} in {:.2} s = {:.0} ops/s",
        report.ops, report.measured_s, report.ops_per_s
    );
    let _ = writeln!(
        out,
        "  latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms
    );
    if report.errors.is_empty() {
        let _ = writeln!(out, "  errors: none");
    } else {
        for (code, n) in &report.errors {
            let example = report.error_examples.get(code).map_or("", |s| s.as_str());
            let _ = writeln!(out, "  errors {code}: {n} (e.g. {example})");
        }
    }
    if report.cas_failed > 0 {
        let _ = writeln!(out, "  cas/txn comparisons failed: {}", report.cas_failed);
    }
    let _ = writeln!(out, "  client cpu {:.1} µs/op", report.client_cpu_us_per_op);
    if let Some(s) = &report.server {
        let _ = writeln!(
            out,
            "  server cpu {:.2} s {:?} = {:.1} µs/op; peak RSS MiB {:?} (VmHWM {:?})",
            s.cpu_seconds,
            s.cpu_seconds_by_pid
                .iter()
                .map(|c| (c * 100.0).round() / 100.0)
                .collect::<Vec<_>>(),
            s.cpu_us_per_op,
            s.peak_rss_mib
                .iter()
                .map(|m| (m * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            s.vm_hwm_mib
                .iter()
                .map(|m| (m * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        );
    }
    out
}
