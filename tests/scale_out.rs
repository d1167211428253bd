//! Scale-out over real processes: three `fleetpoll run` instances with `shard_count = 3`
//! share one simulated fleet of 60 remotes and one config file; each picks its shard
//! from the command line or the environment. Every remote is polled by exactly one
//! instance: the instances' remote lists are disjoint and cover the fleet, each as
//! hashmod splits it, and the simulator's request counts show every remote asked
//! exactly once per cycle. All three remote-write into one real VictoriaMetrics: every
//! remote's series are there, each with the `instance` label of exactly the instance
//! that owns the remote.

mod daemon_support;
mod export_support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon_support::{free_port, json, spawn_daemon_with_args, unix_now, wait_until, Proc};
use fleetpoll::cluster::owner;
use fleetpoll::config::Config;
use fleetpoll::sim::{SimConfig, Simulator};

const SHARDS: u32 = 3;
const PVE: usize = 40;
const PBS: usize = 20;
/// The metric interval: cycles start on wall-clock multiples of it.
const INTERVAL_SECS: i64 = 20;
/// Where in a cycle the counts are read: long after its polls, long before the next.
const QUIET_PHASE_SECS: i64 = 12;

/// A small fleet (one node, two guests per cluster) with 60 remotes.
fn fleet() -> SimConfig {
    SimConfig {
        seed: 12,
        pve_remotes: PVE,
        pbs_remotes: PBS,
        nodes_per_cluster: 1,
        guests_per_cluster: 2,
        storages_per_node: 1,
        datastores_per_pbs: 1,
        task_interval_secs: 3600,
        ..SimConfig::default()
    }
}

/// The one file every instance reads: the fleet, three shards, a metric cycle every
/// 20 s that polls every remote, and task polling out of the way (its first tick is at
/// the next midnight), so that each metric poll is exactly one request.
fn sharded_config(sim: &Simulator, dir: &Path) -> Config {
    let mut config = fleetpoll::sim::write_config::fleet_config(sim, dir);
    config.cluster.shard_count = SHARDS;
    config.collection.interval = Duration::from_secs(INTERVAL_SECS as u64);
    config.collection.start_offset_max = Duration::from_secs(1);
    config.collection.connection_delay_max = Duration::from_millis(100);
    config.collection.skip_recent = Duration::ZERO;
    let day = Duration::from_secs(86_400);
    config.tasks.tick = day;
    config.tasks.running_interval = day;
    config.tasks.full_interval = day;
    config
}

/// One running instance.
struct Instance {
    index: u32,
    port: u16,
    _proc: Proc,
}

/// Starts the instance of shard `index`: its own port and directories from the command
/// line; the shard from `--shard-index` for 0, from `FLEETPOLL_SHARD_INDEX` for 1, and
/// for 2 from the flag over a contrary variable (the flag wins).
fn start_instance(config: &Path, dir: &Path, index: u32) -> Instance {
    let port = free_port();
    let own = dir.join(format!("fp-{index}"));
    let listen = format!("127.0.0.1:{port}");
    let name = format!("fp-{index}");
    let shard = index.to_string();
    let mut args: Vec<PathBuf> = ["--listen", &listen, "--instance", &name]
        .iter()
        .map(PathBuf::from)
        .collect();
    args.extend([
        "--state-dir".into(),
        own.join("state"),
        "--cache-dir".into(),
        own.join("cache"),
    ]);
    let mut env: Vec<(&str, &OsStr)> = Vec::new();
    match index {
        1 => env.push(("FLEETPOLL_SHARD_INDEX", OsStr::new(&shard))),
        _ => {
            args.extend(["--shard-index".into(), shard.clone().into()]);
            if index == 2 {
                env.push(("FLEETPOLL_SHARD_INDEX", OsStr::new("0")));
            }
        }
    }
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let log = dir.join(format!("fp-{index}.log"));
    let proc = spawn_daemon_with_args(config, &args, &env, Some(&log));
    Instance {
        index,
        port,
        _proc: proc,
    }
}

/// The remotes an instance polls, with their states.
fn own_remotes(port: u16) -> BTreeMap<String, String> {
    let (_, v) = json(port, "GET", "/api/v1/remotes", "");
    v["remotes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let id = r["remote"].as_str().unwrap().to_string();
            (id, r["state"].as_str().unwrap().to_string())
        })
        .collect()
}

