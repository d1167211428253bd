//! Prometheus exposition endpoints as remotes.
//!
//! - [`parse`]: the text format 0.0.4 and OpenMetrics 1.0 read into samples.
//! - [`mapping`]: samples as a [`fleetpoll_actors::MetricBatch`] (entities per label set).
//! - [`client`]: [`PromClient`], the [`fleetpoll_actors::RemoteSource`] that scrapes one
//!   target over http or https.

pub mod client;
pub mod mapping;
pub mod parse;

pub use client::{PromClient, PromTarget, DEFAULT_SERIES_LIMIT};
