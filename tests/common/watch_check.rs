//! Checker of etcd's watch guarantees over recorded watch histories, after
//! etcd's robustness suite (`tests/robustness/validate/watch.go`) and
//! <https://etcd.io/docs/v3.6/learning/api_guarantees/#watch-apis>.
//!
//! Inputs:
//! - a [`History`], the ground truth: every change of the keyspace, revision
//!   by revision, each with the key's state before it. It is built from
//!   snapshots of the keyspace at consecutive revisions
//!   ([`History::from_snapshots`], e.g. a historical Range at every revision)
//!   or, in unit tests, from a list of changes ([`History::from_changes`]).
//! - a [`Watch`]: one logical watch as an application sees it, made of
//!   [`Segment`]s. A segment is one Watch stream on one member with the
//!   request it was created with and every response it received, in order.
//!   When a stream fails, the client opens the next segment (on any member)
//!   with `start_revision` = the last revision it observed + 1, as the Go
//!   client does; so the segments together must deliver the history once.
//!
//! Guarantees checked ([`Guarantee`]), over the concatenation of all segments
//! unless said otherwise:
//! - Ordered: event revisions never decrease.
//! - Unique: a (revision, key) is delivered at most once.
//! - Atomic: a response never splits a revision: the first event of a
//!   response never has the revision of the last event of the previous
//!   response that had events.
//! - Reliable: from the first expected revision to the last observed
//!   revision, the events are exactly the history's events that match the
//!   watch (key range, NOPUT/NODELETE filters): nothing missing, nothing
//!   extra, each with the same type and key-value (for a delete, key and
//!   revision). The first expected revision is the first segment's
//!   `start_revision`, or, when it watched from "now" (0), the lower of its
//!   first event's revision and its created response's header revision + 1
//!   (etcd reads that header after registering the watcher, so everything
//!   after it must come). The last observed revision is the highest event or
//!   progress-notify revision. Within one revision events are compared in key
//!   order: etcd sends a revision's events in the order of the txn's
//!   operations, which the API does not promise and snapshots cannot show.
//! - Resumable: a segment with `start_revision` set starts with the first
//!   matching history revision at or after it.
//! - Bookmarkable: after a progress notify at revision N every event has a
//!   revision > N; notify revisions never decrease, are >= the last event
//!   revision, and are >= the segment's `start_revision` - 1 (a notify below
//!   that would move a resuming client backwards; etcd fixed that bug).
//! - PrevKv: with `prev_kv` requested, an event's prev_kv is the key's state
//!   at revision - 1, present iff the key existed then (nothing is compacted);
//!   without it, no prev_kv is sent.
//! - IsCreate: a put event has create_revision == mod_revision iff the key
//!   was absent at revision - 1.
//! - Canceled: a watch is canceled as compacted although nothing was.
//!
//! Violations are collected, not panicked on, so a report shows all of them
//! (at most [`MAX_PER_GUARANTEE`] per guarantee and watch, then a count).

#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// Violations reported in full per guarantee and watch; the rest are counted.
pub const MAX_PER_GUARANTEE: usize = 3;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: Kind,
    /// For a delete only `key` and `mod_revision` (the deletion's) matter.
    pub kv: Kv,
    pub prev_kv: Option<Kv>,
}

impl Event {
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }

    pub fn key(&self) -> &str {
        &self.kv.key
    }

    /// Same change: type, key and revision, and for a put the whole kv.
    fn same_change(&self, other: &Event) -> bool {
        self.kind == other.kind
            && self.kv.key == other.kv.key
            && self.kv.mod_revision == other.kv.mod_revision
            && (self.kind == Kind::Delete || self.kv == other.kv)
    }
}

/// One WatchResponse as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub header_revision: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub events: Vec<Event>,
}

