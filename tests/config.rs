//! The configuration file: the example in `deploy/` is valid, round-trips, and every
//! kind of mistake is rejected with the file, the key and what is expected — by the
//! library and by `fleetpoll validate` (exit 64).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fleetpoll::config::{self, Config, ConfigFileError};
use fleetpoll::engine::TokioClock;

fn clock() -> Arc<TokioClock> {
    Arc::new(TokioClock::system())
}

const REMOTE: &str = r#"
[[remotes]]
id = "a"
type = "pve"
nodes = [{ address = "10.1.1.1" }]
auth_id = "mon@pve!poll"
token = "s3cret-token-a"
"#;

fn resolve_text(text: &str) -> Result<config::Resolved, ConfigFileError> {
    let path = Path::new("test.toml");
    let parsed = config::parse(path, text)?;
    config::resolve(path, parsed, clock())
}

fn error_of(text: &str) -> ConfigFileError {
    resolve_text(text).expect_err("the config must be rejected")
}

#[test]
fn the_example_config_in_deploy_is_valid_and_round_trips() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/fleetpoll.toml");
    let parsed = config::load(&path).unwrap();
    assert_eq!(parsed.remotes.len(), 2);
    assert_eq!(parsed.collection.interval.as_secs(), 600);
    assert_eq!(parsed.api.listen, "127.0.0.1:8450");
    // Serialized and parsed again, it is the same config.
    let text = toml::to_string(&parsed).unwrap();
    let again: Config = toml::from_str(&text).unwrap();
    assert_eq!(again, parsed);

    // With its secrets where it says they are, it resolves into an engine config.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("pbs-main");
    std::fs::write(&token, "pbs-secret\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut with_secrets = parsed.clone();
    with_secrets.remotes[0].token_env = None;
    with_secrets.remotes[0].token = Some(config::Secret("pve-secret".into()));
    with_secrets.remotes[1].token_file = Some(token);
    let resolved = config::resolve(&path, with_secrets, clock()).unwrap();
    assert_eq!(resolved.engine.remotes.len(), 2);
    assert_eq!(resolved.engine.remotes[1].connection_cap, 1);
    assert_eq!(resolved.engine.remotes[0].connection_cap, 5);
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let resolved = resolve_text("").unwrap();
    let e = &resolved.engine;
    assert_eq!(e.collection.interval.as_secs(), 600);
    assert_eq!(e.collection.backoff_base.as_secs(), 10);
    assert_eq!(e.collection.backoff_cap.as_secs(), 180);
    assert_eq!(e.limits.global_connections, 20);
    assert_eq!(
        e.limits.manual_burst, 2,
        "collect now may open two beyond the cap"
    );
    assert_eq!(e.tasks.tick.as_secs(), 10);
    assert_eq!(e.tasks.running_interval.as_secs(), 30);
    assert_eq!(e.tasks.full_interval.as_secs(), 600);
    assert_eq!(e.supervision.max_restarts, 5);
    assert_eq!(e.storage.metric_commit_interval.as_secs(), 1800);
    assert_eq!(resolved.config.inventory.resources_interval.as_secs(), 900);
}