/// Waits until `unix_now() % INTERVAL_SECS == QUIET_PHASE_SECS`, at least `after` from now.
fn wait_for_quiet_phase(after: i64) {
    let not_before = unix_now() + after;
    wait_until(
        Duration::from_secs((after + INTERVAL_SECS + 5) as u64),
        "the quiet phase of a cycle",
        || {
            let now = unix_now();
            now >= not_before && now.rem_euclid(INTERVAL_SECS) == QUIET_PHASE_SECS
        },
    );
}

#[test]
fn three_instances_poll_each_of_sixty_remotes_exactly_once_per_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(Simulator::start(fleet())).unwrap();
    let ids: BTreeSet<String> = sim.remotes().into_iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), PVE + PBS);
    let vm = export_support::Victoria::start(dir.path());
    let config = dir.path().join("fleetpoll.toml");
    let mut text = toml::to_string_pretty(&sharded_config(&sim, dir.path())).unwrap();
    text.push_str(&format!(
        "\n[[exporters]]\nname = \"vm\"\nkind = \"prometheus-remote-write\"\n\
         url = \"http://127.0.0.1:{}/api/v1/write\"\nflush_interval_ms = 200\n",
        vm.http
    ));
    std::fs::write(&config, text).unwrap();

    let instances: Vec<Instance> = (0..SHARDS)
        .map(|i| start_instance(&config, dir.path(), i))
        .collect();
    for fp in &instances {
        wait_until(
            Duration::from_secs(60),
            &format!("every remote of fp-{} is ok", fp.index),
            || {
                TcpStream::connect(("127.0.0.1", fp.port)).is_ok()
                    && own_remotes(fp.port).values().all(|s| s == "ok")
            },
        );
    }

    // Each instance says which shard it is, as its command line chose it.
    for fp in &instances {
        let (_, daemon) = json(fp.port, "GET", "/api/v1/daemon", "");
        assert_eq!(daemon["instance"], format!("fp-{}", fp.index), "{daemon}");
        assert_eq!(daemon["shard_index"], fp.index, "{daemon}");
        assert_eq!(daemon["shard_count"], SHARDS, "{daemon}");
    }

    // The instances' remotes are disjoint and cover the fleet, each as hashmod says.
    let mut polled_by: BTreeMap<String, u32> = BTreeMap::new();
    for fp in &instances {
        let own = own_remotes(fp.port);
        assert!(!own.is_empty(), "fp-{} polls nothing", fp.index);
        for id in own.keys() {
            assert_eq!(owner(id, SHARDS), fp.index, "{id} on fp-{}", fp.index);
            let before = polled_by.insert(id.clone(), fp.index);
            assert_eq!(
                before, None,
                "{id} is polled by fp-{before:?} and fp-{}",
                fp.index
            );
        }
    }
    assert_eq!(polled_by.keys().cloned().collect::<BTreeSet<_>>(), ids);

    // `?all=true` lists the whole fleet on every instance, the others as other-shard
    // with the shard that polls them; one of them asked for directly is a 404 saying so.
    for fp in &instances {
        let (status, v) = json(fp.port, "GET", "/api/v1/remotes?all=true", "");
        assert_eq!(status, 200, "{v}");
        let all = v["remotes"].as_array().unwrap();
        assert_eq!(all.len(), ids.len());
        for r in all {
            let id = r["remote"].as_str().unwrap();
            let shard = polled_by[id];
            assert_eq!(r["shard"], shard, "{r}");
            if shard == fp.index {
                assert_eq!(r["state"], "ok", "{r}");
            } else {
                assert_eq!(r["state"], "other-shard", "{r}");
                assert!(r["kind"].is_string(), "{r}");
            }
        }
        let foreign = polled_by.iter().find(|(_, s)| **s != fp.index).unwrap();
        let (status, v) = json(
            fp.port,
            "GET",
            &format!("/api/v1/remotes/{}", foreign.0),
            "",
        );
        assert_eq!(status, 404, "{v}");
        let says = format!("shard {}", foreign.1);
        assert!(v.to_string().contains(&says), "{v}");
    }

    // Across whole cycles, every remote is asked exactly once per cycle: a remote
    // polled by two instances would show two requests, one polled by none zero.
    wait_for_quiet_phase(0);
    let mut before: BTreeMap<&String, u64> = ids.iter().map(|id| (id, sim.requests(id))).collect();
    for cycle in 1..=2 {
        wait_for_quiet_phase(1);
        let now: BTreeMap<&String, u64> = ids.iter().map(|id| (id, sim.requests(id))).collect();
        let not_once: Vec<(&String, u64)> = ids
            .iter()
            .map(|id| (id, now[id] - before[id]))
            .filter(|(_, n)| *n != 1)
            .collect();
        assert!(
            not_once.is_empty(),
            "cycle {cycle}: remotes not asked exactly once: {not_once:?}"
        );
        before = now;
    }
    // One VictoriaMetrics holds every remote's series, each from exactly its owner.
    for fp in &instances {
        export_support::wait_flushed(fp.port, &["vm"]);
    }
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    wait_until(
        Duration::from_secs(30),
        "every remote's series in VictoriaMetrics",
        || {
            let (status, body) = export_support::form(
                vm.http,
                "POST",
                "/api/v1/series",
                &format!(
                    "match[]={}",
                    export_support::enc("{__name__=~\"fleetpoll_.+\"}")
                ),
            );
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            seen.clear();
            for labels in v["data"].as_array().unwrap() {
                let remote = labels["remote"].as_str().unwrap_or_default().to_string();
                let instance = labels["instance"].as_str().unwrap_or_default().to_string();
                seen.entry(remote).or_default().insert(instance);
            }
            seen.len() == ids.len()
        },
    );
    for (remote, instances) in &seen {
        let owner = format!("fp-{}", polled_by[remote]);
        assert_eq!(
            instances,
            &BTreeSet::from([owner]),
            "{remote}'s series come from its owner only"
        );
    }

    runtime.block_on(sim.shutdown());
}

