//! Prometheus exposition endpoints as remotes.
//!
//! - [`parse`]: the text format 0.0.4 and OpenMetrics 1.0 read into samples.
//! - [`mapping`]: samples as a [`fleetpoll_actors::MetricBatch`] (entities per label set).
//! - [`scrape`]: [`SeriesCache`], a target's series across scrapes, so that a steady
//!   target's scrape allocates nothing per sample.
//! - [`client`]: [`PromClient`], the [`fleetpoll_actors::RemoteSource`] that scrapes one
//!   target over http or https.

pub mod client;
pub mod mapping;
pub mod parse;
pub mod scrape;

pub use client::{PromClient, PromTarget, DEFAULT_SERIES_LIMIT};
pub use scrape::SeriesCache;
