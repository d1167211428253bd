//! A damaged RRD file costs only its own entity: each kind of damage (bad magic, a bad
//! header checksum, a truncated or empty file, a flipped byte in the stored rows) sets
//! exactly that file aside as `NAME.corrupt-<unix time>`, counts it, makes a query of
//! that entity answer `RrdError::Damaged` naming it, and leaves the other 39 entities
//! of the remote storing. An entity whose file cannot be written at all (a name too
//! long for the file system, a directory in its place) costs only its own points too:
//! they are quarantined, the others are committed and the journal is released; one
//! that fails for a reason not its own fails the commit, naming it, and the journal is
//! kept. Over real files, through `RrdStore`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fleetpoll::rrd::format::Layout;
use fleetpoll::rrd::quarantine::QUARANTINE_FILE;
use fleetpoll::rrd::store::RrdStore;
use fleetpoll::rrd::{Cf, FetchRequest, FetchResult, RrdError, RrdFile};
use fleetpoll_actors::{
    MetricBatch, MetricKind, MetricPoint, MetricStore, MetricWrite, RemoteId, SeriesKey,
};

/// The first minute's timestamp (a multiple of 60).
const T0: i64 = 1_700_000_040;
/// About the entities of one Proxmox VE remote.
const ENTITIES: u32 = 40;
/// The entity whose file is damaged.
const DAMAGED: u32 = 17;

fn remote() -> RemoteId {
    RemoteId::new("lab")
}

fn entity(e: u32) -> String {
    format!("qemu/{}", 100 + e)
}

/// The cpu of entity `e` at minute `m`.
fn cpu(e: u32, m: i64) -> f64 {
    f64::from(e) + m as f64 / 100.0
}

/// Every entity's cpu for minutes `first..first + minutes`.
fn batch(first: i64, minutes: i64) -> Vec<MetricWrite> {
    let mut batch = MetricBatch::default();
    for e in 0..ENTITIES {
        batch.series.push(SeriesKey {
            entity: Arc::from(entity(e)),
            metric: Arc::from("cpu_current"),
            kind: MetricKind::Gauge,
        });
        for m in first..first + minutes {
            batch.points.push(MetricPoint {
                series: e,
                timestamp: T0 + 60 * m,
                value: cpu(e, m),
            });
        }
    }
    vec![MetricWrite {
        remote: remote(),
        batch,
    }]
}

fn fetch(store: &RrdStore, e: u32) -> Result<Option<FetchResult>, RrdError> {
    let request = FetchRequest {
        cf: Cf::Average,
        start: T0 - 60,
        end: T0 + 60 * 6,
        resolution: 60,
    };
    store.fetch(&remote(), &entity(e), &request)
}

