//! One reading of the local host from /proc (through the `procfs` crate): CPU shares
//! since the previous reading, load, memory and swap, pressure stall averages, and the
//! byte counters of every network device (but `lo`) and whole disk. Named as the PBS
//! host metrics, so the same charts and rules fit.

use std::collections::BTreeMap;

use procfs::{Current, CurrentSI};

/// The CPU tick counters a share is computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Every tick of every mode.
    pub total: u64,
    /// Idle ticks (iowait not included).
    pub idle: u64,
    /// Ticks waiting for I/O.
    pub iowait: u64,
}

/// The host's values at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostReading {
    /// Entity `host`: metric name → value (gauges and counter totals).
    pub host: BTreeMap<&'static str, f64>,
    /// Per network device: received and sent bytes.
    pub net: BTreeMap<String, (u64, u64)>,
    /// Per whole disk: bytes read and written.
    pub disks: BTreeMap<String, (u64, u64)>,
    /// The CPU counters this reading's shares were computed up to.
    pub cpu: CpuTicks,
}

/// The counter metrics of the `host`, `net/…` and `disk/…` entities (stored as DERIVE).
pub const COUNTERS: [&str; 4] = ["net_in", "net_out", "disk_read", "disk_write"];

/// Reads the host; `previous` gives the CPU counters of the last reading (CPU shares
/// are over the time since, or since boot for the first reading).
pub fn read_host(previous: Option<CpuTicks>) -> Result<HostReading, String> {
    let fail = |what: &str, e: procfs::ProcError| format!("cannot read {what}: {e}");
    let mut r = HostReading::default();
    let stat = procfs::KernelStats::current().map_err(|e| fail("/proc/stat", e))?;
    let t = &stat.total;
    let iowait = t.iowait.unwrap_or(0);
    let total = t.user
        + t.nice
        + t.system
        + t.idle
        + iowait
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    r.cpu = CpuTicks {
        total,
        idle: t.idle,
        iowait,
    };
    let base = previous.filter(|p| p.total < total).unwrap_or_default();
    let span = (total - base.total) as f64;
    let idle = r.cpu.idle.saturating_sub(base.idle) as f64;
    let wait = r.cpu.iowait.saturating_sub(base.iowait) as f64;
    r.host
        .insert("cpu_current", (1.0 - (idle + wait) / span).clamp(0.0, 1.0));
    r.host.insert("cpu_iowait", (wait / span).clamp(0.0, 1.0));

    let load = procfs::LoadAverage::current().map_err(|e| fail("/proc/loadavg", e))?;
    r.host.insert("cpu_avg1", f64::from(load.one));
    r.host.insert("cpu_avg5", f64::from(load.five));
    r.host.insert("cpu_avg15", f64::from(load.fifteen));

    let mem = procfs::Meminfo::current().map_err(|e| fail("/proc/meminfo", e))?;
    let available = mem.mem_available.unwrap_or(mem.mem_free);
    r.host.insert("mem_total", mem.mem_total as f64);
    r.host
        .insert("mem_used", mem.mem_total.saturating_sub(available) as f64);
    r.host.insert("swap_total", mem.swap_total as f64);
    r.host.insert(
        "swap_used",
        mem.swap_total.saturating_sub(mem.swap_free) as f64,
    );

    // Pressure stall information needs a kernel with PSI; without it the metrics are
    // simply absent.
    if let Ok(cpu) = procfs::CpuPressure::current() {
        r.host
            .insert("pressure_cpu_some", f64::from(cpu.some.avg10));
    }
    if let Ok(memory) = procfs::MemoryPressure::current() {
        r.host
            .insert("pressure_memory_some", f64::from(memory.some.avg10));
        r.host
            .insert("pressure_memory_full", f64::from(memory.full.avg10));
    }
    if let Ok(io) = procfs::IoPressure::current() {
        r.host.insert("pressure_io_some", f64::from(io.some.avg10));
        r.host.insert("pressure_io_full", f64::from(io.full.avg10));
    }

    let devices = procfs::net::dev_status().map_err(|e| fail("/proc/net/dev", e))?;
    for (name, dev) in devices {
        if name != "lo" {
            r.net.insert(name, (dev.recv_bytes, dev.sent_bytes));
        }
    }
    let disks = procfs::diskstats().map_err(|e| fail("/proc/diskstats", e))?;
    let whole = whole_disks();
    for d in disks {
        let skip = d.name.starts_with("loop") || d.name.starts_with("ram");
        let is_whole = whole.as_ref().is_none_or(|w| w.contains(&d.name));
        if !skip && is_whole {
            r.disks
                .insert(d.name, (d.sectors_read * 512, d.sectors_written * 512));
        }
    }
    let (rx, tx) = r.net.values().fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    let (rd, wr) = r
        .disks
        .values()
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    r.host.insert("net_in", rx as f64);
    r.host.insert("net_out", tx as f64);
    r.host.insert("disk_read", rd as f64);
    r.host.insert("disk_write", wr as f64);
    Ok(r)
}

/// The whole disks (`/sys/block`), so partitions are not counted twice; `None` when
/// it cannot be listed (then every device counts).
fn whole_disks() -> Option<Vec<String>> {
    let entries = std::fs::read_dir("/sys/block").ok()?;
    Some(
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reads_with_every_pbs_host_metric() {
        let first = read_host(None).unwrap();
        for name in [
            "cpu_current",
            "cpu_iowait",
            "cpu_avg1",
            "cpu_avg5",
            "cpu_avg15",
            "mem_total",
            "mem_used",
            "swap_total",
            "swap_used",
            "net_in",
            "net_out",
            "disk_read",
            "disk_write",
        ] {
            assert!(first.host.contains_key(name), "{name} in {:?}", first.host);
        }
        assert!(first.host["mem_total"] > 0.0);
        assert!(first.host["mem_used"] <= first.host["mem_total"]);
        assert!((0.0..=1.0).contains(&first.host["cpu_current"]));
        assert!(!first.net.contains_key("lo"));
        let second = read_host(Some(first.cpu)).unwrap();
        assert!(second.cpu.total >= first.cpu.total);
    }
}
