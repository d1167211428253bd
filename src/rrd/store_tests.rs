//! Behaviour specifications of [`RrdStore`]: files per entity in the Proxmox VE 9
//! layout, cursors, and recovery from the journal after a crash or a torn tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fleetpoll_actors::{
    Cursor, MetricBatch, MetricKind, MetricPoint, MetricStore, MetricWrite, RemoteId, SeriesKey,
};

use super::layout::pve_archives;
use super::store::RrdStore;
use super::{Cf, DsType, FetchRequest, RrdFile};

const T0: i64 = 1_700_000_040; // a multiple of 60

/// A test's directory, removed when the test ends (pass or fail), so repeated runs do
/// not fill the temp filesystem. It derefs to the path of a directory that does not
/// exist yet: the store creates it.
struct TestDir {
    _parent: tempfile::TempDir,
    path: PathBuf,
}

impl std::ops::Deref for TestDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

fn temp_dir(name: &str) -> TestDir {
    let parent = tempfile::Builder::new()
        .prefix(&format!("fleetpoll-store-{name}-"))
        .tempdir()
        .expect("create a temp dir");
    let path = parent.path().join("store");
    TestDir {
        _parent: parent,
        path,
    }
}

fn series(entity: &str, metric: &str, kind: MetricKind) -> SeriesKey {
    SeriesKey {
        entity: Arc::from(entity),
        metric: Arc::from(metric),
        kind,
    }
}

/// `minutes` points per series, one a minute from `T0 + 60 × first`: cpu 0.5, a
/// network counter growing 6000 a minute, memory 100.
fn batch(first: i64, minutes: i64, with_memory: bool) -> MetricBatch {
    let mut series = vec![
        series("node/pve1", "cpu_current", MetricKind::Gauge),
        series("node/pve1", "net_in", MetricKind::Derive),
    ];
    if with_memory {
        series.push(series_mem());
    }
    let mut points = Vec::new();
    for m in first..first + minutes {
        let timestamp = T0 + 60 * m;
        points.push(MetricPoint {
            series: 0,
            timestamp,
            value: 0.5,
        });
        points.push(MetricPoint {
            series: 1,
            timestamp,
            value: (6000 * m) as f64,
        });
        if with_memory {
            points.push(MetricPoint {
                series: 2,
                timestamp,
                value: 100.0,
            });
        }
    }
    MetricBatch {
        series,
        points,
        dropped_future: 0,
    }
}

fn series_mem() -> SeriesKey {
    series("node/pve1", "mem_used", MetricKind::Gauge)
}

fn write(batch: MetricBatch) -> Vec<MetricWrite> {
    vec![MetricWrite {
        remote: RemoteId::new("lab"),
        batch,
    }]
}

/// The 1-minute AVERAGE rows of `node/pve1` for minutes `from..=to`.
fn rows(store: &RrdStore, from: i64, to: i64) -> Vec<Vec<f64>> {
    let result = store
        .fetch(
            &RemoteId::new("lab"),
            "node/pve1",
            &FetchRequest {
                cf: Cf::Average,
                start: T0 + 60 * from - 60,
                end: T0 + 60 * to - 1,
                resolution: 60,
            },
        )
        .unwrap()
        .expect("the entity was stored");
    assert_eq!(result.step, 60);
    result.rows.into_iter().map(|(_, values)| values).collect()
}

