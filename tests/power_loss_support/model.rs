//! The power-loss model (after LazyFS and ALICE), installed in place of the kernel's
//! syncs through `fleetpoll::durable::install_durability`: the stores write real files
//! in a temporary directory, and the model keeps, beside them, what a power cut would
//! leave of them — only what a completed sync made durable:
//!
//! - a file data sync (`fdatasync`, `fsync`) makes that inode's current bytes durable;
//! - a directory sync makes that directory's entries (name → inode) durable;
//! - `syncfs` makes everything under the root durable (every inode's bytes, every
//!   directory's entries).
//!
//! POSIX at its most conservative: a created or renamed name is durable only once its
//! directory is synced, written bytes only once their file is synced (a file whose
//! name is durable but whose data never was is empty). Inodes are keyed by number and
//! birth time, so a number the file system reuses is a different inode.
//!
//! A run may name a crash point: the N-th sync under the root. From there on every
//! sync under the root fails ("simulated power loss") — so the store acknowledges
//! nothing more — and the durable state stays as it was just before that sync; the
//! crash image is that state written out into a fresh directory
//! ([`PowerLossModel::materialise`]). The model does not make the real sync calls: it
//! decides what is durable, and real syncs would only slow thousands of runs down.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use fleetpoll::durable::{install_durability, Durability, Kernel};

/// One inode: its number and birth time (nanoseconds; 0 where the file system does
/// not keep one).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct Key {
    ino: u64,
    born: i128,
}

impl Key {
    fn of(meta: &std::fs::Metadata) -> Key {
        let born = meta
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        Key {
            ino: meta.ino(),
            born,
        }
    }
}

/// A durable directory entry.
#[derive(Clone, Copy, Debug)]
enum Node {
    File(Key),
    Dir(Key),
}

/// What a run found, for its report.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    /// Syncs under the root the run made (up to and including the one that crashed).
    pub syncs: u64,
    /// Whether the crash point was reached.
    pub crashed: bool,
    /// Syncs by kind (`data`, `all`, `dir`, `syncfs`).
    pub by_kind: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default)]
struct State {
    /// The directory whose files the model follows; `None` between runs (every sync
    /// then goes to the kernel).
    root: Option<PathBuf>,
    root_key: Option<Key>,
    crash_at: Option<u64>,
    report: RunReport,
    /// Each inode's durable bytes.
    contents: HashMap<Key, Arc<Vec<u8>>>,
    /// Each directory's durable entries.
    dirs: HashMap<Key, BTreeMap<OsString, Node>>,
}

/// The model; one per test process (see [`PowerLossModel::installed`]).
#[derive(Debug, Default)]
pub struct PowerLossModel {
    state: Mutex<State>,
}

/// Held by a test for as long as it uses the model: the model is process-wide.
static RUNS: Mutex<()> = Mutex::new(());

