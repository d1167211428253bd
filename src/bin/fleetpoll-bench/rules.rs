//! `rules`: samples through the rule engine as the engine feeds its hooks — the live
//! feed, the dispatcher with its rates, the rules hook's queue and runner — with a real
//! webhook receiver on loopback. 1,000 rules over 50,000 entities (100 remotes × 500
//! guests), two samples per guest per second (a gauge and a derive); each second ten
//! guests cross their CPU threshold for one second, firing the five CPU rules of their
//! remote and resolving them at the next sample.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetpoll::engine::{
    HookOptions, MetricBatch, MetricKind, MetricPoint, RemoteId, SeriesKey, TokioClock,
};
use fleetpoll::rules::{RuleSet, Rules};
use fleetpoll_actors::testing::HookHarness;
use rand::Rng;
use serde_json::json;
use tokio::time::Instant;

use crate::measure::{cpu_time, percentile, process_cpu_secs, round, rss_bytes};

/// Flags of the `rules` scenario.
#[derive(Debug, clap::Args)]
pub(crate) struct RulesArgs {
    /// How long samples flow, in seconds.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Remotes (each with 500 guests and ten rules).
    #[arg(long, default_value_t = 100)]
    remotes: usize,
    /// Guests crossing their threshold per second.
    #[arg(long, default_value_t = 10)]
    crossings: usize,
}

const GUESTS: usize = 500;
const RULES_PER_REMOTE: usize = 10;

type Arrivals = Arc<Mutex<Vec<(String, String, i64, Instant)>>>;

/// A webhook receiver: (remote, entity, at) of every firing, with its arrival time, and
/// its thread id (its CPU stands in for another process's and is not counted).
fn receiver() -> (u16, Arrivals, std::sync::mpsc::Receiver<i32>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arrivals = Arc::default();
    let out = seen.clone();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tid_tx.send(thread_id());
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let (mut length, mut line) = (0usize, String::new());
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if v["state"] == "firing" {
                        out.lock().unwrap().push((
                            v["remote"].as_str().unwrap_or_default().to_string(),
                            v["entity"].as_str().unwrap_or_default().to_string(),
                            v["at"].as_i64().unwrap_or_default(),
                            at,
                        ));
                    }
                }
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen, tid_rx)
}

/// The calling thread's id.
fn thread_id() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn rules_file(remotes: usize, port: u16) -> String {
    let mut text = String::new();
    for r in 0..remotes {
        for i in 0..RULES_PER_REMOTE {
            let (metric, threshold) = if i % 2 == 0 {
                ("cpu_current", 0.9 + i as f64 / 1000.0)
            } else {
                ("net_in", 1.0e6)
            };
            text.push_str(&format!(
                "[[rules]]\nname = \"r{r}-{i}\"\nremotes = \"r-{r}\"\nentities = \"qemu/*\"\n\
                 metric = \"{metric}\"\nop = \">\"\nthreshold = {threshold}\n\n"
            ));
        }
    }
    text.push_str(&format!(
        "[[webhooks]]\nurl = \"http://127.0.0.1:{port}/alerts\"\nqueue_max = 100000\n"
    ));
    text
}

