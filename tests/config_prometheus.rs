//! `type = "prometheus"` remotes in the config file: what they accept, their defaults
//! (interval 30 s, scrape timeout 10 s or the interval, series limit 10,000), and the
//! mistakes refused naming the key — an interval past the 120 s heartbeat, a timeout
//! longer than the interval, a pin on an http URL, PVE keys on an exposition target, a
//! bearer token file readable by everyone. Any remote may set its own interval.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fleetpoll::config::{self, ConfigFileError};
use fleetpoll::engine::{RemoteKind, TokioClock};

fn resolve_text(text: &str) -> Result<config::Resolved, ConfigFileError> {
    let path = Path::new("test.toml");
    let parsed = config::parse(path, text)?;
    config::resolve(path, parsed, Arc::new(TokioClock::system()))
}

fn target(extra: &str) -> String {
    format!(
        "[[remotes]]\nid = \"ne\"\ntype = \"prometheus\"\nurl = \"http://127.0.0.1:9100/metrics\"\n{extra}"
    )
}

#[test]
fn an_exposition_target_needs_only_its_url_and_gets_the_documented_defaults() {
    let resolved = resolve_text(&target("")).unwrap();
    let r = &resolved.engine.remotes[0];
    assert_eq!(r.kind, RemoteKind::Prometheus);
    assert_eq!(r.interval, Some(Duration::from_secs(30)));
    assert_eq!(r.connection_cap, 1);
    let shown = format!("{:?}", r.source);
    assert!(shown.starts_with("PromClient"), "{shown}");
    assert!(shown.contains("series_limit: 10000"), "{shown}");
    assert!(shown.contains("request_timeout: 10s"), "{shown}");
    let short = resolve_text(&target("interval_secs = 5\n")).unwrap();
    assert!(format!("{:?}", short.engine.remotes[0].source).contains("request_timeout: 5s"));
    // The metric intervals the scheduler keeps a timer for.
    let intervals: Vec<u64> = short
        .engine
        .metric_intervals()
        .iter()
        .map(|d| d.as_secs())
        .collect();
    assert_eq!(intervals, [5, 600]);
}

#[test]
fn a_pve_remote_may_set_its_own_interval_too() {
    let text = "[[remotes]]\nid = \"a\"\ntype = \"pve\"\nnodes = [{ address = \"10.1.1.1\" }]\n\
                auth_id = \"mon@pve!poll\"\ntoken = \"s3cret\"\ninterval_secs = 3600\n";
    let resolved = resolve_text(text).unwrap();
    assert_eq!(
        resolved.engine.remotes[0].interval,
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn mistakes_of_exposition_targets_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let open_token = dir.path().join("open.token");
    std::fs::write(&open_token, "abc\n").unwrap();
    std::fs::set_permissions(
        &open_token,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let cases = [
        (
            target("interval_secs = 121\n"),
            "remotes[0].interval_secs",
            "heartbeat",
        ),
        (
            target("interval_secs = 0\n"),
            "remotes[0].interval_secs",
            "at least 1",
        ),
        (
            target("interval_secs = 5\nscrape_timeout_secs = 6\n"),
            "remotes[0].scrape_timeout_secs",
            "at most the interval",
        ),
        (
            target("fingerprint = \"AA:BB\"\n"),
            "remotes[0].fingerprint",
            "https",
        ),
        (
            target("auth_id = \"a@pve!b\"\n"),
            "remotes[0].auth_id",
            "url",
        ),
        (
            target("series_limit = 0\n"),
            "remotes[0].series_limit",
            "at least 1",
        ),
        (
            target(&format!(
                "token_file = {:?}\n",
                open_token.display().to_string()
            )),
            "remotes[0].token_file",
            "chmod 600",
        ),
        (
            "[[remotes]]\nid = \"x\"\ntype = \"prometheus\"\n".to_string(),
            "remotes[0].url",
            "needs",
        ),
        (
            "[[remotes]]\nid = \"x\"\ntype = \"prometheus\"\nurl = \"ftp://h/m\"\n".to_string(),
            "remotes[0].url",
            "http://",
        ),
        (
            "[[remotes]]\nid = \"x\"\ntype = \"pve\"\nnodes = [{ address = \"h\" }]\n\
             auth_id = \"a@pve!b\"\ntoken = \"t\"\nurl = \"http://h/\"\n"
                .to_string(),
            "remotes[0].url",
            "prometheus",
        ),
        (
            "[[remotes]]\nid = \"x\"\ntype = \"snmp\"\n".to_string(),
            "remotes[0].type",
            "\"prometheus\"",
        ),
    ];
    for (text, key, needle) in cases {
        let err = resolve_text(&text).expect_err(&text);
        assert_eq!(err.key, key, "{text}: {err}");
        assert!(err.message.contains(needle), "{text}: {err}");
    }
}

#[test]
fn a_bearer_token_is_read_from_a_private_file_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("ne.token");
    std::fs::write(&token, "b34r3r-s3cr3t\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let text = format!(
        "[[remotes]]\nid = \"ne\"\ntype = \"prometheus\"\nurl = \"https://ne.example:9100/metrics\"\n\
         token_file = {:?}\n",
        token.display().to_string()
    );
    let resolved = resolve_text(&text).unwrap();
    let shown = format!("{resolved:?}");
    assert!(!shown.contains("b34r3r"), "{shown}");
}
