//! Behaviour specifications of the rules rrdtool users rely on, each worked out by
//! hand: heartbeat, the half-unknown PDP rule, multi-PDP updates, xff, counter wraps,
//! the archive a fetch reads, and the file's corruption checks.

use super::*;

const T0: i64 = 1_000_000_000; // a multiple of 10 and 40 (not of 60)

fn rrd(ds: &str, rras: &[&str]) -> Rrd {
    let ds = vec![ds.parse::<DsDef>().unwrap()];
    let rras = rras.iter().map(|r| r.parse::<RraDef>().unwrap()).collect();
    Rrd::create(10, T0, ds, rras).unwrap()
}

fn update(rrd: &mut Rrd, offset: i64, value: &str) {
    let raw = RawValue::parse(value).unwrap();
    assert!(rrd.update(T0 + offset, &[raw]).unwrap());
}

/// The value of the row ending `offset` seconds after `T0`, fetched with `cf`.
fn row(rrd: &Rrd, cf: Cf, offset: i64) -> f64 {
    let result = rrd
        .fetch(&FetchRequest {
            cf,
            start: T0 + offset - 1,
            end: T0 + offset - 1,
            resolution: 1,
        })
        .unwrap();
    let (ts, values) = &result.rows[0];
    assert_eq!(*ts, T0 + offset, "the fetch window starts at the row");
    values[0]
}

#[test]
fn an_interval_of_exactly_the_heartbeat_is_known_and_one_second_more_is_not() {
    let mut r = rrd("DS:g:GAUGE:20:U:U", &["RRA:AVERAGE:0.5:1:10"]);
    update(&mut r, 20, "4"); // 20 s: exactly the heartbeat
    assert_eq!(row(&r, Cf::Average, 10), 4.0);
    assert_eq!(row(&r, Cf::Average, 20), 4.0);
    update(&mut r, 41, "6"); // 21 s: beyond it
    assert!(row(&r, Cf::Average, 30).is_nan());
    assert!(row(&r, Cf::Average, 40).is_nan());
}

#[test]
fn a_pdp_with_half_its_step_unknown_is_known_and_with_more_is_unknown() {
    let mut r = rrd("DS:g:GAUGE:100:U:U", &["RRA:AVERAGE:0.5:1:10"]);
    update(&mut r, 5, "U"); // (0,5] unknown: half the step
    update(&mut r, 10, "3");
    assert_eq!(row(&r, Cf::Average, 10), 3.0, "known 5 s of 3");
    update(&mut r, 16, "U"); // (10,16] unknown: more than half
    update(&mut r, 20, "3");
    assert!(row(&r, Cf::Average, 20).is_nan());
}

#[test]
fn an_update_closing_several_pdps_gives_the_first_its_share_and_the_rest_its_rate() {
    let mut r = rrd("DS:g:GAUGE:100:U:U", &["RRA:AVERAGE:0.5:1:10"]);
    update(&mut r, 4, "2"); // (0,4] at 2
    update(&mut r, 35, "8"); // (4,35] at 8
    assert_eq!(row(&r, Cf::Average, 10), (2.0 * 4.0 + 8.0 * 6.0) / 10.0);
    assert_eq!(row(&r, Cf::Average, 20), 8.0);
    assert_eq!(row(&r, Cf::Average, 30), 8.0);
    assert!(
        row(&r, Cf::Average, 40).is_nan(),
        "(30,35] is not closed yet"
    );
}

#[test]
fn a_long_gap_keeps_the_known_share_of_the_first_pdp_only() {
    let mut r = rrd("DS:g:GAUGE:15:U:U", &["RRA:AVERAGE:0.5:1:10"]);
    update(&mut r, 4, "2");
    update(&mut r, 8, "2"); // (0,8] known at 2
    update(&mut r, 40, "5"); // 32 s > heartbeat: the rest is unknown
    assert_eq!(row(&r, Cf::Average, 10), 2.0, "only the known 8 s count");
    assert!(row(&r, Cf::Average, 20).is_nan());
    assert!(row(&r, Cf::Average, 40).is_nan());
}

#[test]
fn a_consolidated_row_is_unknown_only_when_unknown_pdps_exceed_xff() {
    let mut r = rrd(
        "DS:g:GAUGE:100:U:U",
        &["RRA:AVERAGE:0.5:4:10", "RRA:MAX:0.25:4:10"],
    );
    update(&mut r, 10, "1");
    update(&mut r, 20, "3");
    update(&mut r, 21, "U"); // PDPs 30 and 40 unknown (21..40 > half each)
    update(&mut r, 40, "U");
    // 2 of 4 unknown: AVERAGE (xff 0.5 allows 2) averages the known ones,
    // MAX (xff 0.25 allows 1) is unknown.
    assert_eq!(row(&r, Cf::Average, 40), 2.0);
    assert!(row(&r, Cf::Max, 40).is_nan());
}

#[test]
fn counters_wrap_at_32_bits_and_then_at_64_bits() {
    let mut r = rrd("DS:c:COUNTER:100:U:U", &["RRA:AVERAGE:0.5:1:10"]);
    update(&mut r, 10, "4294967290");
    update(&mut r, 20, "4"); // wrapped: 4 - 4294967290 + (2^32 - 1) = 9
    assert_eq!(row(&r, Cf::Average, 20), 0.9);
    update(&mut r, 30, "18446744073709551610");
    update(&mut r, 40, "10"); // a 64-bit wrap: never a negative rate
    let rate = row(&r, Cf::Average, 40);
    assert!((0.0..10.0).contains(&rate), "{rate}");
}

