//! The exposition parser on arbitrary bodies, in both formats: no panic, the series
//! limit holds, accepted bodies map into batches whose entity names are printable
//! ASCII (label values are percent-encoded), and the cached read of a target's
//! scrapes ([`SeriesCache`]) yields exactly what the plain parse and mapping yield,
//! also for a cache that has read the previous inputs of the run.
#![no_main]

use std::sync::Mutex;

use fleetpoll::prom::mapping::to_batch;
use fleetpoll::prom::parse::{parse, Format};
use fleetpoll::prom::SeriesCache;
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 64;
const NOW: i64 = 1_700_000_000;

static CACHE: Mutex<Option<SeriesCache>> = Mutex::new(None);

fn rows(b: &fleetpoll_actors::MetricBatch) -> Vec<(String, String, String, i64, u64)> {
    b.points
        .iter()
        .map(|p| {
            let k = &b.series[p.series as usize];
            let kind = format!("{:?}", k.kind);
            (k.entity.to_string(), k.metric.to_string(), kind, p.timestamp, p.value.to_bits())
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let mut cache = CACHE.lock().unwrap();
    let cache = cache.get_or_insert_with(SeriesCache::new);
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
            (a, b) => panic!("plain {:?}, cached {:?}", a.map(|s| s.len()), b.map(|b| b.points.len())),
        }
    }
});
