//! Scenario `parse`: metric points parsed per second on one core, from the 30-minute
//! history reply of a simulated 20-node cluster with 1,000 guests, all the way into the
//! `MetricBatch` the engine stores (series interned, types mapped).

use anyhow::{bail, Context, Result};
use fleetpoll::engine::RemoteId;
use fleetpoll::remote::parse_metric_reply;
use fleetpoll::sim::metrics::metric_reply;
use fleetpoll::sim::SimConfig;
use tokio::time::Instant;

/// Parses the reply this many times and reports the fastest run.
const RUNS: usize = 5;

/// Flags of the `parse` scenario (none yet: the reply's size is fixed by the issue).
#[derive(Debug, clap::Args)]
pub(crate) struct ParseArgs {}

/// The `parse` scenario.
pub(crate) fn run(_args: ParseArgs) -> Result<serde_json::Value> {
    let config = SimConfig {
        seed: 1,
        pve_remotes: 1,
        pbs_remotes: 0,
        nodes_per_cluster: 20,
        guests_per_cluster: 1000,
        storages_per_node: 2,
        ..SimConfig::default()
    };
    let now = 1_750_000_000;
    let body = metric_reply(&config, "pve-1", now, true, None).context("pve-1 is simulated")?;
    let remote = RemoteId::new("pve-1");
    let mut best = f64::INFINITY;
    let mut points = 0;
    let mut series = 0;
    for run in 0..RUNS {
        let started = Instant::now();
        let batch = parse_metric_reply(&remote, &body, now)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("the simulated reply parses")?;
        let seconds = started.elapsed().as_secs_f64();
        points = batch.len();
        series = batch.series.len();
        eprintln!("run {run}: {points} points in {seconds:.3} s");
        best = best.min(seconds);
    }
    if points == 0 {
        bail!("the reply had no points");
    }
    let result = serde_json::json!({
        "scenario": "parse",
        "points": points,
        "series": series,
        "reply_bytes": body.len(),
        "runs": RUNS,
        "best_seconds": best,
        "points_per_s": (points as f64 / best).round(),
        "mb_per_s": (body.len() as f64 / best / 1e6 * 10.0).round() / 10.0,
    });
    Ok(result)
}
