//! Scenario `rrd-ingest`: metric points stored durably per second for one 10-minute
//! cycle of a fleet, through `RrdStore` (journal synced per group of batches, files
//! committed at the end), side by side with rrdcached fed the same points.
//!
//! Both sides start from existing files in the Proxmox VE 9 layout, one file per
//! entity holding its 12 metrics as 12 data sources (rrdtool's natural use for a
//! guest, as Proxmox VE's own RRDs do):
//!
//! - ours: a warm-up cycle (one point per series, 10 s before the measured cycle) is
//!   stored and committed untimed, so the files exist; then the store is reopened
//!   and the measured cycle stored one remote per batch, `--group-remotes` batches per
//!   `store_metrics` call, plus a final `commit()`;
//! - rrdcached: the files are created beforehand with `rrdtool create` (through one
//!   `rrdtool -` process), rrdcached is started on a private unix socket with a
//!   journal directory, the same points are sent as `UPDATE` lines in `BATCH` mode
//!   (one line per entity and timestamp, 12 values), then `FLUSHALL`, and the clock
//!   stops when `STATS` reports every data set written (asked every
//!   [`STATS_POLL`], not in a tight loop that would take a core from rrdcached on a
//!   small machine). rrdcached syncs neither its journal nor its files, so its figure
//!   holds no durability; a second figure (`rrdcached_synced_points_per_s`) also
//!   counts syncing its file system afterwards (one `syncfs`) as our commit syncs
//!   ours.
//!
//! Both sides run `--runs` times (3 by default), alternately in one invocation (ours,
//! rrdcached, ours, …), each run on fresh files; the figures are the medians, the
//! ratios are of the medians, and every run's rates are listed under `runs`.

use std::io::{BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fleetpoll::engine::{
    MetricBatch, MetricKind, MetricPoint, MetricStore, MetricWrite, RemoteId, SeriesKey,
};
use fleetpoll::rrd::layout::{PVE_ARCHIVES, PVE_HEARTBEAT, PVE_STEP};
use fleetpoll::rrd::RrdStore;
use tokio::time::Instant;

use crate::measure::{cpu_time, round};

/// Metrics of each entity stored as DERIVE counters (the rest are gauges), as the
/// network and disk counters of a guest.
const COUNTERS: usize = 4;

/// How often rrdcached's `STATS` is asked whether every data set is written: often
/// enough to stop its clock within a few milliseconds of the end, rarely enough to
/// leave it the machine's cores.
const STATS_POLL: Duration = Duration::from_millis(5);

/// Flags of the `rrd-ingest` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct RrdIngestArgs {
    /// Remotes of the fleet (one batch each).
    #[arg(long, default_value_t = 100)]
    remotes: usize,
    /// Entities (guests, nodes, storages) per remote; one file each.
    #[arg(long, default_value_t = 20)]
    entities: usize,
    /// Metrics per entity.
    #[arg(long, default_value_t = 12)]
    metrics: usize,
    /// Points per series in the cycle.
    #[arg(long, default_value_t = 60)]
    points: usize,
    /// Seconds between two points of a series.
    #[arg(long, default_value_t = 10)]
    interval_secs: i64,
    /// Remote batches per `store_metrics` call (one journal sync): the Storage actor
    /// groups what is queued, and metric collection runs 20 remotes at once.
    #[arg(long, default_value_t = 20)]
    group_remotes: usize,
    /// Directory for the temporary stores (default: the system's temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Runs of each side, alternating (ours, rrdcached, ours, …); medians reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The rrdcached program.
    #[arg(long, default_value = "rrdcached")]
    rrdcached: PathBuf,
    /// The rrdtool program.
    #[arg(long, default_value = "rrdtool")]
    rrdtool: PathBuf,
}

/// The fleet's cycle: every series' value at point `i`.
struct Fleet<'a> {
    args: &'a RrdIngestArgs,
    /// The first timestamp of the measured cycle.
    start: i64,
}

