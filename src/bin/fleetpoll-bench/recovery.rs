//! Recovery after a local outage, measured in `e2e`: the simulator (its own process)
//! makes every remote refuse connections (SIGUSR1) long enough for every remote to fail
//! and back off, then serves again (SIGUSR2). `recovery_s` is the time from the network
//! returning until every remote has been collected again, read through the API.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::time::Instant;

use crate::e2e::{request, wait_for};

/// What the outage cost.
pub(crate) struct Recovery {
    /// From the network returning to every remote collected again.
    pub(crate) seconds: f64,
    /// The longest backoff delay any remote was waiting out when the network returned.
    pub(crate) longest_wait_s: f64,
}

/// One remote's state, last success and next attempt (Unix seconds).
type State = (String, Option<i64>, Option<i64>);

/// Every remote's [`State`] through the API.
fn states(port: u16) -> anyhow::Result<Vec<State>> {
    let (status, body) = request(port, "GET", "/api/v1/remotes", "")?;
    if status != 200 {
        bail!("GET /api/v1/remotes: HTTP {status}: {body}");
    }
    let v: Value = serde_json::from_str(&body).context("the remotes' JSON")?;
    let list = v["remotes"].as_array().context("a remote list")?;
    Ok(list
        .iter()
        .map(|r| {
            (
                r["state"].as_str().unwrap_or("").to_string(),
                r["last_success"].as_i64(),
                r["next_attempt"].as_i64(),
            )
        })
        .collect())
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill {sig} {pid} failed");
    }
    Ok(())
}

/// Takes the network away from every remote for `outage`, then measures how long the
/// daemon takes to collect every remote again.
pub(crate) fn measure(port: u16, sim_pid: u32, outage: Duration) -> anyhow::Result<Recovery> {
    signal(sim_pid, "-USR1")?;
    let began = Instant::now();
    // Nothing is scheduled in the benchmark's day-long interval: one "collect now" makes
    // every remote fail; their retries then fail on their own, backing off further.
    let _ = request(port, "POST", "/api/v1/collect", r#"{"wait":true}"#)?;
    wait_for(Duration::from_secs(600), "every remote has failed", || {
        states(port).is_ok_and(|s| {
            s.iter()
                .all(|(state, _, _)| state == "backoff" || state == "failing")
        })
    })?;
    if let Some(rest) = outage.checked_sub(began.elapsed()) {
        #[allow(clippy::disallowed_methods)] // reason: a plain thread holding the outage
        std::thread::sleep(rest);
    }
    let now = unix_now();
    let longest_wait_s = states(port)?
        .iter()
        .filter_map(|(_, _, next)| *next)
        .map(|next| (next - now).max(0))
        .max()
        .unwrap_or(0) as f64;
    let returned = unix_now();
    signal(sim_pid, "-USR2")?;
    let t0 = Instant::now();
    wait_for(
        Duration::from_secs(1800),
        "every remote is collected again",
        || {
            states(port).is_ok_and(|s| {
                s.iter()
                    .all(|(state, last, _)| state == "ok" && last.is_some_and(|t| t >= returned))
            })
        },
    )?;
    Ok(Recovery {
        seconds: t0.elapsed().as_secs_f64(),
        longest_wait_s,
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
