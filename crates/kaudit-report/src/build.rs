//! Answers a template's sections from the store, the search backend and the
//! alert log, and gathers the evidence every row needs: the cited events'
//! exact bytes, their inclusion proofs against one anchor checkpoint, the
//! period's checkpoints and the consistency proof between them.

use crate::model::*;
use crate::template::{SectionKind, SectionSpec, Template, DEFAULT_MAX_ROWS};
use crate::ReportError;
use kaudit_event::{Event, MicroTime};
use kaudit_index::{SearchBackend, SearchRequest, StatsRequest};
use kaudit_query::{Budget, Field, Query};
use kaudit_store::merkle::Hash;
use kaudit_store::{LogReader, Store, StoredCheckpoint};
use std::collections::{BTreeMap, BTreeSet};

/// Most checkpoints of the period listed (and shipped) in a report.
pub const MAX_PERIOD_CHECKPOINTS: usize = 1000;
/// Most users or rules listed in a section's counts.
pub const MAX_GROUPS: usize = 100;
/// Longest period a report covers (hours), which bounds completeness tables.
pub const MAX_PERIOD_HOURS: i64 = 24 * 400;
const HOUR: i64 = 3_600_000_000;
/// The query the completeness section counts truncated events with (per
/// cluster): what a caller opening the index for a report must load.
pub const TRUNCATED_QUERY: &str = "annotation.audit.k8s.io/truncated=true";
/// Cited records closer than this are read in one store read.
const READ_GAP: u64 = 2048;

/// What to report on.
#[derive(Clone, Debug)]
pub struct ReportRequest {
    /// The template.
    pub template: Template,
    /// Start, inclusive (µs).
    pub since: i64,
    /// End, exclusive (µs).
    pub until: i64,
    /// Only these clusters (empty: all).
    pub clusters: Vec<String>,
    /// Rows per section, overriding the template (clamped to
    /// [`crate::template::MAX_ROWS_LIMIT`]).
    pub max_rows: Option<usize>,
    /// Run a full store verification for the verification section (reads
    /// every record); off, the section says it was not run.
    pub verify_store: bool,
    /// The time the report is made (so tests are reproducible).
    pub now: MicroTime,
    /// The time budget of the whole report (the server's `query.timeout`):
    /// every query of every section runs under it, and past it the report
    /// fails with [`ReportError::TimedOut`] rather than hold a query slot
    /// for ever. `None` (the CLI): no limit.
    pub budget: Option<Budget>,
}

impl ReportRequest {
    /// A request over `[since, until)` with the defaults: all clusters, the
    /// template's row limits, full store verification, no time budget.
    pub fn new(template: Template, since: i64, until: i64, now: MicroTime) -> ReportRequest {
        ReportRequest {
            template,
            since,
            until,
            clusters: Vec::new(),
            max_rows: None,
            verify_store: true,
            now,
            budget: None,
        }
    }
}

/// Where answers come from.
pub struct Inputs<'a> {
    /// The store (read-only open is enough when it holds a checkpoint that
    /// covers the period).
    pub store: &'a Store,
    /// The search backend over it.
    pub backend: &'a dyn SearchBackend,
    /// The alert log, when detection runs.
    pub alerts: Option<&'a kaudit_detect::AlertLog>,
    /// Quarantined items: (cluster, time µs), counted per cluster.
    pub quarantined: Vec<(String, i64)>,
}

/// One cited event and its proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cited {
    /// Sequence number (leaf index).
    pub seq: u64,
    /// Cluster bound in the leaf.
    pub cluster: String,
    /// Receive time bound in the leaf.
    pub received: MicroTime,
    /// The event's exact stored bytes.
    pub event: Vec<u8>,
    /// Audit path to the anchor checkpoint.
    pub proof: Vec<Hash>,
}

