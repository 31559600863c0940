//! Unit tests of the watch-guarantee checker: each guarantee broken once.

use super::*;

/// Revision 2: a=1; 3: a=2, b=1 (one txn); 4: delete a; 5: c=1;
/// 6: a=3 (re-created), delete b; 7: c=2.
fn history() -> History {
    History::from_changes(&[
        (2, vec![put("a", "1")]),
        (3, vec![put("a", "2"), put("b", "1")]),
        (4, vec![del("a")]),
        (5, vec![put("c", "1")]),
        (6, vec![put("a", "3"), del("b")]),
        (7, vec![put("c", "2")]),
    ])
}

fn all_keys(start_revision: i64) -> WatchRequest {
    WatchRequest {
        key: vec![0],
        range_end: vec![0],
        start_revision,
        prev_kv: true,
        ..WatchRequest::default()
    }
}

/// The history's change as a watch with `prev_kv` delivers it.
fn ev(h: &History, revision: i64, key: &str, prev_kv: bool) -> Event {
    let mut e = h.event(revision, key).expect("in history").clone();
    if !prev_kv {
        e.prev_kv = None;
    }
    e
}

fn events(events: Vec<Event>) -> Response {
    Response {
        header_revision: events.last().map_or(0, |e| e.revision()),
        events,
        ..Response::default()
    }
}

fn created(header_revision: i64) -> Response {
    Response {
        header_revision,
        created: true,
        ..Response::default()
    }
}

fn notify(revision: i64) -> Response {
    Response {
        header_revision: revision,
        ..Response::default()
    }
}

/// Responses per revision (a whole revision each) of `request`'s events.
fn deliver(
    h: &History,
    request: &WatchRequest,
    revs: std::ops::RangeInclusive<i64>,
) -> Vec<Response> {
    revs.filter_map(|rev| {
        let evs: Vec<Event> = (h.at(rev).iter())
            .filter(|e| request.matches(e))
            .map(|e| ev(h, rev, e.key(), request.prev_kv))
            .collect();
        (!evs.is_empty()).then(|| events(evs))
    })
    .collect()
}

fn segment(request: WatchRequest, responses: Vec<Response>) -> Segment {
    Segment {
        member: 1,
        request,
        responses,
        ended: String::new(),
    }
}

fn watch(segments: Vec<Segment>) -> Watch {
    Watch {
        name: "w".into(),
        segments,
    }
}

/// A correct watch of every key from revision 1 with prev_kv, resumed
/// once after revision 4 (notify at 4), then notified up to 7.
fn good_watch(h: &History) -> Watch {
    let req = all_keys(1);
    let mut first = vec![created(1)];
    first.extend(deliver(h, &req, 1..=4));
    first.push(notify(4));
    let mut second = vec![created(4)];
    second.extend(deliver(h, &req, 5..=7));
    second.push(notify(7));
    watch(vec![
        segment(req.clone(), first),
        segment(all_keys(5), second),
    ])
}

fn broken(h: &History, w: &Watch) -> BTreeSet<Guarantee> {
    let report = check(h, w);
    eprintln!("{report}");
    report.broken()
}

fn set(gs: &[Guarantee]) -> BTreeSet<Guarantee> {
    gs.iter().copied().collect()
}

#[test]
fn checker_accepts_a_correct_resumed_watch() {
    let h = history();
    let report = check(&h, &good_watch(&h));
    assert!(report.is_ok(), "{report}");
    let s = &report.stats;
    assert_eq!(s.window, Some((1, 7)));
    assert_eq!((s.expected, s.events), (8, 8));
    assert_eq!(
        (s.segments, s.progress_notifies, s.multi_event_responses),
        (2, 2, 2)
    );
}

#[test]
fn checker_accepts_filtered_and_ranged_watches() {
    let h = history();
    // Deletes only, from now (created at revision 2), no prev_kv.
    let req = WatchRequest {
        key: b"a".to_vec(),
        range_end: b"c".to_vec(),
        no_put: true,
        ..WatchRequest::default()
    };
    let mut rs = vec![created(2)];
    rs.extend(deliver(&h, &req, 3..=7));
    rs.push(notify(7));
    let report = check(&h, &watch(vec![segment(req, rs)]));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.stats.expected, 2);
    // One key, from revision 5.
    let req = WatchRequest {
        key: b"c".to_vec(),
        start_revision: 5,
        ..WatchRequest::default()
    };
    let rs = deliver(&h, &req, 5..=7);
    let report = check(&h, &watch(vec![segment(req, rs)]));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.stats.expected, 2);
}

