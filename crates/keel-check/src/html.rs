//! A self-contained HTML page for reports: each partition's operations on a time axis, one
//! row per process, the longest linearization numbered in green, the operation that cannot
//! be linearized in red, the pending ones orange; hover an operation for its details. No
//! network: inline SVG, CSS and a few lines of JS.

use crate::check::{PartitionReport, Report, Verdict};
use crate::history::OpStatus;

use std::collections::BTreeMap;
use std::fmt::Write;

/// Partitions drawn per report (violations first).
pub const PARTITIONS_DRAWN_MAX: usize = 12;
/// Operations drawn per partition (the rest is summarized).
pub const OPS_DRAWN_MAX: usize = 3000;

const WIDTH_PX: f64 = 1300.0;
const LABEL_PX: f64 = 70.0;
const ROW_PX: f64 = 26.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders one page for several reports (one section per file).
pub fn render(reports: &[(String, &Report)]) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str(HEAD);
    for (title, report) in reports {
        section(&mut out, title, report);
    }
    out.push_str(TAIL);
    out
}

fn section(out: &mut String, title: &str, report: &Report) {
    let (good, bad, unknown) = report.partition_counts();
    let class = match report.verdict {
        Verdict::Linearizable => "good",
        Verdict::NotLinearizable => "bad",
        Verdict::Unknown => "unknown",
    };
    let _ = write!(
        out,
        "<section><h1>{} <span class=\"verdict {class}\">{}</span></h1><p class=\"meta\">model {} · {} operations · {} partitions ({good} linearizable, {bad} not, {unknown} unknown) · {:.1} ms</p>",
        escape(title),
        report.verdict.name(),
        report.model,
        report.ops.len(),
        report.partitions.len(),
        report.elapsed.as_secs_f64() * 1e3
    );
    let mut order: Vec<&PartitionReport> = report.partitions.iter().collect();
    order.sort_by_key(|p| match p.verdict {
        Verdict::NotLinearizable => 0,
        Verdict::Unknown => 1,
        Verdict::Linearizable => 2,
    });
    for partition in order.iter().take(PARTITIONS_DRAWN_MAX) {
        draw_partition(out, report, partition);
    }
    if order.len() > PARTITIONS_DRAWN_MAX {
        let _ = write!(
            out,
            "<p class=\"meta\">{} more partitions not drawn.</p>",
            order.len() - PARTITIONS_DRAWN_MAX
        );
    }
    out.push_str("</section>");
}

fn draw_partition(out: &mut String, report: &Report, partition: &PartitionReport) {
    let all: Vec<usize> = partition.ops.iter().copied().take(OPS_DRAWN_MAX).collect();
    let Some(e) = partition.explanation.as_ref() else {
        timeline(out, report, partition, all, "", true);
        return;
    };
    // A close-up first: the last few linearized operations, the pending ones and the
    // blocking one, with everything that overlaps them in time.
    let ops = &report.ops;
    let mut focus: Vec<usize> = e.prefix.iter().rev().take(6).map(|s| s.op).collect();
    focus.extend(e.stuck.iter().map(|s| s.op));
    focus.push(e.blocking_op);
    let from = focus
        .iter()
        .map(|&i| ops[i].invoke_index)
        .min()
        .unwrap_or(0);
    let to = focus
        .iter()
        .map(|&i| ops[i].complete_index.unwrap_or(ops[i].invoke_index))
        .max()
        .unwrap_or(0);
    let near: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| {
            let end = match ops[i].status {
                OpStatus::Info => usize::MAX,
                _ => ops[i].complete_index.unwrap_or(usize::MAX),
            };
            ops[i].invoke_index <= to
                && end >= from
                && (ops[i].status != OpStatus::Info || focus.contains(&i))
        })
        .collect();
    timeline(out, report, partition, near, "around the violation", true);
    timeline(out, report, partition, all, "whole history", false);
}

