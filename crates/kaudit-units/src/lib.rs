//! Sizes and durations as people write them in kaudit's config file, flags
//! and reports: `64MiB`, `10GB`, `500ms`, `30s`, `400d`.
//!
//! One parser for every stage, so `ingest.max_body`, a sink's
//! `batch_timeout`, `retention.max_age` and `kaudit alerts --since` accept the
//! same spellings and refuse the same mistakes with the same words. Every
//! value is bounded (a duration at most [`MAX_DURATION`], a size at most
//! `u64::MAX` bytes): an absurd number is an error, never a wrap-around.

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// The longest duration any setting takes: 100 years (retention of audit
/// evidence is counted in years, nothing sensible is longer).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

/// A size or duration that does not parse, with the text and what was wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The number part is missing or not a number.
    #[error("invalid {what} {text:?}: want a number and a unit, e.g. {example}")]
    Number {
        /// `size` or `duration`.
        what: &'static str,
        /// The text as given.
        text: String,
        /// A valid example.
        example: &'static str,
    },
    /// The unit is not one this kind of value takes.
    #[error("invalid {what} unit {unit:?} in {text:?}: want {units}")]
    Unit {
        /// `size` or `duration`.
        what: &'static str,
        /// The unit as given.
        unit: String,
        /// The text as given.
        text: String,
        /// The units accepted.
        units: &'static str,
    },
    /// The value is larger than the type or the bound allows.
    #[error("{what} {text:?} is out of range (at most {max})")]
    Range {
        /// `size` or `duration`.
        what: &'static str,
        /// The text as given.
        text: String,
        /// The bound, as text.
        max: &'static str,
    },
}

const SIZE_UNITS: &str = "B, kB, MB, GB, TB, KiB, MiB, GiB or TiB";
const DURATION_UNITS: &str = "ms, s, m, h, d or w";

/// Splits `12.5GiB` into `("12.5", "GiB")`.
fn split_number(s: &str) -> (&str, &str) {
    let at = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, u) = s.split_at(at);
    (n, u.trim())
}

/// `num * mult` exactly for whole numbers, else through `f64`; `None` past
/// `u64::MAX`.
fn scale(num: &str, mult: u64) -> Option<u64> {
    match num.parse::<u64>() {
        Ok(n) => n.checked_mul(mult),
        Err(_) => {
            let f: f64 = num.parse().ok()?;
            let v = f * mult as f64;
            (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
        }
    }
}

/// Parses a size: `4096`, `64MiB`, `1.5GiB`, `500GB` (units are
/// case-insensitive; `k`, `Mi` and friends without the `B` work too).
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let text = s.trim();
    let (num, unit) = split_number(text);
    if num.is_empty() || num.parse::<f64>().is_err() {
        return Err(UnitError::Number {
            what: "size",
            text: text.to_string(),
            example: "64MiB",
        });
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => {
            return Err(UnitError::Unit {
                what: "size",
                unit: unit.to_string(),
                text: text.to_string(),
                units: SIZE_UNITS,
            })
        }
    };
    scale(num, mult).ok_or_else(|| UnitError::Range {
        what: "size",
        text: text.to_string(),
        max: "16EiB",
    })
}

/// Parses a duration: `500ms`, `30s`, `10m`, `2h`, `400d`, `2w`, or a bare
/// number of seconds (`30`, `0.5`). At most [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let text = s.trim();
    let (num, unit) = split_number(text);
    if num.is_empty() || num.parse::<f64>().is_err() {
        return Err(UnitError::Number {
            what: "duration",
            text: text.to_string(),
            example: "30s",
        });
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => {
            return Err(UnitError::Unit {
                what: "duration",
                unit: unit.to_string(),
                text: text.to_string(),
                units: DURATION_UNITS,
            })
        }
    };
    let range = || UnitError::Range {
        what: "duration",
        text: text.to_string(),
        max: "100 years",
    };
    // Fractions of a millisecond matter only below a second: keep them there.
    let d = match num.parse::<u64>() {
        Ok(n) => Duration::from_millis(n.checked_mul(millis_per_unit).ok_or_else(range)?),
        Err(_) => {
            let f: f64 = num.parse().map_err(|_| range())?;
            let secs = f * millis_per_unit as f64 / 1000.0;
            if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
                return Err(range());
            }
            Duration::from_secs_f64(secs)
        }
    };
    if d > MAX_DURATION {
        return Err(range());
    }
    Ok(d)
}

/// Bytes for people, in binary units with one decimal: `512 B`, `1.5 MiB`.
/// Every report and progress line uses this one form.
pub fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A config value written as a number or a string (`4096` or `"4KiB"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Whole(u64),
    Fraction(f64),
    Text(String),
}

/// Serde `deserialize_with` for a size: a number of bytes or a string such as
/// `64MiB`.
pub fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Whole(n) => Ok(n),
        NumOrText::Fraction(f) => parse_size(&f.to_string()).map_err(serde::de::Error::custom),
        NumOrText::Text(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

/// [`de_size`] for an optional setting.
pub fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_size(d).map(Some)
}

/// Serde `deserialize_with` for a duration: a number of seconds or a string
/// such as `30s`.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Whole(n) => parse_duration(&n.to_string()),
        NumOrText::Fraction(f) => parse_duration(&f.to_string()),
        NumOrText::Text(s) => parse_duration(&s),
    }
    .map_err(serde::de::Error::custom)
}

/// [`de_duration`] for an optional setting.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size(" 2 GB "), Ok(2_000_000_000));
        let e = parse_size("5 parsecs").unwrap_err().to_string();
        assert!(e.contains("\"parsecs\"") && e.contains("MiB"), "{e}");
        assert!(parse_size("MiB").is_err());
        assert!(matches!(
            parse_size("99999999999TiB"),
            Err(UnitError::Range { .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(
            parse_duration("400d"),
            Ok(Duration::from_secs(400 * 86_400))
        );
        let e = parse_duration("5y").unwrap_err().to_string();
        assert!(
            e.contains("\"y\"") && e.contains("ms, s, m, h, d or w"),
            "{e}"
        );
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(UnitError::Range { .. })
        ));
        assert!(matches!(
            parse_duration("40000d"),
            Err(UnitError::Range { .. })
        ));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
    }

    #[test]
    fn config_values_as_numbers_or_text() {
        #[derive(Deserialize)]
        struct C {
            #[serde(deserialize_with = "de_size")]
            size: u64,
            #[serde(deserialize_with = "de_duration")]
            wait: Duration,
        }
        let c: C = serde_json::from_str(r#"{"size":"2KiB","wait":"250ms"}"#).unwrap();
        assert_eq!((c.size, c.wait), (2048, Duration::from_millis(250)));
        let c: C = serde_json::from_str(r#"{"size":10,"wait":1.5}"#).unwrap();
        assert_eq!((c.size, c.wait), (10, Duration::from_millis(1500)));
        let e = serde_json::from_str::<C>(r#"{"size":"2 parsecs","wait":1}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("parsecs"), "{e}");
    }

    proptest! {
        #[test]
        fn whole_durations_round_trip(n in 0u64..1_000_000, unit in 0usize..6) {
            let (u, ms) = [("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000)][unit];
            let want = Duration::from_millis(n * ms);
            let got = parse_duration(&format!("{n}{u}"));
            if want <= MAX_DURATION {
                prop_assert_eq!(got, Ok(want));
            } else {
                let is_range = matches!(got, Err(UnitError::Range { .. }));
                prop_assert!(is_range);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
            let _ = parse_duration(&s);
        }
    }
}