#[test]
fn derive_with_min_zero_turns_a_counter_reset_into_unknown() {
    let mut r = rrd("DS:d:DERIVE:100:0:U", &["RRA:AVERAGE:0.5:1:10"]);
    update(&mut r, 10, "1000");
    update(&mut r, 20, "1100");
    update(&mut r, 30, "5"); // a reset: negative rate
    update(&mut r, 40, "105");
    assert_eq!(row(&r, Cf::Average, 20), 10.0);
    assert!(row(&r, Cf::Average, 30).is_nan());
    assert_eq!(row(&r, Cf::Average, 40), 10.0);
}

#[test]
fn updates_at_or_before_the_last_one_are_ignored() {
    let mut r = rrd("DS:g:GAUGE:100:U:U", &["RRA:AVERAGE:0.5:1:10"]);
    update(&mut r, 10, "1");
    assert!(!r.update(T0 + 10, &[RawValue::Float(5.0)]).unwrap());
    assert!(!r.update(T0 + 5, &[RawValue::Float(5.0)]).unwrap());
    assert_eq!(r.last_update(), T0 + 10);
    assert_eq!(row(&r, Cf::Average, 10), 1.0);
}

#[test]
fn fetch_reads_the_finest_archive_that_covers_the_start() {
    let mut r = rrd(
        "DS:g:GAUGE:100:U:U",
        &[
            "RRA:AVERAGE:0.5:1:5",
            "RRA:AVERAGE:0.5:6:10",
            "RRA:MAX:0.5:1:50",
        ],
    );
    for i in 1..=30 {
        update(&mut r, i * 10, "1");
    }
    let fetch = |start: i64, end: i64, cf: Cf, resolution: u64| {
        r.fetch(&FetchRequest {
            cf,
            start: T0 + start,
            end: T0 + end,
            resolution,
        })
        .unwrap()
    };
    // The 1-step AVERAGE archive spans (250, 300]: it covers a start of 260.
    assert_eq!(fetch(260, 300, Cf::Average, 1).archive, 0);
    // An earlier start needs a coarser archive of the same CF, or any 1-step one:
    // the MAX archive (span 500 s) is the finest that covers it.
    assert_eq!(fetch(100, 300, Cf::Average, 1).archive, 2);
    // A wished resolution picks the closest step among those that cover the start.
    let result = fetch(100, 260, Cf::Average, 60);
    assert_eq!(result.archive, 1);
    assert_eq!(result.step, 60);
    assert_eq!(
        result.start,
        T0 + 80,
        "the start is rounded down to the step"
    );
    assert_eq!(result.end, T0 + 320, "an aligned end gains a row");
    assert_eq!(result.rows.first().map(|r| r.0), Some(T0 + 140));
    assert_eq!(result.rows.len(), 4, "rows 140, 200, 260 and 320");
}

mod files {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("fleetpoll-rrd-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    fn sample() -> Rrd {
        rrd(
            "DS:g:GAUGE:100:U:U",
            &["RRA:AVERAGE:0.5:1:10", "RRA:MAX:0.5:3:10"],
        )
    }

    #[test]
    fn a_file_reopened_after_updates_answers_like_the_database_in_memory() {
        let path = temp_path("roundtrip.rrd");
        let mut file = RrdFile::create(&path, sample()).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let updates: Vec<_> = (1..=25)
            .map(|i| (T0 + i * 7, vec![RawValue::Float(i as f64)]))
            .collect();
        assert_eq!(file.update(&updates).unwrap(), 0);
        let reopened = RrdFile::open(&path).unwrap();
        assert_eq!(
            format::encode(reopened.rrd()),
            format::encode(file.rrd()),
            "what was written is what is in memory"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len,
            "updated in place"
        );
    }

    #[test]
    fn creating_over_an_existing_file_is_refused() {
        let path = temp_path("exists.rrd");
        RrdFile::create(&path, sample()).unwrap();
        let err = RrdFile::create(&path, sample()).unwrap_err();
        assert!(matches!(err, RrdError::Exists(_)), "{err}");
    }

    fn corrupt_at(name: &str, offset: u64) -> (std::path::PathBuf, Vec<u8>, RrdError) {
        let path = temp_path(name);
        RrdFile::create(&path, sample()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[offset as usize] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = RrdFile::open(&path).unwrap_err();
        (path, bytes, err)
    }

    #[test]
    fn a_corrupt_header_is_reported_with_the_file_name_and_left_untouched() {
        let (path, bytes, err) = corrupt_at("header.rrd", 70);
        let message = err.to_string();
        assert!(matches!(err, RrdError::Corrupt { .. }), "{message}");
        assert!(message.contains("header.rrd"), "{message}");
        assert!(message.contains("checksum"), "{message}");
        assert!(message.contains("backup"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "never rewritten");
    }

    #[test]
    fn a_torn_live_block_is_detected() {
        let layout = format::Layout::of(1, sample().archives());
        let (_, _, err) = corrupt_at("live.rrd", layout.live_offset + 12);
        assert!(err.to_string().contains("live-state checksum"), "{err}");
    }

    #[test]
    fn a_foreign_or_truncated_file_is_not_taken_for_an_rrd() {
        let path = temp_path("foreign.rrd");
        std::fs::write(&path, b"RRD\0 0003 from rrdtool, not ours").unwrap();
        assert!(RrdFile::open(&path)
            .unwrap_err()
            .to_string()
            .contains("bad magic"));

        let path = temp_path("truncated.rrd");
        RrdFile::create(&path, sample()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
        let err = RrdFile::open(&path).unwrap_err().to_string();
        assert!(err.contains("bytes long"), "{err}");
    }
}
