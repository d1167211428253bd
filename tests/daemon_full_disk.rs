//! A full disk under the state directory, end to end: `fleetpoll run` against
//! `fleetpoll sim`, both as processes, with `storage.state_dir` on a small tmpfs that
//! the test fills and frees. Mounting needs root, which CI has; run elsewhere, the test
//! fails saying so (it never skips).

mod daemon_support;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use daemon_support::*;

/// A tmpfs mounted for the test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        assert!(
            root,
            "this test mounts a tmpfs as the daemon's state directory and must run as root \
             (CI does): run it as root, e.g. `sudo -E cargo test -p fleetpoll --test daemon_full_disk`"
        );
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed",
            at.display()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with `dir/filler` until not a byte more fits.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    // Smaller and smaller writes, down to the last byte that fits.
    for size in [64 << 10, 4 << 10, 1] {
        let chunk = vec![0u8; size];
        while file.write_all(&chunk).is_ok() {}
    }
    let _ = file.sync_all();
    path
}

/// The values an hour view of `pve-1`'s first node holds, by metric.
fn stored_values(port: u16) -> Vec<(i64, String, f64)> {
    let (status, v) = json(
        port,
        "GET",
        "/api/v1/rrd/pve-1/node/pve-1-n1?timeframe=hour",
        "",
    );
    assert_eq!(status, 200, "{v}");
    let data = &v["data"];
    let times: Vec<i64> = data["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    let mut out = Vec::new();
    for metric in data["metrics"].as_array().unwrap() {
        let name = metric["name"].as_str().unwrap();
        for (t, value) in times.iter().zip(metric["values"].as_array().unwrap()) {
            if let Some(value) = value.as_f64() {
                out.push((*t, name.to_string(), value));
            }
        }
    }
    out
}

fn daemon_status(port: u16) -> Value {
    json(port, "GET", "/api/v1/daemon", "").1
}

fn collect_all(port: u16) -> Value {
    json(port, "POST", "/api/v1/collect", r#"{"wait": true}"#).1
}

#[test]
fn a_full_state_directory_is_reported_loses_nothing_stored_and_collection_resumes_once_freed() {
    let dir = tempfile::tempdir().unwrap();
    let (_sim, config, port) = fleet_config(dir.path(), &[], &[]);
    // `fleetpoll sim --write-config full.toml` keeps the data beside it.
    let state_dir = dir.path().join("full-data").join("state");
    let _tmpfs = Tmpfs::mount(&state_dir, "64m");
    let _daemon = spawn_daemon(&config, &[], None);
    wait_all_ok(port);
    assert_eq!(daemon_status(port)["storage_error"], Value::Null);
    let before = stored_values(port);
    assert!(!before.is_empty(), "pve-1 stored nothing to compare with");

    let filler = fill(&state_dir);
    // A collection that brings new points (the simulator has one every 10 s) cannot
    // journal them.
    // Until pve-1 itself has had new points to write (a collection within the same
    // simulated generation brings none, and an empty batch needs no disk).
    wait_until(
        Duration::from_secs(60),
        "the daemon reports the storage error, pve-1's too",
        || {
            collect_all(port);
            daemon_status(port)["storage_error"].is_string()
                && remote_status(port, "pve-1")["last_error_class"] == "storage"
        },
    );
    let error = daemon_status(port)["storage_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("No space left"), "{error}");
    let status = remote_status(port, "pve-1");
    assert_eq!(status["last_error_class"], "storage", "{status}");
    let during = stored_values(port);
    for value in &before {
        assert!(
            during.contains(value),
            "{value:?} was lost while the disk was full"
        );
    }

    let stored_while_full = status["points_stored"].as_u64().unwrap();

    std::fs::remove_file(&filler).unwrap();
    wait_until(
        Duration::from_secs(60),
        "collection stores again and the error clears",
        || {
            collect_all(port);
            daemon_status(port)["storage_error"].is_null()
                && states(port).iter().all(|(_, s)| s == "ok")
                && remote_status(port, "pve-1")["points_stored"]
                    .as_u64()
                    .is_some_and(|n| n > stored_while_full)
        },
    );
    let after = stored_values(port);
    for value in &before {
        assert!(
            after.contains(value),
            "{value:?} was lost after the disk was freed"
        );
    }
}