impl Response {
    /// etcd's `WatchResponse.IsProgressNotify`.
    pub fn is_progress_notify(&self) -> bool {
        self.events.is_empty()
            && !self.created
            && !self.canceled
            && self.compact_revision == 0
            && self.header_revision != 0
    }
}

/// A WatchCreateRequest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub key: Vec<u8>,
    /// etcd semantics: empty = `key` alone, `\0` = every key >= `key`,
    /// else `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// 0 = from "now".
    pub start_revision: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
    /// The NOPUT filter.
    pub no_put: bool,
    /// The NODELETE filter.
    pub no_delete: bool,
}

impl WatchRequest {
    pub fn matches_key(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    /// Whether the watch should see this change (key range and filters).
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_key(event.kv.key.as_bytes())
            && match event.kind {
                Kind::Put => !self.no_put,
                Kind::Delete => !self.no_delete,
            }
    }

    /// Same watch, other start: what a resumed segment must ask for.
    fn same_watch(&self, other: &WatchRequest) -> bool {
        WatchRequest {
            start_revision: 0,
            ..self.clone()
        } == WatchRequest {
            start_revision: 0,
            ..other.clone()
        }
    }
}

/// One Watch stream on one member.
#[derive(Clone, Debug, Default)]
pub struct Segment {
    /// Which member served it (for reports only).
    pub member: usize,
    pub request: WatchRequest,
    pub responses: Vec<Response>,
    /// Why the stream ended (for reports only).
    pub ended: String,
}

/// One logical watch: its segments in the order they were opened.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    pub name: String,
    pub segments: Vec<Segment>,
}

impl Watch {
    /// The highest event or progress-notify revision observed (0: none).
    pub fn last_observed(&self) -> i64 {
        let mut last = 0;
        for r in self.segments.iter().flat_map(|s| &s.responses) {
            if let Some(e) = r.events.last() {
                last = last.max(e.revision());
            }
            if r.is_progress_notify() {
                last = last.max(r.header_revision);
            }
        }
        last
    }
}

#[path = "watch_check_history.rs"]
mod history;
pub use history::{del, put, History};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Guarantee {
    Ordered,
    Unique,
    Atomic,
    Reliable,
    Resumable,
    Bookmarkable,
    PrevKv,
    IsCreate,
    Canceled,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub guarantee: Guarantee,
    pub detail: String,
}

/// What a check looked at: a report with nothing checked proves nothing.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub segments: usize,
    pub responses: usize,
    pub events: usize,
    pub progress_notifies: usize,
    /// Responses holding several events of one revision.
    pub multi_event_responses: usize,
    /// [first expected, last observed] revision, if not empty.
    pub window: Option<(i64, i64)>,
    /// History events in the window that the watch had to deliver.
    pub expected: usize,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub watch: String,
    pub violations: Vec<Violation>,
    /// Violations beyond [`MAX_PER_GUARANTEE`], per guarantee.
    pub suppressed: BTreeMap<Guarantee, usize>,
    pub stats: Stats,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The guarantees violated.
    pub fn broken(&self) -> BTreeSet<Guarantee> {
        self.violations.iter().map(|v| v.guarantee).collect()
    }

    fn violate(&mut self, guarantee: Guarantee, detail: String) {
        let n = self
            .violations
            .iter()
            .filter(|v| v.guarantee == guarantee)
            .count();
        if n < MAX_PER_GUARANTEE {
            self.violations.push(Violation { guarantee, detail });
        } else {
            *self.suppressed.entry(guarantee).or_default() += 1;
        }
    }
}

/// Where an event was received: segment, response and event index.
#[derive(Clone, Copy, Debug)]
struct At {
    segment: usize,
    response: usize,
    event: usize,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "segment {} response {} event {}",
            self.segment, self.response, self.event
        )
    }
}

