//! Unit tests of the index: deduplication, state changes, exact records, orderings.

use super::*;
use crate::tasks::format::Fields;
use std::borrow::Cow;

const PVE: &str = "UPID:pve1:00001234:00ABCDEF:67B4A9D1:vzdump:100:root@pam:";
const PBS: &str = "UPID:pbs:000002B2:00000158:00000000:674D828C:logrotate::root@pam:";

fn disk(upid: &str, end: Option<i64>, status: Option<&str>) -> DiskTask<'static> {
    DiskTask {
        r: Cow::Borrowed("lab"),
        u: Cow::Owned(upid.to_string()),
        e: end,
        s: status.map(|s| Cow::Owned(s.to_string())),
        x: None,
    }
}

fn starts_of(index: &Index, remote: u16) -> Vec<u32> {
    index.per_remote[remote as usize]
        .iter()
        .map(|&i| index.slots.get(i).start)
        .collect()
}

#[test]
fn merging_the_same_upid_twice_keeps_one_slot() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    assert!(matches!(
        index.merge(r, &disk(PVE, Some(5), Some("OK")), 1),
        Merged::New(0)
    ));
    assert_eq!(
        index.merge(r, &disk(PVE, Some(5), Some("OK")), 1),
        Merged::Same
    );
    assert_eq!(index.len(), 1);
    let other = index.intern_remote("other").unwrap();
    assert!(matches!(
        index.merge(other, &disk(PVE, None, None), 1),
        Merged::New(1)
    ));
}

#[test]
fn tasks_started_in_the_same_second_stay_apart() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    let same_second = [
        PVE,
        "UPID:pve1:00001235:00ABCDEF:67B4A9D1:vzdump:100:root@pam:",
        "UPID:pve2:00001234:00ABCDEF:67B4A9D1:vzdump:100:root@pam:",
        "UPID:pve1:00001234:00ABCDEF:67B4A9D1:vzdump:101:root@pam:",
        "UPID:pve1:00001234:1ABCDEF01:67B4A9D1:vzdump:100:root@pam:",
    ];
    for upid in same_second {
        assert!(matches!(
            index.merge(r, &disk(upid, Some(5), Some("OK")), 1),
            Merged::New(_)
        ));
    }
    for (i, upid) in same_second.iter().enumerate() {
        assert_eq!(
            index.merge(r, &disk(upid, Some(5), Some("OK")), 1),
            Merged::Same
        );
        assert_eq!(index.upid(i as u32), *upid);
    }
    assert_eq!(index.len(), same_second.len());
}

#[test]
fn finished_replaces_running_but_running_never_replaces_finished() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    index.merge(r, &disk(PVE, None, None), 1);
    assert!(index.has_running(r));
    assert_eq!(
        index.merge(r, &disk(PVE, Some(0x67B4_A9FF), Some("OK")), 2),
        Merged::Finished(0)
    );
    assert!(!index.has_running(r));
    assert_eq!(index.merge(r, &disk(PVE, None, None), 3), Merged::Same);
    let rec = index.record(0);
    assert_eq!(rec.end_time, Some(0x67B4_A9FF));
    assert_eq!(rec.status.as_deref(), Some("OK"));
    assert_eq!(index.slots.get(0).day, 2);
}

#[test]
fn records_are_rebuilt_exactly_from_the_parsed_upid() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    index.merge(r, &disk(PVE, Some(0x67B4_AA00), Some("job errors")), 1);
    index.merge(r, &disk(PBS, None, None), 1);
    let pve = index.record(0);
    assert_eq!(pve.upid, PVE);
    assert_eq!(pve.node, "pve1");
    assert_eq!(pve.task_type, "vzdump");
    assert_eq!(pve.task_id.as_deref(), Some("100"));
    assert_eq!(pve.user, "root@pam");
    assert_eq!(pve.start_time, 0x67B4_A9D1);
    let pbs = index.record(1);
    assert_eq!(pbs.upid, PBS);
    assert_eq!(pbs.task_id, None);
    assert_eq!(index.cutoff_key(1), "localhost");
    assert_eq!(index.cutoff_key(0), "pve1");
}

#[test]
fn wide_numbers_go_to_the_side_table_and_come_back() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    let wide_pstart = "UPID:pve1:00001234:1ABCDEF01:67B4A9D1:vzdump:100:root@pam:";
    let wide_counter = "UPID:pbs:000002B2:00000158:123456789ABC:674D828C:logrotate::root@pam:";
    index.merge(r, &disk(wide_pstart, Some(1 << 40), Some("OK")), 1);
    index.merge(r, &disk(wide_counter, Some(-3), None), 1);
    assert_eq!(index.record(0).upid, wide_pstart);
    assert_eq!(index.record(0).end_time, Some(1 << 40));
    assert_eq!(index.record(1).upid, wide_counter);
    assert_eq!(index.record(1).end_time, Some(-3));
    assert_eq!(index.record(1).status, None);
    assert_eq!(
        index.merge(r, &disk(wide_counter, Some(-3), None), 1),
        Merged::Same
    );
}

