//! The remotes' resource lists (the inventory): each PVE cluster's nodes, guests and
//! storages with names and status, each PBS's datastores with their use. They are
//! fetched in the background every `[inventory] resources_interval_secs` and after a
//! manual collect, kept per remote, and read by `GET /api/v1/resources`, the health of
//! `GET /api/v1/remotes` and the web page; reads never reach a remote.
//!
//! # Layout
//!
//! - `cache`: [`ResourceCache`], one [`RemoteResources`] per remote, stamped when filled.
//! - `refresher`: [`Inventory`], the handle to the background job that fills it, with
//!   bounded concurrency.
//! - `health`: [`Health`], a remote's good / warning / error as the dashboard shows it.

mod cache;
mod health;
mod refresher;

pub use cache::{RemoteResources, ResourceCache};
pub use health::{assess, Health, HealthReport, DATASTORE_WARNING_SHARE};
pub use refresher::{Inventory, InventoryRemote, MAX_PARALLEL_FETCHES};
