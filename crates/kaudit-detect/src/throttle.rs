//! Throttling of notifications (never of alerts, which are all kept): one
//! per rule and key (by default the user) per window, the next one carrying
//! the count of those held back.

use crate::StoredAlert;
use kaudit_event::MicroTime;
use std::collections::HashMap;
use std::time::Duration;

/// Holds back repeated notifications per (rule, key) within a window.
pub struct Throttle {
    window: Duration,
    key_fields: Vec<String>,
    last: HashMap<(String, String), (i64, u64)>,
}

impl Throttle {
    /// A throttle with the given window and key fields.
    pub fn new(window: Duration, key_fields: Vec<String>) -> Throttle {
        Throttle {
            window,
            key_fields,
            last: HashMap::new(),
        }
    }

    /// `Some(suppressed_before)` when the alert should be sent (with how many
    /// were held back since the last one sent), `None` when it is held back.
    /// Time is the event's, so replays throttle as live traffic would.
    pub fn admit(&mut self, a: &StoredAlert, now: MicroTime) -> Option<u64> {
        if self.window.is_zero() {
            return Some(0);
        }
        let key: Vec<&str> = self
            .key_fields
            .iter()
            .map(|k| {
                a.output_fields
                    .get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("<NA>")
            })
            .collect();
        let k = (a.rule.clone(), key.join("\u{1f}"));
        let window = self.window.as_micros() as i64;
        match self.last.get_mut(&k) {
            Some((sent_at, held)) if now.micros() - *sent_at < window => {
                *held += 1;
                None
            }
            Some((sent_at, held)) => {
                let n = *held;
                *sent_at = now.micros();
                *held = 0;
                Some(n)
            }
            None => {
                if self.last.len() > 100_000 {
                    // Bound memory: forget keys whose window has passed.
                    self.last.retain(|_, (t, _)| now.micros() - *t < window);
                }
                self.last.insert(k, (now.micros(), 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn alert(rule: &str, user: &str, seq: u64) -> StoredAlert {
        let mut f = serde_json::Map::new();
        f.insert(
            "ka.user.name".into(),
            serde_json::Value::String(user.into()),
        );
        StoredAlert {
            seq,
            cluster: "c".into(),
            audit_id: format!("id{seq}"),
            rule: rule.into(),
            priority: "Warning".into(),
            time: "2026-01-01T00:00:00.000000Z".into(),
            output: "x".into(),
            output_fields: f,
            tags: vec![],
        }
    }

    #[test]
    fn throttle_holds_back_per_rule_and_user_and_counts() {
        let mut t = Throttle::new(Duration::from_secs(600), vec!["ka.user.name".into()]);
        let t0 = MicroTime(1_000_000_000_000);
        let min = |m: i64| MicroTime(t0.micros() + m * 60_000_000);
        assert_eq!(t.admit(&alert("R", "alice", 1), t0), Some(0));
        assert_eq!(t.admit(&alert("R", "alice", 2), min(1)), None);
        assert_eq!(t.admit(&alert("R", "alice", 3), min(2)), None);
        assert_eq!(
            t.admit(&alert("R", "bob", 4), min(2)),
            Some(0),
            "another user"
        );
        assert_eq!(
            t.admit(&alert("S", "alice", 5), min(2)),
            Some(0),
            "another rule"
        );
        assert_eq!(
            t.admit(&alert("R", "alice", 6), min(11)),
            Some(2),
            "window over: the count of held-back alerts"
        );
        let mut off = Throttle::new(Duration::ZERO, vec![]);
        assert_eq!(off.admit(&alert("R", "a", 1), t0), Some(0));
        assert_eq!(off.admit(&alert("R", "a", 2), t0), Some(0));
    }
}
