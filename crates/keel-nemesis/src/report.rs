//! report.html: one self-contained page (inline SVG and CSS, no network). Verdict up top,
//! problems, a fault timeline, every operation's latency over time with fault windows shaded
//! (Jepsen's latency-raw plot), throughput per second by outcome, failover times.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::campaign::{CampaignConfig, Summary};
use crate::history::{Event, FaultRecord};

/// Points drawn in the latency plot, at most (evenly thinned beyond).
pub const POINTS_DRAWN_MAX: usize = 40_000;
const WIDTH_PX: f64 = 1200.0;
const HEIGHT_PX: f64 = 360.0;
const MARGIN_PX: f64 = 50.0;
/// Time-axis labels, at most.
const TICKS_MAX: f64 = 20.0;
/// Fault windows labelled in the plot, at most (beyond it: hover for the name).
const FAULT_LABELS_MAX: usize = 40;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// (invoke time, latency, outcome, f) of every completed client operation.
fn operations(events: &[Event]) -> Vec<(u64, u64, &'static str, String)> {
    let mut open: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut out = Vec::new();
    for event in events {
        if event.kind == "invoke" {
            open.insert(event.process, event);
        } else if let Some(invoke) = open.remove(&event.process) {
            out.push((
                invoke.time_ns,
                event.time_ns.saturating_sub(invoke.time_ns),
                event.kind,
                invoke.f.clone(),
            ));
        }
    }
    out
}

/// Fault windows (start, end, label) from the fault log.
fn windows(faults: &[FaultRecord], end_ns: u64) -> Vec<(u64, u64, String)> {
    let mut out = Vec::new();
    let mut open: Vec<&FaultRecord> = Vec::new();
    for fault in faults {
        match fault.phase {
            "start" => open.push(fault),
            "end" => {
                if let Some(position) = open
                    .iter()
                    .position(|f| f.kind == fault.kind && f.detail == fault.detail)
                {
                    let start = open.remove(position);
                    out.push((start.time_ns, fault.time_ns, start.kind.clone()));
                }
            }
            _ => out.push((fault.time_ns, fault.time_ns, fault.kind.clone())),
        }
    }
    for start in open {
        out.push((start.time_ns, end_ns, start.kind.clone()));
    }
    out
}

fn color(kind: &str) -> &'static str {
    match kind {
        "ok" => "#2a9d4a",
        "fail" => "#d33",
        _ => "#e69500",
    }
}

