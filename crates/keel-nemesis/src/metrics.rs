//! Metrics scraped from every running node during a campaign: a fixed set of protocol and
//! health series, sampled about once a second, kept in memory (bounded), written to
//! `metrics.jsonl` and drawn in the report (commit index and term per node over time).

use std::fmt::Write as _;

use crate::cluster::parse_metric;

/// The series recorded (each summed over its label sets).
pub const SERIES: [&str; 12] = [
    "keel_term",
    "keel_commit_index",
    "keel_applied_index",
    "keel_is_leader",
    "keel_leader_changes_total",
    "keel_requests_total",
    "keel_admission_rejected_total",
    "keel_wal_fsync_seconds_count",
    "keel_apply_lag_entries",
    "keel_clock_discontinuities_total",
    "keel_invariant_violations_total",
    "keel_commit_index_regressions_total",
];

/// Samples kept at most (one per node per scrape): a 30-minute, 5-node campaign at one scrape
/// a second needs 9,000.
pub const SAMPLES_MAX: usize = 50_000;

/// One scrape of one node: `values[i]` is `SERIES[i]` (None: absent).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Since the campaign's recorder started.
    pub time_ns: u64,
    pub node: u64,
    pub values: [Option<f64>; SERIES.len()],
}

impl Sample {
    pub fn from_text(time_ns: u64, node: u64, text: &str) -> Sample {
        let mut values = [None; SERIES.len()];
        for (slot, name) in values.iter_mut().zip(SERIES) {
            *slot = parse_metric(text, name);
        }
        Sample {
            time_ns,
            node,
            values,
        }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        let index = SERIES.iter().position(|s| *s == name)?;
        self.values[index]
    }
}

/// `metrics.jsonl`: one JSON object per sample, `{"time_ns", "node", <series>: value, ...}`.
pub fn to_jsonl(samples: &[Sample]) -> String {
    let mut out = String::with_capacity(samples.len() * 400);
    for s in samples {
        let mut object = serde_json::Map::new();
        object.insert("time_ns".into(), s.time_ns.into());
        object.insert("node".into(), s.node.into());
        for (name, value) in SERIES.iter().zip(&s.values) {
            if let Some(v) = value {
                object.insert((*name).into(), (*v).into());
            }
        }
        let _ = writeln!(out, "{}", serde_json::Value::Object(object));
    }
    out
}

/// Per node, the (time, value) points of one series, in time order.
pub fn points(samples: &[Sample], name: &str) -> Vec<(u64, Vec<(u64, f64)>)> {
    let mut nodes: Vec<u64> = samples.iter().map(|s| s.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .map(|node| {
            let mut line: Vec<(u64, f64)> = samples
                .iter()
                .filter(|s| s.node == node)
                .filter_map(|s| Some((s.time_ns, s.get(name)?)))
                .collect();
            line.sort_by_key(|(t, _)| *t);
            (node, line)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE keel_term gauge\nkeel_term 3\nkeel_commit_index 41\n\
        keel_requests_total{op=\"put\",code=\"OK\"} 10\nkeel_requests_total{op=\"get\",code=\"OK\"} 5\n";

    #[test]
    fn a_sample_holds_the_listed_series_and_nothing_else() {
        let s = Sample::from_text(7, 2, TEXT);
        assert_eq!(s.get("keel_term"), Some(3.0));
        assert_eq!(s.get("keel_commit_index"), Some(41.0));
        assert_eq!(
            s.get("keel_requests_total"),
            Some(15.0),
            "summed over labels"
        );
        assert_eq!(s.get("keel_is_leader"), None, "absent stays absent");
        assert_eq!(s.get("keel_not_listed"), None);
        let line = to_jsonl(&[s]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["node"], 2);
        assert_eq!(v["keel_commit_index"], 41.0);
        assert!(v.get("keel_is_leader").is_none());
    }

    #[test]
    fn points_are_per_node_in_time_order() {
        let samples = vec![
            Sample::from_text(20, 1, "keel_term 2\n"),
            Sample::from_text(10, 1, "keel_term 1\n"),
            Sample::from_text(15, 3, "keel_term 1\n"),
        ];
        let p = points(&samples, "keel_term");
        assert_eq!(
            p,
            vec![(1, vec![(10, 1.0), (20, 2.0)]), (3, vec![(15, 1.0)]),]
        );
    }
}
