//! The tables kaudit creates and migrates in ClickHouse, and how one stored
//! record becomes one row.
//!
//! `<prefix>events` holds one row per record of every node: typed columns
//! for every field the query language indexes (multi-valued fields as
//! arrays, so groups and source IPs stay exact; the rest as plain or
//! `LowCardinality` strings where "" means absent), the event time and
//! latency, the node, its sequence number, the leaf hash of the record in
//! the node's Merkle tree, and the exact event bytes. Partitioned by day (so
//! retention drops whole partitions), ordered by `(time, gseq)`: every page
//! kaudit shows is newest first within a time range, and the sort key is
//! also the `ReplacingMergeTree` key that folds a resent row into the first.
//! Server 18.16 has no column codecs, `DateTime64` or TTL: times are `Int64`
//! microseconds and the table is compressed with the server's default.
//!
//! `<prefix>checkpoints` holds every node's signed checkpoints and its
//! public key; `<prefix>resent` (version 2) the `(node, seq)` ranges a
//! shipper may have sent twice ([`crate::resent`]); `<prefix>schema` the
//! versions applied.

use crate::client::Client;
use crate::rowbin::{put_str, put_strs};
use crate::{gseq, ChResult, ClickHouseConfig};
use kaudit_event::{Event, MicroTime};
use kaudit_query::{Field, LazyJson};

/// The schema version this build creates and reads.
pub const SCHEMA_VERSION: u32 = 2;

/// How a field's values are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One string; "" when the field has no value (the matcher never sees
    /// an empty value of these fields).
    Single,
    /// One string the event always has (stage, level), possibly "".
    Always,
    /// Every value, in order.
    Array,
    /// The response code: `code` with `has_code`.
    Code,
}

/// A query-language field held in a column.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// Column name.
    pub name: &'static str,
    /// Its ClickHouse type.
    pub ty: &'static str,
    /// How values are held.
    pub kind: Kind,
}

const fn col(name: &'static str, ty: &'static str, kind: Kind) -> Column {
    Column { name, ty, kind }
}

/// The column holding `field`, None for fields only the event has
/// (annotations other than decision and reason, JSON paths).
pub fn column(field: &Field) -> Option<Column> {
    use Kind::*;
    const LC: &str = "LowCardinality(String)";
    const S: &str = "String";
    const A: &str = "Array(String)";
    Some(match field {
        Field::User => col("user", S, Single),
        Field::Group => col("groups", A, Array),
        Field::Impersonated => col("impersonated", S, Single),
        Field::Verb => col("verb", LC, Single),
        Field::Resource => col("resource", LC, Single),
        Field::Subresource => col("subresource", LC, Single),
        Field::Namespace => col("namespace", LC, Single),
        Field::Name => col("name", S, Single),
        Field::ApiGroup => col("api_group", LC, Single),
        Field::ApiVersion => col("api_version", LC, Single),
        Field::Code => col("code", "Int32", Code),
        Field::Ip => col("ips", A, Array),
        Field::UserAgent => col("user_agent", S, Single),
        Field::Stage => col("stage", LC, Always),
        Field::Level => col("level", LC, Always),
        Field::AuditId => col("audit_id", S, Single),
        Field::Uid => col("uid", S, Single),
        Field::Uri => col("uri", S, Single),
        Field::Cluster => col("cluster", LC, Single),
        Field::Decision => col("decision", A, Array),
        Field::Reason => col("reason", A, Array),
        Field::Annotation(_) | Field::Path(_) => return None,
    })
}

/// The fields with columns, in column order.
pub fn column_fields() -> Vec<Field> {
    vec![
        Field::Cluster,
        Field::AuditId,
        Field::Stage,
        Field::Level,
        Field::Verb,
        Field::User,
        Field::Group,
        Field::Impersonated,
        Field::Ip,
        Field::UserAgent,
        Field::ApiGroup,
        Field::ApiVersion,
        Field::Resource,
        Field::Subresource,
        Field::Namespace,
        Field::Name,
        Field::Uid,
        Field::Uri,
        Field::Code,
        Field::Decision,
        Field::Reason,
    ]
}