#[test]
fn an_entity_gets_one_file_in_the_proxmox_layout_holding_all_its_metrics() {
    let dir = temp_dir("layout");
    let (store, _) = RrdStore::open(&dir).unwrap();
    let cursors = store.store_metrics(&write(batch(0, 5, true)));
    assert_eq!(cursors, vec![Ok(Cursor(Some(T0 + 240)))]);
    store.commit().unwrap();
    let path = RrdStore::file_path(&dir, &RemoteId::new("lab"), "node/pve1");
    assert_eq!(path, dir.join("lab").join("node%2Fpve1.rrd"));
    let file = RrdFile::open(&path).unwrap();
    let rrd = file.rrd();
    assert_eq!(rrd.step(), 60);
    assert_eq!(rrd.archives(), pve_archives().as_slice());
    let kinds: Vec<_> = rrd
        .data_sources()
        .iter()
        .map(|d| (d.name.as_str(), d.kind, d.heartbeat, d.min, d.max))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("cpu_current", DsType::Gauge, 120, Some(0.0), None),
            ("net_in", DsType::Derive, 120, Some(0.0), None),
            ("mem_used", DsType::Gauge, 120, Some(0.0), None),
        ]
    );
    // The file starts a second before the first point, so minute 0 is mostly
    // unknown; from minute 1 on every metric is known (the counter as a rate).
    let rows = rows(&store, 0, 4);
    assert!(rows[0].iter().all(|v| v.is_nan()), "{:?}", rows[0]);
    assert_eq!(rows[1], vec![0.5, 100.0, 100.0]);
    assert_eq!(rows[4], vec![0.5, 100.0, 100.0]);
}

#[test]
fn points_already_stored_are_ignored_without_error() {
    let dir = temp_dir("ignored");
    let (store, _) = RrdStore::open(&dir).unwrap();
    let first = store.store_metrics(&write(batch(0, 3, false)));
    let again = store.store_metrics(&write(batch(0, 3, false)));
    assert_eq!(first, again);
    assert_eq!(rows(&store, 1, 2), vec![vec![0.5, 100.0]; 2]);
}

#[test]
fn a_metric_that_appears_later_gets_a_column_and_earlier_data_stays() {
    let dir = temp_dir("grow");
    let (store, _) = RrdStore::open(&dir).unwrap();
    store.store_metrics(&write(batch(0, 3, false)));
    store.store_metrics(&write(batch(3, 3, true)));
    let rows = rows(&store, 1, 5);
    assert_eq!(rows[0].len(), 3);
    assert_eq!(rows[0][..2], [0.5, 100.0], "minute 1 kept");
    assert!(rows[0][2].is_nan(), "memory was not measured then");
    assert_eq!(rows[4], vec![0.5, 100.0, 100.0]);
}

#[test]
fn the_cursor_survives_a_restart() {
    let dir = temp_dir("cursor");
    let (store, _) = RrdStore::open(&dir).unwrap();
    store.store_metrics(&write(batch(0, 4, false)));
    store.commit().unwrap();
    drop(store);
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 0, "the commit emptied the journal");
    assert_eq!(store.cursor(&RemoteId::new("lab")), Cursor(Some(T0 + 180)));
    assert_eq!(store.cursor(&RemoteId::new("other")), Cursor::START);
}

/// Copies every `.rrd` file under `dir` (a snapshot of what a sync made durable).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let remote = dir.join("lab");
    std::fs::read_dir(&remote)
        .unwrap()
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect()
}

#[test]
fn acknowledged_points_lost_from_the_files_in_a_crash_are_replayed_from_the_journal() {
    let dir = temp_dir("crash");
    let (store, _) = RrdStore::open(&dir).unwrap();
    store.store_metrics(&write(batch(0, 3, false)));
    store.commit().unwrap();
    let durable = snapshot(&dir);
    // Acknowledged (journalled and synced), but the in-place writes are then lost.
    assert!(store.store_metrics(&write(batch(3, 3, false)))[0].is_ok());
    drop(store);
    for (path, bytes) in durable {
        std::fs::write(path, bytes).unwrap();
    }
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 1);
    assert_eq!(rows(&store, 1, 5), vec![vec![0.5, 100.0]; 5]);
}

#[test]
fn a_torn_journal_tail_is_cut_off_and_the_records_before_it_replayed() {
    let dir = temp_dir("torn");
    let (store, _) = RrdStore::open(&dir).unwrap();
    store.store_metrics(&write(batch(0, 3, false)));
    store.commit().unwrap();
    let durable = snapshot(&dir);
    store.store_metrics(&write(batch(3, 2, false)));
    store.store_metrics(&write(batch(5, 2, false)));
    drop(store);
    for (path, bytes) in durable {
        std::fs::write(path, bytes).unwrap();
    }
    let journal = dir.join("journal");
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 1);
    assert!(recovery.discarded_bytes > 0);
    let rows = rows(&store, 1, 6);
    assert_eq!(
        rows[3],
        vec![0.5, 100.0],
        "minute 4 came from the intact record"
    );
    assert!(rows[5][0].is_nan(), "minute 6 was in the torn record");
}