#[test]
fn checker_ordered() {
    let h = history();
    let mut w = good_watch(&h);
    // Revision 7's response before revision 6's (same events overall).
    w.segments[1].responses.swap(2, 3);
    assert_eq!(broken(&h, &w), set(&[Guarantee::Ordered]));
}

#[test]
fn checker_unique() {
    let h = history();
    let mut w = good_watch(&h);
    // A resumption that replays revision 2 inside revision 3's response.
    w.segments[0].responses[2].events.push(ev(&h, 2, "a", true));
    let got = broken(&h, &w);
    assert_eq!(
        got,
        set(&[Guarantee::Ordered, Guarantee::Unique, Guarantee::Reliable])
    );
    // Delivered twice in one response, in order.
    let mut w = good_watch(&h);
    let dup = ev(&h, 5, "c", true);
    w.segments[1].responses[1].events.push(dup);
    assert_eq!(
        broken(&h, &w),
        set(&[Guarantee::Unique, Guarantee::Reliable])
    );
}

#[test]
fn checker_atomic() {
    let h = history();
    let mut w = good_watch(&h);
    // Split revision 3 (a, b) over two responses.
    let rs = &mut w.segments[0].responses;
    let b = rs[2].events.pop().unwrap();
    rs.insert(3, events(vec![b]));
    assert_eq!(broken(&h, &w), set(&[Guarantee::Atomic]));
}

#[test]
fn checker_reliable() {
    let h = history();
    // A dropped event.
    let mut w = good_watch(&h);
    w.segments[1].responses.remove(2); // revision 6: a=3, delete b
    assert_eq!(broken(&h, &w), set(&[Guarantee::Reliable]));
    // A wrong value.
    let mut w = good_watch(&h);
    w.segments[1].responses[1].events[0].kv.value = "bogus".into();
    assert_eq!(broken(&h, &w), set(&[Guarantee::Reliable]));
    // An event the filter excludes.
    let req = WatchRequest {
        key: b"c".to_vec(),
        no_put: true,
        ..WatchRequest::default()
    };
    let rs = vec![created(1), events(vec![ev(&h, 5, "c", false)])];
    let w = watch(vec![segment(req, rs)]);
    assert_eq!(broken(&h, &w), set(&[Guarantee::Reliable]));
    // From now: created at 3, so revision 4 must come before 5.
    let req = WatchRequest {
        key: vec![0],
        range_end: vec![0],
        ..WatchRequest::default()
    };
    let mut rs = vec![created(3)];
    rs.extend(deliver(&h, &req, 5..=7));
    let w = watch(vec![segment(req, rs)]);
    let report = check(&h, &w);
    assert_eq!(report.broken(), set(&[Guarantee::Reliable]), "{report}");
    assert!(
        report.violations[0].detail.contains("delete \"a\" @4"),
        "{report}"
    );
    // The window ends at the last notify: a silent watch missed revision 7.
    let mut w = good_watch(&h);
    w.segments[1].responses.remove(3);
    assert_eq!(broken(&h, &w), set(&[Guarantee::Reliable]));
}

#[test]
fn checker_resumable() {
    let h = history();
    let mut w = good_watch(&h);
    // The resumed segment (start 5) skips revision 5.
    w.segments[1].responses.remove(1);
    assert_eq!(
        broken(&h, &w),
        set(&[Guarantee::Resumable, Guarantee::Reliable])
    );
}

#[test]
fn checker_bookmarkable() {
    let h = history();
    // An event at a revision already notified: notify(4) then revision 4.
    let mut w = good_watch(&h);
    let rs = &mut w.segments[0].responses;
    rs.swap(3, 4); // [.., r3, notify 4, r4 delete a]
    assert_eq!(broken(&h, &w), set(&[Guarantee::Bookmarkable]));
    // A notify going back.
    let mut w = good_watch(&h);
    w.segments[1].responses.insert(1, notify(3));
    assert_eq!(broken(&h, &w), set(&[Guarantee::Bookmarkable]));
    // A notify behind the last event.
    let mut w = good_watch(&h);
    w.segments[1].responses.insert(3, notify(5));
    assert_eq!(broken(&h, &w), set(&[Guarantee::Bookmarkable]));
}