/// Table names of one deployment.
#[derive(Clone, Debug)]
pub struct Tables {
    /// Database.
    pub db: String,
    /// The events table queries and inserts use (the Distributed table on
    /// a cluster).
    pub events: String,
    /// The table holding the rows (the replicated local table on a
    /// cluster; the same as `events` otherwise).
    pub events_local: String,
    /// Checkpoints (Distributed on a cluster).
    pub checkpoints: String,
    /// The replicated local checkpoints table on a cluster.
    pub checkpoints_local: String,
    /// Ranges of rows that may be in the table twice (Distributed on a
    /// cluster).
    pub resent: String,
    /// The replicated local resent table on a cluster.
    pub resent_local: String,
    /// Applied schema versions.
    pub schema: String,
    /// The cluster, if any.
    pub cluster: Option<String>,
}

impl Tables {
    /// The names `cfg` gives.
    pub fn new(cfg: &ClickHouseConfig) -> Tables {
        let p = &cfg.table_prefix;
        let local = if cfg.cluster.is_some() { "_local" } else { "" };
        Tables {
            db: cfg.database.clone(),
            events: format!("{p}events"),
            events_local: format!("{p}events{local}"),
            checkpoints: format!("{p}checkpoints"),
            checkpoints_local: format!("{p}checkpoints{local}"),
            resent: format!("{p}resent"),
            resent_local: format!("{p}resent{local}"),
            schema: format!("{p}schema"),
            cluster: cfg.cluster.clone(),
        }
    }

    fn on_cluster(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| format!(" ON CLUSTER {c}"))
            .unwrap_or_default()
    }

    fn engine(&self, table: &str, replacing: bool) -> String {
        let base = if replacing {
            "ReplacingMergeTree"
        } else {
            "MergeTree"
        };
        match &self.cluster {
            Some(_) => format!(
                "Replicated{base}('/clickhouse/tables/{{shard}}/{}/{table}', '{{replica}}')",
                self.db
            ),
            None => format!("{base}()"),
        }
    }

    /// The DDL of schema version 1, in order.
    pub fn ddl_v1(&self) -> Vec<String> {
        let on = self.on_cluster();
        let db = &self.db;
        let cols: Vec<String> = row_columns()
            .iter()
            .map(|(n, t)| format!("{n} {t}"))
            .collect();
        let mut out = vec![format!(
            "CREATE TABLE IF NOT EXISTS {db}.{}{on} ({}) ENGINE = {} PARTITION BY day ORDER BY (time, gseq) SETTINGS index_granularity = 8192",
            self.events_local,
            cols.join(", "),
            self.engine(&self.events_local, true)
        )];
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {db}.{}{on} (node_id UInt16, node String, size UInt64, time String, note String, verifier String) ENGINE = {} ORDER BY (node_id, size)",
            self.checkpoints_local,
            self.engine(&self.checkpoints_local, true)
        ));
        if let Some(c) = &self.cluster {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {db}.{}{on} AS {db}.{} ENGINE = Distributed({c}, {db}, {}, rand())",
                self.events, self.events_local, self.events_local
            ));
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {db}.{}{on} AS {db}.{} ENGINE = Distributed({c}, {db}, {}, rand())",
                self.checkpoints, self.checkpoints_local, self.checkpoints_local
            ));
        }
        out
    }

    /// The DDL of schema version 2: the resent ranges ([`crate::resent`]).
    pub fn ddl_v2(&self) -> Vec<String> {
        let on = self.on_cluster();
        let db = &self.db;
        let mut out = vec![format!(
            "CREATE TABLE IF NOT EXISTS {db}.{}{on} (node_id UInt16, lo UInt64, hi UInt64, recorded Int64) ENGINE = {} ORDER BY (node_id, lo, hi)",
            self.resent_local,
            self.engine(&self.resent_local, false)
        )];
        if let Some(c) = &self.cluster {
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {db}.{}{on} AS {db}.{} ENGINE = Distributed({c}, {db}, {}, rand())",
                self.resent, self.resent_local, self.resent_local
            ));
        }
        out
    }

    /// The column list rows are inserted with, in [`encode_row`]'s order.
    pub fn insert_columns() -> String {
        row_columns()
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The statements that create schema version 1 from nothing, each with
    /// the database it runs in (what [`migrate`] runs; the dialect test
    /// runs them on both server versions).
    pub fn create_statements(&self) -> Vec<(String, String)> {
        let on = self.on_cluster();
        let db = &self.db;
        let mut out = vec![
            ("default".to_string(), format!("CREATE DATABASE IF NOT EXISTS {db}{on}")),
            (
                db.clone(),
                format!(
                    "CREATE TABLE IF NOT EXISTS {db}.{}{on} (version UInt32, applied Int64) ENGINE = {} ORDER BY version",
                    self.schema,
                    self.engine(&self.schema, true)
                ),
            ),
        ];
        out.extend(self.ddl_v1().into_iter().map(|s| (db.clone(), s)));
        out.extend(self.ddl_v2().into_iter().map(|s| (db.clone(), s)));
        out
    }
}

