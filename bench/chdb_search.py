#!/usr/bin/env python3
"""ClickHouse (chdb, in-process) baseline for bench search: loads the same JSON
lines into a MergeTree table (typed key columns + the raw event under ZSTD(3),
ordered by time) and times the same questions with the query cache off.

usage: chdb_search.py EVENTS.jsonl DBDIR USER AUDITID NAME KAUDIT_TOP_MS KAUDIT_HIST_MS
"""
import os, sys, time, statistics
from chdb import session

raw, dbdir, user, audit_id, name, k_top, k_hist = sys.argv[1:8]
k_top, k_hist = float(k_top), float(k_hist)
fresh = not os.path.isdir(dbdir)
s = session.Session(dbdir)
if fresh:
    t = time.perf_counter()
    s.query("CREATE DATABASE IF NOT EXISTS b")
    s.query("""CREATE TABLE b.ev (t DateTime64(6), user LowCardinality(String), verb LowCardinality(String),
        auditID String, name String, raw String CODEC(ZSTD(3))) ENGINE = MergeTree ORDER BY t""")
    s.query(f"""INSERT INTO b.ev SELECT
        parseDateTime64BestEffort(JSONExtractString(line, 'stageTimestamp'), 6),
        JSONExtractString(line, 'user', 'username'), JSONExtractString(line, 'verb'),
        JSONExtractString(line, 'auditID'), JSONExtractString(line, 'objectRef', 'name'), line
        FROM file('{raw}', LineAsString)""")
    s.query("OPTIMIZE TABLE b.ev FINAL")
    print(f"  load: {time.perf_counter() - t:.1f}s")

def bench(label, sql, runs=5, ref=None):
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        s.query(sql + " SETTINGS use_query_cache = 0", "CSV")
        ms.append((time.perf_counter() - t) * 1e3)
    p50 = statistics.median(ms)
    extra = f"  (kaudit {ref:.1f} ms: kaudit takes {ref / p50:.2f}x ClickHouse's time)" if ref else ""
    print(f"  {label:<28} p50 {p50:.1f} ms{extra}")

bench("top-10 users", "SELECT user, count() c FROM b.ev GROUP BY user ORDER BY c DESC LIMIT 10", ref=k_top)
bench("1-minute histogram", "SELECT toStartOfMinute(t) m, count() FROM b.ev GROUP BY m ORDER BY m", ref=k_hist)
bench("user+verb needle (raw)", f"SELECT raw FROM b.ev WHERE user = '{user}' AND verb = 'delete' ORDER BY t DESC LIMIT 100")
bench("auditID needle (raw)", f"SELECT raw FROM b.ev WHERE auditID = '{audit_id}'")
bench("object name needle (raw)", f"SELECT raw FROM b.ev WHERE name = '{name}' ORDER BY t DESC LIMIT 100")
r = s.query("SELECT sum(data_compressed_bytes) FROM system.parts WHERE database = 'b' AND table = 'ev' AND active", "CSV")
print(f"  on disk: {int(str(r).strip()) / 1e6:.1f} MB")
