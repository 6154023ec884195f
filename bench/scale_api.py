#!/usr/bin/env python3
"""The scale benchmark's questions over kaudit's HTTP API (#21 goal 4): warm
(one untimed round first), each run with a distinct parameter, p50 and max
printed next to the target. Console pages: the JSON calls each page of the
web console makes (ui/pages/*.js), issued together as the page does; the
page's time is the time until all have answered (the API floor of a page).

usage: scale_api.py URL [RUNS]
"""
import json, statistics, sys, time, urllib.parse, urllib.request
from concurrent.futures import ThreadPoolExecutor

B = sys.argv[1]
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 9


def get(path, **params):
    url = B + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    try:
        return json.loads(body)
    except ValueError:
        return body


q = lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
status = get("/api/v1/status")
users = [r["key"][0] for r in get("/api/v1/stats", by="user", top=60)["rows"]]
resources = [r["key"][0] for r in get("/api/v1/stats", by="resource", top=40)["rows"]]
verbs = [r["key"][0] for r in get("/api/v1/stats", by="verb", top=20)["rows"]]
page = get("/api/v1/events", q="verb=update", limit=400)["events"]
ids = [e["event"]["auditID"] for e in page]
objects = []
for e in page:
    o = e["event"].get("objectRef") or {}
    if o.get("resource") and o.get("name"):
        k = "/".join(x for x in (o["resource"], o.get("namespace"), o["name"]) if x)
        if k not in objects:
            objects.append(k)
pick = lambda xs, i: xs[i % len(xs)]

questions = [
    ("needle: user+verb (100 newest)", 50,
     lambda i: [("/api/v1/events", {"q": f"user={q(pick(users, i))} verb=delete", "limit": 100})]),
    ("needle: auditID", 50, lambda i: [("/api/v1/events", {"q": f"auditid={pick(ids, i)}", "limit": 100})]),
    ("needle: object history (50 newest)", 50,
     lambda i: [("/api/v1/history/" + urllib.parse.quote(pick(objects, i), safe=""), {"limit": 50})]),
    ("top-N users, all time", 1000, lambda i: [("/api/v1/stats", {"by": "user", "top": 10 + i})]),
    ("top-10 users of a resource, all time", 1000,
     lambda i: [("/api/v1/stats", {"by": "user", "top": 10, "q": f"resource={q(pick(resources, i))}"})]),
    ("1-minute histogram of a resource, all time", 1000,
     lambda i: [("/api/v1/stats", {"q": f"resource={q(pick(resources, i))}", "every": "1m"})]),
    ("histogram of a verb, all time (200 buckets)", 1000,
     lambda i: [("/api/v1/stats", {"q": f"verb={pick(verbs, i)}", "buckets": 200})]),
    ("p99 latency by resource, all time", 1000,
     lambda i: [("/api/v1/stats", {"by": "resource", "top": 15 + i, "latency": "true"})]),
    # Console pages (their JSON calls, together).
    ("page: dashboard", 1000, lambda i: [
        ("/api/v1/status", {}),
        ("/api/v1/stats", {"by": "code", "top": 100 + i}),
        ("/api/v1/stats", {"by": "user", "top": 10 + i}),
        ("/api/v1/stats", {"by": "resource", "top": 10 + i}),
        ("/api/v1/stats", {"by": "namespace", "top": 10 + i}),
        ("/api/v1/stats", {"by": "resource", "top": 15 + i, "latency": "true"}),
        ("/api/v1/stats", {"by": "verb", "buckets": 120 + i}),
    ]),
    ("page: search (all events)", 1000, lambda i: [
        ("/api/v1/events", {"limit": 50 + i}),
        ("/api/v1/stats", {"buckets": 120 + i}),
    ]),
    ("page: search (a query)", 1000, lambda i: [
        ("/api/v1/events", {"q": f"verb=delete resource={q(pick(resources, i))}", "limit": 50}),
        ("/api/v1/stats", {"q": f"verb=delete resource={q(pick(resources, i))}", "buckets": 120}),
    ]),
    ("page: event detail", 1000, lambda i: [
        ("/api/v1/events/" + urllib.parse.quote(pick(ids, i), safe=""), {}),
        ("/api/v1/checkpoint/public-key", {}),
    ]),
    ("page: object history", 1000, lambda i: [
        ("/api/v1/history/" + urllib.parse.quote(pick(objects, i), safe=""), {"limit": 100}),
    ]),
    ("page: user activity", 1000, lambda i: [
        ("/api/v1/history", {"user": pick(users, i)}),
        ("/api/v1/events", {"q": f"user={q(pick(users, i))} code>=400", "limit": 50}),
        ("/api/v1/users/" + urllib.parse.quote(pick(users, i), safe="") + "/rbac", {}),
    ]),
    ("page: alerts", 1000, lambda i: [("/api/v1/alerts", {"limit": 10000}), ("/api/v1/sinks", {})]),
    ("page: integrity", 1000, lambda i: [("/api/v1/checkpoint", {}), ("/api/v1/verify", {})]),
]

pool = ThreadPoolExecutor(max_workers=8)


def timed(calls):
    t = time.perf_counter()
    errors = []

    def one(c):
        try:
            get(c[0], **c[1])
        except Exception as e:  # a failed call is reported, not timed as fast
            errors.append(f"{c[0]}: {e}")

    list(pool.map(one, calls))
    return (time.perf_counter() - t) * 1e3, errors


print(f"  {status.get('tree_size', '?'):,} events; {'question':<44} {'p50':>9} {'max':>9}  target   (runs {RUNS}, distinct parameter each, warm)")
over = 0
for label, target, make in questions:
    timed(make(0))
    ms, errs = [], []
    for i in range(1, RUNS + 1):
        t, e = timed(make(i))
        ms.append(t)
        errs += e
    p50 = statistics.median(ms)
    ok = "ok" if p50 <= target and not errs else "OVER"
    over += ok != "ok"
    err = f"  ({len(errs)} failed calls: {errs[0]})" if errs else ""
    print(f"  {label:<60} {p50:>7.1f} ms {max(ms):>7.1f} ms  <= {target} ms {ok}{err}")
print(f"  {over} of {len(questions)} over their target")
