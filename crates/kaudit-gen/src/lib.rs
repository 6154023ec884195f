#![warn(missing_docs)]

//! Deterministic generator of realistic kube-apiserver audit traffic.
//!
//! `kaudit gen` and the server's demo mode need audit logs that look like a
//! real cluster's (kubelets renewing leases, controllers reconciling, people
//! running kubectl, CI deploying, probes, scanners hitting the endpoint) in
//! the exact bytes kube-apiserver writes, plus attacks whose ground truth is
//! known so search and detection can be scored. Everything is derived from a
//! seed: the same [`GenConfig`] always yields the same bytes.
//!
//! ```
//! use kaudit_gen::{GenConfig, Generator};
//! let mut config = GenConfig::new(7);
//! config.events = Some(100);
//! let mut generator = Generator::new(config).unwrap();
//! let mut line = Vec::new();
//! while let Some(cluster) = generator.next_into(&mut line) {
//!     assert_eq!(cluster, 0);
//!     line.clear();
//! }
//! ```

mod bodies;
mod incidents;
mod traffic;
mod world;
mod write;

pub use incidents::{Incident, IncidentKind};

use kaudit_event::{Event, EventError, MicroTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use world::Cluster;
use write::TimeFmt;

/// Most clusters one generator simulates; each holds its own world.
pub const MAX_CLUSTERS: usize = 256;
/// Highest simulated event rate accepted (events per simulated second).
pub const MAX_RATE: f64 = 10_000_000.0;
/// Pending (not yet written) events above which long-running requests are
/// cut short, so memory stays bounded whatever the rate.
pub const MAX_PENDING: usize = 200_000;
/// The default start of simulated time: fixed so output is reproducible.
pub const DEFAULT_START: &str = "2026-01-05T09:00:00Z";
/// Default simulated event rate: a busy medium-sized cluster.
pub const DEFAULT_RATE: f64 = 200.0;
/// How many namespaces a cluster deletes per simulated day, on average
/// (preview environments torn down). Each deletion makes the namespace
/// controller send a burst of `deletecollection` requests, so the bursts
/// follow simulated time, not the event count: at [`DEFAULT_RATE`] one
/// comes every few million events, as in a real cluster's log.
pub const NAMESPACE_DELETIONS_PER_DAY: f64 = 4.0;

/// Why a configuration cannot be generated from.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// Zero clusters, or more than [`MAX_CLUSTERS`].
    #[error("cluster count {0} is out of range: want 1 to {MAX_CLUSTERS}")]
    ClusterCount(usize),
    /// A cluster name that is empty, too long, duplicated or not usable as a file name.
    #[error("invalid cluster name {0:?}: want 1-63 characters of [A-Za-z0-9._-], not starting with '.', unique")]
    ClusterName(String),
    /// A rate that is not a positive finite number up to [`MAX_RATE`].
    #[error("invalid rate {0}: want events per second greater than 0 and at most {MAX_RATE}")]
    Rate(f64),
    /// A start time outside the years 1970 to 9000.
    #[error("start time {0} is out of range: want a time between 1970 and 9000")]
    Start(MicroTime),
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of events to write; `None` for an endless stream (demo mode).
    pub events: Option<u64>,
    /// Cluster names; events of all clusters are interleaved in one stream.
    pub clusters: Vec<String>,
    /// Simulated time of the first request.
    pub start: MicroTime,
    /// Events per second of simulated time (timestamps advance by it).
    pub rate: f64,
    /// Inject one incident every this many events (0: no incidents). The
    /// kinds rotate through [`IncidentKind::ALL`].
    pub incident_every: u64,
}

impl GenConfig {
    /// One cluster, endless, default start and rate, an incident every 20k events.
    pub fn new(seed: u64) -> GenConfig {
        GenConfig {
            seed,
            events: None,
            clusters: default_cluster_names(1),
            start: MicroTime::parse(DEFAULT_START).unwrap_or(MicroTime(1_767_603_600_000_000)),
            rate: DEFAULT_RATE,
            incident_every: 20_000,
        }
    }

    /// Spreads the incidents over a finite stream so that every kind appears
    /// once per tenth of it (and at least every 8 events for tiny streams).
    pub fn spread_incidents(&mut self) {
        if let Some(n) = self.events {
            self.incident_every = (n / 10).max(8);
        }
    }
}

