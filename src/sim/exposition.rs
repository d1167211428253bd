//! Simulated Prometheus exposition targets, node_exporter-shaped: boot time, load and
//! memory gauges, `node_cpu_seconds_total{cpu,mode}` and network byte counters, and
//! filesystem gauges `{device,fstype,mountpoint}` — exactly `series` samples per
//! target, values a seeded function of the time (counters grow since the last boot).
//! Rendered in the text format 0.0.4 or, when asked, OpenMetrics 1.0.

use std::fmt::Write;

use super::fleet::{unit, Boots, SimRemote};

const CPU_MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
/// Shares of a cpu's time per mode (sum 1).
const CPU_SHARES: [f64; 8] = [0.80, 0.01, 0.005, 0.005, 0.01, 0.0, 0.05, 0.12];

/// The gauges every target has first, with their base values.
const FIXED: [(&str, f64); 9] = [
    ("node_boot_time_seconds", 0.0),
    ("node_load1", 0.6),
    ("node_load5", 0.5),
    ("node_load15", 0.4),
    ("node_memory_MemTotal_bytes", 68_719_476_736.0),
    ("node_memory_MemAvailable_bytes", 40_000_000_000.0),
    ("node_memory_MemFree_bytes", 10_000_000_000.0),
    ("node_memory_SwapTotal_bytes", 8_589_934_592.0),
    ("node_memory_SwapFree_bytes", 8_000_000_000.0),
];

/// How many series of each labelled family a target of `series` series has: cpu,
/// network receive, network transmit, filesystem size, filesystem available.
fn split(series: usize) -> [usize; 5] {
    let rest = series.saturating_sub(FIXED.len());
    let cpu = rest * 2 / 3;
    let quarter = (rest - cpu) / 4;
    [cpu, quarter, quarter, quarter, rest - cpu - 3 * quarter]
}

/// One target's exposition at `now`.
pub(crate) fn render(
    seed: u64,
    remote: &SimRemote,
    series: usize,
    now: i64,
    openmetrics: bool,
) -> String {
    let mut out = String::with_capacity(series * 64 + 1024);
    let boots = Boots::new(super::fleet::hash(&[seed, remote.index, 0xB007]), 20, 60);
    let boot = boots.last_at(now);
    let up = (now - boot).max(1) as f64;
    let wave = |salt: u64| unit(&[seed, remote.index, salt, (now / 15) as u64]);
    let counter_type = |out: &mut String, family: &str, help: &str| {
        let base = if openmetrics {
            family.strip_suffix("_total").unwrap_or(family)
        } else {
            family
        };
        let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} counter");
    };
    for (i, (name, base)) in FIXED.iter().enumerate().take(series) {
        let value = match i {
            0 => boot as f64,
            1..=3 => base * (0.5 + wave(i as u64)),
            4 | 7 => *base,
            _ => base * (0.9 + 0.2 * wave(i as u64)),
        };
        let _ = writeln!(
            out,
            "# HELP {name} A gauge.\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    let [cpu, rx, tx, size, avail] = split(series);
    if cpu > 0 {
        counter_type(
            &mut out,
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
        );
        for i in 0..cpu {
            let (c, m) = (i / CPU_MODES.len(), i % CPU_MODES.len());
            let value = up * CPU_SHARES[m] * (0.95 + 0.1 * unit(&[seed, remote.index, i as u64]));
            let _ = writeln!(
                out,
                "node_cpu_seconds_total{{cpu=\"{c}\",mode=\"{}\"}} {value:.2}",
                CPU_MODES[m]
            );
        }
    }
    for (count, family, rate) in [
        (rx, "node_network_receive_bytes_total", 1.5e6),
        (tx, "node_network_transmit_bytes_total", 0.7e6),
    ] {
        if count == 0 {
            continue;
        }
        counter_type(&mut out, family, "Network device statistic.");
        for i in 0..count {
            let value = (up * rate * (0.5 + unit(&[seed, remote.index, i as u64, 0x4E7]))).floor();
            let _ = writeln!(out, "{family}{{device=\"eth{i}\"}} {value}");
        }
    }
    for (count, family, share) in [
        (size, "node_filesystem_size_bytes", 1.0),
        (avail, "node_filesystem_avail_bytes", 0.4),
    ] {
        if count == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "# HELP {family} Filesystem bytes.\n# TYPE {family} gauge"
        );
        for i in 0..count {
            let total = 1e11 * (1.0 + (i % 7) as f64);
            let value = (total * share * (0.9 + 0.2 * wave(0xF5 + i as u64))).floor();
            let _ = writeln!(
                out,
                "{family}{{device=\"/dev/sd{i}\",fstype=\"ext4\",mountpoint=\"/srv/{i}\"}} {value}"
            );
        }
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prom::parse::{parse, Format};
    use crate::sim::fleet::Fleet;
    use crate::sim::SimConfig;

    #[test]
    fn a_target_has_exactly_its_series_in_both_formats_and_counters_grow() {
        let fleet = Fleet::build(&SimConfig {
            prom_targets: 1,
            ..SimConfig::default()
        });
        let remote = fleet.remote("prom-1").unwrap();
        for series in [1, 9, 10, 100, 1000] {
            let text = render(1, remote, series, 1_800_000_000, false);
            let samples = parse(&text, Format::Text, 100_000).unwrap();
            assert_eq!(samples.len(), series, "text, {series}");
            let om = render(1, remote, series, 1_800_000_000, true);
            let om_samples = parse(&om, Format::OpenMetrics, 100_000).unwrap();
            let names = |s: &[crate::prom::parse::Sample]| {
                s.iter()
                    .map(|s| (s.name.clone(), s.labels.clone(), s.kind))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                names(&samples),
                names(&om_samples),
                "the same series either way"
            );
        }
        let at = |t| {
            let text = render(1, remote, 100, t, false);
            parse(&text, Format::Text, 1000).unwrap()[20].value
        };
        assert!(at(1_800_000_060) > at(1_800_000_000), "a cpu counter grows");
    }
}
