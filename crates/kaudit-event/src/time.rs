//! Timestamps as kube-apiserver writes them (`metav1.MicroTime`).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use std::fmt;

/// A point in time with microsecond precision, as `metav1.MicroTime`.
///
/// Stored as microseconds since the Unix epoch so it is cheap to compare,
/// index and subtract (latency = stageTimestamp - requestReceivedTimestamp).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroTime(pub i64);

/// Why a timestamp string was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("invalid timestamp {0:?}: want RFC 3339, e.g. 2026-01-02T15:04:05.123456Z")]
pub struct TimeError(pub String);

impl MicroTime {
    /// Parses RFC 3339 with any number of fractional digits and any offset;
    /// digits beyond microseconds are truncated, as Go's formatting does.
    pub fn parse(s: &str) -> Result<Self, TimeError> {
        let dt = DateTime::parse_from_rfc3339(s).map_err(|_| TimeError(s.to_string()))?;
        let utc = dt.with_timezone(&Utc);
        Ok(MicroTime(
            utc.timestamp()
                .checked_mul(1_000_000)
                .and_then(|v| v.checked_add(i64::from(utc.timestamp_subsec_micros())))
                .ok_or_else(|| TimeError(s.to_string()))?,
        ))
    }

    /// Microseconds since the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// The current time.
    pub fn now() -> Self {
        let now = Utc::now();
        MicroTime(now.timestamp() * 1_000_000 + i64::from(now.timestamp_subsec_micros()))
    }

    fn to_datetime(self) -> Option<DateTime<Utc>> {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000) as u32;
        Utc.timestamp_opt(secs, micros * 1000).single()
    }

    /// Appends the kube-apiserver form: UTC, exactly six fractional digits, `Z`.
    pub fn write(self, out: &mut Vec<u8>) {
        match self.to_datetime() {
            Some(dt) => {
                let naive: NaiveDateTime = dt.naive_utc();
                let s = naive.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                out.extend_from_slice(s.as_bytes());
            }
            None => out.extend_from_slice(b"0001-01-01T00:00:00.000000Z"),
        }
    }

    /// RFC 3339 with seconds precision (`metav1.Time`), used by v1beta1 `timestamp`.
    pub fn to_rfc3339_seconds(self) -> String {
        self.to_datetime()
            .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
            .unwrap_or_default()
    }
}

impl fmt::Display for MicroTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::with_capacity(27);
        self.write(&mut out);
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_six_digits_utc() {
        let t = MicroTime::parse("2017-09-05T06:08:19.885328047-04:00").unwrap();
        assert_eq!(t.to_string(), "2017-09-05T10:08:19.885328Z");
        let t = MicroTime::parse("2017-09-05T10:04:55Z").unwrap();
        assert_eq!(t.to_string(), "2017-09-05T10:04:55.000000Z");
        assert!(MicroTime::parse("yesterday").is_err());
    }

    proptest::proptest! {
        #[test]
        fn round_trips(m in -62_000_000_000_000_000i64..250_000_000_000_000_000i64) {
            let t = MicroTime(m);
            proptest::prop_assert_eq!(MicroTime::parse(&t.to_string()).unwrap(), t);
        }
    }
}