impl PowerLossModel {
    /// The process's model, installed in place of the kernel's syncs on first use, and
    /// a guard that keeps other tests of the process off it until dropped.
    pub fn installed() -> (Arc<PowerLossModel>, MutexGuard<'static, ()>) {
        static MODEL: OnceLock<Arc<PowerLossModel>> = OnceLock::new();
        let guard = RUNS.lock().unwrap_or_else(|e| e.into_inner());
        let model = MODEL.get_or_init(|| {
            let model = Arc::new(PowerLossModel::default());
            install_durability(Some(model.clone()));
            model
        });
        (model.clone(), guard)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts following `root` (an existing directory, taken as durable and empty of
    /// durable entries) with the crash at the `crash_at`-th sync, or none.
    pub fn begin(&self, root: &Path, crash_at: Option<u64>) {
        let root = root.canonicalize().expect("the run's root exists");
        let key = Key::of(&std::fs::metadata(&root).unwrap());
        let mut state = self.lock();
        *state = State {
            root: Some(root),
            root_key: Some(key),
            crash_at,
            ..State::default()
        };
        state.dirs.insert(key, BTreeMap::new());
    }

    /// Stops following the root: syncs go to the kernel again. The durable state is
    /// kept for [`PowerLossModel::materialise`].
    pub fn end(&self) -> RunReport {
        let mut state = self.lock();
        state.root = None;
        state.report.clone()
    }

    /// Writes the durable state of the last run into `out` (created; must not exist):
    /// the durable entries of the root and, below them, each file with its inode's
    /// durable bytes (empty if none were synced).
    pub fn materialise(&self, out: &Path) {
        let state = self.lock();
        std::fs::create_dir(out).unwrap();
        let root = state.root_key.expect("a run began");
        write_dir(&state, root, out);
    }

    /// A sync of `file` (or directory) of `kind`: counted, failed from the crash point
    /// on, recorded by `record` before that; between runs, the kernel's `kernel`.
    fn sync(
        &self,
        file: &File,
        kind: &'static str,
        kernel: impl FnOnce(&Kernel, &File) -> std::io::Result<()>,
        record: impl FnOnce(&mut State, &Path, &File) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut state = self.lock();
        let Some(root) = state.root.clone() else {
            drop(state);
            return kernel(&Kernel, file);
        };
        let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        if !path.starts_with(&root) {
            // Outside the run (another part of the process): not modelled.
            drop(state);
            return kernel(&Kernel, file);
        }
        if state.report.crashed {
            return Err(power_loss());
        }
        state.report.syncs += 1;
        if state.crash_at == Some(state.report.syncs) {
            state.report.crashed = true;
            return Err(power_loss());
        }
        *state.report.by_kind.entry(kind).or_default() += 1;
        if std::env::var_os("FLEETPOLL_POWER_LOSS_TRACE").is_some() {
            eprintln!("sync {} {kind} {}", state.report.syncs, path.display());
        }
        record(&mut state, &path, file)
    }
}

fn power_loss() -> std::io::Error {
    std::io::Error::other("simulated power loss")
}

/// Makes the bytes of the inode open as `file` durable.
fn record_data(state: &mut State, file: &File) -> std::io::Result<()> {
    let key = Key::of(&file.metadata()?);
    let bytes = std::fs::read(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    state.contents.insert(key, Arc::new(bytes));
    Ok(())
}

/// Makes the entries of the directory at `path` durable; returns them.
fn record_dir(state: &mut State, path: &Path) -> std::io::Result<Vec<(PathBuf, Node)>> {
    let key = Key::of(&std::fs::metadata(path)?);
    let mut entries = BTreeMap::new();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = match std::fs::symlink_metadata(entry.path()) {
            Ok(meta) => meta,
            // Removed meanwhile by another thread of the store: not there to keep.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let node = if meta.is_dir() {
            Node::Dir(Key::of(&meta))
        } else if meta.is_file() {
            Node::File(Key::of(&meta))
        } else {
            continue;
        };
        entries.insert(entry.file_name(), node);
        found.push((entry.path(), node));
    }
    state.dirs.insert(key, entries);
    Ok(found)
}

/// Makes everything under `dir` durable (a `syncfs`).
fn record_tree(state: &mut State, dir: &Path) -> std::io::Result<()> {
    for (path, node) in record_dir(state, dir)? {
        match node {
            Node::Dir(_) => record_tree(state, &path)?,
            Node::File(key) => match std::fs::read(&path) {
                Ok(bytes) => {
                    state.contents.insert(key, Arc::new(bytes));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

fn write_dir(state: &State, dir: Key, out: &Path) {
    let Some(entries) = state.dirs.get(&dir) else {
        return;
    };
    for (name, node) in entries {
        let path = out.join(name);
        match node {
            Node::File(key) => {
                let bytes = state.contents.get(key).map_or(&[][..], |b| b.as_slice());
                std::fs::write(&path, bytes).unwrap();
            }
            Node::Dir(key) => {
                std::fs::create_dir(&path).unwrap();
                write_dir(state, *key, &path);
            }
        }
    }
}

impl Durability for PowerLossModel {
    fn sync_data(&self, file: &File) -> std::io::Result<()> {
        self.sync(file, "data", Kernel::sync_data, |state, _, file| {
            record_data(state, file)
        })
    }

    fn sync_all(&self, file: &File) -> std::io::Result<()> {
        self.sync(file, "all", Kernel::sync_all, |state, _, file| {
            record_data(state, file)
        })
    }

    fn sync_dir(&self, dir: &File) -> std::io::Result<()> {
        self.sync(dir, "dir", Kernel::sync_dir, |state, path, _| {
            record_dir(state, path).map(drop)
        })
    }

    fn sync_fs(&self, handle: &File) -> std::io::Result<()> {
        self.sync(handle, "syncfs", Kernel::sync_fs, |state, _, _| {
            let root = state.root.clone().expect("a run is on");
            record_tree(state, &root)
        })
    }
}