/// A report with everything needed to check it.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The report.
    pub report: Report,
    /// Every cited event, by sequence number.
    pub cited: BTreeMap<u64, Cited>,
    /// Signed checkpoint notes by tree size: the anchor, the first, and the
    /// period's.
    pub checkpoints: BTreeMap<u64, String>,
    /// Consistency proof from `report.first.size` to `report.anchor.size`.
    pub consistency: Vec<Hash>,
    /// The signed prune record, when the store was pruned.
    pub prune_note: Option<String>,
}

/// The note a report carries when the period's first checkpoint cannot be
/// tied to the anchor because the consistency proof would need hashes of a
/// pruned range: what the report then does NOT prove.
pub fn consistency_fallback_note(first_size: u64, first_time: &str, anchor_size: u64) -> String {
    format!(
        "no consistency proof: the period's first checkpoint (tree size {first_size}, signed {first_time}) cannot be tied to the anchor (tree size {anchor_size}) because the proof reaches into a pruned range whose hashes the store no longer holds; the report proves the anchor against itself, so it does NOT prove that the log stayed append-only between that checkpoint and the anchor"
    )
}

fn fmt_time(us: i64) -> String {
    MicroTime(us).to_string()
}

fn cp_ref(cp: &StoredCheckpoint) -> CheckpointRef {
    CheckpointRef {
        size: cp.size,
        time: cp.time.clone(),
        file: format!("checkpoints/{}.note", cp.size),
    }
}

fn cp_time(cp: &StoredCheckpoint) -> Option<i64> {
    MicroTime::parse(&cp.time).ok().map(MicroTime::micros)
}

/// `(query) cluster=a,b` when clusters are given.
fn scoped(query: &str, clusters: &[String]) -> String {
    let q = query.trim();
    if clusters.is_empty() {
        return q.to_string();
    }
    let list = clusters.join(",");
    if q.is_empty() {
        format!("cluster={list}")
    } else {
        format!("({q}) cluster={list}")
    }
}

