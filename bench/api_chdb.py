#!/usr/bin/env python3
"""Issue #21 goal 3: the nine questions through kaudit's HTTP API against
ClickHouse (chdb, in-process) over the same JSON lines, in one run.

ClickHouse side: a MergeTree table of typed LowCardinality columns plus the raw
event under ZSTD(3), ordered by time, bloom_filter/set skip indexes on auditID,
user and resource, OPTIMIZE FINAL, query cache off. Needles return the raw
events (kaudit returns whole events too).

Warm (one untimed round of each side first), a distinct parameter value on
every run (another user, auditID, resource, object, or a `since` that moves by
7 s), the two sides alternating (and which goes first alternating), so the
ratio is a same-run ratio on a loaded machine. Each run checks that both sides
answer the same count (and, for needles, the same auditIDs).

usage: api_chdb.py KAUDIT_URL EVENTS.jsonl CHDB_DIR STORE_DIR [RUNS]
"""
import json, os, statistics, subprocess, sys, time, urllib.parse, urllib.request
from chdb import session

URL, RAW, DBDIR, STORE = sys.argv[1:5]
RUNS = int(sys.argv[5]) if len(sys.argv) > 5 else 21
fresh = not os.path.isdir(DBDIR)
s = session.Session(DBDIR)
if fresh:
    t = time.perf_counter()
    s.query("CREATE DATABASE IF NOT EXISTS b")
    s.query("""CREATE TABLE b.ev (
        t DateTime64(6), user LowCardinality(String), verb LowCardinality(String),
        resource LowCardinality(String), namespace LowCardinality(String), name String,
        auditID String, decision LowCardinality(String), code UInt16, latency Int64,
        raw String CODEC(ZSTD(3)),
        INDEX i_id auditID TYPE bloom_filter GRANULARITY 1,
        INDEX i_user user TYPE bloom_filter GRANULARITY 1,
        INDEX i_res resource TYPE set(256) GRANULARITY 1
        ) ENGINE = MergeTree ORDER BY t""")
    s.query(f"""INSERT INTO b.ev SELECT
        parseDateTime64BestEffort(JSONExtractString(line, 'stageTimestamp'), 6) AS st,
        JSONExtractString(line, 'user', 'username'), JSONExtractString(line, 'verb'),
        JSONExtractString(line, 'objectRef', 'resource'), JSONExtractString(line, 'objectRef', 'namespace'),
        JSONExtractString(line, 'objectRef', 'name'), JSONExtractString(line, 'auditID'),
        JSONExtractString(line, 'annotations', 'authorization.k8s.io/decision'),
        JSONExtractUInt(line, 'responseStatus', 'code'),
        dateDiff('microsecond', parseDateTime64BestEffort(JSONExtractString(line, 'requestReceivedTimestamp'), 6), st),
        line
        FROM file('{os.path.abspath(RAW)}', LineAsString)""")
    s.query("OPTIMIZE TABLE b.ev FINAL")
    print(f"  chdb load: {time.perf_counter() - t:.1f}s")


def ch(sql):
    r = s.query(sql + " SETTINGS use_query_cache = 0", "JSONCompact")
    return json.loads(r.bytes())["data"]


def get(path, params):
    url = URL + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=600) as r:
        return json.loads(r.read())


lit = lambda v: "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
kq = lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

# Parameters (untimed): many distinct values so that no answer repeats.
users = [r[0] for r in ch("SELECT user, count() c FROM b.ev WHERE verb = 'delete' GROUP BY user ORDER BY c DESC LIMIT 80")]
resources = [r[0] for r in ch("SELECT resource, count() c FROM b.ev WHERE resource != '' GROUP BY resource ORDER BY c DESC LIMIT 60")]
denied_res = [r[0] for r in ch("SELECT resource, count() c FROM b.ev WHERE decision = 'forbid' AND resource != '' GROUP BY resource ORDER BY c DESC LIMIT 60")] or resources
verbs = [r[0] for r in ch("SELECT verb, count() c FROM b.ev GROUP BY verb ORDER BY c DESC LIMIT 20")]
ids = [r[0] for r in ch("SELECT auditID FROM b.ev ORDER BY cityHash64(auditID) LIMIT 400")]
objects = [tuple(r[:3]) for r in ch(
    "SELECT resource, namespace, name, count() c FROM b.ev WHERE resource != '' AND name != '' "
    "GROUP BY resource, namespace, name ORDER BY c DESC LIMIT 100")]
