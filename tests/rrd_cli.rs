//! The `fleetpoll rrd` command's contract: exit code 64 with the usage for bad
//! usage, 1 naming the file for runtime errors, a warning (and success) for updates
//! at or before the last one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetpoll");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("fleetpoll ran")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetpoll-rrd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn create(path: &Path) {
    let file = path.to_str().expect("UTF-8 path");
    let output = run(
        &[
            "rrd",
            "create",
            file,
            "--step",
            "10",
            "--start",
            "1700000000",
            "DS:a:GAUGE:20:U:U",
            "RRA:AVERAGE:0.5:1:10",
        ],
        "",
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn bad_usage_exits_64_with_the_usage() {
    for args in [
        &["rrd"][..],
        &["rrd", "frobnicate"],
        &[
            "rrd",
            "create",
            "/tmp/x.rrd",
            "DS:a:GAUGE:20:U:U",
            "RRA:AVERAGE:2:1:1",
        ],
        &["rrd", "fetch", "/tmp/x.rrd"],
        &["nonsense"],
        &[],
    ] {
        let output = run(args, "");
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            stderr(&output)
        );
        // Case-insensitive: clap (on main) prints "Usage:".
        let message = stderr(&output).to_lowercase();
        assert!(message.contains("usage"), "{args:?}: {message}");
    }
}

#[test]
fn a_corrupt_file_exits_1_naming_the_file_and_what_to_do() {
    let path = temp_file("corrupt.rrd");
    create(&path);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[70] ^= 0xFF;
    std::fs::write(&path, &bytes).expect("write");
    let output = run(
        &["rrd", "fetch", path.to_str().expect("UTF-8"), "AVERAGE"],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("corrupt.rrd"), "{message}");
    assert!(message.contains("checksum"), "{message}");
    assert!(message.contains("backup"), "{message}");
    assert_eq!(std::fs::read(&path).expect("read"), bytes, "left untouched");
}

#[test]
fn updates_at_or_before_the_last_one_are_skipped_with_a_warning() {
    let path = temp_file("old.rrd");
    create(&path);
    let file = path.to_str().expect("UTF-8");
    let output = run(
        &["rrd", "update", file, "-"],
        "1700000010:1\n1700000005:2 1700000010:3\n1700000020:4\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("2 update(s)"),
        "{}",
        stderr(&output)
    );
    let fetch = run(
        &[
            "rrd",
            "fetch",
            file,
            "AVERAGE",
            "-s",
            "1700000000",
            "-e",
            "1700000019",
        ],
        "",
    );
    let text = String::from_utf8_lossy(&fetch.stdout);
    assert!(text.contains("1700000010: 1.0000000000e+00"), "{text}");
    assert!(text.contains("1700000020: 4.0000000000e+00"), "{text}");
}

#[test]
fn shapes_times_and_windows_beyond_the_engine_are_refused_with_what_to_change() {
    let dir = temp_file("bounds");
    std::fs::create_dir_all(&dir).expect("dir");
    let huge = dir.join("huge.rrd");
    let huge = huge.to_str().expect("UTF-8");
    // Creation refused before anything is allocated or written, exit 64, naming the RRA.
    for (args, says) in [
        (
            &["DS:a:GAUGE:20:U:U", "RRA:AVERAGE:0.5:1:200000000"][..],
            "fewer rows or data sources",
        ),
        (
            &[
                "DS:a:GAUGE:20:U:U",
                "RRA:AVERAGE:0.5:1:18446744073709551615",
            ],
            "use fewer rows",
        ),
        (
            &[
                "--step",
                "4294967296",
                "DS:a:GAUGE:20:U:U",
                "RRA:AVERAGE:0.5:4294967296:2",
            ],
            "use fewer steps",
        ),
        (
            &[
                "--start",
                "-9223372036854775808",
                "DS:a:GAUGE:20:U:U",
                "RRA:AVERAGE:0.5:1:2",
            ],
            "between 1970 and the end of year 9999",
        ),
    ] {
        let mut full = vec!["rrd", "create", huge];
        full.extend_from_slice(args);
        let output = run(&full, "");
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!Path::new(huge).exists(), "{args:?} wrote a file");
    }

    let path = temp_file("bounded.rrd");
    create(&path);
    let file = path.to_str().expect("UTF-8");
    let output = run(&["rrd", "update", file, "253402300800:1"], "");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("end of year 9999"),
        "{}",
        stderr(&output)
    );
    let before = std::fs::read(&path).expect("read");
    for (start, end, says) in [
        ("0", "253402300799", "narrow the window"),
        (
            "-9223372036854775808",
            "9223372036854775807",
            "within 253402300799 seconds",
        ),
    ] {
        let output = run(
            &["rrd", "fetch", file, "AVERAGE", "-s", start, "-e", end],
            "",
        );
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains(says),
            "{start}..{end}: {}",
            stderr(&output)
        );
    }
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "left untouched"
    );
}