/// Checks every guarantee of one logical watch against `history`.
pub fn check(history: &History, watch: &Watch) -> Report {
    let mut report = Report {
        watch: watch.name.clone(),
        ..Report::default()
    };
    let Some(first) = watch.segments.first() else {
        return report;
    };
    let request = &first.request;
    for (i, s) in watch.segments.iter().enumerate().skip(1) {
        assert!(
            s.request.same_watch(request) && s.request.start_revision > 0,
            "{}: segment {i} must resume the same watch from a revision",
            watch.name
        );
    }

    // Every event and response in the order the application saw them.
    let mut observed: Vec<(At, &Event)> = Vec::new();
    let mut responses: Vec<(usize, usize, &Response)> = Vec::new();
    for (si, s) in watch.segments.iter().enumerate() {
        for (ri, r) in s.responses.iter().enumerate() {
            responses.push((si, ri, r));
            for (ei, e) in r.events.iter().enumerate() {
                let at = At {
                    segment: si,
                    response: ri,
                    event: ei,
                };
                observed.push((at, e));
            }
        }
    }
    let stats = &mut report.stats;
    stats.segments = watch.segments.len();
    stats.responses = responses.len();
    stats.events = observed.len();
    stats.progress_notifies = responses
        .iter()
        .filter(|r| r.2.is_progress_notify())
        .count();
    stats.multi_event_responses = responses
        .iter()
        .filter(|r| {
            r.2.events
                .windows(2)
                .any(|w| w[0].revision() == w[1].revision())
        })
        .count();

    check_ordered(&mut report, &observed);
    check_unique(&mut report, &observed);
    check_atomic(&mut report, &responses);
    check_bookmarkable(&mut report, watch, &responses);
    check_reliable(&mut report, history, watch, &observed);
    check_resumable(&mut report, history, watch);
    check_events(&mut report, history, request, &observed);
    for &(si, ri, r) in &responses {
        if r.canceled && r.compact_revision != 0 {
            report.violate(
                Guarantee::Canceled,
                format!(
                    "segment {si} response {ri}: canceled as compacted at {} \
                     (reason {:?}) but nothing was compacted",
                    r.compact_revision, r.cancel_reason
                ),
            );
        }
    }
    report
}

fn show(e: &Event) -> String {
    match e.kind {
        Kind::Put => format!(
            "put {:?}={:?} @{} (create {}, version {}, lease {})",
            e.kv.key, e.kv.value, e.kv.mod_revision, e.kv.create_revision, e.kv.version, e.kv.lease
        ),
        Kind::Delete => format!("delete {:?} @{}", e.kv.key, e.kv.mod_revision),
    }
}

fn check_ordered(report: &mut Report, observed: &[(At, &Event)]) {
    for w in observed.windows(2) {
        let ((_, a), (at, b)) = (w[0], w[1]);
        if b.revision() < a.revision() {
            report.violate(
                Guarantee::Ordered,
                format!(
                    "{at}: {} comes after an event of revision {}",
                    show(b),
                    a.revision()
                ),
            );
        }
    }
}

fn check_unique(report: &mut Report, observed: &[(At, &Event)]) {
    let mut seen: HashMap<(i64, &str), At> = HashMap::new();
    for &(at, e) in observed {
        if let Some(before) = seen.insert((e.revision(), e.key()), at) {
            report.violate(
                Guarantee::Unique,
                format!("{at}: {} was already delivered at {before}", show(e)),
            );
        }
    }
}

fn check_atomic(report: &mut Report, responses: &[(usize, usize, &Response)]) {
    let mut last: Option<i64> = None;
    for &(si, ri, r) in responses {
        let (Some(first), Some(end)) = (r.events.first(), r.events.last()) else {
            continue;
        };
        if last == Some(first.revision()) {
            report.violate(
                Guarantee::Atomic,
                format!(
                    "segment {si} response {ri} starts with revision {}, which \
                     the previous response with events ended with",
                    first.revision()
                ),
            );
        }
        last = Some(end.revision());
    }
}

