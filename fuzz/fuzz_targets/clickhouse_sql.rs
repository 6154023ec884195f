//! Any text through the query parser and the ClickHouse compiler, and any
//! bytes through the RowBinary reader: no panic on any input; a compiled
//! query's string literals are always closed (an odd number of unescaped
//! quotes would mean user text escaped its literal). Any text through the
//! follow-position parser (the per-node cursor of a ClickHouse follower):
//! no panic, and what parses re-encodes to a position that parses equal.
#![no_main]

use kaudit_clickhouse::rowbin::Reader;
use kaudit_clickhouse::sql::compile;
use kaudit_index::FollowPosition;
use kaudit_query::Query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(q) = Query::parse(text) {
            let c = compile(q.expr());
            let mut open = false;
            let mut escaped = false;
            for ch in c.sql.chars() {
                match (escaped, ch) {
                    (true, _) => escaped = false,
                    (false, '\\') if open => escaped = true,
                    (false, '\'') => open = !open,
                    _ => {}
                }
            }
            assert!(!open, "unclosed literal in {}", c.sql);
        }
        if let Ok(p) = FollowPosition::parse(text) {
            let again = FollowPosition::parse(&p.encode()).expect("encoded position parses");
            assert_eq!(again, p);
        }
    }
    let mut r = Reader::new(data);
    while let Ok(false) = r.at_end() {
        if r.strings().is_err() || r.u64().is_err() || r.bytes().is_err() {
            break;
        }
    }
});