/// A value to compare, rounded (a row is an average over its minute).
fn rounded(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The minutes (0-based) an entity's fetch has a value for, with the values.
fn stored_minutes(store: &RrdStore, e: u32) -> Vec<(i64, f64)> {
    let fetched = fetch(store, e)
        .unwrap_or_else(|err| panic!("{}: {err}", entity(e)))
        .unwrap_or_else(|| panic!("{} has a file", entity(e)));
    fetched
        .rows
        .iter()
        .filter(|(_, values)| !values[0].is_nan())
        .map(|(time, values)| ((time - T0) / 60, rounded(values[0])))
        .collect()
}

/// What an entity whose file was created with the point of minute `first` holds up
/// to minute `last`: a file starts one second before its first point, so the row of
/// that minute stays unknown (one second of it is covered), then one row a minute.
fn expected(e: u32, first: i64, last: i64) -> Vec<(i64, f64)> {
    (first + 1..=last)
        .map(|m| (m, rounded(cpu(e, m))))
        .collect()
}

/// The kinds of damage a file can suffer.
#[derive(Clone, Copy, Debug)]
enum Damage {
    BadMagic,
    BadHeaderChecksum,
    Truncated,
    Empty,
    /// A flipped bit in a stored row of the one-minute archive, in the block of rows
    /// the next update rewrites.
    FlippedRowByte,
}

const EVERY_DAMAGE: [Damage; 5] = [
    Damage::BadMagic,
    Damage::BadHeaderChecksum,
    Damage::Truncated,
    Damage::Empty,
    Damage::FlippedRowByte,
];

/// Damages the file at `path` and returns its damaged bytes.
fn damage(path: &Path, kind: Damage) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    match kind {
        Damage::BadMagic => bytes[0] ^= 0xFF,
        // A byte of the first data source's name: only the checksum can tell.
        Damage::BadHeaderChecksum => bytes[64 + 3] ^= 0x01,
        Damage::Truncated => bytes.truncate(bytes.len() - 100),
        Damage::Empty => bytes.clear(),
        Damage::FlippedRowByte => {
            let file = RrdFile::open(path).unwrap();
            let rrd = file.rrd();
            let layout = Layout::of(rrd.data_sources().len(), rrd.archives());
            let rows = rrd.archives()[0].rows;
            let next = (rrd.rings()[0].cur_row + 1) % rows;
            let block_start = next - next % layout.rows_per_block;
            // A row of the block the next update writes, but not one it overwrites.
            let row = if block_start < next {
                block_start
            } else {
                next + 10
            };
            let offset = layout.row_offset(rrd, 0, row) as usize;
            bytes[offset + 6] ^= 0x10;
        }
    }
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// A store with three minutes of every entity committed, and the damaged entity's path.
fn stored_remote(dir: &Path) -> PathBuf {
    let (store, _) = RrdStore::open(dir).unwrap();
    assert!(store.store_metrics(&batch(0, 3))[0].is_ok());
    store.commit().unwrap();
    RrdStore::file_path(dir, &remote(), &entity(DAMAGED))
}

/// The files set aside in the remote's directory.
fn set_aside_files(path: &Path) -> Vec<PathBuf> {
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let mut found: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().contains(".corrupt-"))
        .collect();
    found.sort();
    for p in &found {
        let file = p.file_name().unwrap().to_str().unwrap();
        let time = file
            .strip_prefix(&format!("{name}.corrupt-"))
            .unwrap_or_else(|| panic!("only {name} is set aside, found {file}"));
        assert!(time.chars().all(|c| c.is_ascii_digit()), "{file}");
    }
    found
}

fn assert_damaged_answer(err: &RrdError, path: &Path, aside: &Path, kind: Damage) {
    let RrdError::Damaged {
        path: damaged,
        set_aside,
        ..
    } = err
    else {
        panic!("{kind:?}: expected RrdError::Damaged, got {err}");
    };
    assert_eq!(damaged, path, "{kind:?}");
    assert_eq!(set_aside, aside, "{kind:?}");
    assert!(err.is_server_side(), "{kind:?}");
    let message = err.to_string();
    assert!(message.contains("qemu%2F117.rrd"), "{kind:?}: {message}");
    assert!(message.contains(".corrupt-"), "{kind:?}: {message}");
}

/// After minutes 0–2, the damage, then minutes 3–4: every other entity holds all its
/// minutes, the damaged one goes on in a fresh file from minute 3.
fn assert_every_entity_stored_on(store: &RrdStore, kind: Damage) {
    for e in (0..ENTITIES).filter(|&e| e != DAMAGED) {
        assert_eq!(stored_minutes(store, e), expected(e, 0, 4), "{kind:?}");
    }
    assert_eq!(
        stored_minutes(store, DAMAGED),
        expected(DAMAGED, 3, 4),
        "{kind:?}: the fresh file holds what came after"
    );
}

#[test]
fn a_damaged_file_found_by_a_query_is_set_aside_and_the_query_says_so() {
    for kind in EVERY_DAMAGE {
        let dir = tempfile::tempdir().unwrap();
        let path = stored_remote(dir.path());
        let damaged_bytes = damage(&path, kind);

        let (store, recovery) = RrdStore::open(dir.path()).unwrap();
        assert!(
            recovery.errors.is_empty(),
            "{kind:?}: {:?}",
            recovery.errors
        );
        let err = fetch(&store, DAMAGED).unwrap_err();
        let aside = set_aside_files(&path);
        assert_eq!(aside.len(), 1, "{kind:?}: exactly that file is set aside");
        assert_damaged_answer(&err, &path, &aside[0], kind);
        assert_eq!(
            std::fs::read(&aside[0]).unwrap(),
            damaged_bytes,
            "{kind:?}: the damaged file is kept as it was"
        );
        assert!(!path.exists(), "{kind:?}");
        // Nothing stored since: the entity still answers that its file was damaged.
        let again = fetch(&store, DAMAGED).unwrap_err();
        assert_damaged_answer(&again, &path, &aside[0], kind);
        assert_eq!(store.damaged_file_count(), 1, "{kind:?}");
        assert_eq!(store.damaged_files()[0].set_aside, aside[0], "{kind:?}");
        assert_eq!(store.damaged_files_of(&remote()).len(), 1, "{kind:?}");
        assert!(store.damaged_files_of(&RemoteId::new("other")).is_empty());

        // Storing goes on for every entity; the damaged one starts a fresh file.
        let results = store.store_metrics(&batch(3, 2));
        assert!(results[0].is_ok(), "{kind:?}: {:?}", results[0]);
        store.commit().unwrap();
        assert_every_entity_stored_on(&store, kind);
        assert_eq!(set_aside_files(&path).len(), 1, "{kind:?}");
    }
}

