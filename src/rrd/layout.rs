//! The Proxmox VE 9 layout every file of the metric store uses: the step, the
//! heartbeat, the AVERAGE and MAX archives, and how a metric becomes a data source
//! (see `docs/rrd-format.md`, "The metric store on these files").

use fleetpoll_actors::MetricKind;

use super::def::{Cf, DsDef, DsType, RraDef, MAX_DS_NAME_LEN};
use crate::durable::crc32;

/// Seconds per primary data point in the Proxmox VE 9 layout.
pub const PVE_STEP: u64 = 60;
/// Heartbeat of every data source in that layout.
pub const PVE_HEARTBEAT: u64 = 120;
/// `(PDPs per row, rows)` of its archives, each kept as AVERAGE and MAX.
pub const PVE_ARCHIVES: [(u64, u64); 4] = [(1, 1440), (30, 1440), (360, 1440), (10080, 570)];

/// The archives of the Proxmox VE 9 layout.
pub fn pve_archives() -> Vec<RraDef> {
    PVE_ARCHIVES
        .iter()
        .flat_map(|&(steps, rows)| {
            [Cf::Average, Cf::Max].map(|cf| RraDef {
                cf,
                xff: 0.5,
                steps,
                rows,
            })
        })
        .collect()
}

/// The data source a metric is stored as: GAUGE with min 0, counters with min 0 (a
/// DERIVE reset becomes unknown), heartbeat 120 s.
pub fn data_source_for(metric: &str, kind: MetricKind) -> DsDef {
    DsDef {
        name: ds_name(metric),
        kind: match kind {
            MetricKind::Gauge => DsType::Gauge,
            MetricKind::Counter => DsType::Counter,
            MetricKind::Derive => DsType::Derive,
        },
        heartbeat: PVE_HEARTBEAT,
        min: Some(0.0),
        max: None,
    }
}

/// A metric name as a data-source name: other characters than `[A-Za-z0-9_]` become
/// `_`; names longer than 19 characters keep 11 and gain a hash of the full name.
pub fn ds_name(metric: &str) -> String {
    let clean: String = metric
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !clean.is_empty() && clean.len() <= MAX_DS_NAME_LEN {
        return clean;
    }
    format!(
        "{:.11}_{:07x}",
        clean,
        crc32(metric.as_bytes()) & 0x0FFF_FFFF
    )
}
