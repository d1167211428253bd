//! The `soak` scenario's watcher: reads `GET /api/v1/remotes` twice a second for a
//! phase and turns what it sees into the phase's figures — which healthy remote was
//! collected in which cycle and how long after the cycle's tick, every failure of a
//! faulty remote with its error class, and the daemon's RSS and descriptors after the
//! warm-up and at the end (the RSS also once per cycle in between). The warm-up ends `warmup_cycles` cycles after every healthy
//! remote has been collected once (the backfill done).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;
use tokio::time::Instant;

use crate::e2e::request;
use crate::measure::process_rss_mib;
use crate::soak::Planted;

/// What a phase is judged against.
pub(crate) struct Expect {
    pub(crate) interval: u64,
    pub(crate) warmup_cycles: u64,
    /// The faulty remotes of this phase (none in the baseline).
    pub(crate) faults: HashMap<String, Planted>,
    /// Remotes left out of the healthy figures (the faulty phase's faulty ones), so
    /// that both phases time the same remotes.
    pub(crate) healthy_only_of: HashSet<String>,
}

/// One phase's figures.
#[derive(Debug, Default)]
pub(crate) struct Phase {
    /// Per measured cycle: seconds from its tick until its last healthy remote stored.
    pub(crate) cycle_secs: Vec<f64>,
    pub(crate) healthy_hits: u64,
    pub(crate) healthy_expected: u64,
    /// Failures of healthy remotes seen (any class).
    pub(crate) healthy_failures: u64,
    pub(crate) misclassified: u64,
    pub(crate) misclassified_examples: Vec<String>,
    /// Failures seen per planted fault.
    pub(crate) failures_by_fault: HashMap<String, u64>,
    /// Faulty remotes never seen failing after the warm-up.
    pub(crate) never_failed: Vec<String>,
    pub(crate) rss_growth_mib: f64,
    /// The daemon's RSS once per cycle from the end of the warm-up on (the first entry
    /// is the reference the growth is counted from, the last the end of the phase), so
    /// that a report can tell growth that levels off from growth that goes on.
    pub(crate) rss_by_cycle_mib: Vec<f64>,
    pub(crate) fd_growth: i64,
    pub(crate) restarts: u64,
    pub(crate) panicked_lines: u64,
    pub(crate) escaped_panics: u64,
    pub(crate) alerts_firing: u64,
    pub(crate) statsd_datagrams: u64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn fd_count(pid: u32) -> i64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(-1, |d| d.count() as i64)
}

/// What the watcher remembers of one remote.
#[derive(Default)]
struct Seen {
    last_success: Option<i64>,
    /// (last_attempt, consecutive_failures) of the last failure counted.
    last_failure: Option<(i64, u64)>,
    failed_after_warmup: bool,
}