#[test]
fn metric_names_become_valid_distinct_data_source_names() {
    use super::layout::ds_name;
    assert_eq!(ds_name("cpu_current"), "cpu_current");
    assert_eq!(ds_name("node.load-1"), "node_load_1");
    let a = ds_name("node_network_receive_bytes_total");
    let b = ds_name("node_network_transmit_bytes_total");
    assert_eq!(a.len(), 19);
    assert!(a.starts_with("node_networ_"), "{a}");
    assert_ne!(a, b, "a hash of the full name tells long names apart");
    assert_eq!(a, ds_name("node_network_receive_bytes_total"), "stable");
    let def: super::DsDef = format!("DS:{a}:GAUGE:120:0:U").parse().unwrap();
    assert_eq!(def.name, a);
}

/// A batch with the node's metrics and one guest's cpu, for minutes `first..first+n`.
fn two_entities(first: i64, minutes: i64) -> MetricBatch {
    let mut b = batch(first, minutes, false);
    b.series
        .push(series("qemu/100", "cpu_current", MetricKind::Gauge));
    for m in first..first + minutes {
        b.points.push(MetricPoint {
            series: 2,
            timestamp: T0 + 60 * m,
            value: 0.25,
        });
    }
    b
}

#[test]
fn a_corrupt_entity_file_is_set_aside_and_spares_the_other_entities_and_the_restart() {
    let dir = temp_dir("corrupt");
    let (store, _) = RrdStore::open(&dir).unwrap();
    store.store_metrics(&write(two_entities(0, 2)));
    store.commit().unwrap();
    drop(store);
    let node = RrdStore::file_path(&dir, &RemoteId::new("lab"), "node/pve1");
    let mut bytes = std::fs::read(&node).unwrap();
    bytes[70] ^= 0xFF;
    std::fs::write(&node, &bytes).unwrap();

    let (store, _) = RrdStore::open(&dir).unwrap();
    let result = store.store_metrics(&write(two_entities(2, 2)));
    assert!(result[0].is_ok(), "{:?}", result[0]);
    let damaged = store.damaged_files();
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].path, node);
    assert_eq!(
        std::fs::read(&damaged[0].set_aside).unwrap(),
        bytes,
        "the corrupt file is kept as it was"
    );
    let guest = store
        .fetch(
            &RemoteId::new("lab"),
            "qemu/100",
            &FetchRequest {
                cf: Cf::Average,
                start: T0 + 60,
                end: T0 + 179,
                resolution: 60,
            },
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        guest.rows[1].1,
        vec![0.25],
        "minute 3 of the guest was stored"
    );
    store.commit().unwrap();
    drop(store);

    let (_, recovery) = RrdStore::open(&dir).unwrap();
    assert!(recovery.errors.is_empty(), "{:?}", recovery.errors);
    assert_eq!(RrdFile::peek_last_update(&node).unwrap(), T0 + 180);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_naming_it_until_the_first_is_dropped() {
    let dir = temp_dir("locked");
    let (first, _) = RrdStore::open(&dir).unwrap();
    let err = RrdStore::open(&dir).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, super::RrdError::Locked { .. }), "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(
        message.contains(&dir.join("store.lock").display().to_string()),
        "{message}"
    );
    assert!(message.contains("stop the other fleetpoll"), "{message}");
    drop(first);
    assert!(RrdStore::open(&dir).is_ok());
}