/// Makes the report and its evidence.
pub fn build(req: &ReportRequest, inp: &Inputs<'_>) -> Result<Evidence, ReportError> {
    if req.until <= req.since {
        return Err(ReportError::Input(
            "the period's end must be after its start".into(),
        ));
    }
    if (req.until - req.since) / HOUR > MAX_PERIOD_HOURS {
        return Err(ReportError::Input(format!(
            "the period is longer than {MAX_PERIOD_HOURS} hours"
        )));
    }
    for c in &req.clusters {
        if c.is_empty()
            || !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ReportError::Input(format!(
                "--cluster {c:?}: not a cluster name"
            )));
        }
    }
    let store = inp.store;
    let checkpoints = store.checkpoints();
    let anchor = checkpoints
        .last()
        .cloned()
        .ok_or_else(|| ReportError::Input("the store has no signed checkpoint yet".into()))?;
    // The period's first checkpoint: the last one signed before the period
    // starts (the log as it stood then), else the earliest inside it.
    let first = checkpoints
        .iter()
        .rev()
        .find(|c| cp_time(c).is_some_and(|t| t <= req.since))
        .or_else(|| {
            checkpoints
                .iter()
                .find(|c| cp_time(c).is_some_and(|t| t < req.until))
        })
        .unwrap_or(&anchor)
        .clone();
    let mut proof_notes = Vec::new();
    let (first, consistency) = match store.consistency_proof(first.size, anchor.size) {
        Ok(p) => (first, p),
        // The proof reaches into a pruned range the store no longer has
        // hashes for: tie the anchor to itself rather than fail, and say
        // so where a reader and `report verify` see it.
        Err(_) => {
            proof_notes.push(consistency_fallback_note(
                first.size,
                &first.time,
                anchor.size,
            ));
            (anchor.clone(), Vec::new())
        }
    };

    let mut b = Builder {
        req,
        inp,
        anchor_size: anchor.size,
        cited: BTreeSet::new(),
        fetched: BTreeMap::new(),
        proof_notes: &proof_notes,
    };
    let mut sections = Vec::new();
    for spec in &req.template.sections {
        b.check_budget()?;
        sections.push(b.section(spec, &checkpoints)?);
    }

    let mut cp_notes = BTreeMap::new();
    cp_notes.insert(anchor.size, anchor.note.clone());
    cp_notes.insert(first.size, first.note.clone());
    for c in period_checkpoints(&checkpoints, req).0 {
        cp_notes.insert(c.size, c.note.clone());
    }

    let mut cited = BTreeMap::new();
    // Rows whose audit path needs hashes of a pruned range: the event is
    // still stored but can no longer be proven, so it is counted, not listed.
    let mut unprovable = BTreeSet::new();
    // Rows a search listed came with their stored bytes; the others are
    // read here, neighbours in one read (a read decompresses whole bundles).
    let missing: Vec<u64> = b
        .cited
        .iter()
        .copied()
        .filter(|s| !b.fetched.contains_key(s))
        .collect();
    let mut i = 0;
    while i < missing.len() {
        let mut j = i;
        while j + 1 < missing.len() && missing[j + 1] - missing[j] < READ_GAP {
            j += 1;
        }
        let wanted = &missing[i..=j];
        store.read(wanted[0]..wanted[wanted.len() - 1] + 1, &mut |seq, l| {
            if wanted.binary_search(&seq).is_ok() {
                b.fetched
                    .insert(seq, (l.cluster.to_string(), l.received, l.event.to_vec()));
            }
            true
        })?;
        i = j + 1;
    }
    for &seq in &b.cited {
        let (cluster, received, event) = b
            .fetched
            .remove(&seq)
            .ok_or_else(|| ReportError::Input(format!("record {seq} is not stored")))?;
        let proof = match store.inclusion_proof(seq, anchor.size) {
            Ok(p) => p,
            Err(kaudit_store::StoreError::Tree(kaudit_store::merkle::TreeError::Pruned {
                ..
            })) => {
                unprovable.insert(seq);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        cited.insert(
            seq,
            Cited {
                seq,
                cluster,
                received,
                event,
                proof,
            },
        );
    }
    if !unprovable.is_empty() {
        for s in &mut sections {
            let before = s.rows.len();
            s.rows.retain(|r| !unprovable.contains(&r.seq));
            let dropped = (before - s.rows.len()) as u64;
            if dropped > 0 {
                s.unproven += dropped;
                s.notes.push(format!(
                    "{dropped} matching event(s) are counted but not listed: their inclusion proof needs hashes of a pruned range"
                ));
            }
        }
    }
    let prune_note = kaudit_store::read_pruned(store.dir(), store.verifier())?.map(|p| p.note);
    let t = &req.template;
    Ok(Evidence {
        report: Report {
            format: REPORT_FORMAT,
            template: t.name.clone(),
            title: t.title.clone(),
            description: t.description.clone(),
            since: fmt_time(req.since),
            until: fmt_time(req.until),
            clusters: req.clusters.clone(),
            generated: req.now.to_string(),
            verifier_key: store.verifier().text(),
            anchor: cp_ref(&anchor),
            first: cp_ref(&first),
            proves: PROOF_STATEMENT.iter().map(|s| s.to_string()).collect(),
            proof_notes,
            sections,
        },
        cited,
        checkpoints: cp_notes,
        consistency,
        prune_note,
    })
}

fn period_checkpoints<'c>(
    all: &'c [StoredCheckpoint],
    req: &ReportRequest,
) -> (Vec<&'c StoredCheckpoint>, u64) {
    let inside: Vec<&StoredCheckpoint> = all
        .iter()
        .filter(|c| cp_time(c).is_some_and(|t| t >= req.since && t < req.until))
        .collect();
    let omitted = inside.len().saturating_sub(MAX_PERIOD_CHECKPOINTS) as u64;
    (
        inside.into_iter().take(MAX_PERIOD_CHECKPOINTS).collect(),
        omitted,
    )
}