pub fn render(
    summary: &Summary,
    events: &[Event],
    faults: &[FaultRecord],
    samples: &[crate::metrics::Sample],
    config: &CampaignConfig,
    has_check_page: bool,
) -> String {
    let mut out = String::with_capacity(256 * 1024);
    let ops = operations(events);
    let end_ns = events.last().map_or(1, |e| e.time_ns.max(1));
    let seconds = end_ns as f64 / 1e9;
    let class = match summary.verdict {
        "valid" => "good",
        "invalid" => "bad",
        _ => "unknown",
    };
    out.push_str(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>keel nemesis</title><style>",
    );
    out.push_str("body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1300px}h1{font-size:22px}h2{font-size:17px;margin-top:28px}.verdict{padding:3px 10px;border-radius:4px;color:#fff}.good{background:#2a9d4a}.bad{background:#d33}.unknown{background:#e69500}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}svg{background:#fafafa;border:1px solid #ddd}.meta{color:#555}li.problem{color:#b00;font-weight:600}");
    out.push_str("</style></head><body>");
    let _ = write!(
        out,
        "<h1>keel nemesis <span class=\"verdict {class}\">{}</span></h1><p class=\"meta\">{} ops · {} ok · {} fail · {} info · {} faults · {:.1} s run · {} nodes · seed {} · mix {} · election timeout {} ms{}</p>",
        summary.verdict,
        summary.ops,
        summary.ok,
        summary.fail,
        summary.info,
        summary.faults,
        summary.elapsed_ms as f64 / 1e3,
        config.nodes,
        config.seed,
        escape(&config.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")),
        config.election_timeout_ms,
        config
            .mutant
            .as_ref()
            .map(|m| format!(" · <b>mutant {}</b>", escape(m)))
            .unwrap_or_default()
    );
    out.push_str("<p class=\"meta\">The seed fixes the fault schedule and the workload's choices; the real system's timing still varies from run to run, so a rerun is similar, not identical.</p>");
    out.push_str("<h2>Findings</h2><ul>");
    if summary.problems.is_empty() {
        out.push_str("<li>No violation found.</li>");
    }
    for problem in &summary.problems {
        let _ = write!(out, "<li class=\"problem\">{}</li>", escape(problem));
    }
    for note in &summary.notes {
        let _ = write!(out, "<li>{}</li>", escape(note));
    }
    out.push_str("</ul>");
    if has_check_page {
        out.push_str("<p>The checker's visualization of the registers: <a href=\"linearizability.html\">linearizability.html</a> (same directory).</p>");
    }
    checks_table(&mut out, &summary.json);
    let _ = write!(
        out,
        "<details><summary>summary.json</summary><pre>{}</pre></details>",
        escape(&serde_json::to_string_pretty(&summary.json).unwrap_or_default())
    );

    // Latency plot.
    let plot_w = WIDTH_PX - 2.0 * MARGIN_PX;
    let plot_h = HEIGHT_PX - 2.0 * MARGIN_PX;
    let x = |t_ns: u64| MARGIN_PX + plot_w * (t_ns as f64 / end_ns as f64);
    let latency_max_ms = ops.iter().map(|o| o.1 as f64 / 1e6).fold(10.0, f64::max);
    let log_max = latency_max_ms.log10();
    let log_min = -1.0; // 0.1 ms
    let y = |latency_ns: u64| {
        let ms = (latency_ns as f64 / 1e6).max(0.1);
        HEIGHT_PX - MARGIN_PX - plot_h * ((ms.log10() - log_min) / (log_max - log_min))
    };
    out.push_str("<h2>Latency of every operation (log scale; shaded: fault windows)</h2>");
    let _ = write!(
        out,
        "<svg width=\"{WIDTH_PX}\" height=\"{HEIGHT_PX}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let fault_windows = windows(faults, end_ns);
    let labelled = fault_windows.len() <= FAULT_LABELS_MAX;
    for (start, end, label) in &fault_windows {
        let x0 = x(*start);
        let width = (x(*end) - x0).max(1.5);
        let _ = write!(
            out,
            "<rect x=\"{x0:.1}\" y=\"{MARGIN_PX}\" width=\"{width:.1}\" height=\"{plot_h}\" fill=\"#8888ff\" fill-opacity=\"0.15\"><title>{}</title></rect>",
            escape(label),
        );
        if labelled {
            let _ = write!(
                out,
                "<text x=\"{x0:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#558\">{}</text>",
                MARGIN_PX - 4.0,
                escape(label)
            );
        }
    }
    if !labelled {
        let _ = write!(
            out,
            "<text x=\"{MARGIN_PX}\" y=\"{:.1}\" font-size=\"11\" fill=\"#558\">{} fault windows: hover a band for its fault (the timeline below lists them)</text>",
            MARGIN_PX - 6.0,
            fault_windows.len()
        );
    }
    for decade in (log_min as i32)..=(log_max.ceil() as i32) {
        let ms = 10f64.powi(decade);
        let yy = HEIGHT_PX - MARGIN_PX - plot_h * ((ms.log10() - log_min) / (log_max - log_min));
        if yy < MARGIN_PX - 1.0 {
            continue;
        }
        let _ = write!(
            out,
            "<line x1=\"{MARGIN_PX}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#ddd\"/><text x=\"4\" y=\"{:.1}\" font-size=\"10\">{ms} ms</text>",
            WIDTH_PX - MARGIN_PX,
            yy + 3.0
        );
    }
    let step = (ops.len() / POINTS_DRAWN_MAX).max(1);
    for (t, latency, kind, f) in ops.iter().step_by(step) {
        let _ = write!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\" fill=\"{}\" fill-opacity=\"0.6\"><title>{} {} {:.1} ms</title></circle>",
            x(*t),
            y(*latency),
            color(kind),
            escape(f),
            kind,
            *latency as f64 / 1e6
        );
    }
    let tick_s = [1u64, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
        .into_iter()
        .find(|tick| seconds / (*tick as f64) <= TICKS_MAX)
        .unwrap_or(3600);
    for second in (0..=(seconds as u64)).step_by(tick_s as usize) {
        let xx = x(second * 1_000_000_000);
        let _ = write!(
            out,
            "<text x=\"{xx:.1}\" y=\"{:.1}\" font-size=\"10\">{second}s</text>",
            HEIGHT_PX - MARGIN_PX + 14.0
        );
    }
    out.push_str("</svg><p class=\"meta\"><span style=\"color:#2a9d4a\">● ok</span> <span style=\"color:#d33\">● fail</span> <span style=\"color:#e69500\">● info (unknown)</span></p>");

    // Throughput per second by outcome.
    let buckets = (seconds.ceil() as usize).max(1);
    let mut per_second = vec![[0u64; 3]; buckets];
    for (t, latency, kind, _) in &ops {
        let bucket = (((t + latency) / 1_000_000_000) as usize).min(buckets - 1);
        let slot = match *kind {
            "ok" => 0,
            "fail" => 1,
            _ => 2,
        };
        per_second[bucket][slot] += 1;
    }
    // The last second holds the final read-back burst; it does not set the scale.
    let scaled = &per_second[..per_second.len().saturating_sub(1).max(1)];
    let peak = scaled
        .iter()
        .map(|b| b.iter().sum::<u64>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let bar_w = plot_w / buckets as f64;
    out.push_str("<h2>Throughput per second by outcome</h2>");
    let _ = write!(
        out,
        "<svg width=\"{WIDTH_PX}\" height=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        HEIGHT_PX * 0.6
    );
    let base = HEIGHT_PX * 0.6 - 20.0;
    let scale = (base - 20.0) / peak;
    for (index, bucket) in per_second.iter().enumerate() {
        let mut top = base;
        for (slot, kind) in ["ok", "fail", "info"].iter().enumerate() {
            let h = (bucket[slot] as f64 * scale).min(top - 10.0).max(0.0);
            top -= h;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{index}s {kind}: {}</title></rect>",
                MARGIN_PX + bar_w * index as f64,
                (bar_w - 0.5).max(0.5),
                color(kind),
                bucket[slot]
            );
        }
    }
    let _ = write!(
        out,
        "<text x=\"4\" y=\"24\" font-size=\"10\">{peak} ops/s</text></svg>"
    );

    // Protocol state over time, from the scraped metrics.
    for (series, title) in [
        (
            "keel_commit_index",
            "Commit index per node (scraped /metrics, about once a second)",
        ),
        ("keel_term", "Term per node"),
    ] {
        line_chart(&mut out, title, samples, series, end_ns, &fault_windows);
    }

    // Fault timeline.
    out.push_str("<h2>Fault timeline</h2><table><tr><th>time</th><th>phase</th><th>fault</th><th>detail</th></tr>");
    for fault in faults {
        let _ = write!(
            out,
            "<tr><td>{:.2}s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fault.time_ns as f64 / 1e9,
            fault.phase,
            escape(&fault.kind),
            escape(&fault.detail)
        );
    }
    out.push_str("</table><p class=\"meta\">Files: history.jsonl (keel check format), faults.jsonl, metrics.jsonl (scraped metrics), summary.json, cluster/node-*.log.</p></body></html>\n");
    out
}

/// One polyline per node of a scraped series over the run's time axis, fault windows shaded.
fn line_chart(
    out: &mut String,
    title: &str,
    samples: &[crate::metrics::Sample],
    series: &str,
    end_ns: u64,
    fault_windows: &[(u64, u64, String)],
) {
    const NODE_COLORS: [&str; 8] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    ];
    let lines = crate::metrics::points(samples, series);
    let height = HEIGHT_PX * 0.6;
    let plot_w = WIDTH_PX - 2.0 * MARGIN_PX;
    let plot_h = height - 2.0 * MARGIN_PX * 0.6;
    let top = MARGIN_PX * 0.6;
    let max = lines
        .iter()
        .flat_map(|(_, l)| l.iter().map(|(_, v)| *v))
        .fold(1.0, f64::max);
    let x = |t: u64| MARGIN_PX + plot_w * (t.min(end_ns) as f64 / end_ns.max(1) as f64);
    let y = |v: f64| top + plot_h * (1.0 - v / max);
    let _ = write!(
        out,
        r#"<h2>{}</h2><svg width="{WIDTH_PX}" height="{height}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(title)
    );
    for (start, end, label) in fault_windows {
        let x0 = x(*start);
        let _ = write!(
            out,
            r##"<rect x="{x0:.1}" y="{top:.1}" width="{:.1}" height="{plot_h:.1}" fill="#8888ff" fill-opacity="0.12"><title>{}</title></rect>"##,
            (x(*end) - x0).max(1.5),
            escape(label)
        );
    }
    for (index, (node, line)) in lines.iter().enumerate() {
        let color = NODE_COLORS[index % NODE_COLORS.len()];
        let points: Vec<String> = line
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"><title>node {node}</title></polyline><text x="{:.1}" y="{:.1}" font-size="11" fill="{color}">node {node}</text>"#,
            points.join(" "),
            MARGIN_PX + 70.0 * index as f64,
            height - 6.0
        );
    }
    let _ = write!(
        out,
        r#"<text x="4" y="{:.1}" font-size="10">{max}</text><text x="4" y="{:.1}" font-size="10">0</text></svg>"#,
        top + 10.0,
        top + plot_h
    );
    if lines.is_empty() {
        out.push_str("<p class=\"meta\">No samples.</p>");
    }
}