#[test]
fn mistakes_name_the_key_and_what_is_expected() {
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "[collection]\ninterval_secs = \"ten\"\n".into(),
            "collection.interval_secs",
            "expected u64",
        ),
        (
            "[collection]\nintervall_secs = 60\n".into(),
            "collection.intervall_secs",
            "unknown field",
        ),
        (
            format!("{REMOTE}colour = \"red\"\n"),
            "remotes[0].colour",
            "unknown field",
        ),
        (
            "[collection]\ninterval_secs = 60\nstart_offset_max_secs = 60\n".into(),
            "collection.start_offset_max_secs",
            "shorter than the collection interval",
        ),
        (format!("{REMOTE}{REMOTE}"), "remotes[1].id", "used twice"),
        (
            "[inventory]\nresources_interval_secs = 5\n".into(),
            "inventory.resources_interval_secs",
            "at least 10 and at most 86400 seconds, not 5",
        ),
        (
            "[inventory]\nresources_interval = 900\n".into(),
            "inventory.resources_interval",
            "unknown field",
        ),
        (
            REMOTE.replace("\"pve\"", "\"vmware\""),
            "remotes[0].type",
            "expected \"pve\", \"pbs\" or \"prometheus\"",
        ),
        (
            REMOTE.replace("nodes = [{ address = \"10.1.1.1\" }]", "nodes = []"),
            "remotes[0].nodes",
            "at least one node",
        ),
        (
            REMOTE.replace("10.1.1.1", "10.1.1.1:99999"),
            "remotes[0].nodes[0].address",
            "port",
        ),
        (
            REMOTE.replace(
                "address = \"10.1.1.1\"",
                "address = \"h\", fingerprint = \"zz\"",
            ),
            "remotes[0].nodes[0].fingerprint",
            "hex pairs",
        ),
        (
            REMOTE.replace("mon@pve!poll", "mon"),
            "remotes[0].auth_id",
            "user@realm!tokenid",
        ),
        (
            REMOTE.replace("token = \"s3cret-token-a\"", ""),
            "remotes[0].token_file",
            "needs its API token",
        ),
        (
            REMOTE.replace(
                "token = \"s3cret-token-a\"",
                "token = \"x\"\ntoken_env = \"Y\"",
            ),
            "remotes[0].token",
            "only one",
        ),
        (
            REMOTE.replace(
                "token = \"s3cret-token-a\"",
                "token_file = \"/nonexistent/t\"",
            ),
            "remotes[0].token_file",
            "cannot read /nonexistent/t",
        ),
        (
            "[api]\nlisten = \"0.0.0.0:8450\"\n".into(),
            "api.listen",
            "no API token",
        ),
        (
            "[api]\nlisten = \"everywhere\"\n".into(),
            "api.listen",
            "not an address",
        ),
        (
            "[limits]\nglobal_connections = 0\n".into(),
            "limits.global_connections",
            "at least 1",
        ),
        (
            "[limits]\nmanual_burst = 5000\n".into(),
            "limits.manual_burst",
            "at most 1000",
        ),
    ];
    for (text, key, needle) in cases {
        let e = error_of(&text);
        assert_eq!(e.key, key, "for config:\n{text}\ngot {e}");
        assert!(e.message.contains(needle), "{e} should say {needle:?}");
        // Secrets never appear in an error.
        assert!(!e.to_string().contains("s3cret-token-a"), "{e}");
    }
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let resolved = resolve_text(REMOTE).unwrap();
    let shown = format!("{:?} {:?}", resolved.config, resolved.engine);
    assert!(!shown.contains("s3cret-token-a"), "{shown}");
    assert!(shown.contains("<redacted>"));
}

#[test]
fn validate_exits_64_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[tasks]\ntick_secs = 0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("tasks.tick_secs"), "{stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, REMOTE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(["validate", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 remotes"));
}

/// The `| key | default | meaning |` rows of one `## `[section]`` of the docs.
fn documented_defaults(doc: &str) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    let mut section = None;
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("## `[") {
            section = rest
                .strip_suffix("]`")
                .filter(|s| !s.starts_with('['))
                .map(str::to_string);
            continue;
        }
        let (Some(section), Some(row)) = (&section, line.strip_prefix("| `")) else {
            continue;
        };
        let cells: Vec<&str> = row.split(" | ").collect();
        let key = cells[0].trim_end_matches('`').to_string();
        let default = cells[1].trim().trim_matches('`').to_string();
        rows.push((section.clone(), key, default));
    }
    rows
}

#[test]
fn every_default_matches_the_tables_of_docs_configuration_md() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md"),
    )
    .unwrap();
    let rows = documented_defaults(&doc);
    assert!(rows.len() > 25, "the tables were not found: {rows:?}");
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    for (section, key, documented) in &rows {
        let actual = defaults.get(section).and_then(|s| s.get(key));
        let shown = actual.map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        if documented == "—" {
            assert_eq!(
                shown, None,
                "[{section}] {key} is documented without a default"
            );
        } else {
            assert_eq!(
                shown.as_deref(),
                Some(documented.as_str()),
                "[{section}] {key}: the docs and the code disagree"
            );
        }
    }
    // And every key the code has is documented.
    for (section, table) in defaults.as_table().unwrap() {
        let Some(table) = table.as_table() else {
            continue;
        };
        for key in table.keys() {
            assert!(
                rows.iter().any(|(s, k, _)| s == section && k == key),
                "[{section}] {key} is not in docs/configuration.md"
            );
        }
    }
}