#[test]
fn a_damaged_file_found_while_storing_is_set_aside_and_the_other_entities_keep_storing() {
    for kind in EVERY_DAMAGE {
        let dir = tempfile::tempdir().unwrap();
        let path = stored_remote(dir.path());
        let damaged_bytes = damage(&path, kind);

        let (store, _) = RrdStore::open(dir.path()).unwrap();
        let results = store.store_metrics(&batch(3, 2));
        assert!(results[0].is_ok(), "{kind:?}: {:?}", results[0]);
        // A header is checked when the entity is first seen, the rows of a block when
        // the commit rewrites it.
        store.commit().unwrap();
        let aside = set_aside_files(&path);
        assert_eq!(aside.len(), 1, "{kind:?}: exactly that file is set aside");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), damaged_bytes, "{kind:?}");
        assert_eq!(store.damaged_file_count(), 1, "{kind:?}");
        let found = &store.damaged_files()[0];
        assert_eq!(found.path, path, "{kind:?}");
        assert!(!found.reason.is_empty(), "{kind:?}");
        assert_every_entity_stored_on(&store, kind);
        drop(store);
        // The fresh file and the others open cleanly after a restart.
        let (store, recovery) = RrdStore::open(dir.path()).unwrap();
        assert!(
            recovery.errors.is_empty(),
            "{kind:?}: {:?}",
            recovery.errors
        );
        assert_eq!(store.damaged_file_count(), 0, "{kind:?}");
        assert_eq!(stored_minutes(&store, DAMAGED), expected(DAMAGED, 3, 4));
    }
}

#[test]
fn a_flipped_byte_in_an_old_row_is_never_served_as_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_remote(dir.path());
    // The row of minute 1 in the one-minute archive.
    let file = RrdFile::open(&path).unwrap();
    let rrd = file.rrd();
    let layout = Layout::of(rrd.data_sources().len(), rrd.archives());
    let rows = rrd.archives()[0].rows;
    let row = (rrd.rings()[0].cur_row + rows - 1) % rows;
    let offset = layout.row_offset(rrd, 0, row) as usize;
    drop(file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + 7] ^= 0x80; // 1.01 becomes -1.01
    std::fs::write(&path, &bytes).unwrap();

    let (store, _) = RrdStore::open(dir.path()).unwrap();
    let err = fetch(&store, DAMAGED).unwrap_err();
    assert!(matches!(err, RrdError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
}

/// An entity whose file name is longer than a file system allows (255 bytes).
fn overlong_entity() -> String {
    format!("qemu/{}", "x".repeat(300))
}

/// `writes` with the cpu of `entity` for minutes `first..first + minutes` added.
fn with_entity(
    mut writes: Vec<MetricWrite>,
    entity: &str,
    first: i64,
    minutes: i64,
) -> Vec<MetricWrite> {
    let batch = &mut writes[0].batch;
    let series = batch.series.len() as u32;
    batch.series.push(SeriesKey {
        entity: Arc::from(entity),
        metric: Arc::from("cpu_current"),
        kind: MetricKind::Gauge,
    });
    for m in first..first + minutes {
        batch.points.push(MetricPoint {
            series,
            timestamp: T0 + 60 * m,
            value: 0.5,
        });
    }
    writes
}

/// The quarantine file's lines, parsed.
fn quarantine_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(QUARANTINE_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Nothing is left to replay: the commit released the sealed journal.
fn assert_journal_released(dir: &Path) {
    assert!(
        !dir.join("journal.sealed").exists(),
        "the sealed journal is kept"
    );
    assert_eq!(std::fs::metadata(dir.join("journal")).unwrap().len(), 0);
}

#[test]
fn an_entity_whose_file_cannot_be_created_is_quarantined_and_the_journal_is_still_applied() {
    let dir = tempfile::tempdir().unwrap();
    let bad = overlong_entity();
    let bad_path = RrdStore::file_path(dir.path(), &remote(), &bad);
    let (store, _) = RrdStore::open(dir.path()).unwrap();
    let results = store.store_metrics(&with_entity(batch(0, 3), &bad, 0, 3));
    assert!(results[0].is_ok(), "{:?}", results[0]);

    store
        .commit()
        .expect("one entity's file does not fail the commit");
    for e in 0..ENTITIES {
        assert_eq!(stored_minutes(&store, e), expected(e, 0, 2));
    }
    assert_journal_released(dir.path());
    let quarantined = store.quarantined();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].path, bad_path);
    assert_eq!(quarantined[0].rows, 3);
    assert!(
        quarantined[0].reason.contains("too long"),
        "{}",
        quarantined[0].reason
    );
    assert_eq!(store.quarantined_rows(), 3);
    let lines = quarantine_lines(dir.path());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["file"], bad_path.to_str().unwrap());
    assert_eq!(lines[0]["data_sources"], serde_json::json!(["cpu_current"]));
    let rows = lines[0]["rows"].as_array().unwrap();
    assert_eq!(rows[0], serde_json::json!([T0, 0.5]));
    assert_eq!(rows.len(), 3);
    drop(store);

    // Nothing of it replays at the next start, and later commits go on the same way.
    let (store, recovery) = RrdStore::open(dir.path()).unwrap();
    assert_eq!(recovery.replayed, 0);
    assert!(recovery.errors.is_empty(), "{:?}", recovery.errors);
    assert!(store.store_metrics(&with_entity(batch(3, 2), &bad, 3, 2))[0].is_ok());
    store.commit().unwrap();
    assert_journal_released(dir.path());
    assert_eq!(store.quarantined_rows(), 2);
    assert_eq!(quarantine_lines(dir.path()).len(), 2);
    for e in 0..ENTITIES {
        assert_eq!(stored_minutes(&store, e), expected(e, 0, 4));
    }
}