impl Fleet<'_> {
    fn metric_name(k: usize) -> String {
        if k < COUNTERS {
            format!("ctr{k}")
        } else {
            format!("gauge{k}")
        }
    }

    fn value(&self, r: usize, e: usize, k: usize, i: usize) -> f64 {
        if k < COUNTERS {
            // A counter growing by a few thousand per interval.
            (1_000_000 + (i as u64) * (1000 + (r * 7 + e * 3 + k) as u64 % 5000)) as f64
        } else {
            ((r * 31 + e * 17 + k * 5 + i * 3) % 1000) as f64 / 10.0
        }
    }

    fn entity(e: usize) -> String {
        format!("qemu/{}", 100 + e)
    }

    /// Remote `r`'s batch with points `first..first + count` of every series.
    fn batch(&self, r: usize, first: usize, count: usize) -> MetricBatch {
        let a = self.args;
        let mut series = Vec::with_capacity(a.entities * a.metrics);
        for e in 0..a.entities {
            let entity: Arc<str> = Arc::from(Fleet::entity(e));
            for k in 0..a.metrics {
                series.push(SeriesKey {
                    entity: entity.clone(),
                    metric: Arc::from(Fleet::metric_name(k)),
                    kind: if k < COUNTERS {
                        MetricKind::Derive
                    } else {
                        MetricKind::Gauge
                    },
                });
            }
        }
        let mut points = Vec::with_capacity(series.len() * count);
        for i in first..first + count {
            let timestamp = self.start + i as i64 * a.interval_secs;
            for e in 0..a.entities {
                for k in 0..a.metrics {
                    points.push(MetricPoint {
                        series: (e * a.metrics + k) as u32,
                        timestamp,
                        value: self.value(r, e, k, i),
                    });
                }
            }
        }
        MetricBatch {
            series,
            points,
            dropped_future: 0,
        }
    }

    fn remote(r: usize) -> RemoteId {
        RemoteId::new(format!("remote-{r:04}"))
    }
}

/// Bytes this process has caused to be written to storage (`/proc/self/io`), and
/// which counter gave them: `write_bytes` when the filesystem accounts it, else the
/// bytes passed to `write` calls.
fn written_bytes() -> (u64, &'static str) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    match field("write_bytes:") {
        0 => (field("wchar:"), "wchar"),
        bytes => (bytes, "write_bytes"),
    }
}

/// Bytes this process has passed to write calls (`wchar` of `/proc/self/io`).
fn write_calls_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Total size of the regular files under `dir` with extension `ext`.
fn size_of_files(dir: &Path, ext: &str) -> Result<(u64, usize)> {
    let mut total = 0;
    let mut count = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            let (t, c) = size_of_files(&path, ext)?;
            total += t;
            count += c;
        } else if path.extension().is_some_and(|x| x == ext) {
            total += entry.metadata()?.len();
            count += 1;
        }
    }
    Ok((total, count))
}

/// What our run measured.
struct Ours {
    seconds: f64,
    /// Of `seconds`, the `store_metrics` calls (the rest is the final commit).
    journal_seconds: f64,
    cpu_seconds: f64,
    bytes_written: u64,
    /// Bytes handed to `write`/`pwrite` calls (journal records, rows, live blocks).
    bytes_passed: u64,
    bytes_source: &'static str,
    journal_peak_bytes: u64,
    file_bytes: u64,
    files: usize,
}

fn run_ours(fleet: &Fleet<'_>, dir: &Path) -> Result<Ours> {
    let a = fleet.args;
    let store_err = |e: fleetpoll::engine::StoreError| anyhow::anyhow!("{e}");
    // Warm-up, untimed: one point per series 10 s before the cycle creates the files.
    {
        let (store, _) = RrdStore::open(dir).context("opening our store")?;
        let warm = Fleet {
            args: a,
            start: fleet.start - a.interval_secs,
        };
        for r in 0..a.remotes {
            let write = MetricWrite {
                remote: Fleet::remote(r),
                batch: warm.batch(r, 0, 1),
            };
            store.store_metrics(&[write]).remove(0).map_err(store_err)?;
        }
        store.commit().map_err(store_err)?;
    }
    let (store, _) = RrdStore::open(dir).context("reopening our store")?;
    // The batches as the pollers hand them over, built before the clock starts.
    let batches: Vec<MetricWrite> = (0..a.remotes)
        .map(|r| MetricWrite {
            remote: Fleet::remote(r),
            batch: fleet.batch(r, 0, a.points),
        })
        .collect();
    let (written_before, bytes_source) = written_bytes();
    let passed_before = write_calls_bytes();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut journal_peak_bytes = 0;
    for group in batches.chunks(a.group_remotes.max(1)) {
        for result in store.store_metrics(group) {
            result.map_err(store_err)?;
        }
        let journal = std::fs::metadata(dir.join("journal")).map_or(0, |m| m.len());
        journal_peak_bytes = journal_peak_bytes.max(journal);
    }
    let journal_seconds = started.elapsed().as_secs_f64();
    store.commit().map_err(store_err)?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = (cpu_time() - cpu_before).as_secs_f64();
    let bytes_written = written_bytes().0 - written_before;
    let bytes_passed = write_calls_bytes() - passed_before;
    let (file_bytes, files) = size_of_files(dir, "rrd")?;
    Ok(Ours {
        seconds,
        journal_seconds,
        cpu_seconds,
        bytes_written,
        bytes_passed,
        bytes_source,
        journal_peak_bytes,
        file_bytes,
        files,
    })
}

