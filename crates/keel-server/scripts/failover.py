#!/usr/bin/env python3
"""Failover measurement on real processes: start a 3-node `keel serve` cluster on loopback,
then N times: kill -9 the leader, time until the first acknowledged write (tried on every live
node, no client-side waiting), restart the killed node. Prints startup-to-leader and p50/p99.

usage: failover.py [--keel target/release/keel] [--kills 20] [--election-timeout-ms 1000]
"""
import argparse, json, os, signal, subprocess, sys, tempfile, time, urllib.request, urllib.error

def http(method, url, body=None, timeout=1.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except Exception:
        return 0, None

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keel", default="target/release/keel")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--election-timeout-ms", type=int, default=1000)
    ap.add_argument("--base-port", type=int, default=27000)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="keel-failover-")
    n = 3
    cport = [a.base_port + 2 * i for i in range(n)]
    pport = [a.base_port + 2 * i + 1 for i in range(n)]
    peers = ",".join(f"{i+1}=127.0.0.1:{pport[i]}" for i in range(n))
    clients = ",".join(f"{i+1}=127.0.0.1:{cport[i]}" for i in range(n))
    et = a.election_timeout_ms
    procs = [None] * n

    def start(i):
        log = open(os.path.join(tmp, f"node{i+1}.log"), "a")
        procs[i] = subprocess.Popen([a.keel, "serve", "--id", str(i + 1), "--data-dir", os.path.join(tmp, f"n{i+1}"),
            "--listen-client", f"127.0.0.1:{cport[i]}", "--listen-peer", f"127.0.0.1:{pport[i]}",
            "--peers", peers, "--peer-clients", clients, "--election-timeout-ms", str(et),
            "--heartbeat-interval-ms", str(max(20, et // 10)), "--lease-duration-ms", str(et),
            "--lease-renew-interval-ms", str(et * 3 // 10), "--parent-pid", str(os.getpid())],
            stdout=log, stderr=log)

    def leader():
        for i in range(n):
            if procs[i] is None:
                continue
            code, st = http("GET", f"http://127.0.0.1:{cport[i]}/v1/status", timeout=0.3)
            if code == 200 and st["role"] == "leader":
                return i
        return None

    def put_until_ok(key, value, limit_s=30):
        t_end = time.time() + limit_s
        while time.time() < t_end:
            for i in range(n):
                if procs[i] is None:
                    continue
                code, _ = http("PUT", f"http://127.0.0.1:{cport[i]}/v1/kv/{key}", {"value": value}, timeout=2.0)
                if code == 200:
                    return time.monotonic()
            time.sleep(0.002)
        raise SystemExit(f"write {key} not acknowledged in {limit_s}s")

    t0 = time.monotonic()
    for i in range(n):
        start(i)
    while leader() is None:
        time.sleep(0.005)
    startup = time.monotonic() - t0
    put_until_ok("warm", "0")
    times = []
    try:
        for k in range(a.kills):
            l = None
            while l is None:
                l = leader()
                time.sleep(0.01)
            put_until_ok("warm", str(k))
            procs[l].send_signal(signal.SIGKILL)
            t = time.monotonic()
            print(f"kill node {l+1} at {time.strftime('%H:%M:%S', time.gmtime())}.{int(time.time()*1000)%1000:03d}", flush=True)
            procs[l].wait()
            procs[l] = None
            acked = put_until_ok("f", str(k))
            times.append((acked - t) * 1000)
            start(l)
            time.sleep(et * 1.5 / 1000)  # let it rejoin
    finally:
        for p in procs:
            if p is not None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            if p is not None:
                p.wait()
    s = sorted(times)
    pct = lambda q: s[min(len(s) - 1, max(0, int(-(-len(s) * q // 1)) - 1))]
    print(f"startup-to-leader: {startup*1000:.0f} ms")
    print(f"failover over {len(s)} kills (kill -9 -> first acknowledged write): p50 {pct(0.5):.0f} ms, "
          f"p99 {pct(0.99):.0f} ms, max {s[-1]:.0f} ms; election timeout {et} ms "
          f"(p99 = {pct(0.99)/et:.2f}x)")
    print("all:", " ".join(f"{x:.0f}" for x in times))
    print("logs:", tmp)

if __name__ == "__main__":
    main()