/// The checks as a table: one row per verdict-bearing check.
fn checks_table(out: &mut String, json: &serde_json::Value) {
    let get = |path: &[&str]| {
        let mut value = json;
        for part in path {
            value = &value[*part];
        }
        match value {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let rows = [
        (
            "linearizability (cas-register per key)",
            format!(
                "{} · {} keys, {} not linearizable, {} unknown · {} ms",
                get(&["linearizability", "verdict"]),
                get(&["linearizability", "keys"]),
                get(&["linearizability", "keys_not_linearizable"]),
                get(&["linearizability", "keys_unknown"]),
                get(&["linearizability", "elapsed_ms"])
            ),
        ),
        (
            "set: no lost acknowledged add",
            format!(
                "{} acknowledged, {} unknown, {} lost",
                get(&["set", "acked"]),
                get(&["set", "unknown"]),
                get(&["set", "lost"])
            ),
        ),
        (
            "duplicate session submission applies once",
            format!(
                "{} rounds checked, {} double-applied",
                get(&["dup", "rounds_checked"]),
                get(&["dup", "violations"])
            ),
        ),
        (
            "bank: every full read sums to the total",
            format!(
                "{} reads checked, {} violations · {} transfers ok, {} refused by their guard · total {} · final {}",
                get(&["bank", "reads_checked"]),
                get(&["bank", "violations"]),
                get(&["bank", "transfers_ok"]),
                get(&["bank", "transfers_failed"]),
                get(&["bank", "total"]),
                get(&["bank", "final_balances"])
            ),
        ),
        (
            "bounded / any reads within their declared staleness",
            format!(
                "{} bounded, {} any checked · {} violations · {} bounds not checked (clock)",
                get(&["staleness", "bounded_checked"]),
                get(&["staleness", "any_checked"]),
                get(&["staleness", "violations"]),
                get(&["staleness", "bound_unchecked"])
            ),
        ),
        (
            "clock assumption (skew within clock_uncertainty_ms)",
            format!(
                "{} · ±{} ms configured · {} of {} lease-served reads left out of linearizability",
                if json["clock_assumption_violated"] == serde_json::Value::Bool(true) {
                    "clock assumption violated"
                } else {
                    "held"
                },
                get(&["clock_uncertainty_ms"]),
                get(&["lease_reads_excluded"]),
                get(&["lease_reads"])
            ),
        ),
        (
            "rolling upgrade (mixed builds, rollback, finalize, old build refused)",
            if json["upgrade"].is_null() {
                "not in the mix".to_string()
            } else {
                get(&["upgrade", "summary"])
            },
        ),
        (
            "commit index never regressed (metric)",
            get(&["regressions_seen_during_run"]),
        ),
        (
            "recovery after the heal",
            format!("{} ms", get(&["recovery_ms"])),
        ),
        (
            "failover: leader kill to next acknowledged write",
            format!(
                "{} samples · p50 {} ms · p99 {} ms · election timeout {} ms",
                get(&["failover_ms", "samples"]),
                get(&["failover_ms", "p50"]),
                get(&["failover_ms", "p99"]),
                get(&["failover_ms", "election_timeout_ms"])
            ),
        ),
    ];
    out.push_str("<h2>Checks</h2><table>");
    for (name, result) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(&result)
        );
    }
    out.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Sample;

    #[test]
    fn a_line_chart_draws_one_line_per_node_with_the_fault_windows() {
        let samples = vec![
            Sample::from_text(1_000_000_000, 1, "keel_commit_index 10\n"),
            Sample::from_text(2_000_000_000, 1, "keel_commit_index 30\n"),
            Sample::from_text(1_500_000_000, 2, "keel_commit_index 20\n"),
        ];
        let windows = vec![(1_200_000_000, 1_800_000_000, "partition".to_string())];
        let mut out = String::new();
        line_chart(
            &mut out,
            "Commit index",
            &samples,
            "keel_commit_index",
            2_000_000_000,
            &windows,
        );
        assert_eq!(out.matches("<polyline").count(), 2, "{out}");
        assert!(out.contains("<title>partition</title>"));
        assert!(
            out.contains(">30</text>"),
            "the scale's top is the largest value"
        );
        let mut empty = String::new();
        line_chart(&mut empty, "Term", &[], "keel_term", 1, &[]);
        assert!(empty.contains("No samples."));
    }
}
