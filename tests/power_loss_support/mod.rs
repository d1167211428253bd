//! What the power-loss tests share: the model ([`model`]), the seeded settings, and
//! [`explore`], which runs a workload to seeded crash points and checks each crash
//! image.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod model;
pub mod rrd;
pub mod tasks;

use std::path::Path;

use model::{PowerLossModel, RunReport};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// The seed of every crash point (printed by a failure, to replay it).
pub const SEED_ENV: &str = "FLEETPOLL_POWER_LOSS_SEED";
/// Crash points over all stores.
pub const POINTS_ENV: &str = "FLEETPOLL_POWER_LOSS_POINTS";
const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// At least a thousand crash points in a normal run (CI).
const DEFAULT_POINTS: usize = 1_000;

pub fn seed() -> u64 {
    std::env::var(SEED_ENV).map_or(DEFAULT_SEED, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV} is a number, not {s:?}"))
    })
}

/// The crash points of one store: its `share` of the total.
pub fn points(share: f64) -> usize {
    let total: usize = std::env::var(POINTS_ENV).map_or(DEFAULT_POINTS, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("{POINTS_ENV} is a number, not {s:?}"))
    });
    ((total as f64 * share).ceil() as usize).max(1)
}

/// A store's life to be cut by a power loss: `run` drives the store in `dir` until it
/// is done or a call fails (from the crash point on every sync fails), recording what
/// the store acknowledged; `check` reopens a crash image and returns what is wrong.
pub trait Workload {
    type Params: std::fmt::Debug;
    type Acks: Default + std::fmt::Debug;
    /// A variant of the workload drawn from `rng`.
    fn params(&self, rng: &mut StdRng) -> Self::Params;
    fn run(&self, params: &Self::Params, dir: &Path, acks: &mut Self::Acks);
    fn check(&self, params: &Self::Params, dir: &Path, acks: &Self::Acks) -> Result<(), String>;
}

/// What [`explore`] ran.
#[derive(Debug, Default)]
pub struct Summary {
    pub points: usize,
    pub variants: usize,
    /// Crash points that cut the run (the others fell after its last sync).
    pub crashed: usize,
    /// Syncs of all dry runs, by kind.
    pub by_kind: std::collections::BTreeMap<&'static str, u64>,
}

/// Runs `points` crash points of `workload`, over variants of about `per_variant`
/// points each: a dry run of each variant counts its syncs, then each crash point
/// (drawn from 1 to one past the last sync) runs it again, cut there, and checks the
/// crash image. Panics on the first image that fails its check, naming the seed.
pub fn explore<W: Workload>(
    name: &str,
    workload: &W,
    points: usize,
    per_variant: usize,
) -> Summary {
    let seed = seed();
    let (model, _guard) = PowerLossModel::installed();
    let mut rng = StdRng::seed_from_u64(seed ^ fnv(name));
    let mut summary = Summary::default();
    while summary.points < points {
        let params = workload.params(&mut rng);
        summary.variants += 1;
        let dry = run_once(&model, workload, &params, None).0;
        assert!(
            dry.syncs > 0,
            "{name}: the workload synced nothing: {params:?}"
        );
        for (kind, n) in &dry.by_kind {
            *summary.by_kind.entry(kind).or_default() += n;
        }
        for _ in 0..per_variant.min(points - summary.points) {
            let crash_at = rng.random_range(1..=dry.syncs + 1);
            let (report, check) = run_once(&model, workload, &params, Some(crash_at));
            summary.points += 1;
            summary.crashed += usize::from(report.crashed);
            if let Err(problem) = check {
                panic!(
                    "{name}: power loss at sync {crash_at} of {} lost data: {problem}\n\
                     variant {params:?}\nreplay with {SEED_ENV}={seed}",
                    dry.syncs
                );
            }
        }
    }
    summary
}

/// One run of `workload` cut at `crash_at`, and the check of its crash image.
fn run_once<W: Workload>(
    model: &PowerLossModel,
    workload: &W,
    params: &W::Params,
    crash_at: Option<u64>,
) -> (RunReport, Result<(), String>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut acks = W::Acks::default();
    model.begin(&root, crash_at);
    workload.run(params, &root.join("store"), &mut acks);
    let report = model.end();
    if crash_at.is_none() {
        return (report, Ok(()));
    }
    let image = tmp.path().join("image");
    model.materialise(&image);
    let check = workload
        .check(params, &image.join("store"), &acks)
        .map_err(|problem| format!("{problem}\nacknowledged: {acks:?}"));
    (report, check)
}

/// A stable hash of a name (each store's points differ under one seed).
fn fnv(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