#[test]
fn a_reload_that_changes_cluster_is_refused_whole_and_the_command_line_still_applies() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let small = SimConfig {
        pve_remotes: 4,
        pbs_remotes: 2,
        ..fleet()
    };
    let sim = runtime.block_on(Simulator::start(small)).unwrap();
    let config = dir.path().join("fleetpoll.toml");
    let write = |config_of: &dyn Fn(&mut Config)| {
        let mut c = sharded_config(&sim, dir.path());
        config_of(&mut c);
        std::fs::write(&config, toml::to_string_pretty(&c).unwrap()).unwrap();
    };
    write(&|_| {});
    // Shard 1 from the environment; the file says 0.
    let fp = start_instance(&config, dir.path(), 1);
    wait_until(Duration::from_secs(60), "the API answers", || {
        TcpStream::connect(("127.0.0.1", fp.port)).is_ok()
    });
    let own = own_remotes(fp.port);

    // An unchanged file reloads: the shard from the environment is applied again, so
    // it does not read as a change of `[cluster]`.
    write(&|c| c.collection.backoff_cap = Duration::from_secs(170));
    let (status, v) = json(fp.port, "POST", "/api/v1/reload", "");
    assert_eq!(status, 200, "{v}");

    // A new shard count is refused, saying that a restart applies it; the running
    // split stays.
    write(&|c| {
        c.cluster.shard_count = 4;
        c.collection.backoff_cap = Duration::from_secs(160);
    });
    let (status, v) = json(fp.port, "POST", "/api/v1/reload", "");
    assert_eq!(status, 400, "{v}");
    let said = v.to_string();
    assert!(
        said.contains("[cluster]") && said.contains("restart"),
        "{said}"
    );
    let (_, daemon) = json(fp.port, "GET", "/api/v1/daemon", "");
    assert_eq!(daemon["shard_count"], SHARDS, "{daemon}");
    assert_eq!(daemon["last_reload"]["ok"], false, "{daemon}");
    assert_eq!(
        own_remotes(fp.port).keys().collect::<Vec<_>>(),
        own.keys().collect::<Vec<_>>()
    );

    runtime.block_on(sim.shutdown());
}
