//! The command-line client of the daemon's HTTP API: `fleetpoll status`, `trigger`,
//! `tasks` and `query` call the endpoints of `docs/api.md` and print their answers as
//! tables (or the JSON itself with `--json`).
//!
//! # Layout
//!
//! - `commands`: [`ApiCommand`], the commands and their flags, and the request each
//!   one sends.
//! - `transport`: a small HTTP/1.1 client for the daemon's plain-HTTP API.
//! - `print`: the tables the commands print.
//! - `error`: [`ApiClientError`].

mod commands;
mod error;
mod print;
mod transport;

pub use commands::{ApiArgs, ApiCommand};
pub use error::ApiClientError;
