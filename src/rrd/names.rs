//! The full metric names behind shortened data-source names. A data-source name holds
//! at most 19 characters, so a longer metric name (`node_memory_MemTotal_bytes`) is
//! stored under a shortened one (`node_memory_1a2b3c4`, see [`super::layout::ds_name`]).
//! Each RRD file with such a data source has a sidecar `<entity>.names` next to it,
//! one `ds_name full_name` pair per line, so answers name the metric as it was sent.
//! The sidecar is replaced atomically, and only when a pair is new (the first time a
//! process stores a metric into a file); a lost one is rewritten by the next batch
//! that carries the metric.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::durable::{write_atomic, Mode};

/// Data-source name → full metric name, of one file.
pub(crate) type NameMap = BTreeMap<String, String>;

/// The sidecar of an RRD file.
pub(crate) fn sidecar(rrd: &Path) -> PathBuf {
    rrd.with_extension("names")
}

/// Reads a file's map; empty when it has no sidecar (or an unreadable one). A line
/// without a space is skipped.
pub(crate) fn read(rrd: &Path) -> NameMap {
    let Ok(text) = std::fs::read_to_string(sidecar(rrd)) else {
        return NameMap::new();
    };
    // Split at '\n' alone, as [`KnownNames::note`] writes: a name read back is the name
    // written, even one that ends in '\r'.
    text.split('\n')
        .filter_map(|l| l.split_once(' '))
        .map(|(ds, full)| (ds.to_string(), full.to_string()))
        .collect()
}

/// The maps known so far, by RRD file.
#[derive(Debug, Default)]
pub(crate) struct KnownNames {
    maps: HashMap<PathBuf, NameMap>,
}

impl KnownNames {
    /// Records the `(ds_name, full_name)` pairs of `rrd`'s data sources, writing its
    /// sidecar when one is new.
    pub(crate) fn note(&mut self, rrd: &Path, pairs: &[(String, String)]) -> std::io::Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let map = self
            .maps
            .entry(rrd.to_path_buf())
            .or_insert_with(|| read(rrd));
        let mut changed = false;
        for (ds, full) in pairs {
            if map.get(ds) != Some(full) {
                map.insert(ds.clone(), full.clone());
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let text: String = map
            .iter()
            .map(|(ds, full)| format!("{ds} {full}\n"))
            .collect();
        write_atomic(&sidecar(rrd), text.as_bytes(), Mode::Umask).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_survive_a_reopen_and_are_written_only_when_new() {
        let dir = tempfile::tempdir().unwrap();
        let rrd = dir.path().join("metrics.rrd");
        let mut known = KnownNames::default();
        let pair = (
            "node_memory_1234567".to_string(),
            "node_memory_MemTotal_bytes".to_string(),
        );
        known.note(&rrd, std::slice::from_ref(&pair)).unwrap();
        assert_eq!(read(&rrd).get(&pair.0), Some(&pair.1));
        // Known already: the sidecar is not rewritten.
        std::fs::remove_file(sidecar(&rrd)).unwrap();
        known.note(&rrd, std::slice::from_ref(&pair)).unwrap();
        assert!(!sidecar(&rrd).exists());
        let mut fresh = KnownNames::default();
        fresh.note(&rrd, std::slice::from_ref(&pair)).unwrap();
        assert!(sidecar(&rrd).exists(), "a new process writes it again");
    }

    #[test]
    fn a_name_reads_back_as_written_whatever_its_last_character() {
        let dir = tempfile::tempdir().unwrap();
        let rrd = dir.path().join("metrics.rrd");
        let pairs = [
            ("a_1234567".to_string(), "ends_in_cr\r".to_string()),
            ("b_1234567".to_string(), "has a space".to_string()),
            ("c_1234567".to_string(), String::new()),
        ];
        KnownNames::default().note(&rrd, &pairs).unwrap();
        let read = read(&rrd);
        assert_eq!(read.len(), pairs.len());
        for (ds, full) in &pairs {
            assert_eq!(read.get(ds), Some(full), "{ds}");
        }
    }
}