/// `rrdtool create` arguments of one file with `metrics` data sources in the
/// Proxmox VE 9 layout.
fn create_args(path: &Path, start: i64, metrics: usize) -> String {
    let mut args = format!(
        "create {} --start {} --step {PVE_STEP}",
        path.display(),
        start
    );
    for k in 0..metrics {
        let kind = if k < COUNTERS { "DERIVE" } else { "GAUGE" };
        args.push_str(&format!(
            " DS:{}:{kind}:{PVE_HEARTBEAT}:0:U",
            Fleet::metric_name(k)
        ));
    }
    for (steps, rows) in PVE_ARCHIVES {
        for cf in ["AVERAGE", "MAX"] {
            args.push_str(&format!(" RRA:{cf}:0.5:{steps}:{rows}"));
        }
    }
    args
}

/// Runs commands through one `rrdtool -` process, failing on the first error.
fn rrdtool_batch(rrdtool: &Path, commands: &[String]) -> Result<()> {
    let mut child = Command::new(rrdtool)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (install the Debian package rrdtool)",
                rrdtool.display()
            )
        })?;
    let mut stdin = child.stdin.take().context("rrdtool's stdin")?;
    let input = commands.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let mut out = String::new();
    std::io::Read::read_to_string(
        &mut child.stdout.take().context("rrdtool's stdout")?,
        &mut out,
    )?;
    writer.join().expect("writer thread")?;
    child.wait()?;
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("ERROR")).collect();
    if !errors.is_empty() {
        bail!("rrdtool failed: {}", errors.join("; "));
    }
    Ok(())
}

/// A running rrdcached, killed when dropped.
struct Rrdcached(Child);

impl Drop for Rrdcached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads one reply of rrdcached: a status line `N message` followed by N lines when
/// N > 0; returns the status and the lines.
fn read_reply(reader: &mut impl std::io::BufRead) -> Result<(i64, Vec<String>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let (count, _) = line
        .trim_end()
        .split_once(' ')
        .with_context(|| format!("unexpected rrdcached reply {line:?}"))?;
    let count: i64 = count.parse()?;
    let mut lines = Vec::new();
    for _ in 0..count.max(0) {
        let mut l = String::new();
        reader.read_line(&mut l)?;
        lines.push(l.trim_end().to_string());
    }
    Ok((count, lines))
}