fn timeline(
    out: &mut String,
    report: &Report,
    partition: &PartitionReport,
    ops: Vec<usize>,
    caption: &str,
    header: bool,
) {
    let position: BTreeMap<usize, usize> = partition
        .linearization
        .iter()
        .enumerate()
        .map(|(i, &op)| (op, i + 1))
        .collect();
    let explanation = partition.explanation.as_ref();
    let blocking = explanation.map(|e| e.blocking_op);
    let stuck: BTreeMap<usize, &str> = explanation
        .map(|e| e.stuck.iter().map(|s| (s.op, s.reason.as_str())).collect())
        .unwrap_or_default();
    let states: BTreeMap<usize, &str> = explanation
        .map(|e| {
            e.prefix
                .iter()
                .map(|s| (s.op, s.state_after.as_str()))
                .collect()
        })
        .unwrap_or_default();
    // Time axis: recorded times when every drawn operation has them and they are monotone
    // in history order; otherwise the event index.
    let all = &report.ops;
    let timed = ops.iter().all(|&i| {
        all[i].invoke_time_ns.is_some()
            && (all[i].complete_index.is_none() || all[i].complete_time_ns.is_some())
    });
    let mut points: Vec<(usize, u64)> = Vec::new();
    for &i in &ops {
        let op = &all[i];
        points.push((op.invoke_index, op.invoke_time_ns.unwrap_or(0)));
        if let (Some(at), Some(t)) = (op.complete_index, op.complete_time_ns) {
            points.push((at, t));
        }
    }
    points.sort_unstable();
    let monotone = timed && points.windows(2).all(|w| w[0].1 <= w[1].1);
    let at = |index: usize, time: Option<u64>| -> f64 {
        if monotone {
            time.unwrap_or(0) as f64
        } else {
            index as f64
        }
    };
    let start = ops
        .iter()
        .map(|&i| at(all[i].invoke_index, all[i].invoke_time_ns))
        .fold(f64::MAX, f64::min);
    let mut end = ops
        .iter()
        .map(|&i| match all[i].complete_index {
            Some(c) => at(c, all[i].complete_time_ns),
            None => at(all[i].invoke_index, all[i].invoke_time_ns),
        })
        .fold(f64::MIN, f64::max);
    if ops.is_empty() {
        return;
    }
    if end <= start {
        end = start + 1.0;
    }
    let span = end - start;
    let plot_px = WIDTH_PX - LABEL_PX - 20.0;
    let x = |v: f64| LABEL_PX + (v - start) / span * plot_px;
    let processes: Vec<u64> = {
        let mut p: Vec<u64> = ops.iter().map(|&i| all[i].process).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let row: BTreeMap<u64, usize> = processes.iter().enumerate().map(|(i, &p)| (p, i)).collect();
    let height = 40.0 + processes.len() as f64 * ROW_PX;
    let class = match partition.verdict {
        Verdict::Linearizable => "good",
        Verdict::NotLinearizable => "bad",
        Verdict::Unknown => "unknown",
    };
    if header {
        let _ = write!(
            out,
            "<h2>partition {} <span class=\"verdict {class}\">{}</span></h2><p class=\"meta\">{} operations · linearized {} · {} search steps · axis: {}</p>",
            escape(&partition.label),
            partition.verdict.name(),
            partition.ops.len(),
            partition.linearization.len(),
            partition.steps,
            if monotone { "recorded time (ns)" } else { "event index" }
        );
        if let Some(reason) = &partition.reason {
            let _ = write!(out, "<p class=\"meta\">unknown: {}</p>", escape(reason));
        }
    }
    if !caption.is_empty() {
        let _ = write!(out, "<p class=\"caption\">{}</p>", escape(caption));
    }
    let _ = write!(
        out,
        "<svg width=\"{WIDTH_PX}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let tick_step = if monotone {
        span / 10.0
    } else {
        (span / 10.0).ceil().max(1.0)
    };
    for tick in 0..=10 {
        let v = start + tick_step * tick as f64;
        if v > end + 1e-9 {
            break;
        }
        let tx = x(v);
        let _ = write!(
            out,
            "<line x1=\"{tx:.1}\" y1=\"18\" x2=\"{tx:.1}\" y2=\"{height}\" class=\"grid\"/><text x=\"{tx:.1}\" y=\"12\" class=\"tick\">{}</text>",
            format_tick(if monotone { v - start } else { v }, monotone)
        );
    }
    for (i, p) in processes.iter().enumerate() {
        let y = 30.0 + i as f64 * ROW_PX;
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{:.1}\" class=\"proc\">p{p}</text>",
            y + 14.0
        );
    }
    for &i in &ops {
        let op = &all[i];
        let y = 30.0 + row[&op.process] as f64 * ROW_PX;
        let x0 = x(at(op.invoke_index, op.invoke_time_ns));
        let open = op.status == OpStatus::Info;
        let x1 = match (op.complete_index, open) {
            (Some(c), false) => x(at(c, op.complete_time_ns)),
            _ => WIDTH_PX - 10.0,
        };
        let w = (x1 - x0).max(3.0);
        let mut classes = vec!["op"];
        if Some(i) == blocking {
            classes.push("blocking");
        } else if stuck.contains_key(&i) {
            classes.push("stuck");
        } else if position.contains_key(&i) {
            classes.push("lin");
        } else if op.status == OpStatus::Fail {
            classes.push("failed");
        }
        if open {
            classes.push("open");
        }
        let mut detail = format!("{} (line {})", op.describe(), op.line);
        if let Some(pos) = position.get(&i) {
            let _ = write!(detail, " · linearized #{pos}");
        }
        if let Some(state) = states.get(&i) {
            let _ = write!(detail, " · state after: {state}");
        }
        if Some(i) == blocking {
            detail.push_str(" · CANNOT BE LINEARIZED before it returns");
        }
        if let Some(reason) = stuck.get(&i) {
            let _ = write!(detail, " · {reason}");
        }
        let detail = escape(&detail);
        let _ = write!(
            out,
            "<g class=\"{}\" data-d=\"{detail}\"><title>{detail}</title><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"3\"/>",
            classes.join(" "),
            ROW_PX - 6.0
        );
        let label = match position.get(&i) {
            Some(pos) => format!("{pos}: {}", short(op)),
            None => short(op),
        };
        // Monospace 11px: about 6.7 px per character. Shorten labels that do not fit.
        let fits = |text: &str| text.chars().count() as f64 * 6.7 + 6.0 <= w;
        let shown = if fits(&label) {
            Some(label)
        } else {
            position
                .get(&i)
                .map(|pos| pos.to_string())
                .filter(|t| fits(t))
        };
        if let Some(text) = shown {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\">{}</text>",
                x0 + 3.0,
                y + 14.0,
                escape(&text)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    if caption != "around the violation" && partition.ops.len() > ops.len() {
        let _ = write!(
            out,
            "<p class=\"meta\">{} more operations not drawn.</p>",
            partition.ops.len() - ops.len()
        );
    }
    if let Some(e) = explanation.filter(|_| header) {
        let _ = write!(
            out,
            "<div class=\"explain\"><p><b>Cannot linearize</b> {} (line {}): it must take effect before it returns, but after the longest linearizable prefix ({} operations, state {}) no pending operation can come next:</p><ul>",
            escape(&all[e.blocking_op].describe()),
            all[e.blocking_op].line,
            e.prefix.len(),
            escape(&e.state)
        );
        for s in &e.stuck {
            let _ = write!(
                out,
                "<li>{} (line {}): {}</li>",
                escape(&all[s.op].describe()),
                all[s.op].line,
                escape(&s.reason)
            );
        }
        out.push_str("</ul></div>");
    }
}

fn short(op: &crate::history::Op) -> String {
    let value = match op.f.as_str() {
        "read" | "get" => op.output.to_string(),
        _ => op.input.to_string(),
    };
    if value == "nil" {
        return op.f.clone();
    }
    format!("{} {}", op.f, value)
}

fn format_tick(v: f64, nanos: bool) -> String {
    if !nanos {
        return format!("{v:.0}");
    }
    if v >= 1e9 {
        format!("{:.2}s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.1}ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}µs", v / 1e3)
    } else {
        format!("{v:.0}ns")
    }
}

const HEAD: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>keel check</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 16px 24px 120px; color: #222; }
h1 { font-size: 18px; margin: 18px 0 4px; } h2 { font-size: 15px; margin: 16px 0 2px; }
.meta { color: #555; margin: 2px 0 6px; }
.caption { color: #333; font-weight: 600; margin: 10px 0 2px; }
.verdict { padding: 1px 8px; border-radius: 10px; font-size: 13px; color: white; }
.verdict.good { background: #2e7d32; } .verdict.bad { background: #c62828; } .verdict.unknown { background: #8d6e00; }
svg { border: 1px solid #ddd; background: #fcfcfc; display: block; }
.grid { stroke: #eee; } .tick { font-size: 10px; fill: #888; text-anchor: middle; }
.proc { font: 12px monospace; fill: #444; }
.op rect { fill: #cfd8dc; stroke: #78909c; }
.op.lin rect { fill: #c8e6c9; stroke: #2e7d32; }
.op.stuck rect { fill: #ffe0b2; stroke: #ef6c00; }
.op.blocking rect { fill: #ffcdd2; stroke: #c62828; stroke-width: 3; }
.op.failed rect { fill: #f5f5f5; stroke: #bdbdbd; }
.op.open rect { stroke-dasharray: 4 3; }
.op:hover rect { stroke: #000; stroke-width: 2; }
.label { font: 11px monospace; fill: #222; pointer-events: none; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 8px; border: 1px solid #999; border-radius: 3px; }
.explain { background: #fff5f5; border-left: 4px solid #c62828; padding: 4px 12px; margin: 6px 0; }
#detail { position: fixed; bottom: 0; left: 0; right: 0; background: #263238; color: #fff; padding: 10px 24px; font: 13px monospace; min-height: 20px; }
</style></head><body>
<p class="legend"><span style="background:#c8e6c9">#n linearized (in order)</span><span style="background:#ffcdd2">cannot be linearized</span><span style="background:#ffe0b2">pending, cannot come next</span><span style="background:#cfd8dc">not linearized</span><span style="background:#f5f5f5">failed</span><span style="border-style:dashed">open (info) to the end</span></p>
"#;

const TAIL: &str = r#"<div id="detail">hover an operation for details</div>
<script>
document.querySelectorAll('g.op').forEach(function (g) {
  g.addEventListener('mouseenter', function () { document.getElementById('detail').textContent = g.getAttribute('data-d'); });
});
</script></body></html>
"#;
