//! Retention in ClickHouse: whole day partitions older than `max_age_days`
//! are dropped (never single rows), except days under a hold. The shipper
//! applies it about once an hour when `max_age_days` is set.

use crate::client::Client;
use crate::schema::{parse_day, Tables};
use crate::ChResult;

/// Drops the day partitions of the events table older than `max_age_days`
/// before `today` (days since 1970-01-01), except the days in `holds`
/// (`YYYY-MM-DD`). Returns the days dropped.
pub fn drop_expired(
    client: &Client,
    tables: &Tables,
    max_age_days: u32,
    holds: &[String],
    today: u16,
) -> ChResult<Vec<u16>> {
    let held: Vec<u16> = holds.iter().filter_map(|h| parse_day(h)).collect();
    let cutoff = i64::from(today) - i64::from(max_age_days);
    let days = client.execute(&format!(
        "SELECT DISTINCT toUInt16(min_date) FROM system.parts WHERE database = '{}' AND table = '{}' AND active FORMAT TabSeparated",
        tables.db, tables.events_local
    ))?;
    let mut dropped = Vec::new();
    let on = tables
        .cluster
        .as_ref()
        .map(|c| format!(" ON CLUSTER {c}"))
        .unwrap_or_default();
    for d in days
        .split_whitespace()
        .filter_map(|d| d.parse::<u16>().ok())
    {
        if i64::from(d) >= cutoff || held.contains(&d) {
            continue;
        }
        client.execute(&format!(
            "ALTER TABLE {}.{}{on} DROP PARTITION {d}",
            tables.db, tables.events_local
        ))?;
        dropped.push(d);
    }
    dropped.sort_unstable();
    Ok(dropped)
}
