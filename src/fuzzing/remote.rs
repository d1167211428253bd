//! What PVE and PBS remotes answer: metric exports, task lists and task status, node
//! and resource lists, and the UPIDs in them.

use fleetpoll_actors::{ErrorClass, MetricBatch, RemoteId, SourceError, TaskRecord, UnixTime};

use crate::remote::metrics::{
    parse_dated_metric_reply, parse_with_serde_and_future, scanned_with_future,
};
use crate::remote::reply::{parse_data, NodeItem, TaskItem, TaskStatusItem};
use crate::remote::resources::{parse_cluster_resources, parse_datastore_usage};
use crate::remote::upid::Upid;
use crate::remote::MAX_FUTURE_SECS;

/// When the replies were asked for.
const NOW: UnixTime = 1_700_000_000;

fn remote() -> RemoteId {
    RemoteId::new("fuzz")
}

/// A batch as comparable rows (values by their bits, so `NaN` equals itself).
fn rows(b: &MetricBatch) -> Vec<(usize, i64, u64)> {
    b.points
        .iter()
        .map(|p| (p.series as usize, p.timestamp, p.value.to_bits()))
        .collect()
}

/// A metric export reply: the fast scanner, where it takes the reply, yields exactly
/// what the serde reference parser yields; an accepted reply's points refer to its
/// series, lie at most [`MAX_FUTURE_SECS`] ahead and number at most one per 8 bytes of
/// reply; a refused one is a `BadReply` or `Clock` error.
pub fn remote_metrics(data: &[u8]) {
    let remote = remote();
    if let Some((fast, fast_future)) = scanned_with_future(data, NOW) {
        let (reference, future) = parse_with_serde_and_future(&remote, data, NOW)
            .unwrap_or_else(|e| panic!("the scanner took a reply serde refuses: {e}"));
        assert_eq!(fast.series, reference.series, "series differ");
        assert_eq!(rows(&fast), rows(&reference), "points differ");
        assert_eq!(fast.dropped_future, reference.dropped_future);
        assert_eq!(fast_future, future);
    }
    // A `Date` header a few minutes ahead for some inputs: the clock check's other arm.
    let date = data.len().is_multiple_of(3).then_some(NOW + 300);
    match parse_dated_metric_reply(&remote, data, NOW, date) {
        Ok(batch) => {
            let n = batch.points.len() as u64 + batch.dropped_future;
            assert!(
                n <= data.len() as u64 / 8,
                "{n} points from {} bytes",
                data.len()
            );
            assert!(batch.series.len() <= data.len() / 8);
            for p in &batch.points {
                assert!((p.series as usize) < batch.series.len());
                assert!(p.timestamp <= NOW + MAX_FUTURE_SECS);
            }
        }
        Err(e) => assert_class(&e, &[ErrorClass::BadReply, ErrorClass::Clock]),
    }
}

fn assert_class(e: &SourceError, classes: &[ErrorClass]) {
    assert!(classes.contains(&e.class), "unexpected error class: {e:?}");
}

/// The other JSON replies, each parser on the same bytes: task lists (PVE's and PBS's
/// field names), task status, node lists, PVE cluster resources and PBS datastore
/// usage. No panic; a refusal is a `BadReply` error; task records keep no empty task
/// id; resources have an id and a type.
pub fn remote_replies(data: &[u8]) {
    let remote = remote();
    let bad_reply = [ErrorClass::BadReply];
    match parse_data::<Vec<TaskItem>>(&remote, data) {
        Ok(items) => {
            for item in items {
                let record = TaskRecord::from(item);
                assert_ne!(record.task_id.as_deref(), Some(""));
            }
        }
        Err(e) => assert_class(&e, &bad_reply),
    }
    match parse_data::<TaskStatusItem>(&remote, data).and_then(|s| s.into_state(&remote)) {
        Ok(_) => {}
        Err(e) => assert_class(&e, &bad_reply),
    }
    if let Err(e) = parse_data::<Vec<NodeItem>>(&remote, data) {
        assert_class(&e, &bad_reply);
    }
    for parsed in [
        parse_cluster_resources(&remote, data),
        parse_datastore_usage(&remote, data),
    ] {
        match parsed {
            Ok(list) => {
                for r in list {
                    assert!(!r.id.is_empty() && !r.resource_type.is_empty());
                    assert!(r.cpu.is_none_or(|c| c.is_finite() && c >= 0.0));
                }
            }
            Err(e) => assert_class(&e, &bad_reply),
        }
    }
}

/// A UPID (UTF-8; other bytes are skipped): an accepted one formats back to exactly
/// its text, and that text parses to the same UPID.
pub fn upid(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = Upid::parse(text) {
        let again = u.to_string();
        assert_eq!(again, text, "a UPID formats back differently");
        assert_eq!(Upid::parse(&again).as_ref(), Ok(&u));
        assert!(!u.worker_type.is_empty());
    }
}
