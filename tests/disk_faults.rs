//! I/O errors from the disk, injected through the durable layer's seam
//! (`fleetpoll::durable::install_durability`): while every sync fails with EIO, the
//! stores acknowledge nothing and say why, what they stored before still reads back,
//! and once the disk works again they store by themselves; reopened, every
//! acknowledged point and task is there and no file was set aside. (A full disk, end
//! to end through the daemon, is `tests/daemon_full_disk.rs`.)

mod power_loss_support;

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fleetpoll::durable::{install_durability, Durability, Kernel};
use fleetpoll::rrd::store::RrdStore;
use fleetpoll::tasks::TaskCache;
use fleetpoll_actors::{MetricStore, MetricWrite};
use power_loss_support::{rrd, tasks};

/// Syncs fail with EIO while `failing` is set; otherwise the kernel's calls.
#[derive(Debug, Default)]
struct FlakyDisk {
    failing: AtomicBool,
    refused: AtomicUsize,
}

impl FlakyDisk {
    fn call(&self, kernel: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        kernel()
    }
}

impl Durability for FlakyDisk {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        self.call(|| Kernel.sync_data(file))
    }
    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        self.call(|| Kernel.sync_all(file))
    }
    fn sync_dir(&self, dir: &File) -> std::io::Result<()> {
        self.call(|| Kernel.sync_dir(dir))
    }
    fn sync_fs(&self, handle: &File) -> std::io::Result<()> {
        self.call(|| Kernel.sync_fs(handle))
    }
}

/// The seam is process-wide: one test at a time installs the flaky disk.
static SEAM: Mutex<()> = Mutex::new(());

struct Installed(
    Arc<FlakyDisk>,
    #[allow(dead_code)] std::sync::MutexGuard<'static, ()>,
);

impl Installed {
    fn new() -> Installed {
        let guard = SEAM.lock().unwrap_or_else(|e| e.into_inner());
        let disk = Arc::new(FlakyDisk::default());
        install_durability(Some(disk.clone()));
        Installed(disk, guard)
    }
    fn fail(&self, on: bool) {
        self.0.failing.store(on, Ordering::SeqCst);
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        install_durability(None);
    }
}

fn is_eio(text: &str) -> bool {
    text.contains("Input/output error") || text.contains("os error 5")
}

#[test]
fn the_metric_store_refuses_while_syncs_fail_keeps_what_it_had_and_resumes() {
    let disk = Installed::new();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = RrdStore::open(dir.path()).unwrap();
    let write = |b: i64| MetricWrite {
        remote: rrd::remote(),
        batch: rrd::batch(2, b * rrd::MINUTES_PER_BATCH),
    };
    for b in 0..3 {
        store.store_metrics(&[write(b)]).remove(0).unwrap();
    }
    store.commit().unwrap();
    store.store_metrics(&[write(3)]).remove(0).unwrap();
    let acked = store.cursor(&rrd::remote());

    disk.fail(true);
    let refused = store.store_metrics(&[write(4)]).remove(0);
    let error = format!(
        "{:?}",
        refused.expect_err("a batch whose journal sync failed")
    );
    assert!(is_eio(&error), "the error says what failed: {error}");
    assert_eq!(
        store.cursor(&rrd::remote()),
        acked,
        "nothing more acknowledged"
    );
    let commit = store.commit().expect_err("a commit whose syncs fail");
    assert!(is_eio(&format!("{commit:?}")), "{commit:?}");
    // What was acknowledged still reads back while the disk fails.
    for e in 0..2 {
        rrd::check_entity(&store, dir.path(), e, 2, 4 * rrd::MINUTES_PER_BATCH - 1).unwrap();
    }
    assert!(disk.0.refused.load(Ordering::SeqCst) >= 2);

    disk.fail(false);
    store.store_metrics(&[write(4)]).remove(0).unwrap();
    store.commit().unwrap();
    drop(store);
    let (store, recovery) = RrdStore::open(dir.path()).unwrap();
    assert!(recovery.errors.is_empty(), "{recovery:?}");
    for e in 0..2 {
        rrd::check_entity(&store, dir.path(), e, 2, 5 * rrd::MINUTES_PER_BATCH - 1).unwrap();
    }
    assert_eq!(store.damaged_file_count(), 0, "{:?}", store.damaged_files());
    assert_eq!(store.quarantined_rows(), 0);
}

#[test]
fn the_task_cache_refuses_while_syncs_fail_keeps_what_it_had_and_resumes() {
    let disk = Installed::new();
    let dir = tempfile::tempdir().unwrap();
    let per_day = 1_000;
    let cache = TaskCache::open(dir.path(), tasks::T0).unwrap();
    for i in 0..4 {
        cache.store(&[tasks::batch(i, per_day)]).unwrap();
    }
    cache.apply().unwrap();
    cache.store(&[tasks::batch(4, per_day)]).unwrap();

    disk.fail(true);
    let refused = cache.store(&[tasks::batch(5, per_day)]);
    let error = format!(
        "{}",
        refused.expect_err("a batch whose journal sync failed")
    );
    assert!(is_eio(&error), "the error says what failed: {error}");
    let apply = cache.apply().expect_err("an apply whose syncs fail");
    assert!(is_eio(&apply.to_string()), "{apply}");
    let present = tasks::batches_present(&cache).unwrap();
    assert!(present.is_superset(&(0..5).collect()), "{present:?}");

    disk.fail(false);
    cache.store(&[tasks::batch(5, per_day)]).unwrap();
    cache.apply().unwrap();
    drop(cache);
    let cache = TaskCache::open(dir.path(), tasks::T0).unwrap();
    assert!(cache.problems().is_empty(), "{:?}", cache.problems());
    let present = tasks::batches_present(&cache).unwrap();
    assert_eq!(present, (0..6).collect(), "every acknowledged batch, once");
}