#[test]
fn a_upid_that_does_not_parse_is_kept_verbatim_with_its_fields() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    let mut t = disk("UPID:odd", Some(-5), Some("OK"));
    t.x = Some(Fields {
        node: "n".into(),
        task_type: "t".into(),
        task_id: None,
        user: "u@pam".into(),
        start_time: -10,
    });
    index.merge(r, &t, 1);
    let rec = index.record(0);
    assert_eq!(rec.upid, "UPID:odd");
    assert_eq!(rec.start_time, -10);
    assert_eq!(rec.end_time, Some(-5));
    assert_eq!(rec.node, "n");
    assert_eq!(index.merge(r, &t, 1), Merged::Same);
    let other = index.intern_remote("other").unwrap();
    assert!(matches!(index.merge(other, &t, 1), Merged::New(1)));
}

#[test]
fn a_upid_whose_record_differs_is_the_same_task_as_its_plain_form() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    let mut t = disk(PBS, None, None);
    t.x = Some(Fields {
        node: "other-name".into(),
        task_type: "logrotate".into(),
        task_id: None,
        user: "root@pam".into(),
        start_time: 0x674D_828C,
    });
    index.merge(r, &t, 1);
    assert_eq!(index.cutoff_key(0), "localhost");
    assert_eq!(index.record(0).node, "other-name");
    assert_eq!(
        index.merge(r, &disk(PBS, Some(0x674D_8290), Some("OK")), 1),
        Merged::Finished(0)
    );
    assert_eq!(index.record(0).upid, PBS);
}

#[test]
fn dropping_a_day_removes_its_tasks_and_keeps_the_rest_findable() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    index.merge(r, &disk(PVE, Some(1), Some("OK")), 1);
    index.merge(r, &disk(PBS, Some(1), Some("OK")), 2);
    let mut odd = disk("UPID:odd", Some(1), Some("OK"));
    odd.x = Some(Fields {
        node: "n".into(),
        task_type: "t".into(),
        task_id: None,
        user: "u@pam".into(),
        start_time: 5,
    });
    index.merge(r, &odd, 2);
    assert_eq!(index.drop_day(1), 1);
    assert_eq!(index.len(), 2);
    assert_eq!(index.record(0).upid, PBS);
    assert_eq!(
        index.merge(r, &disk(PBS, Some(1), Some("OK")), 2),
        Merged::Same
    );
    assert_eq!(index.merge(r, &odd, 2), Merged::Same);
    assert_eq!(index.per_remote[r as usize], vec![1, 0]);
}

#[test]
fn out_of_order_inserts_keep_the_ordering_sorted() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    let upid = |start: u32| format!("UPID:n:00000001:00000001:{start:08X}:t::u@pam:");
    for start in [50, 10, 30, 20, 60] {
        index.merge(r, &disk(&upid(start), None, None), 1);
    }
    assert_eq!(starts_of(&index, r), vec![10, 20, 30, 50, 60]);
    index.rebuild();
    assert_eq!(starts_of(&index, r), vec![10, 20, 30, 50, 60]);
}

#[test]
fn a_plan_changes_nothing_until_it_is_applied() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    let t = disk(PVE, None, None);
    let parsed = Upid::parse(PVE).ok();
    let incoming = Incoming::from_disk(&t, parsed.as_ref());
    let change = index.plan(Some(r), &incoming).unwrap();
    assert_eq!(index.len(), 0);
    assert_eq!(index.apply(r, change, &incoming, 1), Merged::New(0));
    assert!(index.plan(Some(r), &incoming).is_none());
    assert_eq!(index.record(0).upid, PVE);
}

#[test]
fn binary_search_through_the_fences_finds_every_boundary() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    let upid = |start: u32, pid: u32| format!("UPID:n:{pid:08X}:00000001:{start:08X}:t::u@pam:");
    // Starts 10, 10, 20, 20, … out of order, more than a few fences long.
    let mut starts: Vec<u32> = (0..300).map(|k| 10 * (k / 2 + 1)).collect();
    starts.reverse();
    starts.swap(3, 200);
    for (pid, &start) in starts.iter().enumerate() {
        index.merge(r, &disk(&upid(start, pid as u32), None, None), 1);
    }
    let mut sorted = starts.clone();
    sorted.sort_unstable();
    assert_eq!(starts_of(&index, r), sorted);
    for t in 0..=1_510 {
        let below = sorted.iter().filter(|&&s| s < t).count();
        let at_most = sorted.iter().filter(|&&s| s <= t).count();
        assert_eq!(index.partition(r, |s| s < t), below, "< {t}");
        assert_eq!(index.partition(r, |s| s <= t), at_most, "<= {t}");
    }
    index.rebuild();
    assert_eq!(index.partition(r, |s| s < 755), 150);
}

#[test]
fn a_snapshot_index_with_an_empty_upid_text_is_refused() {
    let mut index = Index::default();
    let r = index.intern_remote("lab").unwrap();
    assert!(matches!(
        index.merge(r, &disk("not-a-upid", Some(5), Some("OK")), 1),
        Merged::New(0)
    ));
    let decode = |index: &Index| {
        let mut bytes = Vec::new();
        index.encode(&mut bytes).unwrap();
        Index::decode_all(&bytes)
    };
    assert_eq!(decode(&index).unwrap().upid(0), "not-a-upid");
    index.extra.get_mut(&0).unwrap().upid = Some("".into());
    let refused = decode(&index).unwrap_err();
    assert!(refused.contains("empty UPID"), "{refused}");
}