/// Watches the daemon on `port` (process `pid`) for `length`.
pub(crate) fn watch(
    port: u16,
    pid: u32,
    expect: &Expect,
    length: Duration,
) -> anyhow::Result<Phase> {
    let interval = expect.interval as f64;
    let start = unix_now();
    // Measured: the cycles whose tick comes `warmup_cycles` after the first moment every
    // remote had been collected once (the backfill done), ending before the watch does.
    let mut first_cycle = i64::MAX;
    let end = start + length.as_secs_f64();
    let last_cycle = (end / interval).floor() as i64 - 1;
    let mut warm_end = f64::INFINITY;
    let mut phase = Phase::default();
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut hits: HashMap<String, HashSet<i64>> = HashMap::new();
    // Per cycle: the latest estimated store time of a healthy remote.
    let mut cycle_end: HashMap<i64, f64> = HashMap::new();
    let mut healthy: HashSet<String> = HashSet::new();
    let mut reference: Option<(f64, i64)> = None;
    let mut sampled_cycle: Option<i64> = None;
    let mut previous = unix_now();
    let deadline = Instant::now() + length;
    while Instant::now() < deadline {
        let t0 = Instant::now();
        let (status, body) = request(port, "GET", "/api/v1/remotes", "")?;
        let now = unix_now();
        if status != 200 {
            anyhow::bail!("GET /api/v1/remotes: HTTP {status}: {body}");
        }
        let v: Value = serde_json::from_str(&body).context("the remotes' JSON")?;
        let remotes = v["remotes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if warm_end.is_infinite()
            && !remotes.is_empty()
            && remotes.iter().all(|r| {
                let id = r["remote"].as_str().unwrap_or("");
                expect.faults.contains_key(id)
                    || expect.healthy_only_of.contains(id)
                    || r["last_success"].is_i64()
            })
        {
            first_cycle = (now / interval).ceil() as i64 + expect.warmup_cycles as i64;
            warm_end = first_cycle as f64 * interval;
            eprintln!(
                "soak: every healthy remote collected {:.0} s after the start; measuring from {}",
                now - start,
                first_cycle as f64 * interval - start
            );
        }
        let after_warmup = now >= warm_end;
        if after_warmup && reference.is_none() {
            reference = Some((process_rss_mib(&pid.to_string()), fd_count(pid)));
        }
        let cycle_now = (now / interval).floor() as i64;
        if after_warmup && sampled_cycle != Some(cycle_now) {
            sampled_cycle = Some(cycle_now);
            phase
                .rss_by_cycle_mib
                .push(process_rss_mib(&pid.to_string()));
        }
        for r in remotes {
            let Some(id) = r["remote"].as_str() else {
                continue;
            };
            let s = seen.entry(id.to_string()).or_default();
            let fault = expect.faults.get(id).copied();
            let is_healthy = fault.is_none() && !expect.healthy_only_of.contains(id);
            if is_healthy {
                healthy.insert(id.to_string());
            }
            let success = r["last_success"].as_i64();
            if success.is_some() && success != s.last_success {
                let t = success.unwrap_or_default();
                if is_healthy {
                    let cycle = t.div_euclid(expect.interval as i64);
                    hits.entry(id.to_string()).or_default().insert(cycle);
                    // Stored within [t, t + 1) and after the previous read.
                    let lo = (t as f64).max(previous);
                    let hi = (t as f64 + 1.0).min(now).max(lo);
                    let at = (lo + hi) / 2.0 - cycle as f64 * interval;
                    let e = cycle_end.entry(cycle).or_insert(0.0);
                    *e = e.max(at);
                }
                s.last_success = success;
            }
            let state = r["state"].as_str().unwrap_or("");
            let failing = matches!(state, "failing" | "backoff" | "failed");
            let failure = (
                r["last_attempt"].as_i64().unwrap_or(0),
                r["consecutive_failures"].as_u64().unwrap_or(0),
            );
            if failing && s.last_failure != Some(failure) {
                s.last_failure = Some(failure);
                if !after_warmup {
                    continue;
                }
                s.failed_after_warmup = true;
                let class = r["last_error_class"].as_str().unwrap_or("none");
                match fault {
                    None => phase.healthy_failures += 1,
                    Some(kind) => {
                        *phase
                            .failures_by_fault
                            .entry(format!("{}:{class}", kind.name()))
                            .or_default() += 1;
                        if !kind.classes().contains(&class) {
                            phase.misclassified += 1;
                            if phase.misclassified_examples.len() < 5 {
                                phase.misclassified_examples.push(format!(
                                    "{id} ({}): {class}: {}",
                                    kind.name(),
                                    r["last_error"].as_str().unwrap_or("")
                                ));
                            }
                        }
                    }
                }
            }
        }
        previous = now;
        let pause = Duration::from_millis(500).saturating_sub(t0.elapsed());
        #[allow(clippy::disallowed_methods)] // reason: pacing a plain watcher thread
        std::thread::sleep(pause);
    }
    for cycle in first_cycle..=last_cycle {
        phase.healthy_expected += healthy.len() as u64;
        phase.healthy_hits += healthy
            .iter()
            .filter(|id| hits.get(*id).is_some_and(|c| c.contains(&cycle)))
            .count() as u64;
        if let Some(t) = cycle_end.get(&cycle) {
            phase.cycle_secs.push(*t);
        }
    }
    let mut never: Vec<String> = expect
        .faults
        .iter()
        // A remote answering 500 at random may well pass every poll for a while.
        .filter(|(id, kind)| {
            **kind != Planted::ErrorRate && !seen.get(*id).is_some_and(|s| s.failed_after_warmup)
        })
        .map(|(id, kind)| format!("{id} ({})", kind.name()))
        .collect();
    never.sort();
    phase.never_failed = never;
    let (rss0, fd0) = reference.unwrap_or((f64::NAN, 0));
    let rss_end = process_rss_mib(&pid.to_string());
    phase.rss_growth_mib = rss_end - rss0;
    phase.rss_by_cycle_mib.push(rss_end);
    phase.fd_growth = fd_count(pid) - fd0;
    phase.restarts = tree_restarts(port)?;
    phase.alerts_firing = alerts_firing(port);
    Ok(phase)
}

/// Every restart the supervision tree counts, summed over its nodes.
pub(crate) fn tree_restarts(port: u16) -> anyhow::Result<u64> {
    let (status, body) = request(port, "GET", "/api/v1/tree", "")?;
    anyhow::ensure!(status == 200, "GET /api/v1/tree: HTTP {status}: {body}");
    let v: Value = serde_json::from_str(&body).context("the tree's JSON")?;
    fn sum(node: &Value) -> u64 {
        node["restarts"].as_u64().unwrap_or(0)
            + node["children"]
                .as_array()
                .map_or(0, |c| c.iter().map(sum).sum())
    }
    Ok(sum(&v))
}

fn alerts_firing(port: u16) -> u64 {
    request(port, "GET", "/api/v1/alerts", "")
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v["alerts"].as_array().map(|a| a.len() as u64))
        .unwrap_or(0)
}