#[test]
fn a_damaged_journal_is_reported_and_its_unreadable_part_kept_aside() {
    let dir = temp_dir("damaged-journal");
    let (store, _) = RrdStore::open(&dir).unwrap();
    store.store_metrics(&write(batch(0, 2, false)));
    store.store_metrics(&write(batch(2, 2, false)));
    drop(store); // no commit: both records are in the journal
    let journal = dir.join("journal");
    let mut bytes = std::fs::read(&journal).unwrap();
    let first_len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    // A byte in the middle of the second record's payload.
    let at = 8 + first_len + 8 + 3;
    bytes[at] ^= 0x01;
    std::fs::write(&journal, &bytes).unwrap();

    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 1, "the first record is intact");
    assert_eq!(recovery.damaged_journal.len(), 1);
    let damage = &recovery.damaged_journal[0];
    assert_eq!(damage.path, journal);
    assert_eq!(damage.offset, (8 + first_len) as u64);
    assert_eq!(damage.bytes, (bytes.len() - 8 - first_len) as u64);
    assert!(damage.problem.contains("CRC32"), "{}", damage.problem);
    let kept = std::fs::read(&damage.kept_in).unwrap();
    assert_eq!(
        kept,
        bytes[8 + first_len..],
        "the damaged part is kept as it was"
    );
    let name = damage.kept_in.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("journal.damaged-"), "{name}");
    let message = damage.to_string();
    assert!(message.contains(name), "{message}");
    assert!(message.contains("lost"), "{message}");
    let rows = rows(&store, 1, 3);
    assert_eq!(rows[0][0], 0.5, "minute 1 came from the intact record");
    assert!(rows[1][0].is_nan(), "minute 2 was in the damaged record");
}

#[test]
fn stored_points_stay_in_the_journal_until_a_commit_writes_them_into_the_files() {
    let dir = temp_dir("cadence");
    let (store, _) = RrdStore::open(&dir).unwrap();
    let path = RrdStore::file_path(&dir, &RemoteId::new("lab"), "node/pve1");
    store.store_metrics(&write(batch(0, 3, false)));
    assert!(!path.exists(), "no file before the commit");
    assert!(std::fs::metadata(dir.join("journal")).unwrap().len() > 0);
    store.commit().unwrap();
    assert_eq!(RrdFile::peek_last_update(&path).unwrap(), T0 + 120);
    assert_eq!(std::fs::metadata(dir.join("journal")).unwrap().len(), 0);

    store.store_metrics(&write(batch(3, 3, false)));
    assert_eq!(
        RrdFile::peek_last_update(&path).unwrap(),
        T0 + 120,
        "the file is not touched by store_metrics"
    );
    assert_eq!(
        store.cursor(&RemoteId::new("lab")),
        Cursor(Some(T0 + 300)),
        "the cursor counts journalled points"
    );
    store.commit().unwrap();
    assert_eq!(RrdFile::peek_last_update(&path).unwrap(), T0 + 300);
}

#[test]
fn a_restart_applies_the_journal_to_the_files_and_empties_it() {
    let dir = temp_dir("startup-apply");
    let (store, _) = RrdStore::open(&dir).unwrap();
    store.store_metrics(&write(batch(0, 4, true)));
    drop(store); // no commit: a crash or a kill
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 1);
    assert!(recovery.errors.is_empty(), "{:?}", recovery.errors);
    let path = RrdStore::file_path(&dir, &RemoteId::new("lab"), "node/pve1");
    assert_eq!(RrdFile::peek_last_update(&path).unwrap(), T0 + 180);
    assert_eq!(std::fs::metadata(dir.join("journal")).unwrap().len(), 0);
    assert_eq!(rows(&store, 1, 3), vec![vec![0.5, 100.0, 100.0]; 3]);
}

