#!/usr/bin/env python3
"""The search benchmark's questions over kaudit's HTTP API, answered by two
servers holding the same events: A (store.clickhouse: ClickHouseBackend) and
B (the embedded index). Warm (one untimed round first), each run with a
distinct parameter, A and B alternating (which goes first alternates too), so
the ratio is a same-run ratio on a loaded machine.

usage: clickhouse_search.py URL_CLICKHOUSE URL_EMBEDDED EVENTS [RUNS]
"""
import calendar, json, re, statistics, sys, time, urllib.parse, urllib.request

A, B, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
RUNS = int(sys.argv[4]) if len(sys.argv) > 4 else 15


def get(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=600) as r:
        return json.loads(r.read())


def lag(base, follower):
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        text = r.read().decode()
    m = re.search(r'kaudit_follower_lag_events\{follower="%s"\} (\d+)' % follower, text)
    return int(m.group(1)) if m else None


def wait(base, follower):
    t = time.time()
    while True:
        n = lag(base, follower)
        if n == 0:
            return time.time() - t
        time.sleep(0.5)


t_index = wait(B, "indexer")
wait(A, "indexer")  # node A's own index, so it does not compete for CPU
t_ship = wait(A, "clickhouse")
print(f"  embedded index caught up {t_index:.0f} s after start; shipper lag 0")

q = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
users = [r["key"][0] for r in get(B, "/api/v1/stats", by="user", top=60)["rows"]]
resources = [r["key"][0] for r in get(B, "/api/v1/stats", by="resource", top=40)["rows"]]
page = get(B, "/api/v1/events", q="verb=update", limit=400)["events"]
ids = [e["event"]["auditID"] for e in page]
objects = []
for e in page:
    o = e["event"].get("objectRef") or {}
    if o.get("resource") and o.get("name"):
        k = "/".join(x for x in (o["resource"], o.get("namespace"), o["name"]) if x)
        if k not in objects:
            objects.append(k)
oldest = get(B, "/api/v1/events", limit=1, reverse="true")["events"][0]["time"]
t0 = calendar.timegm(time.strptime(oldest[:19], "%Y-%m-%dT%H:%M:%S"))


def since(i):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + 7 * i))


questions = [
    ("user+verb needle (100 newest)", lambda i: ("/api/v1/events", {"q": f"user={q(users[i % len(users)])} verb=delete", "limit": 100}), "count"),
    ("auditID needle", lambda i: ("/api/v1/events", {"q": f"auditid={ids[i % len(ids)]}", "limit": 100}), "count"),
    ("top-10 users (since shifts)", lambda i: ("/api/v1/stats", {"by": "user", "top": 10, "since": since(i)}), "total"),
    ("1-minute histogram of a resource", lambda i: ("/api/v1/stats", {"q": f"resource={q(resources[i % len(resources)])}", "every": "1m"}), "total"),
    ("object history (100 newest)", lambda i: ("/api/v1/history/" + urllib.parse.quote(objects[i % len(objects)], safe=""), {"limit": 100}), None),
]


def timed(base, path, params):
    t = time.perf_counter()
    r = get(base, path, **params)
    return (time.perf_counter() - t) * 1e3, r


def answer(r, key):
    if key is None:
        return len(r.get("entries", []))
    return r.get(key)


print(f"  {'question':<34} {'ClickHouse p50':>15} {'embedded p50':>13}  CH/embedded  (runs {RUNS}, distinct parameter each, alternating)")
for label, make, key in questions:
    # Warm: one untimed round of each with parameter 0.
    path, params = make(0)
    timed(A, path, params)
    timed(B, path, params)
    ta, tb, diff = [], [], 0
    for i in range(1, RUNS + 1):
        path, params = make(i)
        order = [(A, ta), (B, tb)] if i % 2 else [(B, tb), (A, ta)]
        answers = []
        for base, acc in order:
            ms, r = timed(base, path, params)
            acc.append(ms)
            answers.append(answer(r, key))
        diff += answers[0] != answers[1]
    a, b = statistics.median(ta), statistics.median(tb)
    note = "" if diff == 0 else f"  ({diff} runs answered differently!)"
    print(f"  {label:<34} {a:>12.1f} ms {b:>10.1f} ms  {a / b:>8.2f}x{note}")
