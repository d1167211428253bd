//! What an operator writes: the config file, the rules file (TOML) and `fleetpoll rrd`
//! command lines.

use std::path::Path;

use crate::rules::RuleSet;

/// The config file (UTF-8; other bytes are skipped): no panic; an accepted file written
/// back as TOML parses to the same config; a refusal names a key and the line.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match crate::config::parse(path, text) {
        Ok(config) => {
            // Compared by their debug text, so a `nan` equals itself.
            if let Ok(written) = toml::to_string(&config) {
                let again = crate::config::parse(path, &written)
                    .unwrap_or_else(|e| panic!("a written config does not parse: {e}"));
                assert_eq!(format!("{again:?}"), format!("{config:?}"));
            }
        }
        Err(e) => assert!(!e.key.is_empty() && e.message.contains("(line ")),
    }
}

/// The rules file (UTF-8; other bytes are skipped): no panic while it is parsed and
/// compiled; an accepted file's rule names are unique.
pub fn rules_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(set) = RuleSet::parse(Path::new("fuzz-rules.toml"), text) {
        let mut names = std::collections::HashSet::new();
        for r in &set.rules {
            assert!(names.insert(r.name.clone()), "rule {:?} twice", r.name);
        }
    }
}

/// A created database holds at most this many values under the fuzzer (whose memory
/// limit is 512 MB); a larger one the engine would take is not created.
const RRD_ARGS_MAX_VALUES: u64 = 1 << 20;

/// A fetch of at most this many rows is also rendered as text (a larger one's text
/// would take most of the fuzzer's memory).
const RRD_ARGS_MAX_RENDERED: usize = 100_000;

/// `fleetpoll rrd` command lines run against a database in memory (no files): the
/// input's first line is a `create` command line, its last a `fetch` one (the words
/// after the command name, FILE first), the lines between `update` words. A refused
/// `create` is a usage error (exit 64); a created database encodes to a file that
/// decodes to it, before and after the updates; a fetch returns a bounded, evenly
/// stepped window with one value per data source, and renders as text (up to
/// 100,000 rows).
pub fn rrd_args(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<Vec<String>> = text
        .split('\n')
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    let (create, rest) = lines.split_first().expect("split gives a line");
    let (fetch, updates) = rest.split_last().unwrap_or((create, &[]));
    let updates: Vec<String> = updates.iter().flatten().cloned().collect();
    // Beyond `MAX_VALUES` the engine refuses before it allocates; below, the fuzzer's
    // memory limit decides.
    let declared = declared_values(create);
    if declared > RRD_ARGS_MAX_VALUES && declared <= crate::rrd::database::MAX_VALUES {
        return;
    }
    match crate::rrd::cli::in_memory(create, &updates, fetch) {
        Ok((rrd, fetched)) => {
            assert_round_trip(&rrd);
            let ds_count = rrd.data_sources().len();
            assert!(fetched.rows.len() as u64 <= crate::rrd::fetch::MAX_FETCH_ROWS);
            let mut ts = fetched.start;
            for (t, values) in &fetched.rows {
                ts += fetched.step as i64;
                assert_eq!(*t, ts, "rows are not evenly stepped");
                assert_eq!(values.len(), ds_count);
            }
            assert!(ts <= fetched.end);
            if fetched.rows.len() <= RRD_ARGS_MAX_RENDERED {
                let _ = crate::rrd::text::render_fetch(&fetched);
            }
            let _ = crate::rrd::text::render_info(&rrd, "fuzz.rrd");
        }
        Err(e) => {
            if let Ok((_, rrd)) = crate::rrd::cli::create_args(create) {
                assert_round_trip(&rrd);
            } else {
                assert!(
                    e.is::<crate::rrd::cli::UsageError>(),
                    "a refused create: {e:#}"
                );
            }
        }
    }
}

/// The values the database of a `create` command line would hold, saturating (0 when
/// the command line does not parse).
fn declared_values(create: &[String]) -> u64 {
    let Ok((_, spec)) = crate::rrd::cli::create_spec(create) else {
        return 0;
    };
    let ds = spec.ds.len() as u64;
    spec.rras
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.rows.saturating_mul(ds)))
}

fn assert_round_trip(rrd: &crate::rrd::Rrd) {
    let encoded = crate::rrd::format::encode(rrd);
    let decoded = crate::rrd::format::decode(&encoded)
        .unwrap_or_else(|e| panic!("a created database does not decode: {e}"));
    assert_eq!(
        crate::rrd::format::encode(&decoded.rrd),
        encoded,
        "a database encodes differently"
    );
}
