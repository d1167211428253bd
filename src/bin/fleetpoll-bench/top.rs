//! `top`: the top-lists aggregate at fleet size. 1,000 remotes of 3 nodes and 50 guests
//! each are folded into the store's aggregate (an hour of samples, one per minute, as
//! the store takes them batch by batch), then the hour's rankings — what `GET
//! /api/v1/top?timeframe=hour` and the web page's overview ask for — are computed
//! repeatedly over every remote: p50 and p99 of one ranking (four top-10 lists). Then
//! the window moves on without a new batch: the first request five minutes later (its
//! window's rankings were prepared at store time) and the first requests ten to
//! twenty-five minutes later (every remote ranked again during the request, as when no
//! batch arrived for that long).

use std::sync::Arc;
use tokio::time::Instant;

use fleetpoll::engine::RemoteId;
use fleetpoll::rrd::top::TopAggregate;
use fleetpoll_actors::{MetricBatch, MetricKind, MetricPoint, SeriesKey};
use serde_json::json;

use crate::measure::{percentile, round, rss_bytes};

#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// Remotes in the fleet.
    #[arg(long, default_value_t = 1000)]
    remotes: usize,
    /// Guests per remote.
    #[arg(long, default_value_t = 50)]
    guests: usize,
    /// Nodes per remote.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Rankings timed.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Entries per list.
    #[arg(long, default_value_t = 10)]
    n: usize,
}

/// One remote's batch of one minute: cpu, mem_used and mem_total of every entity.
fn batch(remote: usize, guests: usize, nodes: usize, ts: i64) -> MetricBatch {
    let mut b = MetricBatch::default();
    let entities = (0..nodes)
        .map(|n| format!("node/n{n}"))
        .chain((0..guests).map(|g| format!("qemu/{}", 100 + g)));
    for (i, entity) in entities.enumerate() {
        let entity: Arc<str> = entity.into();
        // Spread values so the rankings have work to do (and ties are rare).
        let x = ((remote * 7919 + i * 104_729 + ts as usize) % 10_000) as f64 / 10_000.0;
        for (metric, value) in [
            ("cpu_current", x),
            ("mem_used", x * 8e9),
            ("mem_total", 8e9),
        ] {
            b.points.push(MetricPoint {
                series: b.series.len() as u32,
                timestamp: ts,
                value,
            });
            b.series.push(SeriesKey {
                entity: entity.clone(),
                metric: metric.into(),
                kind: MetricKind::Gauge,
            });
        }
    }
    b
}

pub(crate) fn run(args: TopArgs) -> anyhow::Result<serde_json::Value> {
    let top = TopAggregate::default();
    let ids: Vec<RemoteId> = (0..args.remotes)
        .map(|r| RemoteId::new(format!("pve-{r}")))
        .collect();
    let now = 1_700_000_000;
    let rss_before = rss_bytes();
    let fill = Instant::now();
    for minute in (0..60).rev() {
        for (r, id) in ids.iter().enumerate() {
            top.add(id, &batch(r, args.guests, args.nodes, now - minute * 60));
        }
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let rss_growth = rss_bytes().saturating_sub(rss_before) as f64 / (1024.0 * 1024.0);
    let mut ms = Vec::with_capacity(args.samples);
    let mut kept = 0;
    for _ in 0..args.samples {
        let t = Instant::now();
        let lists = top.top(&ids, now, args.n);
        // The API's answer is these lists as JSON; encoding them is part of a request.
        let list = |l: &[fleetpoll::rrd::top::TopEntry]| -> Vec<serde_json::Value> {
            l.iter()
                .map(|e| json!({"remote": e.remote.as_str(), "entity": e.entity, "value": e.value}))
                .collect()
        };
        let body = serde_json::to_vec(&json!({
            "guests_by_cpu": list(&lists.guests_by_cpu),
            "guests_by_memory": list(&lists.guests_by_memory),
            "nodes_by_cpu": list(&lists.nodes_by_cpu),
            "nodes_by_memory": list(&lists.nodes_by_memory),
        }))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(body);
        kept = lists.guests_by_cpu.len();
    }
    if kept != args.n.min(args.remotes * args.guests) {
        anyhow::bail!("the ranking kept {kept} guests, expected {}", args.n);
    }
    let p50 = percentile(&mut ms, 50.0);
    let p99 = percentile(&mut ms, 99.0);
    let timed = |now: i64| {
        let t = Instant::now();
        std::hint::black_box(top.top(&ids, now, args.n));
        t.elapsed().as_secs_f64() * 1000.0
    };
    let next_window_ms = timed(now + 300);
    let stale_window_ms = (2..=5).map(|k| timed(now + 300 * k)).fold(0.0, f64::max);
    Ok(json!({
        "scenario": "top",
        "remotes": args.remotes,
        "guests_per_remote": args.guests,
        "nodes_per_remote": args.nodes,
        "entities": args.remotes * (args.guests + args.nodes),
        "samples": args.samples,
        "fill_s": round(fill_s, 3),
        "aggregate_rss_mib": round(rss_growth, 1),
        "top_p50_ms": round(p50, 3),
        "top_p99_ms": round(p99, 3),
        "next_window_ms": round(next_window_ms, 3),
        "stale_window_max_ms": round(stale_window_ms, 3),
    }))
}
