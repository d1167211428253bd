//! The bodies of the fuzz targets in `fuzz/` (`cargo +nightly fuzz run <target>`), one
//! function per target, each feeding arbitrary bytes to a parser of outside input and
//! asserting what must hold for any input: no panic, errors of the promised class,
//! output bounded by the input, and round trips (parse, encode, parse again gives the
//! same) where the parser has an encoder. `tests/fuzz_corpora.rs` replays the kept
//! corpora (`fuzz/corpus/<target>/`) through the same functions, so CI checks every
//! input a fuzzer once found interesting. Compiled with the `fuzzing` feature.
//!
//! # Layout
//!
//! - `remote`: [`remote_metrics`], [`remote_replies`] and [`upid`]: what PVE and PBS
//!   remotes answer.
//! - `prom`: [`prom_parse`]: Prometheus text and OpenMetrics scrape bodies.
//! - `files`: [`config_file`], [`rules_file`] and [`rrd_args`]: what an operator
//!   writes (the TOML files, `fleetpoll rrd` command lines).
//! - `stores`: [`journal`], [`rrd_file`], [`rrd_names`], [`task_archive`],
//!   [`task_snapshot`] and [`task_state`]: the files the stores read back from disk
//!   (which a crash, a full disk or another program may have damaged).
//! - [`api_request`] (in `api::fuzz`): the API's query strings, path segments and
//!   request bodies.

mod files;
mod prom;
mod remote;
mod stores;

pub use crate::api::fuzz::api_request;
pub use files::{config_file, rrd_args, rules_file};
pub use prom::{prom_parse, PromState};
pub use remote::{remote_metrics, remote_replies, upid};
pub use stores::{journal, rrd_file, rrd_names, task_archive, task_snapshot, task_state};

/// The fuzz targets by name, as `fuzz/Cargo.toml` names its binaries and
/// `fuzz/corpus/` its directories.
pub const TARGETS: &[&str] = &[
    "api_request",
    "config_file",
    "journal",
    "prom_parse",
    "remote_metrics",
    "remote_replies",
    "rrd_args",
    "rrd_file",
    "rrd_names",
    "rules_file",
    "task_archive",
    "task_snapshot",
    "task_state",
    "upid",
];

/// What a run of the targets keeps from one input to the next (the caches that are
/// themselves under test); a fuzz target holds one for its whole run.
#[derive(Debug, Default)]
pub struct Session {
    prom: PromState,
}

impl Session {
    /// A session that has read nothing yet.
    pub fn new() -> Session {
        Session::default()
    }

    /// Feeds `data` to the target named `target` (one of [`TARGETS`]); `false` if there
    /// is no such target. Panics where the target finds a fault, as under the fuzzer.
    pub fn run(&mut self, target: &str, data: &[u8]) -> bool {
        match target {
            "api_request" => api_request(data),
            "config_file" => config_file(data),
            "journal" => journal(data),
            "prom_parse" => prom_parse(&mut self.prom, data),
            "remote_metrics" => remote_metrics(data),
            "remote_replies" => remote_replies(data),
            "rrd_args" => rrd_args(data),
            "rrd_file" => rrd_file(data),
            "rrd_names" => rrd_names(data),
            "rules_file" => rules_file(data),
            "task_archive" => task_archive(data),
            "task_snapshot" => task_snapshot(data),
            "task_state" => task_state(data),
            "upid" => upid(data),
            _ => return false,
        }
        true
    }
}
