//! The exposition parser on arbitrary bodies, in both formats.

use fleetpoll_actors::MetricBatch;

use crate::prom::mapping::to_batch;
use crate::prom::parse::{parse, Format};
use crate::prom::SeriesCache;

/// The series limit the target parses with.
const LIMIT: usize = 64;
/// The scrape time.
const NOW: i64 = 1_700_000_000;

/// The scrape cache that reads every input of a run, as one target's cache reads its
/// scrapes one after the other.
#[derive(Debug, Default)]
pub struct PromState {
    cache: Option<SeriesCache>,
}

type Row = (String, String, String, i64, u64);

fn rows(b: &MetricBatch) -> Vec<Row> {
    b.points
        .iter()
        .map(|p| {
            let k = &b.series[p.series as usize];
            let kind = format!("{:?}", k.kind);
            (
                k.entity.to_string(),
                k.metric.to_string(),
                kind,
                p.timestamp,
                p.value.to_bits(),
            )
        })
        .collect()
}

/// A scrape body (UTF-8; other bytes are skipped) in both formats: no panic, the series
/// limit holds, accepted bodies map into batches whose entity names are printable ASCII
/// (label values are percent-encoded), and the cached read ([`SeriesCache`]) yields
/// exactly what the plain parse and mapping yield, also for a cache that has read the
/// previous inputs of the run.
pub fn prom_parse(state: &mut PromState, data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let cache = state.cache.get_or_insert_with(SeriesCache::new);
    for format in [Format::Text, Format::OpenMetrics] {
        let plain = parse(body, format, LIMIT);
        let cached = cache.read(body, format, LIMIT, NOW);
        match (plain, cached) {
            (Ok(samples), Ok(batch)) => {
                assert!(samples.len() <= LIMIT, "the series limit was passed");
                let mapped = to_batch(samples, NOW);
                for k in &mapped.series {
                    assert!(k.entity.bytes().all(|b| (0x20..0x7f).contains(&b)));
                }
                assert_eq!(rows(&mapped), rows(&batch));
                assert_eq!(mapped.dropped_future, batch.dropped_future);
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!(
                "plain {:?}, cached {:?}",
                a.map(|s| s.len()),
                b.map(|b| b.points.len())
            ),
        }
    }
}
