#!/usr/bin/env python3
"""Side-by-side table of `keel bench --json` reports named <system>--<label>.json (written by
bench/compare-etcd.sh). Prints Markdown, writes it to --results, and ends with the RATIO line."""
import argparse
import glob
import json
import os

ROWS = [
    ("put-1", "put, 1 client"),
    ("put-16", "put, 16 clients"),
    ("put-64", "put, 64 clients"),
    ("get-lin-1", "get linearizable, 1 client"),
    ("get-lin-16", "get linearizable, 16 clients"),
    ("get-lin-64", "get linearizable, 64 clients"),
    ("get-local-1", "get local (keel any / etcd serializable), 1"),
    ("get-local-16", "get local (keel any / etcd serializable), 16"),
    ("get-local-64", "get local (keel any / etcd serializable), 64"),
    ("mixed90-zipf-64", "90% get lin / 10% put, Zipf 0.99, 64"),
    ("cas-16", "CAS on the value, 16 clients"),
    ("txn-16", "txn: compare 1 key, put 2 keys, 16 clients"),
]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(x, digits=2):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def errors_of(r):
    e = r.get("errors") or {}
    return ", ".join(f"{k} {v}" for k, v in sorted(e.items())) or "0"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--meta", action="append", default=[])
    ap.add_argument("--results")
    args = ap.parse_args()
    reports = {}
    for path in glob.glob(os.path.join(args.dir, "*--*.json")):
        system, label = os.path.basename(path)[: -len(".json")].split("--", 1)
        with open(path) as f:
            text = f.read().strip()
        if text:
            reports[(system, label)] = json.loads(text)

    def get(system, label):
        return reports.get((system, label))

    lines = ["# Keel vs etcd, side by side", ""]
    lines += [f"- {m}" for m in args.meta]
    lines += [
        "",
        "ops/s and latency are client-side (HDR histogram); CPU is the three servers' utime+stime",
        "from /proc over the measured window divided by the operations (client CPU: the bench",
        "process's own, it shares the 2 cores); ratio = keel / etcd.",
        "",
        "| workload | keel ops/s | etcd ops/s | ratio | keel p50 ms | etcd p50 ms | ratio | keel p99 ms | etcd p99 ms | keel CPU µs/op | etcd CPU µs/op | ratio | client CPU µs/op keel / etcd | errors keel / etcd |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, title in ROWS:
        k, e = get("keel", label), get("etcd", label)
        if not k or not e:
            lines.append(f"| {title} | missing | | | | | | | | | | | | |")
            continue
        kc = (k.get("server") or {}).get("cpu_us_per_op")
        ec = (e.get("server") or {}).get("cpu_us_per_op")
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} |".format(
                title,
                fmt(k["ops_per_s"]), fmt(e["ops_per_s"]), fmt(ratio(k["ops_per_s"], e["ops_per_s"])),
                fmt(k["latency"]["p50_ms"], 3), fmt(e["latency"]["p50_ms"], 3),
                fmt(ratio(k["latency"]["p50_ms"], e["latency"]["p50_ms"])),
                fmt(k["latency"]["p99_ms"], 3), fmt(e["latency"]["p99_ms"], 3),
                fmt(kc, 1), fmt(ec, 1), fmt(ratio(kc, ec)),
                fmt(k.get("client_cpu_us_per_op"), 1), fmt(e.get("client_cpu_us_per_op"), 1),
                errors_of(k), errors_of(e),
            )
        )

    # Peak RSS of one member over the whole session (VmHWM at the last run it appears in).
    rss = {}
    for (system, label), r in reports.items():
        s = r.get("server") or {}
        for m in (s.get("vm_hwm_mib") or []) + (s.get("peak_rss_mib") or []):
            rss[system] = max(rss.get(system, 0.0), m)
    lines += ["", "| | keel | etcd | ratio |", "|---|---:|---:|---:|"]
    lines.append(
        f"| peak RSS of one member, MiB | {fmt(rss.get('keel'), 1)} | {fmt(rss.get('etcd'), 1)} | {fmt(ratio(rss.get('keel'), rss.get('etcd')))} |"
    )
    open_ratio = {}
    for system in ("keel", "etcd"):
        for (s, label), r in reports.items():
            if s == system and label.startswith("open-put-"):
                l = r["latency"]
                open_ratio[system] = ratio(l["p99_ms"], l["p50_ms"])
                lines.append(
                    f"| {system} open-loop put at {label[len('open-put-'):]}% of its own 64-client capacity "
                    f"({r['config']['shape']['open']['rate_per_s']:.0f}/s, 64 conns): achieved {fmt(r['ops_per_s'])}/s, "
                    f"p50 {fmt(l['p50_ms'], 3)} ms, p99 {fmt(l['p99_ms'], 3)} ms, p99/p50 {fmt(open_ratio[system])}, errors {errors_of(r)} | | | |"
                )

    def ops(system, label):
        r = get(system, label)
        return r["ops_per_s"] if r else None

    def p50(system, label):
        r = get(system, label)
        return r["latency"]["p50_ms"] if r else None

    def cpu(system, label):
        r = get(system, label)
        return ((r or {}).get("server") or {}).get("cpu_us_per_op")

    put64 = ratio(ops("keel", "put-64"), ops("etcd", "put-64"))
    put1 = ratio(p50("keel", "put-1"), p50("etcd", "put-1"))
    get64 = ratio(ops("keel", "get-lin-64"), ops("etcd", "get-lin-64"))
    cpu64 = ratio(cpu("keel", "put-64"), cpu("etcd", "put-64"))
    rss_ratio = ratio(rss.get("keel"), rss.get("etcd"))

    def verdict(x, ok):
        return "-" if x is None else ("met" if ok(x) else "NOT met")

    lines += [
        "",
        "| target | measured | verdict |",
        "|---|---:|---|",
        f"| put throughput, 64 clients ≥ 5× etcd | {fmt(put64)}× | {verdict(put64, lambda x: x >= 5)} |",
        f"| put p50, 1 client ≤ 0.5× etcd | {fmt(put1)}× | {verdict(put1, lambda x: x <= 0.5)} |",
        f"| linearizable get throughput, 64 clients ≥ 5× etcd | {fmt(get64)}× | {verdict(get64, lambda x: x >= 5)} |",
        f"| server CPU per put (64 clients) ≤ 1/5 etcd | {fmt(cpu64)}× | {verdict(cpu64, lambda x: x <= 0.2)} |",
        f"| RSS ≤ 1/2 etcd | {fmt(rss_ratio)}× | {verdict(rss_ratio, lambda x: x <= 0.5)} |",
        f"| open loop at 80% capacity: p99 ≤ 5× p50 (keel) | {fmt(open_ratio.get('keel'))}× | {verdict(open_ratio.get('keel'), lambda x: x <= 5)} |",
        "",
    ]
    ratio_line = "RATIO put64={} put1_p50={} get64={} cpu_per_op={}".format(
        fmt(put64), fmt(put1), fmt(get64), fmt(cpu64)
    )
    lines += ["```", ratio_line, "```", ""]
    text = "\n".join(lines)
    if args.results:
        with open(args.results, "w") as f:
            f.write(text)
    print("\n".join(lines[:-3]))
    print(ratio_line)


if __name__ == "__main__":
    main()
