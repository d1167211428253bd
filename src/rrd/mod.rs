//! A round-robin database engine with rrdtool 1.7's semantics, in a file format of
//! fleetpoll's own.
//!
//! # Layout
//!
//! - [`def`]: data-source and archive definitions and their `DS:`/`RRA:` syntax.
//! - [`value`]: raw update values and the counter difference and wrap rules.
//! - [`database`]: the in-memory [`Rrd`] and its update rules (heartbeat, rates, PDPs).
//! - [`consolidate`]: PDPs into consolidated rows (AVERAGE/MIN/MAX/LAST, xff).
//! - [`fetch`]: archive choice and the fetch window, as `rrdtool fetch`.
//! - [`text`]: rrdtool's `%0.10e` numbers, fetch table and info lines.
//! - [`format`](mod@format): the on-disk layout (see `docs/rrd-format.md`), checksummed
//!   with [`crate::durable::crc32`].
//! - [`file`](mod@file): [`RrdFile`], a file updated in place with positioned writes.
//! - [`journal`]: the store's journal, a [`crate::durable::Journal`] with a sealed part
//!   for commits, replayed on start.
//! - `record`: a journal record's payload, a remote's batch in a compact binary form.
//! - [`damage`]: damaged entity files set aside, logged and counted
//!   ([`damage::DamagedFile`]).
//! - [`quarantine`]: points an entity's file cannot take, set aside in
//!   `quarantine.jsonl` so the journal is still applied ([`QuarantinedEntity`]).
//! - `pending`: points journalled but not yet committed to their files.
//! - `cache`: the bounded cache of open files (the least recently used is synced
//!   and closed).
//! - [`layout`]: the Proxmox VE 9 layout of every store file: step, heartbeat,
//!   archives, and a metric's data source and name.
//! - [`store`]: [`RrdStore`], the engine's `MetricStore`: one file per (remote,
//!   entity) in that layout, behind the journal, committed on a cadence.
//! - [`query`]: an entity's metrics on one time axis for a timeframe or window, as
//!   the HTTP API returns them.
//! - [`top`]: the top-lists aggregate of every guest's and node's CPU and memory over
//!   the last hour, kept up to date as batches are stored.
//! - [`trend`]: the trend-line aggregate: the last hour of every entity's headline
//!   metric at one row a minute, for a remote's web page.
//! - [`cli`]: `fleetpoll rrd create|update|fetch|info`.

mod cache;
pub mod cli;
pub mod consolidate;
pub mod damage;
pub mod database;
pub mod def;
pub mod error;
pub mod fetch;
pub mod file;
pub mod format;
pub mod journal;
pub mod layout;
pub(crate) mod names;
mod pending;
pub mod quarantine;
pub mod query;
pub(crate) mod record;
pub mod store;
pub mod text;
pub mod top;
pub mod trend;
pub mod value;

#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod store_tests;

pub use damage::DamagedFile;
pub use database::Rrd;
pub use def::{Cf, DsDef, DsType, RraDef};
pub use error::RrdError;
pub use fetch::{FetchRequest, FetchResult};
pub use file::RrdFile;
pub use quarantine::QuarantinedEntity;
pub use store::RrdStore;
pub use value::{parse_update, RawValue};