/// Every column of an events row with its type, in [`encode_row`]'s order.
pub fn row_columns() -> Vec<(&'static str, &'static str)> {
    let mut cols = vec![
        ("day", "Date"),
        ("time", "Int64"),
        ("received", "Int64"),
        ("node_id", "UInt16"),
        ("seq", "UInt64"),
        ("gseq", "UInt64"),
        ("node", "LowCardinality(String)"),
    ];
    for f in column_fields() {
        if let Some(c) = column(&f) {
            cols.push((c.name, c.ty));
            if c.kind == Kind::Code {
                cols.push(("has_code", "UInt8"));
            }
        }
    }
    cols.extend([
        ("latency", "Int64"),
        ("leaf_hash", "FixedString(32)"),
        ("raw", "String"),
    ]);
    cols
}

/// Creates the database and tables when missing and applies the schema
/// versions not applied yet (every node runs it at start; all statements
/// are idempotent). Returns the version now in force.
pub fn migrate(client: &Client, tables: &Tables) -> ChResult<u32> {
    let db = &tables.db;
    let version = || -> ChResult<u32> {
        Ok(client
            .execute(&format!("SELECT max(version) FROM {db}.{}", tables.schema))?
            .trim()
            .parse()
            .unwrap_or(0))
    };
    // Already in force: no DDL at all. `ON CLUSTER` DDL waits for every
    // replica, so a node reconnecting while one replica is down must not
    // run it (it did, and each reconnect then waited on the dead replica).
    if let Ok(have) = version() {
        if have == SCHEMA_VERSION {
            return Ok(have);
        }
    }
    let create = tables.create_statements();
    for (in_db, stmt) in create.iter().take(2) {
        client.ddl(in_db, stmt)?;
    }
    let have = version()?;
    if have > SCHEMA_VERSION {
        return Err(crate::ClickHouseError::Config(format!(
            "the ClickHouse tables are at schema version {have}, newer than this kaudit ({SCHEMA_VERSION}); upgrade kaudit"
        )));
    }
    let v1 = 2 + tables.ddl_v1().len();
    if have < 1 {
        for (in_db, stmt) in create.iter().take(v1).skip(2) {
            client.ddl(in_db, stmt)?;
        }
        client.execute(&format!(
            "INSERT INTO {db}.{} (version, applied) VALUES (1, {})",
            tables.schema,
            MicroTime::now().micros()
        ))?;
    }
    if have < 2 {
        for (in_db, stmt) in create.iter().skip(v1) {
            client.ddl(in_db, stmt)?;
        }
        if have == 1 {
            // Rows shipped before version 2 have no recorded ranges: every
            // node's rows so far may hold duplicates.
            client.insert_with(
                &format!(
                    "INSERT INTO {db}.{} (node_id, lo, hi, recorded) SELECT node_id, min(seq), max(seq) + 1, {} FROM {db}.{} GROUP BY node_id",
                    tables.resent,
                    MicroTime::now().micros(),
                    tables.events
                ),
                Vec::new(),
                &[("insert_distributed_sync", "1")],
            )?;
        }
        client.execute(&format!(
            "INSERT INTO {db}.{} (version, applied) VALUES (2, {})",
            tables.schema,
            MicroTime::now().micros()
        ))?;
    }
    Ok(SCHEMA_VERSION)
}

