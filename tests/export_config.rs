//! `[[exporters]]` in the config file: every mistake is refused naming the key (and
//! `fleetpoll validate` exits 64); secrets — the URL, header values, tokens, passwords —
//! appear in no `Debug`, error or API answer; token and password files must not be
//! world-readable, and relative paths are the config file's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fleetpoll::config::{self, ConfigFileError};
use fleetpoll::engine::TokioClock;

fn resolve_at(path: &Path, text: &str) -> Result<config::Resolved, ConfigFileError> {
    let parsed = config::parse(path, text)?;
    config::resolve(path, parsed, Arc::new(TokioClock::system()))
}

fn error_of(text: &str) -> ConfigFileError {
    resolve_at(Path::new("test.toml"), text).expect_err("the config must be rejected")
}

const RW: &str = "[[exporters]]\nname = \"rw\"\nkind = \"prometheus-remote-write\"\n\
                  url = \"https://user:hunter2-url@vm.example:8428/api/v1/write\"\n";

#[test]
fn a_bad_exporter_is_refused_naming_its_key() {
    let graphite =
        "[[exporters]]\nname = \"g\"\nkind = \"graphite\"\naddress = \"127.0.0.1:2003\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "[[exporters]]\nname = \"x\"\nkind = \"opentsdb\"\n".into(),
            "exporters[0].kind",
            "not an exporter kind",
        ),
        (
            format!("{graphite}bogus = 1\n"),
            "exporters[0].bogus",
            "unknown field",
        ),
        (format!("{graphite}{graphite}"), "exporters[1].name", "used twice"),
        (
            graphite.replace("name = \"g\"", "name = \"a b\""),
            "exporters[0].name",
            "letters",
        ),
        (
            graphite.replace("127.0.0.1:2003", "localhost"),
            "exporters[0].address",
            "host:port",
        ),
        (
            format!("{graphite}transport = \"sctp\"\n"),
            "exporters[0].transport",
            "tcp",
        ),
        (
            format!("{graphite}url = \"http://x/\"\n"),
            "exporters[0].url",
            "address",
        ),
        (
            format!("{graphite}batch_max_points = 0\n"),
            "exporters[0].batch_max_points",
            "at least 1",
        ),
        (
            format!("{graphite}flush_interval_ms = 1\n"),
            "exporters[0].flush_interval_ms",
            "at least 10",
        ),
        (
            format!("{graphite}queue_max_points = 0\n"),
            "exporters[0].queue_max_points",
            "at least 1",
        ),
        (
            format!("{graphite}timeout_secs = 0\n"),
            "exporters[0].timeout_secs",
            "at least 1",
        ),
        (
            format!("{graphite}remotes = [\"pve-[\"]\n"),
            "exporters[0].remotes[0]",
            "not a glob",
        ),
        (
            format!("{RW}prefix = \"fp.x\"\n"),
            "exporters[0].prefix",
            "letters",
        ),
        (
            "[[exporters]]\nname = \"s\"\nkind = \"statsd\"\naddress = \"h:8125\"\ntransport = \"tcp\"\n".into(),
            "exporters[0].transport",
            "UDP",
        ),
        (
            "[[exporters]]\nname = \"rw\"\nkind = \"prometheus-remote-write\"\n".into(),
            "exporters[0].url",
            "write URL",
        ),
        (
            RW.replace("https://", "ftp://"),
            "exporters[0].url",
            "http://",
        ),
        (
            format!("{RW}fingerprint = \"AA:BB\"\n"),
            "exporters[0].fingerprint",
            "32 hex pairs",
        ),
        (
            format!("{RW}username = \"u\"\n"),
            "exporters[0].password_file",
            "needs",
        ),
        (
            format!("{RW}token_env = \"FLEETPOLL_TEST_UNSET_EXPORT_TOKEN\"\n"),
            "exporters[0].token_env",
            "not set",
        ),
        (
            format!("{RW}headers = {{ \"X-Scope-OrgID\" = \"bad\\nvalue\" }}\n"),
            "exporters[0].headers.X-Scope-OrgID",
            "header value",
        ),
        (
            "[[exporters]]\nname = \"i\"\nkind = \"influxdb\"\nurl = \"http://h:8086/write?db=x&precision=ns\"\n".into(),
            "exporters[0].url",
            "precision",
        ),
        (
            format!("{graphite}ca_file = \"ca.pem\"\n"),
            "exporters[0].ca_file",
            "only HTTP",
        ),
    ];
    for (text, key, needle) in cases {
        let e = error_of(&text);
        assert_eq!(e.key, key, "for config:\n{text}\ngot {e}");
        assert!(e.message.contains(needle), "{e} should say {needle:?}");
        assert!(
            !e.to_string().contains("hunter2"),
            "an error shows the URL: {e}"
        );
    }
}