#[test]
fn an_entity_whose_file_is_a_directory_is_quarantined_while_the_others_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_remote(dir.path());
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();

    let (store, _) = RrdStore::open(dir.path()).unwrap();
    let results = store.store_metrics(&batch(3, 2));
    assert!(results[0].is_ok(), "the remote stores on: {:?}", results[0]);
    store.commit().unwrap();
    assert_journal_released(dir.path());
    for e in (0..ENTITIES).filter(|&e| e != DAMAGED) {
        assert_eq!(stored_minutes(&store, e), expected(e, 0, 4));
    }
    let quarantined = store.quarantined();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(quarantined[0].path, path);
    assert_eq!(quarantined[0].rows, 2);
    assert!(path.is_dir(), "what is in the entity's place is left alone");

    // Once the entity's place is free again, it stores.
    std::fs::remove_dir(&path).unwrap();
    drop(store);
    let (store, _) = RrdStore::open(dir.path()).unwrap();
    assert!(store.store_metrics(&batch(5, 1))[0].is_ok());
    store.commit().unwrap();
    assert_eq!(stored_minutes(&store, DAMAGED), expected(DAMAGED, 5, 5));
}

#[test]
fn a_file_the_store_cannot_write_fails_the_commit_naming_it_and_keeps_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = stored_remote(dir.path());
    let (store, _) = RrdStore::open(dir.path()).unwrap();
    assert!(store.store_metrics(&batch(3, 2))[0].is_ok());
    // A socket in the file's place: opening it fails with ENXIO, not a fault of the
    // entity's own (nothing to quarantine), while the commit writes the others' files.
    std::fs::remove_file(&path).unwrap();
    let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();

    let err = store.commit().unwrap_err();
    assert!(
        err.to_string().contains(path.to_str().unwrap()),
        "the error names the file: {err}"
    );
    assert!(
        dir.path().join("journal.sealed").exists(),
        "the journal is kept: the entity's points are in no file"
    );
    assert_eq!(store.quarantined_rows(), 0, "{:?}", store.quarantined());
    for e in (0..ENTITIES).filter(|&e| e != DAMAGED) {
        assert_eq!(stored_minutes(&store, e), expected(e, 0, 4));
    }

    // Once the place is free again, the next commit writes the points and releases.
    drop(socket);
    std::fs::remove_file(&path).unwrap();
    store.commit().unwrap();
    assert_journal_released(dir.path());
    assert_eq!(stored_minutes(&store, DAMAGED), expected(DAMAGED, 3, 4));
}