t0 = ch("SELECT toUnixTimestamp(min(t)) FROM b.ev")[0][0]


def since(i):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t0) + 7 * i))


def since_sql(i):
    return f"t >= toDateTime64('{since(i)[:-1].replace('T', ' ')}', 6, 'UTC')"


def obj_path(o):
    return "/".join(x for x in o if x)


def ids_of_events(r):
    return sorted(e["event"]["auditID"] for e in r["events"])


def ids_of_history(r):
    return sorted(e["event"]["auditID"] if "event" in e else e.get("auditID", "") for e in r.get("entries", []))


# Each question: (label, kaudit request of i, ClickHouse SQL of i, kaudit answer, ClickHouse answer).
Q = [
    ("user+verb needle (100 newest)",
     lambda i: ("/api/v1/events", {"q": f"user={kq(users[i % len(users)])} verb=delete", "limit": 100}),
     lambda i: f"SELECT auditID, raw FROM b.ev WHERE user = {lit(users[i % len(users)])} AND verb = 'delete' ORDER BY t DESC LIMIT 100",
     lambda r: len(r["events"]), len),
    ("auditID needle",
     lambda i: ("/api/v1/events", {"q": f"auditid={ids[i % len(ids)]}", "limit": 100}),
     lambda i: f"SELECT auditID, raw FROM b.ev WHERE auditID = {lit(ids[i % len(ids)])}",
     ids_of_events, lambda rows: sorted(r[0] for r in rows)),
    ("resource's denied (100 newest)",
     lambda i: ("/api/v1/events", {"q": f"resource={kq(denied_res[i % len(denied_res)])} decision=forbid", "limit": 100, "since": since(i)}),
     lambda i: f"SELECT auditID, raw FROM b.ev WHERE resource = {lit(denied_res[i % len(denied_res)])} AND decision = 'forbid' AND {since_sql(i)} ORDER BY t DESC LIMIT 100",
     lambda r: len(r["events"]), len),
    ("top-10 users (since moves)",
     lambda i: ("/api/v1/stats", {"by": "user", "top": 10, "since": since(i)}),
     lambda i: f"SELECT user, count() c FROM b.ev WHERE {since_sql(i)} GROUP BY user ORDER BY c DESC LIMIT 10",
     lambda r: [row["count"] for row in r["rows"]], lambda rows: [int(x[1]) for x in rows]),
    ("top-10 users of a resource",
     lambda i: ("/api/v1/stats", {"by": "user", "top": 10, "q": f"resource={kq(resources[i % len(resources)])}", "since": since(i)}),
     lambda i: f"SELECT user, count() c FROM b.ev WHERE resource = {lit(resources[i % len(resources)])} AND {since_sql(i)} GROUP BY user ORDER BY c DESC LIMIT 10",
     lambda r: [row["count"] for row in r["rows"]], lambda rows: [int(x[1]) for x in rows]),
    ("1-minute histogram of a resource",
     lambda i: ("/api/v1/stats", {"q": f"resource={kq(resources[i % len(resources)])}", "every": "1m", "since": since(i)}),
     lambda i: f"SELECT toStartOfMinute(t) m, count() FROM b.ev WHERE resource = {lit(resources[i % len(resources)])} AND {since_sql(i)} GROUP BY m ORDER BY m",
     lambda r: r["total"], lambda rows: sum(int(x[1]) for x in rows)),
    ("top-10 namespaces of a verb",
     lambda i: ("/api/v1/stats", {"by": "namespace", "top": 10, "q": f"verb={verbs[i % len(verbs)]}", "since": since(i)}),
     lambda i: f"SELECT namespace, count() c FROM b.ev WHERE verb = {lit(verbs[i % len(verbs)])} AND {since_sql(i)} GROUP BY namespace ORDER BY c DESC LIMIT 10",
     lambda r: r["total"], None),
    ("object history (50 newest)",
     lambda i: ("/api/v1/history/" + urllib.parse.quote(obj_path(objects[i % len(objects)]), safe=""), {"limit": 50}),
     lambda i: (lambda o: f"SELECT auditID, raw FROM b.ev WHERE resource = {lit(o[0])} AND namespace = {lit(o[1])} AND name = {lit(o[2])} ORDER BY t DESC LIMIT 50")(objects[i % len(objects)]),
     lambda r: len(r.get("entries", [])), len),
    ("p99 latency by resource",
     lambda i: ("/api/v1/stats", {"by": "resource", "latency": "true", "since": since(i)}),
     lambda i: f"SELECT resource, count(), quantileExact(0.99)(latency) FROM b.ev WHERE {since_sql(i)} GROUP BY resource",
     lambda r: r["total"], lambda rows: sum(int(x[1]) for x in rows)),
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def total_of_verb(i):
    # The namespace question's ClickHouse total (its top-10 rows omit the rest).
    return int(ch(f"SELECT count() FROM b.ev WHERE verb = {lit(verbs[i % len(verbs)])} AND {since_sql(i)}")[0][0])


only = os.environ.get("ONLY")
print(f"  {'question':<34} {'kaudit p50':>10} {'p99':>7} {'chdb p50':>9} {'p99':>7}  chdb/kaudit p50  (runs {RUNS}, distinct parameter each, alternating, loaded)")
worst = None
for n, (label, kreq, csql, kans, cans) in enumerate(Q):
    if only and str(n + 1) not in only.split(","):
        continue
    path, params = kreq(0)
    get(path, params)
    ch(csql(0))
    tk, tc, diff, first_diff = [], [], 0, None
    for i in range(1, RUNS + 1):
        path, params = kreq(i)
        sql = csql(i)
        for side in ((0, 1) if i % 2 else (1, 0)):
            t = time.perf_counter()
            if side == 0:
                r = get(path, params)
                tk.append((time.perf_counter() - t) * 1e3)
            else:
                rows = ch(sql)
                tc.append((time.perf_counter() - t) * 1e3)
        a = kans(r)
        b = cans(rows) if cans else total_of_verb(i)
        if a != b:
            diff += 1
            first_diff = first_diff or (i, str(a)[:120], str(b)[:120])
    k50, k99, c50, c99 = statistics.median(tk), pct(tk, 99), statistics.median(tc), pct(tc, 99)
    note = "" if not diff else f"  ({diff} runs answered differently, e.g. run {first_diff[0]}: kaudit {first_diff[1]} vs chdb {first_diff[2]})"
    print(f"  {label:<34} {k50:>7.1f} ms {k99:>7.1f} {c50:>6.1f} ms {c99:>7.1f}  {c50 / k50:>8.2f}x{note}", flush=True)
    worst = min(worst or 1e9, c50 / k50)
print(f"  slowest ratio: {worst:.2f}x (goal: >= 2x on every question)")

ch_bytes = int(ch("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'b' AND table = 'ev' AND active")[0][0])
rows = int(ch("SELECT count() FROM b.ev")[0][0])
du = lambda p: int(subprocess.run(["du", "-sb", p], capture_output=True, text=True).stdout.split()[0]) if os.path.exists(p) else 0
store = du(STORE)
raw = os.path.getsize(RAW)
parts = ", ".join(f"{d} {du(os.path.join(STORE, d)) / rows:.1f}" for d in sorted(os.listdir(STORE)) if os.path.isdir(os.path.join(STORE, d)))
print(f"  on disk: kaudit store {store / 1e6:.1f} MB ({store / rows:.1f} B/event, {100 * store / raw:.1f}% of raw; B/event: {parts})"
      f" vs ClickHouse table {ch_bytes / 1e6:.1f} MB ({ch_bytes / rows:.1f} B/event, {100 * ch_bytes / raw:.1f}% of raw): kaudit/ClickHouse {store / ch_bytes:.2f}")
