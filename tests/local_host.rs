//! The built-in `local` source: `fleetpoll run` with `[local] enabled` stores the host
//! as remote `local` and serves `GET /api/v1/local`; the systemd unit's /proc settings,
//! applied for real to a private /proc mount, leave the source its files (and
//! `ProcSubset=pid`, which the unit had, would hide them).

mod daemon_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use daemon_support::{bin, free_port, json, remote_status, spawn_daemon, wait_until};

#[test]
fn the_local_host_is_a_remote_and_its_current_values_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let config = dir.path().join("fleetpoll.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nlisten = \"127.0.0.1:{api}\"\n[storage]\nstate_dir = \"s\"\ncache_dir = \"c\"\n\
             [local]\nenabled = true\ninterval_secs = 2\ncache_ttl_secs = 1\n"
        ),
    )
    .unwrap();
    let _daemon = spawn_daemon(&config, &[], None);
    wait_until(Duration::from_secs(30), "the local source is ok", || {
        std::net::TcpStream::connect(("127.0.0.1", api)).is_ok()
            && remote_status(api, "local")["state"] == "ok"
    });
    let status = remote_status(api, "local");
    assert_eq!(status["kind"], "local");
    let (code, v) = json(api, "GET", "/api/v1/local", "");
    assert_eq!(code, 200, "{v}");
    let total = v["host"]["mem_total"].as_f64().unwrap();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, kib * 1024.0, "MemTotal as /proc/meminfo states it");
    assert!(v["host"]["cpu_current"].as_f64().is_some());
    assert!(v["net"].as_object().unwrap().keys().all(|k| k != "lo"));
    // And the reserved id cannot be taken by a configured remote.
    let clash = dir.path().join("clash.toml");
    std::fs::write(
        &clash,
        "[[remotes]]\nid = \"local\"\ntype = \"prometheus\"\nurl = \"http://h/m\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(&clash)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reserved"));
}

/// The value of `key=` in a unit file.
fn setting(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit sets {key}"))
        .trim()
        .to_string()
}

/// Runs `fleetpoll local` with /proc mounted as `options` in private namespaces. The
/// mount needs root (CI has it); without, the test fails saying so.
fn local_under(options: &str) -> std::process::Output {
    let script = format!(
        "mount -t proc -o {options} proc /proc && exec {} local",
        bin()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("mount:") && !stderr.contains("unshare:"),
        "cannot mount a private /proc here; this test needs root and unshare(1): \
         run it as root, e.g. `sudo -E cargo test --test local_host`: {stderr}"
    );
    out
}

#[test]
fn the_units_proc_settings_leave_the_local_source_its_files() {
    for unit in ["deploy/fleetpoll.service", "deploy/fleetpoll@.service"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(unit)).unwrap();
        let subset = setting(&text, "ProcSubset");
        let protect = setting(&text, "ProtectProc");
        assert_eq!(protect, "invisible", "{unit}: other processes stay hidden");
        // systemd mounts /proc with subset=pid for ProcSubset=pid, hidepid= for ProtectProc.
        let mut options = format!("hidepid={protect}");
        if subset == "pid" {
            options.push_str(",subset=pid");
        }
        let out = local_under(&options);
        assert!(
            out.status.success(),
            "{unit}: under /proc as {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["host"]["mem_total"].as_f64().unwrap() > 0.0);
    }
    // The setting the unit had hides what the source reads: this test can fail.
    let out = local_under("hidepid=invisible,subset=pid");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/proc/"));
}