#[test]
fn checker_prev_kv() {
    let h = history();
    // Wrong prev_kv (the state at revision 2 instead of 3).
    let mut w = good_watch(&h);
    let e = &mut w.segments[0].responses[3].events[0]; // delete a @4
    e.prev_kv = h.event(2, "a").unwrap().clone().kv.into();
    assert_eq!(broken(&h, &w), set(&[Guarantee::PrevKv]));
    // Missing although requested and the key existed.
    let mut w = good_watch(&h);
    w.segments[0].responses[3].events[0].prev_kv = None;
    assert_eq!(broken(&h, &w), set(&[Guarantee::PrevKv]));
    // Present although not requested.
    let req = WatchRequest {
        key: b"c".to_vec(),
        start_revision: 5,
        ..WatchRequest::default()
    };
    let w = watch(vec![segment(req, vec![events(vec![ev(&h, 7, "c", true)])])]);
    let got = broken(&h, &w);
    // (It also starts at 7 where 5 was asked.)
    assert!(got.contains(&Guarantee::PrevKv), "{got:?}");
}

#[test]
fn checker_is_create() {
    let h = history();
    let mut w = good_watch(&h);
    // a=2 at revision 3 updates a; claiming a create is wrong.
    w.segments[0].responses[2].events[0].kv.create_revision = 3;
    assert_eq!(
        broken(&h, &w),
        set(&[Guarantee::IsCreate, Guarantee::Reliable])
    );
    // a=3 at revision 6 re-creates a; claiming an update is wrong.
    let mut w = good_watch(&h);
    w.segments[1].responses[2].events[0].kv.create_revision = 2;
    assert_eq!(
        broken(&h, &w),
        set(&[Guarantee::IsCreate, Guarantee::Reliable])
    );
}

#[test]
fn checker_compaction_cancel() {
    let h = history();
    let mut w = good_watch(&h);
    w.segments[1].responses.push(Response {
        header_revision: 7,
        canceled: true,
        compact_revision: 3,
        ..Response::default()
    });
    assert_eq!(broken(&h, &w), set(&[Guarantee::Canceled]));
}

#[test]
fn checker_caps_reports_per_guarantee() {
    let h = history();
    let mut w = good_watch(&h);
    for r in &mut w.segments[1].responses {
        for e in &mut r.events {
            e.prev_kv = Some(Kv::default());
        }
    }
    let report = check(&h, &w);
    assert_eq!(report.violations.len(), MAX_PER_GUARANTEE, "{report}");
    assert_eq!(report.suppressed[&Guarantee::PrevKv], 1);
}

#[test]
fn history_from_snapshots() {
    let kv = |key: &str, value: &str, c: i64, m: i64, v: i64| Kv {
        key: key.into(),
        value: value.into(),
        create_revision: c,
        mod_revision: m,
        version: v,
        lease: 0,
    };
    let snapshots = vec![
        (1, vec![]),
        (2, vec![kv("a", "1", 2, 2, 1)]),
        (3, vec![kv("a", "2", 2, 3, 2), kv("b", "1", 3, 3, 1)]),
        (4, vec![kv("b", "1", 3, 3, 1)]),
        (5, vec![kv("b", "1", 3, 3, 1), kv("c", "1", 5, 5, 1)]),
        (6, vec![kv("a", "3", 6, 6, 1), kv("c", "1", 5, 5, 1)]),
        (7, vec![kv("a", "3", 6, 6, 1), kv("c", "2", 5, 7, 2)]),
    ];
    let from_snapshots = History::from_snapshots(&snapshots).unwrap();
    let expected = history();
    assert_eq!(from_snapshots.events(), expected.events());
    assert_eq!(from_snapshots.last_revision, 7);

    let mut bad = snapshots.clone();
    bad[4].1[1].version = 2; // c created with version 2
    assert!(History::from_snapshots(&bad).is_err());
    let mut bad = snapshots.clone();
    bad[4].1.clear();
    bad[4].1.push(kv("b", "1", 3, 3, 1)); // revision 5 changed nothing
    assert!(History::from_snapshots(&bad).is_err());
    let mut bad = snapshots;
    bad.remove(3); // a gap
    assert!(History::from_snapshots(&bad).is_err());
}
