//! `scrape-peers`: fleetpoll, vmagent and Prometheus in agent mode scrape the same
//! simulated exposition targets (plain http, node_exporter-shaped), alternating, for
//! the same number of cycles. The peers remote-write what they scraped to a null
//! receiver in the bench (snappy block decoded, protobuf walked, samples counted).
//! fleetpoll does the same work as the peers: its local RRD store is off
//! (`[storage] rrd = false`) and one remote-write exporter with `raw_counters = true`
//! forwards every scraped sample to the receiver. Per system, medians over the runs of
//! CPU seconds per million samples, peak RSS and the cycle span (the time from the
//! first to the last scrape of one round over every target).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use fleetpoll::sim::{SimConfig, Simulator};
use serde_json::{json, Value};

use crate::measure::{process_cpu_secs, process_peak_rss_mib, round};

#[derive(Debug, clap::Args)]
pub(crate) struct ScrapePeersArgs {
    /// Exposition targets served by the simulator.
    #[arg(long, default_value_t = 1000)]
    targets: usize,
    /// Series per target.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Scrape interval of every system.
    #[arg(long, default_value_t = 15)]
    interval_secs: u64,
    /// Cycles measured per run (after one cycle of warm-up).
    #[arg(long, default_value_t = 4)]
    cycles: u64,
    /// Runs per system (they alternate).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Systems to run, comma-separated: fleetpoll, vmagent, prometheus.
    #[arg(long, default_value = "fleetpoll,vmagent,prometheus")]
    systems: String,
    /// Where the systems keep their data (a temporary directory by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct RunFigures {
    cpu_s: f64,
    samples: f64,
    peak_rss_mib: f64,
    cycle_s: f64,
}

/// Samples the null receiver counted.
#[derive(Default)]
struct Receiver {
    samples: AtomicU64,
    requests: AtomicU64,
    bad: AtomicU64,
}

/// The samples of a remote-write `WriteRequest` (field 1 `TimeSeries`, whose field 2
/// is `Sample`), walked without a schema; `None` for a malformed message.
fn count_samples(message: &[u8]) -> Option<u64> {
    fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    /// Calls `each(field, bytes)` for every length-delimited field, skipping others.
    fn fields(b: &[u8], mut each: impl FnMut(u64, &[u8]) -> Option<()>) -> Option<()> {
        let mut at = 0;
        while at < b.len() {
            let key = varint(b, &mut at)?;
            match key & 7 {
                0 => {
                    varint(b, &mut at)?;
                }
                1 => at += 8,
                2 => {
                    let len = varint(b, &mut at)? as usize;
                    let body = b.get(at..at.checked_add(len)?)?;
                    at += len;
                    each(key >> 3, body)?;
                }
                5 => at += 4,
                _ => return None,
            }
        }
        (at == b.len()).then_some(())
    }
    let mut samples = 0;
    fields(message, |field, series| {
        if field == 1 {
            fields(series, |f, _| {
                if f == 2 {
                    samples += 1;
                }
                Some(())
            })?;
        }
        Some(())
    })?;
    Some(samples)
}

