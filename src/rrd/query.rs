//! Queries over the metric store, as the HTTP API answers them: one entity's metrics
//! (all, or a chosen few) on one time axis, for a named timeframe or an explicit
//! window, serializable as JSON.
//!
//! Timeframes follow the reference manager's graphs: each asks for a resolution over
//! a span ending now, and the archive is chosen by rrdtool's rule (the one whose span
//! covers the start with the resolution closest to the wish), see
//! `docs/rrd-semantics.md`. With the Proxmox VE 9 archives (1 min, 30 min, 6 h and
//! 1 week per row):
//!
//! | timeframe | wished resolution | span | archive chosen | rows |
//! |---|---|---|---|---|
//! | hour   | 60 s   | 1 h       | 1 min   | 61 |
//! | day    | 30 min | 1 day     | 30 min  | 49 |
//! | week   | 3 h    | 7 days    | 30 min (3 h lies nearer 30 min than 6 h) | 337 |
//! | month  | 3 h    | 30 days   | 30 min  | 1441 |
//! | year   | 1 week | 365 days  | 1 week (6 h spans only 360 days) | 53–54 |
//! | decade | 1 week | 3650 days | 1 week, the coarsest (570 weeks ≈ 10.9 years) | 522–523 |

use std::fmt;
use std::str::FromStr;

use fleetpoll_actors::RemoteId;
use serde::{Deserialize, Serialize};

use super::def::Cf;
use super::error::RrdError;
use super::fetch::{FetchRequest, FetchResult};
use super::layout::ds_name;

/// A named span of time ending now, with the resolution its graph wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Timeframe {
    /// The last hour at one minute.
    Hour,
    /// The last day at 30 minutes.
    Day,
    /// The last week at 3 hours (answered at 30 minutes by the Proxmox archives).
    Week,
    /// The last 30 days at 3 hours (answered at 30 minutes).
    Month,
    /// The last 365 days at one week.
    Year,
    /// The last 3650 days at one week.
    Decade,
}

impl Timeframe {
    /// The resolution asked for, in seconds.
    pub fn resolution(self) -> u64 {
        match self {
            Timeframe::Hour => 60,
            Timeframe::Day => 30 * 60,
            Timeframe::Week | Timeframe::Month => 3 * 3600,
            Timeframe::Year | Timeframe::Decade => 7 * 86_400,
        }
    }

    /// How far back from now the window starts, in seconds.
    pub fn span(self) -> u64 {
        match self {
            Timeframe::Hour => 3600,
            Timeframe::Day => 86_400,
            Timeframe::Week => 7 * 86_400,
            Timeframe::Month => 30 * 86_400,
            Timeframe::Year => 365 * 86_400,
            Timeframe::Decade => 3650 * 86_400,
        }
    }

    /// The name used in URLs (`hour`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Timeframe::Hour => "hour",
            Timeframe::Day => "day",
            Timeframe::Week => "week",
            Timeframe::Month => "month",
            Timeframe::Year => "year",
            Timeframe::Decade => "decade",
        }
    }
}

impl FromStr for Timeframe {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Timeframe::Hour,
            Timeframe::Day,
            Timeframe::Week,
            Timeframe::Month,
            Timeframe::Year,
            Timeframe::Decade,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| format!("unknown timeframe {s:?} (hour, day, week, month, year or decade)"))
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which stretch of time a query covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// A named timeframe ending at the query's `now`.
    Timeframe(Timeframe),
    /// An explicit window, as `rrdtool fetch -s START -e END -r RESOLUTION`.
    Explicit {
        /// Seconds since the epoch.
        start: i64,
        /// Seconds since the epoch, not before `start`.
        end: i64,
        /// Wished resolution in seconds.
        resolution: u64,
    },
}

/// What to read: one entity of a remote, some or all of its metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The entity, e.g. `qemu/100`.
    pub entity: String,
    /// The metrics wanted, by name; `None` for all of the entity's metrics.
    pub metrics: Option<Vec<String>>,
    /// AVERAGE or MAX (the archives the store keeps).
    pub cf: Cf,
    /// The stretch of time.
    pub window: Window,
}

/// One metric's values along the answer's time axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    /// The metric's full name: the data-source name ([`ds_name`]), or the name it was
    /// shortened from when the file's sidecar knows it (`super::names`).
    pub name: String,
    /// One value per timestamp; `None` where unknown.
    pub values: Vec<Option<f64>>,
}

/// An entity's metrics on one time axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    /// The window's start after rounding down to `step` (the first row covers
    /// `(start, start + step]`).
    pub start: i64,
    /// Seconds per row.
    pub step: u64,
    /// Each row's timestamp; row `ts` covers `(ts − step, ts]`.
    pub timestamps: Vec<i64>,
    /// The metrics, in the file's column order (or the order asked for).
    pub metrics: Vec<MetricSeries>,
}

