//! Retention (`retention: {max_age: 400d, max_size: 500GiB}`), legal holds,
//! and the store's YAML configuration.
//!
//! Pruning deletes whole segments, oldest first, never the one being written
//! and never one whose receive times overlap a legal hold. The tree stays
//! verifiable: its persisted levels are kept, the leaf hashes of the group
//! straddling the boundary are saved, and a signed prune record tells
//! `verify` the range was pruned on purpose rather than deleted.

use crate::store::{io_err, paths, read_small, undecodable, write_atomic};
use crate::{StoreError, StoreResult};
use kaudit_event::MicroTime;
use std::path::{Path, PathBuf};

/// How long and how much to keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Segments whose newest record is older than this go.
    pub max_age_secs: Option<u64>,
    /// Oldest segments go while the data exceeds this many bytes.
    pub max_size: Option<u64>,
}

/// Why the store's part of a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not YAML.
    #[error("config: {0}")]
    Yaml(#[source] serde_saphyr::Error),
    /// A store key has the wrong shape (e.g. `retention` is not a map).
    #[error("config: {0}")]
    Shape(#[source] serde_json::Error),
    /// A retention value is malformed.
    #[error("config {key}: {source}")]
    Value {
        /// The key, e.g. `retention.max_age`.
        key: &'static str,
        /// What is wrong with its value.
        source: UnitError,
    },
}

/// Parses a retention age (`400d`, `12h`, `2w`) into whole seconds.
pub fn parse_duration(s: &str) -> Result<u64, UnitError> {
    kaudit_units::parse_duration(s).map(|d| d.as_secs())
}

pub use kaudit_units::{parse_size, UnitError};

/// The store's part of the configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreConfig {
    /// Retention policy.
    pub retention: Retention,
    /// Encryption key file.
    pub encryption_key: Option<PathBuf>,
    /// Signing key file.
    pub signing_key: Option<PathBuf>,
    /// Where each checkpoint is published.
    pub publish_checkpoint: Option<PathBuf>,
    /// `store.trusted_key`: the verifier key file verification trusts.
    pub trusted_key: Option<PathBuf>,
    /// `store.trusted_checkpoint_dir`: a witness's checkpoints of this log.
    pub trusted_checkpoint_dir: Option<PathBuf>,
}

#[derive(serde::Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    retention: Option<RawRetention>,
    #[serde(default)]
    encryption: Option<RawEncryption>,
    #[serde(default)]
    checkpoint: Option<RawCheckpoint>,
    #[serde(default)]
    store: Option<RawStoreTrust>,
}
/// The trust keys of the server config's `store` section (others ignored).
#[derive(serde::Deserialize)]
struct RawStoreTrust {
    #[serde(default)]
    trusted_key: Option<PathBuf>,
    #[serde(default)]
    trusted_checkpoint_dir: Option<PathBuf>,
}
#[derive(serde::Deserialize)]
struct RawRetention {
    max_age: Option<String>,
    max_size: Option<String>,
}
#[derive(serde::Deserialize)]
struct RawEncryption {
    key_file: PathBuf,
}
#[derive(serde::Deserialize)]
struct RawCheckpoint {
    key_file: Option<PathBuf>,
    publish: Option<PathBuf>,
}

impl StoreConfig {
    /// Reads `retention`, `encryption`, `checkpoint` and `store.trusted_key` /
    /// `store.trusted_checkpoint_dir` from a YAML config
    /// file (other top-level keys belong to other parts of kaudit and are ignored).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let v: serde_json::Value = serde_saphyr::from_str(text).map_err(ConfigError::Yaml)?;
        let pick = serde_json::json!({
            "retention": v.get("retention"),
            "encryption": v.get("encryption"),
            "checkpoint": v.get("checkpoint"),
            "store": v.get("store").map(|st| serde_json::json!({
                "trusted_key": st.get("trusted_key"),
                "trusted_checkpoint_dir": st.get("trusted_checkpoint_dir"),
            })),
        });
        let raw: RawConfig = serde_json::from_value(pick).map_err(ConfigError::Shape)?;
        let mut c = StoreConfig::default();
        if let Some(r) = raw.retention {
            c.retention.max_age_secs = r
                .max_age
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|source| ConfigError::Value {
                    key: "retention.max_age",
                    source,
                })?;
            c.retention.max_size =
                r.max_size
                    .as_deref()
                    .map(parse_size)
                    .transpose()
                    .map_err(|source| ConfigError::Value {
                        key: "retention.max_size",
                        source,
                    })?;
        }
        c.encryption_key = raw.encryption.map(|e| e.key_file);
        if let Some(st) = raw.store {
            c.trusted_key = st.trusted_key;
            c.trusted_checkpoint_dir = st.trusted_checkpoint_dir;
        }
        if let Some(cp) = raw.checkpoint {
            c.signing_key = cp.key_file;
            c.publish_checkpoint = cp.publish;
        }
        Ok(c)
    }
}