#[test]
fn hostile_configs_are_refused_naming_the_key() {
    // SAFETY of the test: only this test reads these variables.
    std::env::set_var("FLEETPOLL_TEST_EMPTY_TOKEN", "");
    let long_id = "x".repeat(10_000);
    let cases: Vec<(String, &str, &str)> = vec![
        ("[api]\ntoken = \"\"\n".into(), "api.token", "empty"),
        ("[api]\ntoken = \"  \\t \"\n".into(), "api.token", "empty"),
        (
            "[api]\ntoken_env = \"FLEETPOLL_TEST_EMPTY_TOKEN\"\n".into(),
            "api.token_env",
            "empty",
        ),
        (
            "[api]\nlisten = \"0.0.0.0:8450\"\ntoken = \"\"\n".into(),
            "api.token",
            "empty",
        ),
        (
            REMOTE.replace("s3cret-token-a", "two words"),
            "remotes[0].token",
            "visible ASCII",
        ),
        (
            "[supervision]\nshutdown_grace_secs = 9223372036854775807\n".into(),
            "supervision.shutdown_grace_secs",
            "at most 3600",
        ),
        (
            "[limits]\nrequest_timeout_secs = 9223372036854775807\n".into(),
            "limits.request_timeout_secs",
            "at most",
        ),
        (
            "[limits]\nlease_deadline_secs = 9223372036854775807\n".into(),
            "limits.lease_deadline_secs",
            "at most",
        ),
        (
            "[limits]\nconnect_timeout_secs = 0\n".into(),
            "limits.connect_timeout_secs",
            "at least 1",
        ),
        (
            "[tasks]\nfull_interval_secs = 0\n".into(),
            "tasks.full_interval_secs",
            "at least 10",
        ),
        (
            "[collection]\ninterval_secs = 0\n".into(),
            "collection.interval_secs",
            "at least 1",
        ),
        (
            REMOTE.replace("id = \"a\"", &format!("id = \"{long_id}\"")),
            "remotes[0].id",
            "1 to 64",
        ),
        (
            REMOTE.replace("id = \"a\"", "id = \"..\""),
            "remotes[0].id",
            "1 to 64",
        ),
        (
            "[storage]\nstate_dir = \"\"\n".into(),
            "storage.state_dir",
            "empty",
        ),
        (
            "[storage]\nstate_dir = \"/srv/fp\"\ncache_dir = \"/srv/fp\"\n".into(),
            "storage.cache_dir",
            "differ",
        ),
        (
            format!("{REMOTE}path_prefix = \"api\"\n"),
            "remotes[0].path_prefix",
            "start with '/'",
        ),
        (
            format!("{REMOTE}path_prefix = \"/a/../b\"\n"),
            "remotes[0].path_prefix",
            "'..'",
        ),
        ("[api]\nmax_rows = 0\n".into(), "api.max_rows", "at least 1"),
        (
            "[api]\nidle_timeout_secs = 86400\n".into(),
            "api.idle_timeout_secs",
            "at most 3600",
        ),
        (
            "[log]\nfilter = \"info,fleetpoll=[[[\"\n".into(),
            "log.filter",
            "not a log filter",
        ),
        (
            "[api]\nlisten = \"127.0.0.1:8450\"\n\n[bogus]\nx = 1\n".into(),
            "bogus",
            "unknown field",
        ),
    ];
    for (text, key, needle) in cases {
        let e = error_of(&text);
        assert_eq!(e.key, key, "for config:\n{text}\ngot {e}");
        assert!(e.message.contains(needle), "{e} should say {needle:?}");
        assert!(e.message.len() < 400, "the message repeats the input: {e}");
    }
}

#[test]
fn token_files_readable_by_everyone_are_refused_and_paths_resolve_beside_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("remote.token");
    std::fs::write(&token, "s3cret-token-a\n").unwrap();
    let text = REMOTE.replace(
        "token = \"s3cret-token-a\"",
        "token_file = \"remote.token\"",
    ) + "[storage]\nstate_dir = \"state\"\ncache_dir = \"cache\"\n";
    let path = dir.path().join("fleetpoll.toml");
    let parse = || config::parse(&path, &text).unwrap();

    std::fs::set_permissions(&token, PermissionsExt::from_mode(0o644)).unwrap();
    let e = config::resolve(&path, parse(), clock()).expect_err("a 0644 token file");
    assert_eq!(e.key, "remotes[0].token_file");
    assert!(e.message.contains("readable by every user"), "{e}");

    // Group-readable, as systemd set-ups use, is fine; relative paths are the file's.
    std::fs::set_permissions(&token, PermissionsExt::from_mode(0o640)).unwrap();
    let resolved = config::resolve(&path, parse(), clock()).unwrap();
    assert_eq!(resolved.config.storage.state_dir, dir.path().join("state"));
    assert_eq!(resolved.engine.storage.cache_dir, dir.path().join("cache"));
    assert_eq!(
        resolved.config.remotes[0].token_file.as_deref(),
        Some(token.as_path())
    );
}

