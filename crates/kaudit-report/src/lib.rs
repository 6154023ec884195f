//! Compliance evidence: reports an outsider can check without trusting
//! whoever made them.
//!
//! A [`template::Template`] (YAML, built in: `pci-dss`, `soc2`, `cis`) lists
//! sections answered by kaudit queries over a period. [`build::build`]
//! answers them from the store and its search backend and gathers, for every
//! listed row, the event's exact bytes and its inclusion proof against one
//! signed anchor checkpoint, plus a consistency proof from the period's
//! first checkpoint to the anchor. [`bundle::write`] packs that into one
//! `.tar.zst` with a manifest of every file's SHA-256 signed with the log's
//! Ed25519 key; [`bundle::verify`] checks a bundle offline with nothing but
//! its bytes (and, better, a trusted verifier key). [`html::render`] makes a
//! self-contained HTML page that embeds the bundle's files and the console's
//! proof checker, so a browser runs the same checks.
//!
//! What a report proves and what it only claims is stated in
//! [`model::PROOF_STATEMENT`], which every report carries.

#![warn(missing_docs)]

pub mod build;
pub mod bundle;
pub mod html;
pub mod model;
pub mod pdf;
pub mod tar;
pub mod template;

pub use build::{build, Evidence, Inputs, ReportRequest};
pub use bundle::{verify, Failure, Verified};
pub use model::{Report, Row, Section};
pub use template::{SectionKind, Template};

/// Everything making a report can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A template that does not parse or check: names the file and section.
    #[error("template: {0}")]
    Template(String),
    /// Bad caller input (period, clusters).
    #[error("{0}")]
    Input(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] kaudit_store::StoreError),
    /// The search backend failed.
    #[error("search: {0}")]
    Index(#[from] kaudit_index::IndexError),
    /// The alert log could not be read.
    #[error("alerts: {0}")]
    Alerts(#[from] kaudit_detect::DetectError),
    /// Writing or reading a bundle failed.
    #[error("{context}: {source}")]
    Io {
        /// The file.
        context: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A bundle that is not a well-formed archive (names the entry).
    #[error("bundle: {0}")]
    Bundle(String),
    /// Printing the PDF failed (or Chromium is not installed).
    #[error("pdf: {0}")]
    Pdf(String),
    /// The report took longer than its time budget (`query.timeout`).
    #[error("the report took longer than its time budget of {0:?} (query.timeout): report on a shorter period or fewer clusters, or use `kaudit report`")]
    TimedOut(std::time::Duration),
    /// JSON encoding failed.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Parses `--period`: a month `2026-11` (UTC), returning `[since, until)` in µs.
pub fn parse_month(s: &str) -> Result<(i64, i64), ReportError> {
    let bad = || ReportError::Input(format!("--period {s:?}: want a month like 2026-11"));
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    let y: i32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if !(1970..=9000).contains(&y) || !(1..=12).contains(&m) || s.len() != 7 {
        return Err(bad());
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let t = |y: i32, m: u32| {
        kaudit_event::MicroTime::parse(&format!("{y:04}-{m:02}-01T00:00:00Z"))
            .map(|t| t.micros())
            .map_err(|_| bad())
    };
    Ok((t(y, m)?, t(ny, nm)?))
}