pub(crate) fn run(args: RulesArgs) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: RulesArgs) -> anyhow::Result<serde_json::Value> {
    let (port, arrivals, receiver_tid) = receiver();
    let receiver_task = format!("self/task/{}", receiver_tid.recv()?);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rules.toml");
    let set = RuleSet::parse(&path, &rules_file(args.remotes, port))?;
    let rule_count = set.rules.len();
    let clock = Arc::new(TokioClock::system());
    let rules = Rules::start(set, 1, Some(dir.path()), clock.clone())?;
    let harness = HookHarness::start(
        "rules",
        Box::new(rules.hook()),
        HookOptions {
            queue_max_points: 4_000_000,
        },
        clock,
    )
    .await;
    let remotes: Vec<RemoteId> = (0..args.remotes)
        .map(|r| RemoteId::new(format!("r-{r}")))
        .collect();
    let series: Vec<SeriesKey> = (0..GUESTS)
        .flat_map(|g| {
            let entity: Arc<str> = Arc::from(format!("qemu/{g}"));
            [
                SeriesKey {
                    entity: entity.clone(),
                    metric: "cpu_current".into(),
                    kind: MetricKind::Gauge,
                },
                SeriesKey {
                    entity,
                    metric: "net_in".into(),
                    kind: MetricKind::Derive,
                },
            ]
        })
        .collect();
    let mut stored_at: HashMap<(String, String, i64), Instant> = HashMap::new();
    let mut rng = rand::rng();
    let cpu_before = cpu_time().as_secs_f64() - process_cpu_secs(&receiver_task);
    let started = Instant::now();
    let t0 = fleetpoll_actors::system_now_secs();
    let mut samples = 0u64;
    // One batch per remote, spread evenly over each second.
    let mut pace = tokio::time::interval(Duration::from_secs(1) / args.remotes as u32);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for second in 0..args.secs as i64 {
        let ts = t0 + second;
        let hot: Vec<(usize, usize)> = (0..args.crossings)
            .map(|_| {
                (
                    rng.random_range(0..args.remotes),
                    rng.random_range(0..GUESTS),
                )
            })
            .collect();
        for (r, remote) in remotes.iter().enumerate() {
            pace.tick().await;
            let mut points = Vec::with_capacity(GUESTS * 2);
            for g in 0..GUESTS {
                let cpu = if hot.contains(&(r, g)) { 0.97 } else { 0.5 };
                points.push(MetricPoint {
                    series: (2 * g) as u32,
                    timestamp: ts,
                    value: cpu,
                });
                points.push(MetricPoint {
                    series: (2 * g + 1) as u32,
                    timestamp: ts,
                    value: (ts * 1000) as f64,
                });
            }
            samples += points.len() as u64;
            let batch = Arc::new(MetricBatch {
                series: series.clone(),
                points,
                dropped_future: 0,
            });
            for &(hr, g) in &hot {
                if hr == r {
                    stored_at.insert(
                        (remote.to_string(), format!("qemu/{g}"), ts),
                        Instant::now(),
                    );
                }
            }
            harness.publish(remote.clone(), batch);
        }
    }
    let flowing = started.elapsed();
    // Let the hook and the webhook finish what was published.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && (harness.status().queued_events > 0
            || harness.status().delivered_batches + harness.status().dropped_batches
                < args.secs * args.remotes as u64)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_time().as_secs_f64() - process_cpu_secs(&receiver_task) - cpu_before;
    let status = harness.status();
    let mut latencies: Vec<f64> = arrivals
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(remote, entity, at, arrived)| {
            stored_at
                .get(&(remote.clone(), entity.clone(), *at))
                .map(|s| arrived.duration_since(*s).as_secs_f64() * 1000.0)
        })
        .collect();
    let notified = latencies.len();
    let expected = stored_at.len() * RULES_PER_REMOTE / 2;
    let rss_mib = rss_bytes() as f64 / (1024.0 * 1024.0);
    harness.stop().await;
    Ok(json!({
        "scenario": "rules",
        "rules": rule_count,
        "entities": args.remotes * GUESTS,
        "samples": samples,
        "samples_per_sec": round(samples as f64 / flowing.as_secs_f64(), 0),
        "cpu_per_sample_us": round(cpu * 1e6 / samples as f64, 3),
        "alert_p99_ms": round(percentile(&mut latencies, 0.99), 1),
        "alert_p50_ms": round(percentile(&mut latencies, 0.50), 1),
        "alerts_notified": notified,
        "alerts_expected": expected,
        "dropped": status.dropped_points,
        "rss_mib": round(rss_mib, 1),
    }))
}