impl Query {
    /// The fetch that answers this query at time `now` (the end of a timeframe); a CF
    /// other than AVERAGE or MAX is an error naming it.
    pub(crate) fn fetch_request(&self, now: i64) -> Result<FetchRequest, RrdError> {
        if !matches!(self.cf, Cf::Average | Cf::Max) {
            return Err(RrdError::Fetch(format!(
                "the metric store keeps AVERAGE and MAX archives, not {}",
                self.cf
            )));
        }
        Ok(match self.window {
            Window::Timeframe(t) => FetchRequest {
                cf: self.cf,
                start: now - t.span() as i64,
                end: now,
                resolution: t.resolution(),
            },
            Window::Explicit {
                start,
                end,
                resolution,
            } => FetchRequest {
                cf: self.cf,
                start,
                end,
                resolution,
            },
        })
    }

    /// The metrics asked for out of the fetched rows of `remote`'s entity; asking for
    /// a metric the entity does not have is an error naming it.
    pub(crate) fn select(
        &self,
        remote: &RemoteId,
        fetched: FetchResult,
    ) -> Result<QueryResult, RrdError> {
        let columns: Vec<usize> = match &self.metrics {
            None => (0..fetched.names.len()).collect(),
            Some(wanted) => wanted
                .iter()
                .map(|metric| {
                    let name = ds_name(metric);
                    fetched
                        .names
                        .iter()
                        .position(|n| *n == name)
                        .ok_or_else(|| {
                            RrdError::Fetch(format!(
                                "entity {:?} of remote {remote} has no metric {metric:?}",
                                self.entity
                            ))
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let metrics = columns
            .iter()
            .map(|&c| MetricSeries {
                name: fetched.names[c].clone(),
                values: fetched
                    .rows
                    .iter()
                    .map(|(_, row)| Some(row[c]).filter(|v| !v.is_nan()))
                    .collect(),
            })
            .collect();
        Ok(QueryResult {
            start: fetched.start,
            step: fetched.step,
            timestamps: fetched.rows.iter().map(|(ts, _)| *ts).collect(),
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fleetpoll_actors::{MetricBatch, MetricKind, MetricPoint, MetricStore, MetricWrite};
    use fleetpoll_actors::{RemoteId, SeriesKey};

    use super::*;
    use crate::rrd::RrdStore;

    const T0: i64 = 1_700_000_040; // a multiple of 60

    /// `minutes` points a minute of `qemu/100`: cpu 0.25 (MAX 0.75 in minute 3),
    /// memory 100.
    fn guest_batch(minutes: i64) -> MetricBatch {
        let key = |metric: &str| SeriesKey {
            entity: Arc::from("qemu/100"),
            metric: Arc::from(metric),
            kind: MetricKind::Gauge,
        };
        let mut points = Vec::new();
        for m in 0..minutes {
            let timestamp = T0 + 60 * m;
            let cpu = if m == 3 { 0.75 } else { 0.25 };
            points.push(MetricPoint {
                series: 0,
                timestamp,
                value: cpu,
            });
            points.push(MetricPoint {
                series: 1,
                timestamp,
                value: 100.0,
            });
        }
        MetricBatch {
            series: vec![key("cpu_current"), key("mem_used")],
            points,
            dropped_future: 0,
        }
    }

    fn store_with_guest(minutes: i64) -> (tempfile::TempDir, RrdStore) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = RrdStore::open(dir.path()).unwrap();
        let results = store.store_metrics(&[MetricWrite {
            remote: RemoteId::new("lab"),
            batch: guest_batch(minutes),
        }]);
        assert!(results[0].is_ok());
        (dir, store)
    }

    fn hour_query(metrics: Option<Vec<String>>, cf: Cf) -> Query {
        Query {
            entity: "qemu/100".into(),
            metrics,
            cf,
            window: Window::Timeframe(Timeframe::Hour),
        }
    }

    #[test]
    fn the_hour_timeframe_returns_every_metric_per_minute_including_uncommitted_points() {
        let (_dir, store) = store_with_guest(10);
        let now = T0 + 600;
        let result = store
            .query(&RemoteId::new("lab"), &hour_query(None, Cf::Average), now)
            .unwrap()
            .expect("the guest was stored");
        assert_eq!(result.step, 60);
        assert_eq!(result.start, now - 3600);
        assert_eq!(result.timestamps.len(), 61);
        assert_eq!(result.timestamps[0], now - 3600 + 60);
        let names: Vec<&str> = result.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cpu_current", "mem_used"]);
        let at = |ts: i64| result.timestamps.iter().position(|&t| t == ts).unwrap();
        assert_eq!(result.metrics[0].values[at(T0 + 120)], Some(0.25));
        assert_eq!(result.metrics[0].values[at(T0 + 180)], Some(0.75));
        assert_eq!(result.metrics[1].values[at(T0 + 540)], Some(100.0));
        assert_eq!(result.metrics[1].values[0], None, "before the first point");
    }

    #[test]
    fn a_metric_list_selects_and_orders_the_columns() {
        let (_dir, store) = store_with_guest(5);
        let wanted = Some(vec!["mem_used".to_string()]);
        let result = store
            .query(
                &RemoteId::new("lab"),
                &hour_query(wanted, Cf::Max),
                T0 + 300,
            )
            .unwrap()
            .unwrap();
        assert_eq!(result.metrics.len(), 1);
        assert_eq!(result.metrics[0].name, "mem_used");
    }

    #[test]
    fn an_unknown_metric_or_cf_is_an_error_and_an_unknown_entity_is_none() {
        let (_dir, store) = store_with_guest(5);
        let lab = RemoteId::new("lab");
        let wanted = Some(vec!["disk_read".to_string()]);
        let err = store
            .query(&lab, &hour_query(wanted, Cf::Average), T0 + 300)
            .unwrap_err();
        assert!(err.to_string().contains("disk_read"), "{err}");
        assert!(store
            .query(&lab, &hour_query(None, Cf::Min), T0 + 300)
            .is_err());
        let mut other = hour_query(None, Cf::Average);
        other.entity = "qemu/101".into();
        assert_eq!(store.query(&lab, &other, T0 + 300).unwrap(), None);
    }

    #[test]
    fn an_explicit_window_reads_the_max_archive_at_the_wished_resolution() {
        let (_dir, store) = store_with_guest(70);
        let query = Query {
            entity: "qemu/100".into(),
            metrics: Some(vec!["cpu_current".into()]),
            cf: Cf::Max,
            window: Window::Explicit {
                start: T0,
                end: T0 + 3600,
                resolution: 1800,
            },
        };
        let result = store
            .query(&RemoteId::new("lab"), &query, 0)
            .unwrap()
            .unwrap();
        assert_eq!(result.step, 1800);
        // T0 lies 840 s into a 30-minute row; the first row returned ends 960 s after
        // T0 and holds minute 3 (its 16 known minutes of 30 pass xff 0.5).
        assert_eq!(result.start, T0 - 840);
        assert_eq!(result.timestamps[0], T0 + 960);
        assert_eq!(result.metrics[0].values[0], Some(0.75));
        assert_eq!(result.metrics[0].values[1], Some(0.25));
    }

    #[test]
    fn timeframes_map_to_the_documented_resolution_and_span() {
        let table: Vec<(String, u64, u64)> = ["hour", "day", "week", "month", "year", "decade"]
            .iter()
            .map(|name| {
                let t: Timeframe = name.parse().unwrap();
                (t.to_string(), t.resolution(), t.span() / 86_400)
            })
            .collect();
        assert_eq!(
            table,
            vec![
                ("hour".into(), 60, 0),
                ("day".into(), 1800, 1),
                ("week".into(), 10_800, 7),
                ("month".into(), 10_800, 30),
                ("year".into(), 604_800, 365),
                ("decade".into(), 604_800, 3650),
            ]
        );
        assert!("fortnight".parse::<Timeframe>().is_err());
    }

    #[test]
    fn the_year_and_decade_timeframes_read_the_weekly_archive() {
        let (_dir, store) = store_with_guest(5);
        for t in [Timeframe::Year, Timeframe::Decade] {
            let mut query = hour_query(None, Cf::Average);
            query.window = Window::Timeframe(t);
            let result = store
                .query(&RemoteId::new("lab"), &query, T0 + 300)
                .unwrap()
                .unwrap();
            assert_eq!(result.step, 604_800, "{t}");
        }
    }

    #[test]
    fn a_result_serializes_unknown_values_as_null() {
        let result = QueryResult {
            start: 0,
            step: 60,
            timestamps: vec![60, 120],
            metrics: vec![MetricSeries {
                name: "cpu".into(),
                values: vec![Some(0.5), None],
            }],
        };
        let json = serde_json::to_string(&result).unwrap();
        assert_eq!(
            json,
            r#"{"start":0,"step":60,"timestamps":[60,120],"metrics":[{"name":"cpu","values":[0.5,null]}]}"#
        );
    }

    #[test]
    fn the_entity_listing_names_committed_and_pending_entities_of_one_remote() {
        let (_dir, store) = store_with_guest(3);
        let lab = RemoteId::new("lab");
        assert_eq!(store.entities(&lab).unwrap(), vec!["qemu/100".to_string()]);
        store.commit().unwrap();
        assert_eq!(store.entities(&lab).unwrap(), vec!["qemu/100".to_string()]);
        assert!(store.entities(&RemoteId::new("other")).unwrap().is_empty());
    }
}