#[test]
fn more_entities_than_the_open_file_cache_holds_are_all_committed_and_readable() {
    let dir = temp_dir("many");
    let (store, _) = RrdStore::open(&dir).unwrap();
    // More entities than the cache's 16 files.
    let b = guests(80, 0, 3);
    assert!(store.store_metrics(&write(b))[0].is_ok());
    store.commit().unwrap();
    drop(store);
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 0);
    for e in [0u32, 40, 79] {
        let result = store
            .fetch(
                &RemoteId::new("lab"),
                &format!("qemu/{e}"),
                &FetchRequest {
                    cf: Cf::Average,
                    start: T0,
                    end: T0 + 119,
                    resolution: 60,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(result.rows[1].1, vec![f64::from(e)], "qemu/{e}");
    }
    assert_eq!(store.entities(&RemoteId::new("lab")).unwrap().len(), 80);
}

/// A batch of `entities` guests with `minutes` points each from minute `first`.
fn guests(entities: u32, first: i64, minutes: i64) -> MetricBatch {
    let mut b = MetricBatch::default();
    for e in 0..entities {
        b.series.push(series(
            &format!("qemu/{e}"),
            "cpu_current",
            MetricKind::Gauge,
        ));
        for m in first..first + minutes {
            b.points.push(MetricPoint {
                series: e,
                timestamp: T0 + 60 * m,
                value: f64::from(e),
            });
        }
    }
    b
}

/// A `syncfs` that holds the commit calling it until the test lets it go, so the test
/// can act while a commit is provably under way.
#[derive(Debug)]
struct GateSyncFs {
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl crate::durable::SyncFs for GateSyncFs {
    fn sync_fs(&self, handle: &std::fs::File) -> std::io::Result<()> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv();
        crate::durable::KernelSyncFs.sync_fs(handle)
    }
}

#[test]
fn points_stored_while_a_commit_runs_survive_a_crash_after_it() {
    let dir = temp_dir("during-commit");
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let gate = Arc::new(GateSyncFs {
        entered: std::sync::Mutex::new(entered_tx),
        release: std::sync::Mutex::new(release_rx),
    });
    let (store, _) = RrdStore::open_with(&dir, gate).unwrap();
    // More entities than the closed files a commit lets wait before syncing them.
    let entities = 400;
    assert!(store.store_metrics(&write(guests(entities, 0, 3)))[0].is_ok());
    let store = Arc::new(store);
    let committer = {
        let store = store.clone();
        std::thread::spawn(move || store.commit())
    };
    // The commit has written its files and holds in its syncfs, the journal sealed.
    entered
        .recv_timeout(Duration::from_secs(60))
        .expect("the commit reaches its syncfs");
    assert!(
        dir.join("journal.sealed").exists(),
        "the commit is under way"
    );
    let (stored_tx, stored) = std::sync::mpsc::channel();
    {
        let store = store.clone();
        std::thread::spawn(move || {
            let _ = stored_tx.send(store.store_metrics(&write(guests(entities, 3, 2))));
        });
    }
    let during = stored
        .recv_timeout(Duration::from_secs(30))
        .expect("storing must not wait for the commit to end");
    assert!(during[0].is_ok());
    release.send(()).unwrap();
    committer.join().unwrap().unwrap();
    let store = Arc::into_inner(store).expect("the committer is done");
    drop(store); // no second commit: a crash
    assert!(
        !dir.join("journal.sealed").exists(),
        "a finished commit releases its sealed records"
    );
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert!(recovery.errors.is_empty(), "{:?}", recovery.errors);
    for e in [0u32, 255, 399] {
        let path = RrdStore::file_path(&dir, &RemoteId::new("lab"), &format!("qemu/{e}"));
        assert_eq!(
            RrdFile::peek_last_update(&path).unwrap(),
            T0 + 240,
            "qemu/{e} has the points stored during the commit"
        );
    }
    assert_eq!(store.entities(&RemoteId::new("lab")).unwrap().len(), 400);
}

#[test]
fn a_commit_interrupted_before_its_release_is_finished_by_the_next_open() {
    let dir = temp_dir("sealed-left");
    let (store, _) = RrdStore::open(&dir).unwrap();
    assert!(store.store_metrics(&write(guests(3, 0, 3)))[0].is_ok());
    drop(store);
    // What a crash between sealing and releasing leaves: the records in the sealed
    // part, an empty journal, files without the points.
    std::fs::rename(dir.join("journal"), dir.join("journal.sealed")).unwrap();
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 1);
    assert!(!dir.join("journal.sealed").exists());
    let path = RrdStore::file_path(&dir, &RemoteId::new("lab"), "qemu/2");
    assert_eq!(RrdFile::peek_last_update(&path).unwrap(), T0 + 120);
    drop(store);
}