#[test]
fn validate_exits_64_naming_the_exporter_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetpoll.toml");
    std::fs::write(&path, "[[exporters]]\nname = \"x\"\nkind = \"graphite\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exporters[0].address"), "{stderr}");
}

#[test]
fn exporter_secrets_never_show_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("rw.pass");
    std::fs::write(&pass, "hunter2-pass\n").unwrap();
    std::fs::set_permissions(&pass, PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "{RW}username = \"fp\"\npassword_file = \"rw.pass\"\n\
         headers = {{ \"X-Scope-OrgID\" = \"hunter2-header\" }}\n"
    );
    let path = dir.path().join("fleetpoll.toml");
    let resolved = resolve_at(&path, &text).unwrap();
    let shown = format!("{:?} {:?}", resolved.config, resolved.exporters);
    assert!(!shown.contains("hunter2"), "a secret is shown: {shown}");
    assert!(
        shown.contains("X-Scope-OrgID"),
        "header names are not secrets: {shown}"
    );
    // The password file is the config's neighbour.
    assert_eq!(
        resolved.config.exporters[0].password_file.as_deref(),
        Some(pass.as_path())
    );
    // A URL that does not parse is not repeated in the error.
    let e = resolve_at(&path, &RW.replace("https://user", "https://us er")).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn token_and_password_files_readable_by_everyone_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("influx.token");
    std::fs::write(&token, "t0ken-value\n").unwrap();
    let text = "[[exporters]]\nname = \"i\"\nkind = \"influxdb\"\n\
                url = \"http://127.0.0.1:8086/api/v2/write?org=o&bucket=b\"\n\
                token_file = \"influx.token\"\n";
    let path = dir.path().join("fleetpoll.toml");
    std::fs::set_permissions(&token, PermissionsExt::from_mode(0o644)).unwrap();
    let e = resolve_at(&path, text).unwrap_err();
    assert_eq!(e.key, "exporters[0].token_file");
    assert!(e.message.contains("readable by every user"), "{e}");
    std::fs::set_permissions(&token, PermissionsExt::from_mode(0o600)).unwrap();
    let resolved = resolve_at(&path, text).unwrap();
    assert_eq!(resolved.exporters[0].kind.as_str(), "influxdb");
    assert_eq!(resolved.exporters[0].target.transport(), "http");

    let text = text.replace(
        "token_file = \"influx.token\"",
        "username = \"u\"\npassword_file = \"influx.token\"",
    );
    std::fs::set_permissions(&token, PermissionsExt::from_mode(0o604)).unwrap();
    let e = resolve_at(&path, &text).unwrap_err();
    assert_eq!(e.key, "exporters[0].password_file");
}

#[test]
fn a_changed_secret_file_changes_the_exporters_revision_and_nothing_else_does() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("rw.token");
    std::fs::write(&token, "first\n").unwrap();
    std::fs::set_permissions(&token, PermissionsExt::from_mode(0o600)).unwrap();
    let text = "[[exporters]]\nname = \"rw\"\nkind = \"prometheus-remote-write\"\n\
                url = \"http://127.0.0.1:8428/api/v1/write\"\ntoken_file = \"rw.token\"\n\n\
                [[exporters]]\nname = \"g\"\nkind = \"graphite\"\naddress = \"127.0.0.1:2003\"\n";
    let path = dir.path().join("fleetpoll.toml");
    let a = resolve_at(&path, text).unwrap();
    let b = resolve_at(&path, text).unwrap();
    assert_eq!(a.exporters[0].revision, b.exporters[0].revision);
    std::fs::write(&token, "second\n").unwrap();
    let c = resolve_at(&path, text).unwrap();
    assert_ne!(a.exporters[0].revision, c.exporters[0].revision);
    assert_eq!(a.exporters[1].revision, c.exporters[1].revision);
}
