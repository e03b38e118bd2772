# Independent writer of the audit format, written from docs/audit.md alone (not from the Rust code).
# `python3 independent_writer.py` writes n1.audit (kept here as independent_writer.audit) and n2.audit (node 2, holding an anchor of node 1).
import hashlib, json, struct, sys
def genesis(cluster, node):
    c = cluster.encode()
    return hashlib.sha256(b"keel-audit-genesis-v1\0" + struct.pack(">I", len(c)) + c + struct.pack(">Q", node)).digest()
def opt(v):
    return b"\0" if v is None else b"\1" + struct.pack(">Q", v)
def canon(seq, kind, node, wall, term, index, details, prev):
    out = b"keel-audit-record-v1\0" + struct.pack(">Q", seq) + struct.pack(">I", len(kind)) + kind.encode()
    out += struct.pack(">Q", node) + struct.pack(">Q", wall) + opt(term) + opt(index)
    out += struct.pack(">I", len(details))
    for k in sorted(details, key=lambda k: k.encode()):
        v = details[k]; kb = k.encode()
        out += struct.pack(">I", len(kb)) + kb
        if isinstance(v, str):
            vb = v.encode(); out += b"\0" + struct.pack(">I", len(vb)) + vb
        elif v >= 0: out += b"\1" + struct.pack(">Q", v)
        else: out += b"\2" + struct.pack(">q", v)
    return out + prev
def js(v):
    return "null" if v is None else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
def write(path, node, cluster, records):
    prev = genesis(cluster, node); lines = []
    for seq, (kind, wall, term, index, details) in enumerate(records):
        if seq == 0: details = dict(details, cluster_id=cluster)
        h = hashlib.sha256(canon(seq, kind, node, wall, term, index, details, prev)).hexdigest()
        d = "{" + ",".join(js(k) + ":" + js(details[k]) for k in sorted(details, key=lambda k: k.encode())) + "}"
        line = '{"seq":%d,"kind":"%s","node":%d,"wall_ms":%d,"term":%s,"index":%s,"details":%s,"prev":"%s","hash":"%s"}' % (
            seq, kind, node, wall, js(term), js(index), d, prev.hex(), h)
        lines.append(line); prev = hashlib.sha256(line.encode()).digest()
        last = (seq, h)
    open(path, "w").write("".join(l + "\n" for l in lines))
    return last
seq, head = write("n1.audit", 1, "prod-eu", [
    ("node_started", 1764124800000, None, None, {}),
    ("election_won", 1764124801000, 2, 5, {"votes": 2}),
    ("authz_failure", 1764124802000, None, None, {"user": "eve\n\x1b[31m", "skew_ms": -3}),
    ("admin_request", 1764124803000, None, None, {"op": "transfer-leader", "to": 2}),
])
anchor = ("anchor_committed", 0, 2, 9, {"anchor_node": 1, "anchor_seq": seq, "anchor_head": head})
write("n2.audit", 2, "prod-eu", [("node_started", 1764124800000, None, None, {}), anchor])
