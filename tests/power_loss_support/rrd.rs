//! The RRD store's workload: batches of every entity's metrics stored (each
//! acknowledged when `store_metrics` returns its cursor), commits on a cadence (the
//! parallel commit: files created, grown by a rewrite when a data source appears,
//! `syncfs`, the journal released), and a clean reopen midway (replay at open).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use fleetpoll::rrd::store::RrdStore;
use fleetpoll::rrd::{Cf, FetchRequest, RrdFile};
use fleetpoll_actors::{
    MetricBatch, MetricKind, MetricPoint, MetricStore, MetricWrite, RemoteId, SeriesKey,
};
use rand::rngs::StdRng;
use rand::Rng as _;

use super::Workload;

/// The first minute's timestamp (a multiple of 60).
const T0: i64 = 1_700_000_040;
const GAUGES: usize = 2;
pub const MINUTES_PER_BATCH: i64 = 5;
/// A gauge that appears from this minute on: its files are grown by a rewrite. Its
/// name is longer than a data source's, so it also has a names sidecar.
const LATE_FROM: i64 = 10;
const LATE: &str = "late_gauge_with_a_long_name";

fn gauge(m: i64, e: usize, k: usize) -> f64 {
    ((m * 7 + e as i64 * 3 + k as i64) % 1000) as f64
}

pub fn remote() -> RemoteId {
    RemoteId::new("lab")
}

pub fn batch(entities: usize, first: i64) -> MetricBatch {
    let mut series = Vec::new();
    let mut points = Vec::new();
    for e in 0..entities {
        let entity: Arc<str> = Arc::from(format!("qemu/{}", 100 + e));
        let key = |metric: &str, kind| SeriesKey {
            entity: entity.clone(),
            metric: Arc::from(metric),
            kind,
        };
        let base = series.len() as u32;
        for k in 0..GAUGES {
            series.push(key(&format!("g{k}"), MetricKind::Gauge));
        }
        series.push(key("net_in", MetricKind::Derive));
        series.push(key(LATE, MetricKind::Gauge));
        for m in first..first + MINUTES_PER_BATCH {
            let timestamp = T0 + 60 * m;
            for k in 0..GAUGES {
                points.push(MetricPoint {
                    series: base + k as u32,
                    timestamp,
                    value: gauge(m, e, k),
                });
            }
            points.push(MetricPoint {
                series: base + GAUGES as u32,
                timestamp,
                value: (600 * m) as f64,
            });
            if m >= LATE_FROM {
                points.push(MetricPoint {
                    series: base + GAUGES as u32 + 1,
                    timestamp,
                    value: gauge(m, e, 9),
                });
            }
        }
    }
    points.sort_by_key(|p| p.timestamp);
    MetricBatch {
        series,
        points,
        dropped_future: 0,
    }
}

pub struct RrdWorkload;

#[derive(Debug)]
pub struct RrdParams {
    entities: usize,
    batches: i64,
    commit_every: i64,
    /// Before this batch the store is closed and opened again.
    reopen_at: Option<i64>,
}

#[derive(Debug, Default)]
pub struct RrdAcks {
    /// The newest acknowledged timestamp.
    acked: Option<i64>,
    /// Commits that returned Ok.
    commits: usize,
}

impl Workload for RrdWorkload {
    type Params = RrdParams;
    type Acks = RrdAcks;

    fn params(&self, rng: &mut StdRng) -> RrdParams {
        let batches = rng.random_range(4..=7);
        RrdParams {
            entities: rng.random_range(1..=3),
            batches,
            commit_every: rng.random_range(1..=3),
            reopen_at: rng.random_bool(0.5).then(|| rng.random_range(1..batches)),
        }
    }

    fn run(&self, params: &RrdParams, dir: &Path, acks: &mut RrdAcks) {
        let Ok((mut store, _)) = RrdStore::open(dir) else {
            return;
        };
        for b in 0..params.batches {
            if params.reopen_at == Some(b) {
                drop(store);
                match RrdStore::open(dir) {
                    Ok((reopened, _)) => store = reopened,
                    Err(_) => return,
                }
            }
            let write = MetricWrite {
                remote: remote(),
                batch: batch(params.entities, b * MINUTES_PER_BATCH),
            };
            match store.store_metrics(&[write]).remove(0) {
                Ok(cursor) => acks.acked = cursor.0,
                Err(_) => return,
            }
            if (b + 1) % params.commit_every == 0 {
                if store.commit().is_err() {
                    return;
                }
                acks.commits += 1;
            }
        }
    }