/// A legal hold: records received in `[since, until]` must not be pruned.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    /// Identifier for `hold remove`.
    pub id: u64,
    /// Why (case number, request).
    pub reason: String,
    /// Start of the held time range (µs), open when absent.
    pub since: Option<i64>,
    /// End of the held time range (µs), open when absent.
    pub until: Option<i64>,
    /// When it was placed (RFC 3339).
    pub created: String,
}

impl Hold {
    /// Whether records received in `[min, max]` fall under this hold.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.since.is_none_or(|s| max >= s) && self.until.is_none_or(|u| min <= u)
    }
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct HoldFile {
    next_id: u64,
    holds: Vec<Hold>,
}

fn read_holds_file(dir: &Path) -> StoreResult<HoldFile> {
    let p = paths::holds(dir);
    if !p.exists() {
        return Ok(HoldFile {
            next_id: 1,
            holds: Vec::new(),
        });
    }
    let data = read_small(&p, 16 << 20)?;
    serde_json::from_slice(&data).map_err(|e| undecodable(p.display(), e))
}

/// Lists legal holds.
pub fn list_holds(dir: &Path) -> StoreResult<Vec<Hold>> {
    Ok(read_holds_file(dir)?.holds)
}

/// Places a legal hold (times as RFC 3339).
pub fn add_hold(
    dir: &Path,
    reason: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> StoreResult<Hold> {
    if reason.trim().is_empty() {
        return Err(StoreError::Input("a hold needs a --reason".into()));
    }
    let t = |s: Option<&str>| -> StoreResult<Option<i64>> {
        s.map(|s| {
            MicroTime::parse(s)
                .map(|t| t.micros())
                .map_err(StoreError::Time)
        })
        .transpose()
    };
    let (since, until) = (t(since)?, t(until)?);
    if let (Some(a), Some(b)) = (since, until) {
        if a > b {
            return Err(StoreError::Input("hold --since is after --until".into()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir.display()))?;
    let mut f = read_holds_file(dir)?;
    let hold = Hold {
        id: f.next_id.max(1),
        reason: reason.to_string(),
        since,
        until,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    f.next_id = hold.id + 1;
    f.holds.push(hold.clone());
    let data = serde_json::to_vec_pretty(&f).map_err(StoreError::Encode)?;
    write_atomic(&paths::holds(dir), &data, 0o644)?;
    Ok(hold)
}

/// Removes a hold; false when no hold has that id.
pub fn remove_hold(dir: &Path, id: u64) -> StoreResult<bool> {
    let mut f = read_holds_file(dir)?;
    let before = f.holds.len();
    f.holds.retain(|h| h.id != id);
    if f.holds.len() == before {
        return Ok(false);
    }
    let data = serde_json::to_vec_pretty(&f).map_err(StoreError::Encode)?;
    write_atomic(&paths::holds(dir), &data, 0o644)?;
    Ok(true)
}

/// What a prune did (or would do).
#[derive(Clone, Debug, Default)]
pub struct PruneOutcome {
    /// Segments deleted: (path, first seq, end seq, bytes).
    pub removed: Vec<(PathBuf, u64, u64, u64)>,
    /// Records below this are now pruned.
    pub before: u64,
    /// Why pruning stopped where it did.
    pub stopped: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_store_keys_and_ignores_the_rest() {
        let c = StoreConfig::from_yaml(
            "server: {listen: ':8443'}\nretention:\n  max_age: 400d\n  max_size: 500GiB\nencryption: {key_file: /etc/kaudit/data.key}\ncheckpoint: {publish: /srv/cp.txt}\n",
        )
        .unwrap();
        assert_eq!(c.retention.max_age_secs, Some(400 * 86_400));
        assert_eq!(c.retention.max_size, Some(500 << 30));
        assert_eq!(
            c.encryption_key,
            Some(PathBuf::from("/etc/kaudit/data.key"))
        );
        assert_eq!(c.publish_checkpoint, Some(PathBuf::from("/srv/cp.txt")));
        assert!(StoreConfig::from_yaml("retention: {max_age: forever}")
            .unwrap_err()
            .to_string()
            .contains("max_age"));
        assert_eq!(
            StoreConfig::from_yaml("{}").unwrap(),
            StoreConfig::default()
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn holds_overlap_by_receive_time() {
        let h = Hold {
            id: 1,
            reason: "r".into(),
            since: Some(100),
            until: Some(200),
            created: String::new(),
        };
        assert!(h.overlaps(150, 300));
        assert!(h.overlaps(0, 100));
        assert!(!h.overlaps(201, 300));
        assert!(!h.overlaps(0, 99));
    }
}