struct Builder<'a> {
    req: &'a ReportRequest,
    inp: &'a Inputs<'a>,
    anchor_size: u64,
    cited: BTreeSet<u64>,
    /// Stored (cluster, receive time, bytes) of cited rows a search already
    /// read, so they are not read again.
    fetched: BTreeMap<u64, (String, MicroTime, Vec<u8>)>,
    proof_notes: &'a [String],
}

impl Builder<'_> {
    fn max_rows(&self, spec: &SectionSpec) -> usize {
        self.req
            .max_rows
            .or(spec.max_rows)
            .or(self.req.template.max_rows)
            .unwrap_or(DEFAULT_MAX_ROWS)
            .min(crate::template::MAX_ROWS_LIMIT)
    }

    fn empty(&self, spec: &SectionSpec) -> Section {
        Section {
            id: spec.id.clone(),
            title: spec.title.clone(),
            kind: spec.kind,
            query: None,
            count: 0,
            omitted: 0,
            unproven: 0,
            rows: Vec::new(),
            groups: Vec::new(),
            clusters: Vec::new(),
            facts: serde_json::Map::new(),
            notes: Vec::new(),
        }
    }

    fn section(
        &mut self,
        spec: &SectionSpec,
        checkpoints: &[StoredCheckpoint],
    ) -> Result<Section, ReportError> {
        let mut s = self.empty(spec);
        match spec.kind {
            SectionKind::Events | SectionKind::Denied => {
                let q = scoped(spec.query.as_deref().unwrap_or(""), &self.req.clusters);
                self.events(&mut s, &q, self.max_rows(spec))?;
                if spec.kind == SectionKind::Denied {
                    s.groups = self.groups_by(&q, Field::User)?;
                }
                s.query = Some(q);
            }
            SectionKind::Completeness => self.completeness(&mut s, spec)?,
            SectionKind::Alerts => self.alerts(&mut s, self.max_rows(spec))?,
            SectionKind::Retention => self.retention(&mut s)?,
            SectionKind::Verification => self.verification(&mut s, checkpoints)?,
        }
        Ok(s)
    }

    fn query(&self, q: &str) -> Result<Query, ReportError> {
        let query =
            Query::parse(q).map_err(|e| ReportError::Template(format!("query {q:?}: {e}")))?;
        Ok(match self.req.budget {
            Some(b) => query.with_budget(b),
            None => query,
        })
    }

    fn check_budget(&self) -> Result<(), ReportError> {
        match self.req.budget {
            Some(b) if b.expired() => Err(ReportError::TimedOut(b.allowed)),
            _ => Ok(()),
        }
    }

    fn events(&mut self, s: &mut Section, q: &str, max_rows: usize) -> Result<(), ReportError> {
        let query = self.query(q)?;
        if !self.inp.backend.decides_exactly(&query)? {
            return self.events_one_pass(s, query, max_rows);
        }
        let stats = self.inp.backend.stats(&StatsRequest {
            query: query.clone(),
            since: Some(self.req.since),
            until: Some(self.req.until),
            by: Vec::new(),
            top: 0,
            every: None,
            latency: false,
        })?;
        s.count = stats.total;
        let mut req = SearchRequest::new(query, max_rows.max(1));
        req.since = Some(self.req.since);
        req.until = Some(self.req.until);
        req.reverse = true;
        let mut rows = Vec::new();
        let mut unproven = 0u64;
        if max_rows > 0 {
            kaudit_index::search_pages(self.inp.backend, &req, 0, 1000, &mut |hits| {
                for h in hits {
                    if h.seq >= self.anchor_size {
                        unproven += 1;
                        continue;
                    }
                    if rows.len() < max_rows {
                        if let Ok(ev) = Event::from_json(&h.event) {
                            rows.push(Row::of_event(h.seq, &h.cluster, h.received, &ev));
                            self.fetched
                                .insert(h.seq, (h.cluster.clone(), h.received, h.event.clone()));
                        }
                    }
                }
                // Past the row limit only the unproven tail is still of
                // interest, and it is newest: walk on only while rows fill.
                rows.len() < max_rows
            })?;
        }
        for r in &rows {
            self.cited.insert(r.seq);
        }
        s.unproven = unproven;
        s.omitted = s.count.saturating_sub(rows.len() as u64 + unproven);
        s.rows = rows;
        Ok(())
    }

    /// [`Builder::events`] for a query the index cannot decide (it reads
    /// request bodies or free text): counting it reads every candidate
    /// event, so the rows are picked in the same pass (the oldest
    /// `max_rows` provable matches, as the search would list them) rather
    /// than read again by a search.
    fn events_one_pass(
        &mut self,
        s: &mut Section,
        query: Query,
        max_rows: usize,
    ) -> Result<(), ReportError> {
        let mut count = 0u64;
        let mut unproven = 0u64;
        // (event time, seq) -> row, at most `max_rows`, oldest kept.
        let mut kept: BTreeMap<(i64, u64), Row> = BTreeMap::new();
        let anchor = self.anchor_size;
        self.inp.backend.for_each_match(
            &query,
            Some(self.req.since),
            Some(self.req.until),
            &mut |seq, time, ev, cluster| {
                count += 1;
                if seq >= anchor {
                    unproven += 1;
                    return true;
                }
                let key = (time, seq);
                let better = kept.len() < max_rows
                    || kept.last_key_value().is_some_and(|(last, _)| key < *last);
                if better {
                    // The event time is the time the row shows, so it
                    // stands in for the receive time it is derived from.
                    kept.insert(key, Row::of_event(seq, cluster, MicroTime(time), ev));
                    if kept.len() > max_rows {
                        kept.pop_last();
                    }
                }
                true
            },
        )?;
        let rows: Vec<Row> = kept.into_values().collect();
        for r in &rows {
            self.cited.insert(r.seq);
        }
        s.count = count;
        s.unproven = unproven;
        s.omitted = count.saturating_sub(rows.len() as u64 + unproven);
        s.rows = rows;
        Ok(())
    }

    fn groups_by(&self, q: &str, field: Field) -> Result<Vec<Group>, ReportError> {
        let stats = self.inp.backend.stats(&StatsRequest {
            query: self.query(q)?,
            since: Some(self.req.since),
            until: Some(self.req.until),
            by: vec![field],
            top: MAX_GROUPS,
            every: None,
            latency: false,
        })?;
        Ok(stats
            .rows
            .into_iter()
            .map(|r| Group {
                key: r.key.into_iter().next().unwrap_or_default(),
                count: r.count,
                first: None,
                last: None,
            })
            .collect())
    }

    fn completeness(&mut self, s: &mut Section, spec: &SectionSpec) -> Result<(), ReportError> {
        let q = scoped("", &self.req.clusters);
        let per_hour = self.inp.backend.stats(&StatsRequest {
            query: self.query(&q)?,
            since: Some(self.req.since),
            until: Some(self.req.until),
            by: vec![Field::Cluster],
            top: 0,
            every: Some(HOUR),
            latency: false,
        })?;
        let span = u64::try_from(self.req.until - self.req.since).unwrap_or(0);
        let hours = usize::try_from(span.div_ceil(HOUR as u64)).unwrap_or(0);
        let mut by_cluster: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for c in &self.req.clusters {
            by_cluster.insert(c.clone(), vec![0; hours]);
        }
        for r in per_hour.rows {
            let cluster = r.key.into_iter().next().unwrap_or_default();
            let Some(bucket) = r.bucket else { continue };
            let i = (bucket - self.req.since).div_euclid(HOUR);
            let v = by_cluster.entry(cluster).or_insert_with(|| vec![0; hours]);
            if let Some(slot) = usize::try_from(i).ok().and_then(|i| v.get_mut(i)) {
                *slot += r.count;
            }
        }
        let truncated =
            self.groups_by(&scoped(TRUNCATED_QUERY, &self.req.clusters), Field::Cluster)?;
        // Hours after `now` have not happened yet: they are no gap.
        let done = u64::try_from(self.req.now.micros() - self.req.since).unwrap_or(0);
        let elapsed = usize::try_from(done.div_ceil(HOUR as u64))
            .unwrap_or(0)
            .min(hours);
        let quiet = u64::from(spec.max_quiet_hours.unwrap_or(2));
        for (cluster, hours_v) in by_cluster {
            let mut gaps = Vec::new();
            let mut run_start = None;
            #[allow(clippy::needless_range_loop)] // i runs one past the end to close a run
            for i in 0..=elapsed {
                let empty = i < elapsed && hours_v.get(i) == Some(&0);
                match (empty, run_start) {
                    (true, None) => run_start = Some(i),
                    (false, Some(st)) => {
                        let n = (i - st) as u64;
                        if n >= quiet {
                            gaps.push(Gap {
                                from: fmt_time(self.req.since + st as i64 * HOUR),
                                until: fmt_time(self.req.since + i as i64 * HOUR),
                                hours: n,
                            });
                        }
                        run_start = None;
                    }
                    _ => {}
                }
            }
            let events = hours_v.iter().sum();
            s.count += events;
            let quarantined = self
                .inp
                .quarantined
                .iter()
                .filter(|(c, t)| *c == cluster && *t >= self.req.since && *t < self.req.until)
                .count() as u64;
            s.clusters.push(ClusterHours {
                truncated: truncated
                    .iter()
                    .find(|g| g.key == cluster)
                    .map_or(0, |g| g.count),
                cluster,
                events,
                hours: hours_v,
                gaps,
                quarantined,
            });
        }
        let flagged: usize = s.clusters.iter().map(|c| c.gaps.len()).sum();
        if flagged > 0 {
            s.notes.push(format!(
                "{flagged} gap(s) of at least {quiet} hour(s) without events: collection may have been interrupted"
            ));
        }
        Ok(())
    }

    fn alerts(&mut self, s: &mut Section, max_rows: usize) -> Result<(), ReportError> {
        let Some(log) = self.inp.alerts else {
            s.notes
                .push("no alert log (detection is not configured for this store)".into());
            return Ok(());
        };
        let all = log.list()?;
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut picked = Vec::new();
        for a in all {
            let Ok(t) = MicroTime::parse(&a.time) else {
                continue;
            };
            let t = t.micros();
            if t < self.req.since || t >= self.req.until {
                continue;
            }
            if !self.req.clusters.is_empty() && !self.req.clusters.contains(&a.cluster) {
                continue;
            }
            s.count += 1;
            let g = groups.entry(a.rule.clone()).or_insert_with(|| Group {
                key: a.rule.clone(),
                count: 0,
                first: None,
                last: None,
            });
            g.count += 1;
            if g.first
                .as_ref()
                .is_none_or(|f| MicroTime::parse(f).is_ok_and(|f| f.micros() > t))
            {
                g.first = Some(a.time.clone());
            }
            if g.last
                .as_ref()
                .is_none_or(|l| MicroTime::parse(l).is_ok_and(|l| l.micros() < t))
            {
                g.last = Some(a.time.clone());
            }
            if a.seq >= self.anchor_size {
                s.unproven += 1;
            } else if picked.len() < max_rows && a.seq >= self.inp.store.first_seq() {
                picked.push(a);
            }
        }
        for a in picked {
            let mut row = None;
            self.inp.store.read(a.seq..a.seq + 1, &mut |seq, l| {
                if let Ok(ev) = Event::from_json(l.event) {
                    row = Some(Row::of_event(seq, l.cluster, l.received, &ev));
                }
                false
            })?;
            if let Some(mut r) = row {
                r.rule = Some(a.rule.clone());
                r.priority = Some(a.priority.clone());
                self.cited.insert(r.seq);
                s.rows.push(r);
            }
        }
        s.omitted = s.count.saturating_sub(s.rows.len() as u64 + s.unproven);
        let mut g: Vec<Group> = groups.into_values().collect();
        g.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)));
        g.truncate(MAX_GROUPS);
        s.groups = g;
        Ok(())
    }

    fn retention(&mut self, s: &mut Section) -> Result<(), ReportError> {
        let store = self.inp.store;
        let pruned = kaudit_store::read_pruned(store.dir(), store.verifier())?;
        let holds = kaudit_store::retention::list_holds(store.dir())?;
        let stat = store.stat()?;
        let f = &mut s.facts;
        f.insert("first_kept_seq".into(), store.first_seq().into());
        f.insert(
            "oldest_kept_event".into(),
            stat.first_time.map(|t| t.to_string()).into(),
        );
        match &pruned {
            Some(p) => {
                f.insert("pruned_before_seq".into(), p.before.into());
                f.insert("pruned_at".into(), p.time.clone().into());
                f.insert("prune_record".into(), "prune.note".into());
                let period_cut = stat.first_time.is_none_or(|t| t.micros() > self.req.since);
                if period_cut {
                    s.notes.push(format!(
                        "records before sequence number {} were pruned on {} (signed prune record prune.note): events of this period older than {} are no longer in the store, so this report cannot list or count them",
                        p.before,
                        p.time,
                        stat.first_time.map_or("-".to_string(), |t| t.to_string())
                    ));
                }
                f.insert("period_pruned".into(), period_cut.into());
            }
            None => {
                f.insert("period_pruned".into(), false.into());
            }
        }
        let holds: Vec<serde_json::Value> = holds
            .iter()
            .take(MAX_GROUPS)
            .map(|h| {
                serde_json::json!({
                    "id": h.id, "reason": h.reason, "created": h.created,
                    "since": h.since.map(fmt_time), "until": h.until.map(fmt_time),
                })
            })
            .collect();
        s.count = holds.len() as u64;
        f.insert("legal_holds".into(), holds.into());
        Ok(())
    }

    fn verification(
        &mut self,
        s: &mut Section,
        checkpoints: &[StoredCheckpoint],
    ) -> Result<(), ReportError> {
        let (inside, omitted) = period_checkpoints(checkpoints, self.req);
        let list: Vec<serde_json::Value> = inside
            .iter()
            .map(|c| serde_json::json!({"size": c.size, "time": c.time, "file": format!("checkpoints/{}.note", c.size)}))
            .collect();
        s.count = list.len() as u64 + omitted;
        s.omitted = omitted;
        s.facts.insert("checkpoints".into(), list.into());
        s.notes.extend(self.proof_notes.iter().cloned());
        if self.req.verify_store {
            let store = self.inp.store;
            // An encrypted store is verified with the key it was opened
            // with (`--encryption-key`): the segments are read decrypted.
            let opts = kaudit_store::verify::VerifyOptions {
                own_key: Some(store.verifier().clone()),
                cipher: store.cipher().cloned(),
                ..Default::default()
            };
            let v = kaudit_store::verify::verify(store.dir(), &opts)?;
            s.facts.insert("verified".into(), v.ok().into());
            s.facts.insert("records_checked".into(), v.records.into());
            s.facts
                .insert("checkpoints_checked".into(), v.checkpoints_checked.into());
            s.facts.insert(
                "problems".into(),
                v.problems
                    .iter()
                    .take(20)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .into(),
            );
            s.facts
                .insert("problem_count".into(), v.problems.len().into());
            if !v.ok() {
                s.notes.push(format!(
                    "store verification found {} problem(s)",
                    v.problems.len()
                ));
            }
        } else {
            s.facts.insert("verified".into(), serde_json::Value::Null);
            s.notes
                .push("full store verification was not run for this report (--no-verify, or made by a server: see its Integrity page for the last verification)".into());
        }
        Ok(())
    }
}
