//! The durability seam: every sync the stores make — a file's data (`fdatasync`,
//! `fsync`), a directory (`fsync` of the directory) and a whole file system
//! (`syncfs(2)`) — goes through [`sync_data`], [`sync_all`], [`sync_dir_file`] or
//! [`sync_fs`], which make the kernel's call unless a [`Durability`] stands in for it.
//!
//! The stand-in is process-wide, installed with [`install_durability`] by a test (a
//! power-loss model that records what each sync made durable and fails every sync
//! from a chosen crash point on: see `docs/reliability.md`). It is the one piece of
//! process-wide state in the durable layer, on purpose: the syncs sit deep in free
//! functions of both stores (journals, atomic replacement, archives, snapshots), and
//! a handle threaded through each of them would change every store's API for the sake
//! of one test. Without a stand-in a sync costs one relaxed atomic load more than the
//! system call itself.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// What stands in for the kernel's syncs (see the module's doc). Each method gets the
/// open file or directory and must make the call it names durable, or fail.
pub trait Durability: Send + Sync + std::fmt::Debug {
    /// `fdatasync(2)` of a file: its data (and the size needed to read it back).
    fn sync_data(&self, file: &File) -> std::io::Result<()>;
    /// `fsync(2)` of a file: its data and metadata.
    fn sync_all(&self, file: &File) -> std::io::Result<()>;
    /// `fsync(2)` of a directory, open as `dir`: the names created, renamed or
    /// removed in it.
    fn sync_dir(&self, dir: &File) -> std::io::Result<()>;
    /// `syncfs(2)` of the file system holding `handle`: every write on it.
    fn sync_fs(&self, handle: &File) -> std::io::Result<()>;
}

/// The kernel's calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kernel;

impl Durability for Kernel {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        file.sync_data()
    }

    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        file.sync_all()
    }

    fn sync_dir(&self, dir: &File) -> std::io::Result<()> {
        dir.sync_all()
    }

    fn sync_fs(&self, handle: &File) -> std::io::Result<()> {
        rustix::fs::syncfs(handle).map_err(std::io::Error::from)
    }
}

/// Whether a stand-in is installed: the one load a sync pays without one.
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// The stand-in, when one is installed.
static STAND_IN: RwLock<Option<Arc<dyn Durability>>> = RwLock::new(None);

/// Installs `durability` in place of the kernel's syncs for the whole process, or
/// (with `None`) goes back to the kernel's. For tests: a store that is open while
/// this changes sees some syncs go one way and some the other.
pub fn install_durability(durability: Option<Arc<dyn Durability>>) {
    let mut slot = STAND_IN.write().unwrap_or_else(|e| e.into_inner());
    INSTALLED.store(durability.is_some(), Ordering::SeqCst);
    *slot = durability;
}

/// Runs `call` on the installed stand-in, or `kernel` when there is none.
fn with_stand_in(
    call: impl FnOnce(&dyn Durability) -> std::io::Result<()>,
    kernel: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return kernel();
    }
    let stand_in = STAND_IN.read().unwrap_or_else(|e| e.into_inner()).clone();
    match stand_in {
        Some(stand_in) => call(&*stand_in),
        None => kernel(),
    }
}

/// `fdatasync(2)` of `file`, through the seam.
pub fn sync_data(file: &File) -> std::io::Result<()> {
    with_stand_in(|d| d.sync_data(file), || file.sync_data())
}

/// `fsync(2)` of `file`, through the seam.
pub fn sync_all(file: &File) -> std::io::Result<()> {
    with_stand_in(|d| d.sync_all(file), || file.sync_all())
}

/// `fsync(2)` of the directory open as `dir`, through the seam.
pub fn sync_dir_file(dir: &File) -> std::io::Result<()> {
    with_stand_in(|d| d.sync_dir(dir), || dir.sync_all())
}

/// `syncfs(2)` of the file system holding `handle`, through the seam.
pub fn sync_fs(handle: &File) -> std::io::Result<()> {
    with_stand_in(|d| d.sync_fs(handle), || Kernel.sync_fs(handle))
}