async fn start_receiver(receiver: Arc<Receiver>) -> anyhow::Result<u16> {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/api/v1/write",
        post(move |body: axum::body::Bytes| {
            let receiver = receiver.clone();
            async move {
                receiver.requests.fetch_add(1, Ordering::Relaxed);
                let decoded = snap::raw::Decoder::new().decompress_vec(&body).ok();
                match decoded.as_deref().and_then(count_samples) {
                    Some(n) => {
                        receiver.samples.fetch_add(n, Ordering::Relaxed);
                        http::StatusCode::NO_CONTENT
                    }
                    None => {
                        receiver.bad.fetch_add(1, Ordering::Relaxed);
                        http::StatusCode::BAD_REQUEST
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(port)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn fleetpoll_binary() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?.with_file_name("fleetpoll");
    if !bin.exists() {
        bail!(
            "{} is missing; build it: cargo build --release",
            bin.display()
        );
    }
    Ok(bin)
}

/// The scrape configuration both peers read (Prometheus' `scrape_configs`), with a
/// `remote_write` section for Prometheus (vmagent takes its URL as a flag and refuses
/// the section).
fn peer_scrape_config(
    targets: &[(String, String)],
    interval: u64,
    remote_write: Option<&str>,
) -> String {
    let mut out = format!(
        "global:\n  scrape_interval: {interval}s\n  scrape_timeout: {}s\n\
         scrape_configs:\n  - job_name: sim\n    static_configs:\n",
        interval.min(10)
    );
    for (address, path) in targets {
        out.push_str(&format!(
            "      - targets: ['{address}']\n        labels: {{ __metrics_path__: '{path}' }}\n"
        ));
    }
    if let Some(url) = remote_write {
        out.push_str(&format!("remote_write:\n  - url: {url}\n"));
    }
    out
}

/// Starts one system; returns it and a function reading the samples it handled.
fn start_system(
    system: &str,
    dir: &Path,
    sim: &Simulator,
    args: &ScrapePeersArgs,
    receiver_port: u16,
) -> anyhow::Result<(Proc, Option<u16>)> {
    std::fs::create_dir_all(dir)?;
    let remote_write = format!("http://127.0.0.1:{receiver_port}/api/v1/write");
    let targets: Vec<(String, String)> = sim
        .remotes()
        .iter()
        .filter_map(|r| r.url())
        .map(|url| {
            let rest = url.trim_start_matches("http://");
            let (address, path) = rest.split_once('/').unwrap_or((rest, "metrics"));
            (address.to_string(), format!("/{path}"))
        })
        .collect();
    let quiet = || Stdio::null();
    let log = || -> anyhow::Result<Stdio> { Ok(std::fs::File::create(dir.join("log"))?.into()) };
    match system {
        "fleetpoll" => {
            let api = free_port()?;
            let mut config = format!(
                "[api]\nlisten = \"127.0.0.1:{api}\"\n[storage]\nstate_dir = \"state\"\n\
                 cache_dir = \"cache\"\nrrd = false\n[limits]\nglobal_connections = 64\n\
                 [collection]\nconnection_delay_max_ms = 0\n\
                 [[exporters]]\nname = \"null\"\nkind = \"prometheus-remote-write\"\n\
                 url = \"{remote_write}\"\nraw_counters = true\nqueue_max_points = 2000000\n"
            );
            for (i, (address, path)) in targets.iter().enumerate() {
                config.push_str(&format!(
                    "[[remotes]]\nid = \"t{i}\"\ntype = \"prometheus\"\n\
                     url = \"http://{address}{path}\"\ninterval_secs = {}\n\
                     series_limit = {}\n",
                    args.interval_secs,
                    args.series.max(1)
                ));
            }
            let file = dir.join("fleetpoll.toml");
            std::fs::write(&file, config)?;
            let child = Command::new(fleetpoll_binary()?)
                .args(["run", "--config"])
                .arg(&file)
                .env("RUST_LOG", "warn")
                .stdout(quiet())
                .stderr(log()?)
                .spawn()
                .context("starting fleetpoll run")?;
            Ok((Proc(child), Some(api)))
        }
        "vmagent" => {
            let file = dir.join("scrape.yml");
            std::fs::write(
                &file,
                peer_scrape_config(&targets, args.interval_secs, None),
            )?;
            let child = Command::new("vmagent")
                .arg(format!("-promscrape.config={}", file.display()))
                .arg(format!("-remoteWrite.url={remote_write}"))
                .arg(format!(
                    "-remoteWrite.tmpDataPath={}",
                    dir.join("tmp").display()
                ))
                .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()?))
                .arg("-loggerLevel=ERROR")
                .stdout(quiet())
                .stderr(log()?)
                .spawn()
                .context("starting vmagent (Debian package victoria-metrics)")?;
            Ok((Proc(child), None))
        }
        "prometheus" => {
            let file = dir.join("prometheus.yml");
            std::fs::write(
                &file,
                peer_scrape_config(&targets, args.interval_secs, Some(&remote_write)),
            )?;
            let child = Command::new("prometheus")
                .arg("--enable-feature=agent")
                .arg(format!("--config.file={}", file.display()))
                .arg(format!(
                    "--storage.agent.path={}",
                    dir.join("agent").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()?))
                .arg("--log.level=error")
                .stdout(quiet())
                .stderr(log()?)
                .spawn()
                .context("starting prometheus (Debian package prometheus)")?;
            Ok((Proc(child), None))
        }
        other => bail!("unknown system {other:?}; expected fleetpoll, vmagent or prometheus"),
    }
}

/// The JSON body of `GET path` on fleetpoll's API, `Null` while it does not answer.
fn api_get(api: u16, path: &str) -> Value {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", api)) else {
        return Value::Null;
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes());
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Waits until fleetpoll's API answers (its remotes are loaded), at most 60 s.
fn wait_ready(runtime: &tokio::runtime::Runtime, api: u16) -> anyhow::Result<()> {
    for _ in 0..600 {
        if api_get(api, "/api/v1/remotes")["remotes"].is_array() {
            return Ok(());
        }
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    }
    bail!("fleetpoll's API did not answer within 60 s")
}

/// Points fleetpoll's exporters dropped so far (their queue was full).
fn fleetpoll_dropped(api: u16) -> f64 {
    api_get(api, "/api/v1/exporters")["exporters"]
        .as_array()
        .map_or(0.0, |es| {
            es.iter().filter_map(|e| e["dropped"].as_f64()).sum()
        })
}

/// The longest span of one round: the k-th scrape of every target, first to last.
fn round_span(sim: &Simulator, from: f64, to: f64) -> f64 {
    let per_target: Vec<Vec<f64>> = sim
        .remotes()
        .iter()
        .map(|r| {
            sim.scrape_times(&r.id)
                .into_iter()
                .filter(|t| (from..to).contains(t))
                .collect()
        })
        .collect();
    let rounds = per_target.iter().map(Vec::len).min().unwrap_or(0);
    (0..rounds)
        .map(|k| {
            let times = per_target.iter().map(|t| t[k]);
            let lo = times.clone().fold(f64::MAX, f64::min);
            let hi = times.fold(f64::MIN, f64::max);
            hi - lo
        })
        .fold(0.0, f64::max)
}

fn now() -> f64 {
    fleetpoll::engine::system_now().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub(crate) fn run(args: ScrapePeersArgs) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Runtime::new()?;
    let temp = tempfile::tempdir()?;
    let work = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let sim = runtime.block_on(Simulator::start(SimConfig {
        seed: 5,
        pve_remotes: 0,
        pbs_remotes: 0,
        prom_targets: args.targets,
        prom_series: args.series,
        prom_open: true,
        ..SimConfig::default()
    }))?;
    let receiver = Arc::new(Receiver::default());
    let receiver_port = runtime.block_on(start_receiver(receiver.clone()))?;
    let systems: Vec<&str> = args.systems.split(',').map(str::trim).collect();
    let interval = Duration::from_secs(args.interval_secs);
    let mut figures: Vec<(&str, RunFigures)> = Vec::new();
    let mut export_dropped = 0.0;
    for run in 0..args.runs {
        for &system in &systems {
            let dir = work.join(format!("{system}-{run}"));
            eprintln!("scrape-peers: run {} of {system}", run + 1);
            let (proc, api) = start_system(system, &dir, &sim, &args, receiver_port)?;
            let pid = proc.0.id().to_string();
            let samples = |receiver: &Receiver| receiver.samples.load(Ordering::Relaxed) as f64;
            if let Some(api) = api {
                wait_ready(&runtime, api)?;
            }
            // Warm-up: one interval and the rest of the one it started in.
            let warm_up = interval + Duration::from_secs(2);
            runtime.block_on(async { tokio::time::sleep(warm_up).await });
            let (cpu0, samples0, t0) = (process_cpu_secs(&pid), samples(&receiver), now());
            let measured = interval * args.cycles as u32;
            runtime.block_on(async { tokio::time::sleep(measured).await });
            let (cpu1, samples1, t1) = (process_cpu_secs(&pid), samples(&receiver), now());
            let peak = process_peak_rss_mib(&pid);
            if let Some(api) = api {
                export_dropped += fleetpoll_dropped(api);
            }
            drop(proc);
            let f = RunFigures {
                cpu_s: cpu1 - cpu0,
                samples: samples1 - samples0,
                peak_rss_mib: peak,
                cycle_s: round_span(&sim, t0, t1),
            };
            eprintln!(
                "scrape-peers: {system}: {:.2} CPU s, {} samples, {:.0} MiB peak, cycle {:.2} s",
                f.cpu_s, f.samples, f.peak_rss_mib, f.cycle_s
            );
            if f.samples == 0.0 {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                bail!(
                    "{system} handled no samples in {:.0} s; its log:\n{log}",
                    t1 - t0
                );
            }
            figures.push((system, f));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let mut per_system = serde_json::Map::new();
    let mut cpu_of = std::collections::HashMap::new();
    let mut rss_of = std::collections::HashMap::new();
    for &system in &systems {
        let runs: Vec<RunFigures> = figures
            .iter()
            .filter(|(s, _)| *s == system)
            .map(|(_, f)| *f)
            .collect();
        let cpu = median(runs.iter().map(|f| f.cpu_s / (f.samples / 1e6)).collect());
        let rss = median(runs.iter().map(|f| f.peak_rss_mib).collect());
        let cycle = median(runs.iter().map(|f| f.cycle_s).collect());
        cpu_of.insert(system, cpu);
        rss_of.insert(system, rss);
        per_system.insert(
            system.to_string(),
            json!({
                "cpu_s_per_m_samples": round(cpu, 3),
                "peak_rss_mib": round(rss, 1),
                "cycle_s": round(cycle, 2),
                "samples_per_run": median(runs.iter().map(|f| f.samples).collect()),
            }),
        );
    }
    let ratio = |a: Option<&f64>, b: Option<&f64>| match (a, b) {
        (Some(a), Some(b)) => json!(round(a / b, 3)),
        _ => Value::Null,
    };
    let fp = "fleetpoll";
    Ok(json!({
        "scenario": "scrape-peers",
        "targets": args.targets,
        "series": args.series,
        "interval_secs": args.interval_secs,
        "cycles": args.cycles,
        "runs": args.runs,
        "fleetpoll_rrd": false,
        "fleetpoll_forwarding": "remote write, raw counters",
        "systems": per_system,
        "cpu_vs_vmagent": ratio(cpu_of.get(fp), cpu_of.get("vmagent")),
        "rss_vs_vmagent": ratio(rss_of.get(fp), rss_of.get("vmagent")),
        "cpu_vs_prometheus": ratio(cpu_of.get(fp), cpu_of.get("prometheus")),
        "rss_vs_prometheus": ratio(rss_of.get(fp), rss_of.get("prometheus")),
        "receiver_bad_requests": receiver.bad.load(Ordering::Relaxed),
        "fleetpoll_export_dropped": export_dropped,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_a_write_request_are_counted_and_garbage_refused() {
        // WriteRequest { timeseries: [ { labels: [{name:"a",value:"b"}], samples: [s, s] } ] }
        let sample = [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x01]; // value 1.0, ts 1
        let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
        let mut series = vec![0x0a, label.len() as u8];
        series.extend_from_slice(&label);
        for _ in 0..2 {
            series.push(0x12);
            series.push(sample.len() as u8);
            series.extend_from_slice(&sample);
        }
        let mut request = vec![0x0a, series.len() as u8];
        request.extend_from_slice(&series);
        assert_eq!(count_samples(&request), Some(2));
        assert_eq!(count_samples(&[0x0a, 0x05, 1]), None);
    }
}
