//! Throttling of notifications (never of alerts, which are all kept): one
//! per rule, cluster and key (by default the user) per window, the next one
//! carrying the count of those held back.
//!
//! The window runs on the time kaudit received the event
//! ([`StoredAlert::throttle_time`]), never on the time the event claims: an
//! event dated 2099 would otherwise hold back every later alert of its rule
//! and user. The cluster is part of the key, so one cluster's events never
//! silence another's.

use crate::StoredAlert;
use kaudit_event::MicroTime;
use std::collections::HashMap;
use std::time::Duration;

/// (rule, cluster, key fields joined).
type Key = (String, String, String);

/// Holds back repeated notifications per (rule, cluster, key) within a window.
pub struct Throttle {
    window: Duration,
    key_fields: Vec<String>,
    last: HashMap<Key, (i64, u64)>,
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
    /// `now` is the alert's receive time ([`StoredAlert::throttle_time`]), so
    /// replays throttle as live traffic did. A time before the last one sent
    /// (a clock step back, or an old line's forged event time) never holds
    /// an alert back.
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
        let k = (a.rule.clone(), a.cluster.clone(), key.join("\u{1f}"));
        let window = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        let within = |sent_at: i64| (0..window).contains(&now.micros().saturating_sub(sent_at));
        match self.last.get_mut(&k) {
            Some((sent_at, held)) if within(*sent_at) => {
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
                    self.last.retain(|_, (t, _)| within(*t));
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
            received: None,
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

    #[test]
    fn a_forged_event_time_from_another_cluster_does_not_silence_later_alerts() {
        let mut t = Throttle::new(Duration::from_secs(600), vec!["ka.user.name".into()]);
        let t0 = MicroTime::parse("2026-01-01T00:00:00Z").unwrap();
        let at = |a: &mut StoredAlert, m: i64| {
            a.received = Some(MicroTime(t0.micros() + m * 60_000_000).to_string());
        };
        // "Events Deleted" from another cluster, claiming to happen in 2099.
        let mut forged = alert("Events Deleted", "alice", 1);
        forged.cluster = "lab".into();
        forged.time = "2099-01-01T00:00:00.000000Z".into();
        at(&mut forged, 0);
        let send = |t: &mut Throttle, a: &StoredAlert| t.admit(a, a.throttle_time().unwrap());
        assert_eq!(send(&mut t, &forged), Some(0));
        // The real events of the same user on prod, received later, are notified.
        let mut real = alert("Events Deleted", "alice", 2);
        real.cluster = "prod".into();
        at(&mut real, 1);
        assert_eq!(send(&mut t, &real), Some(0), "another cluster's key");
        // The same forgery on prod itself holds back only for its window of receive time.
        let mut forged_prod = forged.clone();
        forged_prod.cluster = "prod".into();
        at(&mut forged_prod, 20);
        assert_eq!(send(&mut t, &forged_prod), Some(0));
        let mut later = real.clone();
        at(&mut later, 25);
        assert_eq!(send(&mut t, &later), None, "within the window");
        at(&mut later, 31);
        assert_eq!(send(&mut t, &later), Some(1), "window over by receive time");
        // An old line (no receive time) dated 2099 cannot hold back what follows.
        let mut old = alert("Old", "bob", 3);
        old.time = "2099-01-01T00:00:00.000000Z".into();
        assert_eq!(send(&mut t, &old), Some(0));
        let mut next = alert("Old", "bob", 4);
        at(&mut next, 40);
        assert_eq!(send(&mut t, &next), Some(0), "time before the last sent");
    }

    #[test]
    fn old_alert_lines_without_a_receive_time_still_load() {
        let line = r#"{"seq":1,"cluster":"c","audit_id":"a","rule":"R","priority":"Warning","time":"2026-01-01T00:00:00.000000Z","output":"x","output_fields":{},"tags":[]}"#;
        let a: StoredAlert = serde_json::from_str(line).unwrap();
        assert_eq!(a.received, None);
        assert_eq!(
            a.throttle_time(),
            Some(MicroTime::parse("2026-01-01T00:00:00Z").unwrap())
        );
    }
}
