#!/usr/bin/env python3
"""Resident memory and query latency of `kaudit serve` on one store, for two
binaries in alternating runs (#21 goal 4, "Search index memory").

usage: bench/index_memory.py STORE RUNS BIN [BIN ...]

For each round and each binary: starts `BIN serve --data STORE`, waits until
ready, records VmRSS/RssAnon/RssFile of the server, asks RUNS needles (user +
verb, 100 newest), RUNS auditID needles, RUNS top-10 of a field over all
time and RUNS histograms of a resource over all time (a different parameter
on every run), records the memory again, stops the server. Prints one table
row per binary and round (p50 ms per question)."""
import json, os, signal, socket, statistics, subprocess, sys, time, urllib.parse, urllib.request

store, runs, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = json.load(r)
    return body, (time.perf_counter() - t) * 1000


def mem(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) // 1024
    return out


def run(binary, rnd):
    p = port()
    base = f"http://127.0.0.1:{p}"
    env = dict(os.environ, KAUDIT_INGEST__MIN_FREE_DISK="0")
    log = open(f"{store}.serve.{os.path.basename(binary)}.log", "w")
    srv = subprocess.Popen([binary, "serve", "--data", store, "--listen", f"127.0.0.1:{p}"],
                           stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        t0 = time.perf_counter()
        for _ in range(6000):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=5)
                break
            except Exception:
                time.sleep(0.1)
        ready = time.perf_counter() - t0
        time.sleep(1)
        m_open = mem(srv.pid)
        users = [r["key"][0] for r in get(base, "/api/v1/stats", by="user", top=60)[0]["rows"]]
        resources = [r["key"][0] for r in get(base, "/api/v1/stats", by="resource", top=40)[0]["rows"]]
        page = get(base, "/api/v1/events", q="verb=update", limit=400)[0]["events"]
        ids = [e["event"]["auditID"] for e in page]
        fields = ["user", "resource", "namespace", "verb", "code", "useragent", "sourceip", "name"]
        qs = {
            "needle user+verb": lambda i: ("/api/v1/events", {"q": f'user="{users[(i + rnd) % len(users)]}" verb=delete', "limit": 100}),
            "needle auditID": lambda i: ("/api/v1/events", {"q": f"auditid={ids[(i * 7 + rnd) % len(ids)]}", "limit": 100}),
            "top-10 all time": lambda i: ("/api/v1/stats", {"by": fields[(i + rnd) % len(fields)], "top": 10}),
            "histogram all time": lambda i: ("/api/v1/stats", {"q": f'resource="{resources[(i + rnd) % len(resources)]}"', "buckets": 80}),
        }
        res = {}
        for name, mk in qs.items():
            ts = []
            for i in range(runs):
                path, params = mk(i)
                ts.append(get(base, path, **params)[1])
            res[name] = statistics.median(ts)
        m_after = mem(srv.pid)
        return ready, m_open, m_after, res
    finally:
        srv.send_signal(signal.SIGTERM)
        try:
            srv.wait(60)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


print("| binary | round | ready s | RSS open MiB (anon/file) | RSS after queries MiB (anon/file) | needle user+verb p50 ms | needle auditID p50 ms | top-10 all time p50 ms | histogram all time p50 ms |")
print("|---|---|---|---|---|---|---|---|---|")
for rnd in range(2):
    for b in bins:
        ready, mo, ma, r = run(b, rnd)
        print(f"| {b} | {rnd + 1} | {ready:.1f} | {mo['VmRSS']} ({mo['RssAnon']}/{mo['RssFile']}) | {ma['VmRSS']} ({ma['RssAnon']}/{ma['RssFile']}) | "
              + " | ".join(f"{r[k]:.1f}" for k in ["needle user+verb", "needle auditID", "top-10 all time", "histogram all time"]) + " |", flush=True)