/// Connects to rrdcached's socket, waiting up to 10 s for it to appear.
// The benchmark's main thread is no actor: a plain pause between attempts is right.
#[allow(clippy::disallowed_methods)]
fn connect(socket: &Path) -> Result<UnixStream> {
    for _ in 0..200 {
        if let Ok(stream) = UnixStream::connect(socket) {
            return Ok(stream);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("rrdcached did not open {} within 10 s", socket.display())
}

/// Syncs the file system holding `dir` (one `syncfs`), as our store's commit does.
fn sync_fs(dir: &Path) -> Result<()> {
    let handle = std::fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    rustix::fs::syncfs(&handle).with_context(|| format!("syncfs of {}", dir.display()))
}

/// What the rrdcached run measured.
struct Theirs {
    seconds: f64,
    /// Until its files were also synced.
    synced_seconds: f64,
    /// The size of one of its files (holding the same data sources as ours).
    file_bytes: u64,
}

fn run_rrdcached(fleet: &Fleet<'_>, dir: &Path) -> Result<Theirs> {
    let a = fleet.args;
    let base = dir.join("rrd");
    let journal = dir.join("journal");
    std::fs::create_dir_all(&base)?;
    std::fs::create_dir_all(&journal)?;
    // The files, beforehand (untimed), starting just before the cycle.
    let path = |r: usize, e: usize| base.join(format!("remote-{r:04}-qemu-{}.rrd", 100 + e));
    let mut commands = Vec::new();
    for r in 0..a.remotes {
        for e in 0..a.entities {
            commands.push(create_args(&path(r, e), fleet.start - 1, a.metrics));
        }
    }
    rrdtool_batch(&a.rrdtool, &commands)?;
    let file_bytes = std::fs::metadata(path(0, 0))?.len();
    // Created files are made durable before the clock starts, as ours are.
    sync_fs(&base)?;

    let socket = dir.join("rrdcached.sock");
    let child = Command::new(&a.rrdcached)
        .arg("-l")
        .arg(format!("unix:{}", socket.display()))
        .arg("-b")
        .arg(&base)
        .args(["-B", "-F", "-g"])
        .arg("-j")
        .arg(&journal)
        .arg("-p")
        .arg(dir.join("rrdcached.pid"))
        .args(["-w", "3600", "-f", "7200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (install the Debian package rrdcached)",
                a.rrdcached.display()
            )
        })?;
    let _daemon = Rrdcached(child);
    let stream = connect(&socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, stream);

    // The update lines, built before the clock starts: one per entity and time.
    let batches: Vec<Vec<u8>> = (0..a.remotes)
        .map(|r| {
            let mut out = Vec::new();
            for e in 0..a.entities {
                let file = format!("remote-{r:04}-qemu-{}.rrd", 100 + e);
                for i in 0..a.points {
                    let t = fleet.start + i as i64 * a.interval_secs;
                    let _ = write!(out, "UPDATE {file} {t}");
                    for k in 0..a.metrics {
                        let _ = write!(out, ":{}", fleet.value(r, e, k, i));
                    }
                    out.push(b'\n');
                }
            }
            out
        })
        .collect();
    let data_sets = (a.remotes * a.entities * a.points) as u64;

    let started = Instant::now();
    writer.write_all(b"BATCH\n")?;
    writer.flush()?;
    let (status, _) = read_reply(&mut reader)?;
    if status != 0 {
        bail!("rrdcached refused BATCH");
    }
    for batch in &batches {
        writer.write_all(batch)?;
    }
    writer.write_all(b".\n")?;
    writer.flush()?;
    let (errors, lines) = read_reply(&mut reader)?;
    if errors != 0 {
        bail!(
            "rrdcached reported {errors} errors, e.g. {:?}",
            lines.first()
        );
    }
    writer.write_all(b"FLUSHALL\n")?;
    writer.flush()?;
    read_reply(&mut reader)?;
    let mut polls = 0u64;
    loop {
        polls += 1;
        writer.write_all(b"STATS\n")?;
        writer.flush()?;
        let (_, stats) = read_reply(&mut reader)?;
        let written = stats
            .iter()
            .find_map(|l| l.strip_prefix("DataSetsWritten:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if written >= data_sets {
            break;
        }
        pause(STATS_POLL);
    }
    let seconds = started.elapsed().as_secs_f64();
    // rrdcached never syncs; for a durable comparison, sync its files as our commit
    // syncs ours (one syncfs) and time that too.
    sync_fs(&base)?;
    let synced_seconds = started.elapsed().as_secs_f64();
    eprintln!("rrdcached: STATS asked {polls} times");
    Ok(Theirs {
        seconds,
        synced_seconds,
        file_bytes,
    })
}

/// Waits between two `STATS` requests.
// The benchmark's main thread is no actor: a plain pause is right.
#[allow(clippy::disallowed_methods)]
fn pause(duration: Duration) {
    std::thread::sleep(duration);
}

/// The median of some figures (the mean of the middle two for an even count).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `rrd-ingest` scenario.
pub(crate) fn run(args: RrdIngestArgs) -> Result<serde_json::Value> {
    if args.remotes == 0 || args.entities == 0 || args.metrics == 0 || args.points == 0 {
        bail!("--remotes, --entities, --metrics and --points must be at least 1");
    }
    if args.interval_secs < 1 {
        bail!("--interval-secs must be at least 1");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = TempDir(parent.join(format!("fleetpoll-rrd-ingest-{}", std::process::id())));
    std::fs::create_dir_all(dir.path())
        .with_context(|| format!("creating {}", dir.path().display()))?;
    // A cycle ending now, aligned to the minute.
    let now = fleetpoll::engine::system_now_secs();
    let start = now - now % 60 - args.points as i64 * args.interval_secs;
    let fleet = Fleet { args: &args, start };
    let points = (args.remotes * args.entities * args.metrics * args.points) as f64;
    let series = (args.remotes * args.entities * args.metrics) as u64;

    let mut ours_runs = Vec::new();
    let mut theirs_runs = Vec::new();
    for run in 0..args.runs {
        eprintln!(
            "run {}/{}: ours, {points} points through RrdStore",
            run + 1,
            args.runs
        );
        let run_dir = TempDir(dir.path().join(format!("ours-{run}")));
        let ours = run_ours(&fleet, run_dir.path())?;
        drop(run_dir);
        eprintln!(
            "ours: {:.3} s ({:.3} s journal), {:.3} s CPU, {} files",
            ours.seconds, ours.journal_seconds, ours.cpu_seconds, ours.files
        );
        eprintln!("run {}/{}: rrdcached, the same points", run + 1, args.runs);
        let run_dir = TempDir(dir.path().join(format!("rrdcached-{run}")));
        let theirs = run_rrdcached(&fleet, run_dir.path())?;
        drop(run_dir);
        eprintln!(
            "rrdcached: {:.3} s ({:.3} s with its files synced)",
            theirs.seconds, theirs.synced_seconds
        );
        ours_runs.push(ours);
        theirs_runs.push(theirs);
    }
    let med = |f: &dyn Fn(&Ours) -> f64| median(&ours_runs.iter().map(f).collect::<Vec<_>>());
    let med_theirs =
        |f: &dyn Fn(&Theirs) -> f64| median(&theirs_runs.iter().map(f).collect::<Vec<_>>());
    let ours_rate = med(&|o| points / o.seconds);
    let theirs_rate = med_theirs(&|t| points / t.seconds);
    let theirs_synced_rate = med_theirs(&|t| points / t.synced_seconds);
    let seconds = med(&|o| o.seconds);
    let journal_seconds = med(&|o| o.journal_seconds);
    let runs: Vec<serde_json::Value> = ours_runs
        .iter()
        .zip(&theirs_runs)
        .map(|(o, t)| {
            serde_json::json!({
                "points_per_s": (points / o.seconds).round(),
                "journal_seconds": round(o.journal_seconds, 3),
                "commit_seconds": round(o.seconds - o.journal_seconds, 3),
                "rrdcached_points_per_s": (points / t.seconds).round(),
                "rrdcached_synced_points_per_s": (points / t.synced_seconds).round(),
            })
        })
        .collect();
    let last = ours_runs.last().context("at least one run")?;
    let rrdtool_file_bytes = theirs_runs.last().context("at least one run")?.file_bytes;
    Ok(serde_json::json!({
        "scenario": "rrd-ingest",
        "remotes": args.remotes,
        "entities_per_remote": args.entities,
        "metrics_per_entity": args.metrics,
        "points_per_series": args.points,
        "interval_secs": args.interval_secs,
        "group_remotes": args.group_remotes,
        "points": points as u64,
        "runs_each": args.runs,
        "seconds": round(seconds, 3),
        "journal_seconds": round(journal_seconds, 3),
        "commit_seconds": round(med(&|o| o.seconds - o.journal_seconds), 3),
        "cpu_seconds": round(med(&|o| o.cpu_seconds), 3),
        "points_per_s": ours_rate.round(),
        "rrdcached_seconds": round(med_theirs(&|t| t.seconds), 3),
        "rrdcached_points_per_s": theirs_rate.round(),
        "ratio_vs_rrdcached": round(ours_rate / theirs_rate, 2),
        "rrdcached_synced_points_per_s": theirs_synced_rate.round(),
        "ratio_vs_rrdcached_synced": round(ours_rate / theirs_synced_rate, 2),
        "rrdcached_stats_poll_ms": STATS_POLL.as_millis() as u64,
        "bytes_written_per_point": round(med(&|o| o.bytes_written as f64) / points, 1),
        "bytes_written_source": last.bytes_source,
        "bytes_passed_to_write_per_point": round(med(&|o| o.bytes_passed as f64) / points, 1),
        "journal_peak_bytes": last.journal_peak_bytes,
        "disk_bytes_per_series": last.file_bytes / series.max(1),
        "rrdtool_file_bytes": rrdtool_file_bytes,
        "rrdtool_bytes_per_series": rrdtool_file_bytes / args.metrics as u64,
        "files": last.files,
        "runs": runs,
    }))
}