/// A stand-in for the kernel's `syncfs`: records, at each call, whether the sealed
/// journal was still there, and fails with `EIO` while told to.
#[derive(Debug)]
struct RecordingSyncFs {
    sealed: PathBuf,
    fail: std::sync::atomic::AtomicBool,
    calls: std::sync::Mutex<Vec<bool>>,
}

impl RecordingSyncFs {
    fn new(dir: &Path, fail: bool) -> Arc<RecordingSyncFs> {
        Arc::new(RecordingSyncFs {
            sealed: dir.join("journal.sealed"),
            fail: std::sync::atomic::AtomicBool::new(fail),
            calls: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<bool> {
        self.calls.lock().unwrap().clone()
    }
}

impl crate::durable::SyncFs for RecordingSyncFs {
    fn sync_fs(&self, handle: &std::fs::File) -> std::io::Result<()> {
        self.calls.lock().unwrap().push(self.sealed.exists());
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        crate::durable::KernelSyncFs.sync_fs(handle)
    }
}

#[test]
fn a_commit_syncs_the_file_system_once_and_only_then_releases_the_journal() {
    let dir = temp_dir("syncfs-once");
    let sync = RecordingSyncFs::new(&dir, false);
    let (store, _) = RrdStore::open_with(&dir, sync.clone()).unwrap();
    assert!(store.store_metrics(&write(guests(40, 0, 3)))[0].is_ok());
    store.commit().unwrap();
    assert_eq!(
        sync.calls(),
        vec![true],
        "one syncfs for 40 files, while the sealed journal was still kept"
    );
    assert!(!dir.join("journal.sealed").exists(), "released after it");
    store.commit().unwrap();
    assert_eq!(sync.calls().len(), 1, "nothing written, nothing to sync");
}

#[test]
fn a_failed_syncfs_releases_no_journal_and_the_points_are_replayed_at_the_next_open() {
    let dir = temp_dir("syncfs-fails");
    let sync = RecordingSyncFs::new(&dir, true);
    let (store, _) = RrdStore::open_with(&dir, sync.clone()).unwrap();
    assert!(store.store_metrics(&write(guests(3, 0, 3)))[0].is_ok());
    let err = store.commit().unwrap_err();
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("os error 5"), "{err}");
    assert!(dir.join("journal.sealed").exists(), "nothing released");

    // The disk answers again, but the kernel may have dropped the pages the failed
    // sync was about: a later commit that syncs fine still keeps the sealed part.
    sync.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(store.store_metrics(&write(guests(3, 3, 2)))[0].is_ok());
    store.commit().unwrap();
    assert_eq!(sync.calls().len(), 2, "the failed file system synced again");
    assert!(dir.join("journal.sealed").exists(), "still kept");
    drop(store);

    // What the lost pages would have held comes back from the sealed part.
    let path = RrdStore::file_path(&dir, &RemoteId::new("lab"), "qemu/2");
    std::fs::remove_file(&path).unwrap();
    let (store, recovery) = RrdStore::open(&dir).unwrap();
    assert_eq!(recovery.replayed, 2, "both batches replayed");
    assert!(recovery.errors.is_empty(), "{:?}", recovery.errors);
    assert!(!dir.join("journal.sealed").exists());
    assert_eq!(RrdFile::peek_last_update(&path).unwrap(), T0 + 240);
    drop(store);
}

#[test]
fn the_trend_lines_from_memory_equal_the_hour_read_from_the_files() {
    let dir = temp_dir("trend");
    let (store, _) = RrdStore::open(&dir).unwrap();
    let remote = RemoteId::new("lab");
    let keys = [
        series("node/pve1", "cpu_current", MetricKind::Gauge),
        series("storage/pve1/local", "disk_used", MetricKind::Gauge),
        series("storage/pve1/local", "disk_total", MetricKind::Gauge),
    ];
    // Two hours, one batch a minute, a sample on each minute; a gap of five minutes.
    for m in 0..120 {
        if (70..75).contains(&m) {
            continue;
        }
        let timestamp = T0 + 60 * m;
        let values = [
            f64::from((m % 17) as u8) / 16.0,
            f64::from((m % 5) as u8),
            8.0,
        ];
        let batch = MetricBatch {
            series: keys.to_vec(),
            points: (0..3)
                .map(|s| MetricPoint {
                    series: s,
                    timestamp,
                    value: values[s as usize],
                })
                .collect(),
            dropped_future: 0,
        };
        let stored = store.store_metrics(&[MetricWrite {
            remote: remote.clone(),
            batch,
        }]);
        assert!(stored[0].is_ok());
    }
    store.commit().unwrap();
    for now in [T0 + 60 * 119, T0 + 60 * 119 + 30, T0 + 60 * 125] {
        let hour = store
            .hour_trends(&remote, now)
            .expect("memory holds the hour");
        for (entity, metrics) in [
            ("node/pve1", vec!["cpu_current"]),
            ("storage/pve1/local", vec!["disk_used", "disk_total"]),
        ] {
            let query = super::query::Query {
                entity: entity.into(),
                metrics: Some(metrics.iter().map(|m| m.to_string()).collect()),
                cf: Cf::Average,
                window: super::query::Window::Timeframe(super::query::Timeframe::Hour),
            };
            let files = store.query(&remote, &query, now).unwrap().unwrap();
            let from_files: std::collections::BTreeMap<i64, Option<f64>> = files
                .timestamps
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let v = |m: usize| files.metrics[m].values[i];
                    let value = match metrics.len() {
                        1 => v(0),
                        _ => v(0).zip(v(1)).map(|(u, t)| u / t),
                    };
                    (t, value)
                })
                .collect();
            let memory = &hour[entity];
            assert_eq!(memory.timestamps.len(), 60);
            for (t, value) in memory.timestamps.iter().zip(&memory.values) {
                assert_eq!(
                    from_files.get(t),
                    Some(value),
                    "{entity} at {t} (now {now})"
                );
            }
            assert!(memory.values.iter().filter(|v| v.is_some()).count() >= 40);
        }
    }
    // A store opened again holds in memory only what it stores from now on: the files
    // answer until that covers the hour.
    drop(store);
    let (store, _) = RrdStore::open(&dir).unwrap();
    assert!(store.hour_trends(&remote, T0 + 60 * 119).is_none());
    let next = MetricBatch {
        series: keys[..1].to_vec(),
        points: vec![MetricPoint {
            series: 0,
            timestamp: T0 + 60 * 120,
            value: 0.5,
        }],
        dropped_future: 0,
    };
    let stored = store.store_metrics(&[MetricWrite {
        remote: remote.clone(),
        batch: next,
    }]);
    assert!(stored[0].is_ok());
    assert!(store.hour_trends(&remote, T0 + 60 * 120).is_none());
    assert!(store.hour_trends(&remote, T0 + 60 * 179).is_some());
}

#[test]
fn no_remote_or_entity_name_leads_outside_the_store_directory() {
    use rand::{Rng as _, SeedableRng as _};
    use std::path::Component;
    let dir = Path::new("/data/state");
    let pieces = ["..", ".", "/", "\\", "%2F", "%2E", "\0", "a", "é", "~", " "];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..20_000 {
        let mut name = || -> String {
            (0..rng.random_range(1..6))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect()
        };
        let (remote, entity) = (name(), name());
        let path = RrdStore::file_path(dir, &RemoteId::new(remote.as_str()), &entity);
        let below = path.strip_prefix(dir).expect("inside the directory");
        let parts: Vec<Component> = below.components().collect();
        assert_eq!(
            parts.len(),
            2,
            "{remote:?} {entity:?} -> {}",
            path.display()
        );
        assert!(
            parts.iter().all(|c| matches!(c, Component::Normal(_))),
            "{remote:?} {entity:?} -> {}",
            path.display()
        );
    }
}