/// Names for `k` clusters: realistic ones first, then `cluster-N`.
pub fn default_cluster_names(k: usize) -> Vec<String> {
    const NAMES: &[&str] = &[
        "prod-eu-west-1",
        "prod-us-east-1",
        "staging-eu-west-1",
        "dev-eu-west-1",
        "prod-ap-southeast-1",
        "ci-shared",
    ];
    (0..k)
        .map(|i| match NAMES.get(i) {
            Some(n) => (*n).to_string(),
            None => format!("cluster-{}", i + 1),
        })
        .collect()
}

fn valid_cluster_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && !n.starts_with('.')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One generated event and the cluster it belongs to (a raw audit event has
/// no cluster field, so the generator says it alongside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedEvent {
    /// Index into [`Generator::cluster_names`].
    pub cluster: usize,
    /// The event as a v1 JSON line, without newline.
    pub bytes: Vec<u8>,
}

impl GeneratedEvent {
    /// Parses the bytes into a [`kaudit_event::Event`] (keeps them as they are).
    pub fn event(&self) -> Result<Event, EventError> {
        Event::from_json(&self.bytes)
    }
}

const NO_TAG: u32 = u32::MAX;

/// Events written but not yet due, ordered by stage timestamp, so that the
/// stream is in the order an audit log backend writes it.
pub(crate) struct Sched {
    heap: BinaryHeap<Reverse<(i64, u64, u32)>>,
    slots: Vec<Vec<u8>>,
    meta: Vec<(u16, u32)>,
    free: Vec<u32>,
    seq: u64,
    /// Events scheduled so far (drives the rate and incident placement).
    pub(crate) scheduled: u64,
    pub(crate) tf: TimeFmt,
}

impl Sched {
    fn new() -> Sched {
        Sched {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            meta: Vec::new(),
            free: Vec::new(),
            seq: 0,
            scheduled: 0,
            tf: TimeFmt::new(),
        }
    }

    /// Writes one event line and queues it for time `at`; `tag` marks the
    /// first event of an incident's request.
    pub(crate) fn push(&mut self, cluster: u16, tag: u32, line: &write::Line<'_>) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Vec::with_capacity(2048));
                self.meta.push((0, NO_TAG));
                (self.slots.len() - 1) as u32
            }
        };
        let buf = &mut self.slots[slot as usize];
        buf.clear();
        write::write_line(buf, &mut self.tf, line);
        self.meta[slot as usize] = (cluster, tag);
        self.seq += 1;
        self.scheduled += 1;
        self.heap.push(Reverse((line.at, self.seq, slot)));
    }

    /// Number of queued events.
    pub(crate) fn pending(&self) -> usize {
        self.heap.len()
    }
}

struct OpenIncident {
    incident: Incident,
    remaining: u32,
}

/// The generator: an iterator of [`GeneratedEvent`] with a faster
/// [`Generator::next_into`], plus the ground truth of injected incidents.
pub struct Generator {
    rng: ChaCha8Rng,
    clusters: Vec<Cluster>,
    names: Vec<String>,
    sched: Sched,
    scratch: traffic::Scratch,
    clock: f64,
    mean_gap_us: f64,
    limit: Option<u64>,
    emitted: u64,
    incident_every: u64,
    next_incident_at: u64,
    incident_cursor: usize,
    open: Vec<OpenIncident>,
    published: Vec<Incident>,
    /// Simulated time (micros) of each cluster's next namespace deletion.
    next_deletion: Vec<f64>,
}