#[test]
fn the_file_and_the_engine_config_refuse_a_bad_or_repeated_remote_id_alike() {
    let two = format!("{REMOTE}{}", REMOTE.replace("id = \"a\"", "id = \"b\""));
    for (bad_id, file_text) in [
        ("a", format!("{REMOTE}{REMOTE}")),
        (
            "a b",
            format!("{REMOTE}{}", REMOTE.replace("id = \"a\"", "id = \"a b\"")),
        ),
        (
            "",
            format!("{REMOTE}{}", REMOTE.replace("id = \"a\"", "id = \"\"")),
        ),
    ] {
        let from_file = resolve_text(&file_text).unwrap_err();
        let mut resolved = resolve_text(&two).unwrap();
        resolved.engine.remotes[1].id = fleetpoll_actors::RemoteId::new(bad_id);
        let from_engine = resolved.engine.validate().unwrap_err();
        assert_eq!(from_file.key, "remotes[1].id", "{bad_id:?}");
        assert_eq!(
            (from_engine.key, from_engine.message),
            (from_file.key, from_file.message),
            "{bad_id:?}"
        );
    }
}

/// Three remotes, so that a split shows.
fn three_remotes() -> String {
    ["a", "b", "c"]
        .iter()
        .map(|id| REMOTE.replace("id = \"a\"", &format!("id = \"{id}\"")))
        .collect()
}

#[test]
fn cluster_defaults_to_one_shard_named_after_the_host() {
    let resolved = resolve_text(&three_remotes()).unwrap();
    assert_eq!(resolved.shard.shard_index, 0);
    assert_eq!(resolved.shard.shard_count, 1);
    assert!(!resolved.shard.instance.is_empty());
    assert_eq!(resolved.engine.remotes.len(), 3);
    assert!(resolved.other_shards.is_empty());
}

#[test]
fn each_shard_gets_the_remotes_hashmod_gives_it_and_lists_the_others() {
    let mut polled = Vec::new();
    for index in 0..3 {
        let text = format!(
            "[cluster]\ninstance = \"fp-{index}\"\nshard_index = {index}\nshard_count = 3\n{}",
            three_remotes()
        );
        let resolved = resolve_text(&text).unwrap();
        assert_eq!(resolved.shard.instance, format!("fp-{index}"));
        for r in &resolved.engine.remotes {
            assert_eq!(fleetpoll::cluster::owner(r.id.as_str(), 3), index);
            polled.push(r.id.as_str().to_string());
        }
        for other in &resolved.other_shards {
            assert_ne!(other.shard, index);
            assert_eq!(other.shard, fleetpoll::cluster::owner(&other.remote, 3));
        }
        assert_eq!(
            resolved.engine.remotes.len() + resolved.other_shards.len(),
            3
        );
    }
    polled.sort();
    assert_eq!(polled, ["a", "b", "c"], "every remote polled exactly once");
}

#[test]
fn bad_cluster_values_are_refused_naming_the_key() {
    let cases = [
        (
            "[cluster]\nshard_count = 0\n",
            "cluster.shard_count",
            "at least 1",
        ),
        (
            "[cluster]\nshard_count = 5000\n",
            "cluster.shard_count",
            "at most 4096",
        ),
        (
            "[cluster]\nshard_index = 3\nshard_count = 3\n",
            "cluster.shard_index",
            "below",
        ),
        (
            "[cluster]\nshard_index = 1\n",
            "cluster.shard_index",
            "below",
        ),
        (
            "[cluster]\ninstance = \"\"\n",
            "cluster.instance",
            "visible ASCII",
        ),
        (
            "[cluster]\ninstance = \"two words\"\n",
            "cluster.instance",
            "visible ASCII",
        ),
        ("[cluster]\nshard_index = -1\n", "cluster.shard_index", ""),
        ("[cluster]\nshards = 3\n", "cluster.shards", "unknown field"),
    ];
    for (text, key, says) in cases {
        let e = error_of(text);
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(e.message.contains(says), "{text}: {e}");
    }
}

