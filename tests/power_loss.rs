//! Power-loss simulation over the durable layer: the stores run on real files while a
//! model of the disk (`power_loss_support::model`, after LazyFS and ALICE) stands in
//! for every sync and keeps only what a completed sync made durable. At thousands of
//! seeded crash points — the N-th sync, after which every sync fails — the crash image
//! is written out, reopened and checked: every point and task acknowledged before the
//! crash reads back, every file opens, nothing is set aside.
//!
//! `FLEETPOLL_POWER_LOSS_POINTS` (default 1,000) sets the crash points over all
//! stores and `FLEETPOLL_POWER_LOSS_SEED` the seed a failure prints. The model's own
//! tests show what it throws away: data never synced, names never synced.

mod power_loss_support;

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use fleetpoll::durable::{sync_data, sync_dir, write_atomic, Mode};
use power_loss_support::model::PowerLossModel;
use power_loss_support::rrd::RrdWorkload;
use power_loss_support::tasks::TaskWorkload;
use power_loss_support::{explore, points, Workload};
use rand::rngs::StdRng;

/// The RRD store's share of the crash points (its runs cost more than the cache's).
const RRD_SHARE: f64 = 0.4;
const TASKS_SHARE: f64 = 0.6;

#[test]
fn every_acknowledged_point_survives_power_loss_at_seeded_crash_points() {
    let summary = explore("rrd", &RrdWorkload, points(RRD_SHARE), 25);
    eprintln!("rrd store: {summary:?}");
    assert!(
        summary.crashed * 10 >= summary.points * 8,
        "most points cut a run: {summary:?}"
    );
    assert!(
        summary.by_kind.contains_key("syncfs"),
        "commits ran: {summary:?}"
    );
}

#[test]
fn every_acknowledged_task_survives_power_loss_at_seeded_crash_points() {
    let summary = explore("tasks", &TaskWorkload, points(TASKS_SHARE), 25);
    eprintln!("task cache: {summary:?}");
    assert!(
        summary.crashed * 10 >= summary.points * 8,
        "most points cut a run: {summary:?}"
    );
}

/// Runs `f` over the model following a fresh root, with no crash point, and returns the
/// crash image at its end.
fn image_after(f: impl FnOnce(&Path)) -> tempfile::TempDir {
    let (model, _guard) = PowerLossModel::installed();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    model.begin(&root, None);
    f(&root);
    model.end();
    model.materialise(&tmp.path().join("image"));
    tmp
}

fn image_file(tmp: &tempfile::TempDir, name: &str) -> Option<Vec<u8>> {
    std::fs::read(tmp.path().join("image").join(name)).ok()
}

#[test]
fn the_model_keeps_no_byte_that_was_never_synced() {
    let tmp = image_after(|root| {
        let mut file = File::create(root.join("unsynced")).unwrap();
        file.write_all(b"lost").unwrap();
        let mut synced = File::create(root.join("synced")).unwrap();
        synced.write_all(b"kept").unwrap();
        sync_data(&synced).unwrap();
        synced.write_all(b" and lost").unwrap();
        sync_dir(root).unwrap();
    });
    assert_eq!(image_file(&tmp, "unsynced").as_deref(), Some(&b""[..]));
    assert_eq!(image_file(&tmp, "synced").as_deref(), Some(&b"kept"[..]));
}

#[test]
fn the_model_loses_a_name_whose_directory_was_never_synced() {
    let tmp = image_after(|root| {
        write_atomic(&root.join("old"), b"old", Mode::Umask).unwrap();
        let mut file = File::create(root.join("new")).unwrap();
        file.write_all(b"data").unwrap();
        sync_data(&file).unwrap();
        // A rename over `old` with its data synced but not its directory.
        std::fs::write(root.join("old.next"), b"new").unwrap();
        sync_data(&File::open(root.join("old.next")).unwrap()).unwrap();
        std::fs::rename(root.join("old.next"), root.join("old")).unwrap();
    });
    assert_eq!(
        image_file(&tmp, "new"),
        None,
        "created, never named durably"
    );
    assert_eq!(
        image_file(&tmp, "old").as_deref(),
        Some(&b"old"[..]),
        "the rename is lost"
    );
}

#[test]
fn a_syncfs_makes_everything_under_the_root_durable() {
    let tmp = image_after(|root| {
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/file"), b"all of it").unwrap();
        fleetpoll::durable::sync_fs(&File::open(root).unwrap()).unwrap();
    });
    assert_eq!(
        image_file(&tmp, "sub/file").as_deref(),
        Some(&b"all of it"[..])
    );
}

/// A one-file store of a counter, acknowledged after each replacement: `skip_dir_sync`
/// leaves out the directory sync after the rename, the mistake the model must catch.
struct CounterStore {
    skip_dir_sync: bool,
}

impl Workload for CounterStore {
    type Params = ();
    type Acks = Option<u32>;

    fn params(&self, _: &mut StdRng) {}

    fn run(&self, _: &(), dir: &Path, acks: &mut Option<u32>) {
        if std::fs::create_dir(dir).is_err() || sync_dir(dir.parent().unwrap()).is_err() {
            return;
        }
        for n in 0..6 {
            let path = dir.join("counter");
            let saved = if self.skip_dir_sync {
                let tmp = dir.join("counter.tmp");
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&tmp)
                    .unwrap();
                file.write_all(n.to_string().as_bytes()).unwrap();
                sync_data(&file)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .is_ok()
            } else {
                write_atomic(&path, n.to_string().as_bytes(), Mode::Umask).is_ok()
            };
            if !saved {
                return;
            }
            *acks = Some(n);
        }
    }

    fn check(&self, _: &(), dir: &Path, acks: &Option<u32>) -> Result<(), String> {
        let found = std::fs::read_to_string(dir.join("counter"))
            .ok()
            .and_then(|s| s.parse::<u32>().ok());
        if found < *acks {
            return Err(format!("counter {found:?}, acknowledged {acks:?}"));
        }
        Ok(())
    }
}

#[test]
fn a_store_that_skips_a_directory_sync_is_caught() {
    explore(
        "counter",
        &CounterStore {
            skip_dir_sync: false,
        },
        100,
        100,
    );
    let caught = std::panic::catch_unwind(|| {
        explore(
            "counter-unsynced",
            &CounterStore {
                skip_dir_sync: true,
            },
            100,
            100,
        )
    });
    let message = caught.expect_err("the missing directory sync loses an acknowledged counter");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("acknowledged Some"), "{message}");
}
