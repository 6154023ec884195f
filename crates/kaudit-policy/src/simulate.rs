//! Simulation: what a policy would have kept of recorded traffic.
//!
//! Feed it a stream logged at RequestResponse (the most kube-apiserver can
//! record) and it reports, per rule, the events and bytes kept and dropped,
//! the noisiest (user, verb, resource) triples under the policy, and the
//! projected log size per day. Bytes are JSON-line bytes including the
//! newline, i.e. what the log backend writes to disk.

use crate::apply::{ApplyOptions, Outcome, PolicyApplier};
use crate::eval::RequestAttributes;
use crate::model::Policy;
use kaudit_event::Event;
use serde::Serialize;
use std::collections::HashMap;

/// Most distinct (user, verb, resource) triples tracked; the rest are
/// counted under one `(other)` entry so memory stays bounded.
pub const MAX_TRACKED_KEYS: usize = 200_000;

/// Event and byte counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Events seen.
    pub events_in: u64,
    /// Events the policy keeps.
    pub events_kept: u64,
    /// Events the policy drops.
    pub events_dropped: u64,
    /// Bytes seen (JSON line + newline).
    pub bytes_in: u64,
    /// Bytes written after applying the policy.
    pub bytes_kept: u64,
}

impl Counts {
    fn add(&mut self, bytes_in: u64, kept: Option<u64>) {
        self.events_in += 1;
        self.bytes_in += bytes_in;
        match kept {
            Some(b) => {
                self.events_kept += 1;
                self.bytes_kept += b;
            }
            None => self.events_dropped += 1,
        }
    }
}

/// Counts for one rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleReport {
    /// Rule index; `None` for requests no rule matched.
    pub rule: Option<usize>,
    /// The rule's level (`None` for unmatched).
    pub level: String,
    /// The rule as JSON (empty for unmatched).
    pub text: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One (user, verb, resource) triple's counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopEntry {
    /// User name.
    pub user: String,
    /// Verb.
    pub verb: String,
    /// `resource[/subresource]` (with `group/` prefix outside core), or the
    /// path for non-resource requests.
    pub resource: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// The result of a simulation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// All events.
    pub total: Counts,
    /// Per rule, in rule order, then unmatched; rules that saw no event are included.
    pub rules: Vec<RuleReport>,
    /// Noisiest triples by bytes kept, then bytes seen.
    pub top: Vec<TopEntry>,
    /// Seconds between the earliest and latest timestamps seen.
    pub span_seconds: f64,
    /// Kept bytes scaled to 24 hours (`None` when the span is zero).
    pub projected_bytes_per_day: Option<f64>,
    /// Kept events scaled to 24 hours.
    pub projected_events_per_day: Option<f64>,
}

/// Accumulates a simulation one event at a time.
pub struct Simulator {
    applier: PolicyApplier,
    per_rule: Vec<Counts>,
    unmatched: Counts,
    total: Counts,
    top: HashMap<(String, String, String), Counts>,
    min_ts: Option<i64>,
    max_ts: Option<i64>,
}

impl Simulator {
    /// A simulator for `policy` (redaction as in `opts`, since it changes sizes).
    pub fn new(policy: Policy, opts: ApplyOptions) -> Simulator {
        let n = policy.rules.len();
        Simulator {
            applier: PolicyApplier::new(policy, opts),
            per_rule: vec![Counts::default(); n],
            unmatched: Counts::default(),
            total: Counts::default(),
            top: HashMap::new(),
            min_ts: None,
            max_ts: None,
        }
    }

    /// Accounts one event.
    pub fn add(&mut self, event: Event) {
        let cfg = self
            .applier
            .compiled()
            .evaluate(&RequestAttributes::from_event(&event));
        let bytes_in = event.bytes().len() as u64 + 1;
        for ts in [event.request_received_timestamp(), event.stage_timestamp()]
            .into_iter()
            .flatten()
        {
            let t = ts.micros();
            self.min_ts = Some(self.min_ts.map_or(t, |m| m.min(t)));
            self.max_ts = Some(self.max_ts.map_or(t, |m| m.max(t)));
        }
        let key = top_key(&event);
        let kept = match self.applier.apply_config(event, cfg) {
            Outcome::Keep(e) => Some(e.bytes().len() as u64 + 1),
            Outcome::Drop(_) => None,
        };
        self.total.add(bytes_in, kept);
        match cfg.rule {
            Some(i) => self.per_rule[i].add(bytes_in, kept),
            None => self.unmatched.add(bytes_in, kept),
        }
        let key = if self.top.len() >= MAX_TRACKED_KEYS && !self.top.contains_key(&key) {
            ("(other)".to_string(), String::new(), String::new())
        } else {
            key
        };
        self.top.entry(key).or_default().add(bytes_in, kept);
    }

    /// The report, with the `top_n` noisiest triples.
    pub fn finish(self, top_n: usize) -> Report {
        let policy = self.applier.compiled().policy();
        let mut rules: Vec<RuleReport> = policy
            .rules
            .iter()
            .zip(&self.per_rule)
            .enumerate()
            .map(|(i, (r, c))| RuleReport {
                rule: Some(i),
                level: r.level.to_string(),
                text: r.to_json(),
                counts: *c,
            })
            .collect();
        rules.push(RuleReport {
            rule: None,
            level: "None".into(),
            text: String::new(),
            counts: self.unmatched,
        });
        let mut top: Vec<TopEntry> = self
            .top
            .into_iter()
            .map(|((user, verb, resource), counts)| TopEntry {
                user,
                verb,
                resource,
                counts,
            })
            .collect();
        top.sort_by(|a, b| {
            (b.counts.bytes_kept, b.counts.bytes_in)
                .cmp(&(a.counts.bytes_kept, a.counts.bytes_in))
                .then_with(|| (&a.user, &a.verb, &a.resource).cmp(&(&b.user, &b.verb, &b.resource)))
        });
        top.truncate(top_n);
        let span_us = match (self.min_ts, self.max_ts) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        let span_seconds = span_us as f64 / 1e6;
        let per_day = |v: u64| (span_us > 0).then(|| v as f64 * 86_400.0 / span_seconds);
        Report {
            total: self.total,
            rules,
            top,
            span_seconds,
            projected_bytes_per_day: per_day(self.total.bytes_kept),
            projected_events_per_day: per_day(self.total.events_kept),
        }
    }
}

fn top_key(event: &Event) -> (String, String, String) {
    let resource = match event.object_ref() {
        Some(o) => {
            let mut s = String::new();
            if !o.api_group.is_empty() {
                s.push_str(&o.api_group);
                s.push('/');
            }
            s.push_str(&o.resource);
            if !o.subresource.is_empty() {
                s.push('/');
                s.push_str(&o.subresource);
            }
            s
        }
        None => {
            let uri = event.request_uri();
            uri.split_once('?').map_or(uri, |(p, _)| p).to_string()
        }
    };
    (
        event.user().username.clone(),
        event.verb().to_string(),
        resource,
    )
}