/// `fleetpoll validate` on `file` with extra arguments and environment.
fn validate(file: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetpoll"));
    cmd.args(["validate", "--config"]).arg(file).args(args);
    for var in [
        "FLEETPOLL_INSTANCE",
        "FLEETPOLL_SHARD_INDEX",
        "FLEETPOLL_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_shard_index_comes_from_the_flag_then_the_environment_then_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sharded.toml");
    let text = format!(
        "[cluster]\nshard_index = 2\nshard_count = 3\n{}",
        three_remotes()
    );
    std::fs::write(&file, text).unwrap();
    let shard_of = |out: std::process::Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    assert!(shard_of(validate(&file, &[], &[])).contains("of shard 2/3"));
    let env = [("FLEETPOLL_SHARD_INDEX", "1")];
    assert!(shard_of(validate(&file, &[], &env)).contains("of shard 1/3"));
    let flag = ["--shard-index", "0"];
    assert!(shard_of(validate(&file, &flag, &env)).contains("of shard 0/3"));

    // A bad index from any of them is a config error naming the key: exit 64.
    let out = validate(&file, &["--shard-index", "3"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cluster.shard_index"), "{stderr}");
    let out = validate(&file, &[], &[("FLEETPOLL_SHARD_INDEX", "x")]);
    assert_eq!(out.status.code(), Some(64), "a non-number is a usage error");
}

#[test]
fn the_listen_and_directory_flags_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.toml");
    std::fs::write(&file, REMOTE).unwrap();
    let overrides = config::Overrides {
        instance: Some("fp-b".into()),
        shard_index: None,
        listen: Some("127.0.0.1:9451".into()),
        state_dir: Some(dir.path().join("s1")),
        cache_dir: Some(dir.path().join("c1")),
    };
    let resolved = config::load_and_resolve_with(&file, &overrides, clock()).unwrap();
    assert_eq!(resolved.api_listen.port(), 9451);
    assert_eq!(resolved.shard.instance, "fp-b");
    assert_eq!(resolved.config.storage.state_dir, dir.path().join("s1"));
    assert_eq!(resolved.config.storage.cache_dir, dir.path().join("c1"));
    let out = validate(&file, &[], &[("FLEETPOLL_LISTEN", "127.0.0.1:9452")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("API on 127.0.0.1:9452"));
}

#[test]
fn the_statefulset_example_holds_a_valid_config_with_as_many_shards_as_replicas() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/statefulset.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    // The ConfigMap's `fleetpoll.toml: |` block, indented by four spaces.
    let toml_text: String = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("fleetpoll.toml: |"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let parsed = config::parse(&path, &toml_text).unwrap();
    let replicas: u32 = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("replicas: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(parsed.cluster.shard_count, replicas);
    assert!(yaml.contains("name: FLEETPOLL_SHARD_INDEX"));
    assert!(yaml.contains("apps.kubernetes.io/pod-index"));
}

#[test]
fn the_systemd_template_unit_gives_each_instance_its_shard_and_directories() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/fleetpoll@.service");
    let unit = std::fs::read_to_string(path).unwrap();
    for line in [
        "StateDirectory=fleetpoll/shard-%i",
        "CacheDirectory=fleetpoll/shard-%i",
        "EnvironmentFile=/etc/fleetpoll/shard-%i.env",
    ] {
        assert!(unit.contains(line), "the unit has no {line}");
    }
    // Its validate command, as systemd would run it for `fleetpoll@2`, is accepted.
    let joined = unit.replace("\\\n", " ");
    let command = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPre=/usr/bin/fleetpoll "))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleetpoll.toml");
    std::fs::write(
        &file,
        format!("[cluster]\nshard_count = 3\n{}", three_remotes()),
    )
    .unwrap();
    let state = dir.path().join("state").display().to_string();
    let cache = dir.path().join("cache").display().to_string();
    let args: Vec<String> = command
        .split_whitespace()
        .map(|a| {
            a.replace("/etc/fleetpoll/fleetpoll.toml", &file.display().to_string())
                .replace("%i", "2")
                .replace("%H", "host")
                .replace("${STATE_DIRECTORY}", &state)
                .replace("${CACHE_DIRECTORY}", &cache)
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_fleetpoll"))
        .args(&args)
        .env("FLEETPOLL_LISTEN", "127.0.0.1:8452")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("of shard 2/3"), "{stdout}");
    assert!(stdout.contains("API on 127.0.0.1:8452"), "{stdout}");
}