fn check_bookmarkable(report: &mut Report, watch: &Watch, responses: &[(usize, usize, &Response)]) {
    let mut notified: Option<i64> = None;
    let mut last_event = 0;
    for &(si, ri, r) in responses {
        for e in &r.events {
            if let Some(n) = notified.filter(|n| e.revision() <= *n) {
                report.violate(
                    Guarantee::Bookmarkable,
                    format!(
                        "segment {si} response {ri}: {} after a progress notify at {n}",
                        show(e)
                    ),
                );
            }
            last_event = last_event.max(e.revision());
        }
        if !r.is_progress_notify() {
            continue;
        }
        let n = r.header_revision;
        let start = watch.segments[si].request.start_revision;
        let problem = if notified.is_some_and(|p| n < p) {
            Some(format!(
                "below the previous notify at {}",
                notified.unwrap()
            ))
        } else if n < last_event {
            Some(format!("below the last event revision {last_event}"))
        } else if n < start - 1 {
            Some(format!("below the segment's start_revision {start} - 1"))
        } else {
            None
        };
        if let Some(problem) = problem {
            report.violate(
                Guarantee::Bookmarkable,
                format!("segment {si} response {ri}: progress notify at {n} is {problem}"),
            );
        }
        notified = Some(notified.map_or(n, |p| p.max(n)));
    }
}