impl Generator {
    /// Builds the simulated clusters for `config`.
    pub fn new(config: GenConfig) -> Result<Generator, GenError> {
        let k = config.clusters.len();
        if k == 0 || k > MAX_CLUSTERS {
            return Err(GenError::ClusterCount(k));
        }
        for (i, n) in config.clusters.iter().enumerate() {
            if !valid_cluster_name(n) || config.clusters[..i].contains(n) {
                return Err(GenError::ClusterName(n.clone()));
            }
        }
        if !(config.rate.is_finite() && config.rate > 0.0 && config.rate <= MAX_RATE) {
            return Err(GenError::Rate(config.rate));
        }
        // 1970-01-01 .. 9000-01-01
        if !(0..=221_845_392_000_000_000).contains(&config.start.micros()) {
            return Err(GenError::Start(config.start));
        }
        let mut world_rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x6b61_7564_6974_0001);
        let clusters = config
            .clusters
            .iter()
            .enumerate()
            .map(|(i, n)| Cluster::build(i, n, &mut world_rng))
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let scratch = traffic::Scratch::new(&mut rng);
        let every = config.incident_every;
        let start = config.start.micros() as f64;
        let next_deletion = (0..k).map(|_| start + deletion_gap_us(&mut rng)).collect();
        Ok(Generator {
            rng,
            clusters,
            names: config.clusters,
            sched: Sched::new(),
            scratch,
            clock: config.start.micros() as f64,
            mean_gap_us: 1e6 / config.rate,
            limit: config.events,
            emitted: 0,
            incident_every: every,
            next_incident_at: if every == 0 { u64::MAX } else { every / 2 },
            incident_cursor: 0,
            open: Vec::new(),
            published: Vec::new(),
            next_deletion,
        })
    }

    /// Cluster names, indexed by [`GeneratedEvent::cluster`].
    pub fn cluster_names(&self) -> &[String] {
        &self.names
    }

    /// Incidents whose every request has appeared in the stream so far.
    pub fn incidents(&self) -> &[Incident] {
        &self.published
    }

    /// Events written so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Appends the next event (a v1 JSON line, no newline) to `out` and
    /// returns its cluster index, or `None` when the configured count is
    /// reached. Allocation-free in steady state.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        if self.limit.is_some_and(|l| self.emitted >= l) {
            return None;
        }
        loop {
            if let Some(&Reverse((at, _, slot))) = self.sched.heap.peek() {
                if at as f64 <= self.clock {
                    self.sched.heap.pop();
                    let s = slot as usize;
                    out.extend_from_slice(&self.sched.slots[s]);
                    let (cluster, tag) = self.sched.meta[s];
                    self.sched.free.push(slot);
                    if tag != NO_TAG {
                        self.request_seen(tag);
                    }
                    self.emitted += 1;
                    return Some(usize::from(cluster));
                }
            }
            self.generate();
        }
    }

    fn request_seen(&mut self, tag: u32) {
        if let Some(open) = self.open.get_mut(tag as usize) {
            open.remaining = open.remaining.saturating_sub(1);
            if open.remaining == 0 {
                self.published.push(open.incident.clone());
            }
        }
    }

    /// Simulates one request (or one incident) at the current clock and
    /// advances the clock by the events it produced.
    fn generate(&mut self) {
        let before = self.sched.scheduled;
        let now = self.clock as i64;
        let c = if self.clusters.len() == 1 {
            0
        } else {
            self.rng.gen_range(0..self.clusters.len())
        };
        let due = self.sched.scheduled >= self.next_incident_at;
        let deletion = !due && self.clock >= self.next_deletion[c];
        let cluster = &mut self.clusters[c];
        let mut parts = traffic::Parts {
            rng: &mut self.rng,
            sched: &mut self.sched,
            s: &mut self.scratch,
            cluster_index: c as u16,
        };
        if due {
            let kind = IncidentKind::ALL[self.incident_cursor % IncidentKind::ALL.len()];
            self.incident_cursor += 1;
            self.next_incident_at = self.next_incident_at.saturating_add(self.incident_every);
            let tag = self.open.len() as u32;
            let (incident, requests) = incidents::inject(&mut parts, cluster, kind, now, tag);
            self.open.push(OpenIncident {
                incident,
                remaining: requests,
            });
        } else if deletion {
            traffic::namespace_deletion(&mut parts, cluster, now);
            self.next_deletion[c] = self.clock + deletion_gap_us(&mut self.rng);
        } else {
            traffic::request(&mut parts, cluster, now);
        }
        let produced = (self.sched.scheduled - before).max(1) as f64;
        let u: f64 = self.rng.gen();
        self.clock += -(1.0 - u).ln() * self.mean_gap_us * produced;
    }
}

/// The simulated time until a cluster's next namespace deletion: exponential
/// (deletions are independent of each other) with mean one day divided by
/// [`NAMESPACE_DELETIONS_PER_DAY`].
fn deletion_gap_us(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.gen();
    -(1.0 - u).ln() * 86_400e6 / NAMESPACE_DELETIONS_PER_DAY
}

impl Iterator for Generator {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        let mut bytes = Vec::with_capacity(1536);
        let cluster = self.next_into(&mut bytes)?;
        Some(GeneratedEvent { cluster, bytes })
    }
}
