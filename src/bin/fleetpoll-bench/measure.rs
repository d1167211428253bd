//! Process-wide measurements for the benchmarks: CPU time and resident memory from
//! `/proc/self`, and percentiles.

use std::time::Duration;

/// Clock ticks per second of `/proc/self/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// User plus system CPU time this process has used.
pub(crate) fn cpu_time() -> Duration {
    Duration::from_secs_f64(process_cpu_secs("self"))
}

/// User plus system CPU seconds of a process (`"self"` or a pid) so far.
pub(crate) fn process_cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / USER_HZ
}

/// Peak resident memory of a process in MiB (`VmHWM`).
pub(crate) fn process_peak_rss_mib(pid: &str) -> f64 {
    proc_status_mib(pid, "VmHWM:")
}

/// Current resident memory of a process in MiB (`VmRSS`).
pub(crate) fn process_rss_mib(pid: &str) -> f64 {
    proc_status_mib(pid, "VmRSS:")
}

fn proc_status_mib(pid: &str, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// An engine config in which nothing time-driven disturbs a measurement: daily ticks,
/// no start offset, no connection delay, no skip window; `concurrency` connections.
pub(crate) fn quiet_engine_config(concurrency: u32) -> fleetpoll::engine::EngineConfig {
    let mut config = fleetpoll::engine::EngineConfig::default();
    let day = Duration::from_secs(86_400);
    config.collection.interval = day;
    config.collection.start_offset_max = Duration::ZERO;
    config.collection.connection_delay_max = Duration::ZERO;
    config.collection.skip_recent = Duration::ZERO;
    config.tasks.tick = day;
    config.tasks.running_interval = day;
    config.tasks.full_interval = day;
    config.limits.global_connections = concurrency;
    config
}

/// Resident set size of this process in bytes.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The `p`-th percentile (0..=100) of `samples`, nearest-rank.
pub(crate) fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Rounds for the JSON line.
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