/// The first revision a watch must deliver everything from, if anchored.
fn first_expected(watch: &Watch, observed: &[(At, &Event)]) -> Option<i64> {
    let first = &watch.segments[0];
    if first.request.start_revision > 0 {
        return Some(first.request.start_revision);
    }
    let created = first
        .responses
        .iter()
        .find(|r| r.created && r.header_revision > 0)
        .map(|r| r.header_revision + 1);
    let first_event = observed.first().map(|(_, e)| e.revision());
    match (created, first_event) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn check_reliable(
    report: &mut Report,
    history: &History,
    watch: &Watch,
    observed: &[(At, &Event)],
) {
    let request = &watch.segments[0].request;
    let Some(start) = first_expected(watch, observed) else {
        return;
    };
    let end = watch.last_observed();
    if end < start {
        return;
    }
    report.stats.window = Some((start, end));
    let expected: Vec<&Event> = history
        .events()
        .iter()
        .filter(|e| (start..=end).contains(&e.revision()) && request.matches(e))
        .collect();
    report.stats.expected = expected.len();
    let mut got: Vec<(At, &Event)> = observed.to_vec();
    got.sort_by(|a, b| (a.1.revision(), a.1.key()).cmp(&(b.1.revision(), b.1.key())));

    let (mut missing, mut extra, mut differ) = (Vec::new(), Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < got.len() {
        let want = expected.get(i).map(|e| (e.revision(), e.key()));
        let have = got.get(j).map(|(_, e)| (e.revision(), e.key()));
        match (want, have) {
            (Some(w), Some(h)) if w == h => {
                if !got[j].1.same_change(expected[i]) {
                    differ.push(format!(
                        "{}: got {}, history has {}",
                        got[j].0,
                        show(got[j].1),
                        show(expected[i])
                    ));
                }
                i += 1;
                j += 1;
            }
            (Some(w), Some(h)) if w < h => {
                missing.push(show(expected[i]));
                i += 1;
            }
            (Some(_), None) => {
                missing.push(show(expected[i]));
                i += 1;
            }
            _ => {
                let (at, e) = got[j];
                let why = match history.event(e.revision(), e.key()) {
                    None => "no such change in the history",
                    Some(_) if e.revision() < start => "before the first expected revision",
                    Some(h) if !request.matches(h) => "excluded by the watch's range or filters",
                    Some(_) => "delivered more than once",
                };
                extra.push(format!("{at}: {} ({why})", show(e)));
                j += 1;
            }
        }
    }
    let list = |items: &[String]| {
        let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
        let more = items.len().saturating_sub(5);
        let tail = if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        };
        format!("{}{tail}", shown.join("; "))
    };
    let window = format!("in [{start}, {end}]");
    if !missing.is_empty() {
        report.violate(
            Guarantee::Reliable,
            format!(
                "{} events {window} never delivered: {}",
                missing.len(),
                list(&missing)
            ),
        );
    }
    if !extra.is_empty() {
        report.violate(
            Guarantee::Reliable,
            format!(
                "{} events {window} not in the watch's history: {}",
                extra.len(),
                list(&extra)
            ),
        );
    }
    if !differ.is_empty() {
        report.violate(
            Guarantee::Reliable,
            format!(
                "{} events differ from the history: {}",
                differ.len(),
                list(&differ)
            ),
        );
    }
}

fn check_resumable(report: &mut Report, history: &History, watch: &Watch) {
    for (si, s) in watch.segments.iter().enumerate() {
        let start = s.request.start_revision;
        if start == 0 {
            continue;
        }
        let Some((ri, e)) = s
            .responses
            .iter()
            .enumerate()
            .find_map(|(ri, r)| r.events.first().map(|e| (ri, e)))
        else {
            continue;
        };
        let want = history
            .events()
            .iter()
            .find(|h| h.revision() >= start && s.request.matches(h));
        let ok = want.is_some_and(|w| {
            w.revision() == e.revision()
                && history
                    .at(w.revision())
                    .iter()
                    .any(|h| h.key() == e.key() && s.request.matches(h))
        });
        if !ok {
            let want = want.map_or("nothing (no matching change since)".into(), show);
            report.violate(
                Guarantee::Resumable,
                format!(
                    "segment {si} (start_revision {start}) response {ri} starts with {}, \
                     expected {want}",
                    show(e)
                ),
            );
        }
    }
}

fn check_events(
    report: &mut Report,
    history: &History,
    request: &WatchRequest,
    observed: &[(At, &Event)],
) {
    for &(at, e) in observed {
        let Some(truth) = history.event(e.revision(), e.key()) else {
            continue; // Reliable reports it
        };
        if e.kind == Kind::Put {
            let created = e.kv.create_revision == e.kv.mod_revision;
            if created != truth.prev_kv.is_none() {
                let state = truth.prev_kv.as_ref().map_or("absent".into(), |p| {
                    format!("present since {}", p.create_revision)
                });
                report.violate(
                    Guarantee::IsCreate,
                    format!(
                        "{at}: {} {} a create, but the key was {state} at revision {}",
                        show(e),
                        if created { "is" } else { "is not" },
                        e.revision() - 1
                    ),
                );
            }
        }
        let problem = match (request.prev_kv, &e.prev_kv, &truth.prev_kv) {
            (false, Some(p), _) => Some(format!("has prev_kv {p:?} though none was requested")),
            (true, Some(p), Some(t)) if p != t => {
                Some(format!("has prev_kv {p:?}, expected {t:?}"))
            }
            (true, Some(p), None) => {
                Some(format!("has prev_kv {p:?}, but the key was absent before"))
            }
            (true, None, Some(t)) => Some(format!("has no prev_kv, expected {t:?}")),
            _ => None,
        };
        if let Some(problem) = problem {
            report.violate(Guarantee::PrevKv, format!("{at}: {} {problem}", show(e)));
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "watch {}: {} segments, {} responses, {} events ({} expected in window {:?}), \
             {} progress notifies, {} multi-event responses",
            self.watch,
            s.segments,
            s.responses,
            s.events,
            s.expected,
            s.window,
            s.progress_notifies,
            s.multi_event_responses
        )?;
        for v in &self.violations {
            write!(f, "\n  broke {:?}: {}", v.guarantee, v.detail)?;
        }
        for (g, n) in &self.suppressed {
            write!(f, "\n  broke {g:?} {n} more times")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "watch_check_tests.rs"]
mod tests;