/// Days since 1970-01-01 of a microsecond time, clamped to what `Date`
/// holds.
pub fn day_of(micros: i64) -> u16 {
    micros
        .div_euclid(86_400_000_000)
        .clamp(0, i64::from(u16::MAX)) as u16
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_day(s: &str) -> Option<u16> {
    let mut it = s.splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if s.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    // Days from civil (proleptic Gregorian).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u16::try_from(era * 146_097 + doe - 719_468).ok()
}

/// Appends the row of one record: `seq` in node `node_id`'s store.
// The parts of one stored record, each needed, borrowed from the caller.
#[allow(clippy::too_many_arguments)]
pub fn encode_row(
    out: &mut Vec<u8>,
    node_id: u16,
    node: &str,
    seq: u64,
    cluster: &str,
    received: MicroTime,
    raw: &[u8],
    ev: Option<&Event>,
    leaf: &mut Vec<u8>,
) {
    let time = ev.map_or(received.micros(), |e| kaudit_index::event_time(e, received));
    out.extend_from_slice(&day_of(time).to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
    out.extend_from_slice(&received.micros().to_le_bytes());
    out.extend_from_slice(&node_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&gseq(node_id, seq).to_le_bytes());
    put_str(out, node.as_bytes());
    let mut json = LazyJson::default();
    let mut vals: Vec<String> = Vec::new();
    for f in column_fields() {
        let Some(c) = column(&f) else { continue };
        vals.clear();
        if let Some(ev) = ev {
            f.values(ev, cluster, &mut json, &mut |v| vals.push(v.to_string()));
        } else if f == Field::Cluster {
            vals.push(cluster.to_string());
        }
        match c.kind {
            Kind::Single | Kind::Always => {
                put_str(out, vals.first().map_or(&b""[..], |v| v.as_bytes()))
            }
            Kind::Array => put_strs(out, &vals),
            Kind::Code => {
                let code = ev.and_then(|e| e.response_code());
                out.extend_from_slice(&code.unwrap_or(0).to_le_bytes());
                out.push(u8::from(code.is_some()));
            }
        }
    }
    let lat = ev
        .and_then(kaudit_index::index::event_latency)
        .map_or(-1, i64::from);
    out.extend_from_slice(&lat.to_le_bytes());
    leaf.clear();
    kaudit_store::record::write_leaf(cluster, raw, received, seq, leaf);
    out.extend_from_slice(&kaudit_store::merkle::leaf_hash(leaf));
    put_str(out, raw);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_like_the_calendar() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2016-07-19"), Some(17001));
        assert_eq!(parse_day("2024-02-29"), Some(19782));
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("24-1-1"), None);
        assert_eq!(day_of(17001 * 86_400_000_000 + 5), 17001);
        assert_eq!(day_of(-1), 0);
    }

    #[test]
    fn every_indexed_field_has_a_column_once() {
        let mut names: Vec<&str> = column_fields()
            .iter()
            .filter_map(|f| column(f).map(|c| c.name))
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(n, 21);
        assert!(column(&Field::Annotation("x".into())).is_none());
    }
}