    fn check(&self, params: &RrdParams, dir: &Path, acks: &RrdAcks) -> Result<(), String> {
        let (store, recovery) =
            RrdStore::open(dir).map_err(|e| format!("the store does not open: {e}"))?;
        if !recovery.errors.is_empty() || !recovery.damaged_journal.is_empty() {
            return Err(format!("recovery found problems: {recovery:?}"));
        }
        let cursor = store.cursor(&remote()).0;
        if cursor < acks.acked {
            return Err(format!(
                "cursor {cursor:?} is behind the acknowledged {:?}",
                acks.acked
            ));
        }
        if let Some(acked) = acks.acked {
            let to_minute = (acked - T0) / 60;
            for e in 0..params.entities {
                check_entity(&store, dir, e, 2, to_minute).map_err(|problem| {
                    format!(
                        "{problem}\nthe image's files: {}",
                        listing(&dir.join("lab"))
                    )
                })?;
            }
        }
        if store.damaged_file_count() != 0 || store.quarantined_rows() != 0 {
            return Err(format!(
                "files set aside {:?}, points quarantined {:?}",
                store.damaged_files(),
                store.quarantined()
            ));
        }
        drop(store);
        if let Ok(entries) = std::fs::read_dir(dir.join("lab")) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path.to_string_lossy();
                if name.contains(".corrupt") || name.contains("damaged") {
                    return Err(format!("{} was set aside", path.display()));
                }
                if path.extension().is_some_and(|x| x == "rrd") {
                    RrdFile::open(&path)
                        .map_err(|e| format!("{} does not open: {e}", path.display()))?;
                }
            }
        }
        Ok(())
    }
}

/// Every minute `from..=to` of entity `e` reads back with its values.
pub fn check_entity(
    store: &RrdStore,
    dir: &Path,
    e: usize,
    from: i64,
    to: i64,
) -> Result<(), String> {
    let entity = format!("qemu/{}", 100 + e);
    // A fetch answers with data-source names; the sidecar holds the full ones.
    let sidecar = RrdStore::file_path(dir, &remote(), &entity).with_extension("names");
    let text = std::fs::read_to_string(sidecar).unwrap_or_default();
    let short_late = text
        .lines()
        .find_map(|l| l.split_once(' ').filter(|(_, full)| *full == LATE))
        .map(|(ds, _)| ds.to_string());
    let result = store
        .fetch(
            &remote(),
            &entity,
            &FetchRequest {
                cf: Cf::Average,
                start: T0 + 60 * (from - 1),
                end: T0 + 60 * to - 1,
                resolution: 60,
            },
        )
        .map_err(|e| format!("{entity}: {e}"))?
        .ok_or_else(|| format!("{entity} is missing"))?;
    let col = |name: &str| {
        result
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("{entity} has no {name} (names {:?})", result.names))
    };
    let rows: BTreeMap<i64, &Vec<f64>> = result.rows.iter().map(|(t, v)| (*t, v)).collect();
    for m in from..=to {
        let row = rows
            .get(&(T0 + 60 * m))
            .ok_or_else(|| format!("{entity} has no row for minute {m}"))?;
        let mut expect = vec![("net_in".to_string(), 10.0)];
        for k in 0..GAUGES {
            expect.push((format!("g{k}"), gauge(m, e, k)));
        }
        if m > LATE_FROM {
            let ds = short_late
                .clone()
                .ok_or_else(|| format!("{entity}'s names sidecar lost {LATE}: {text:?}"))?;
            expect.push((ds, gauge(m, e, 9)));
        }
        for (name, value) in expect {
            let got = row[col(&name)?];
            if got != value {
                return Err(format!("{entity} {name} minute {m}: {got}, not {value}"));
            }
        }
    }
    Ok(())
}

/// The files of `dir` with their sizes, and the names sidecars' text.
fn listing(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let len = entry.metadata().map_or(0, |m| m.len());
        out.push_str(&format!("{} ({len} bytes)", path.display()));
        if path.extension().is_some_and(|x| x == "names") {
            out.push_str(&format!(
                " {:?}",
                std::fs::read_to_string(&path).unwrap_or_default()
            ));
        }
        out.push_str("; ");
    }
    out
}
