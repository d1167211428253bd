//! `fleetpoll demo` as a user runs it: the binary starts, collects from its simulated
//! fleet, reports progress, and stops cleanly when its time is up.

use std::process::Command;

#[test]
fn demo_collects_from_its_fleet_and_stops_cleanly() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args([
            "demo",
            "--remotes",
            "8",
            "--interval-secs",
            "2",
            "--duration-secs",
            "4",
        ])
        .output()
        .expect("the fleetpoll binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let best_ok = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("remotes ok"))
        .filter_map(|rest| rest.split('|').next()?.trim().parse::<usize>().ok())
        .max()
        .expect("progress lines are printed");
    assert!(
        best_ok >= 6,
        "only {best_ok} of 8 remotes reached ok:\n{stdout}"
    );
    assert!(stdout.contains("fleetpoll demo: stopped"), "{stdout}");
    assert!(stdout.contains("API on http://127.0.0.1:"), "{stdout}");
    assert!(
        stdout
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("fleetpoll demo: status page on http://127.0.0.1:")),
        "the page's URL comes first: {stdout}"
    );
}

#[test]
fn bad_usage_exits_64_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(["demo", "--remotes", "0"])
        .output()
        .expect("the fleetpoll binary runs");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--remotes"), "{stderr}");
    let unknown = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(64));
}
