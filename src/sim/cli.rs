//! `fleetpoll sim`: runs a simulated fleet until interrupted and prints how to reach it.

use std::net::SocketAddr;

use super::faults::FaultRule;
use super::fleet::SimConfig;
use super::server::Simulator;

/// Exit code for bad usage (sysexits' EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

const USAGE: &str = "\
usage: fleetpoll sim [OPTIONS]

  --listen ADDR            address to listen on (default 127.0.0.1:8006; port 0 picks one)
  --seed N                 seed for names, tokens, values, tasks and fault choice (default 1)
  --pve N                  number of PVE clusters (default 2)
  --pbs N                  number of PBS servers (default 1)
  --nodes N                nodes per PVE cluster (default 3)
  --guests N               guests per PVE cluster (default 30)
  --storages N             storages per PVE node (default 2)
  --datastores N           datastores per PBS (default 2)
  --task-interval-secs N   mean seconds between task starts per node (default 600)
  --prom N                 number of Prometheus exposition targets, plain http (default 0)
  --series N               series per exposition target, node_exporter-shaped (default 200)
  --prom-open              exposition targets answer without a bearer token
  --write-config FILE      write a fleetpoll config for this fleet (mode 0600)
  --fault KIND[=VALUE][@TARGET]   inject a fault (repeatable); TARGET is a remote id or a
                           share like 10%; KIND is latency=MS[+JITTER_MS], error-rate=SHARE,
                           hang, trickle, malformed, oversize[=BYTES], reset, wrong-cert,
                           skew=SECONDS, node-offline[=NODES], datastore-full[=PERCENT],
                           bad-resources
";

/// Parsed command line of `fleetpoll sim`.
#[derive(Debug, Clone)]
pub struct SimArgs {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The fleet to simulate.
    pub config: SimConfig,
    /// Where to write a fleetpoll config for the fleet.
    pub write_config: Option<std::path::PathBuf>,
}

/// Why the command line was rejected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// Parses the options after `sim`.
pub fn parse_args(args: &[String]) -> Result<SimArgs, UsageError> {
    let mut listen: SocketAddr = "127.0.0.1:8006".parse().expect("valid default address");
    let mut config = SimConfig::default();
    let mut write_config = None;
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || {
            iter.next()
                .ok_or_else(|| UsageError(format!("{flag} needs a value")))
        };
        fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T, UsageError> {
            text.parse()
                .map_err(|_| UsageError(format!("{flag}: {text:?} is not a valid number")))
        }
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|_| {
                    UsageError(format!("--listen: {v:?} is not an IP:PORT address"))
                })?;
            }
            "--seed" => config.seed = number(flag, value()?)?,
            "--pve" => config.pve_remotes = number(flag, value()?)?,
            "--pbs" => config.pbs_remotes = number(flag, value()?)?,
            "--nodes" => config.nodes_per_cluster = number(flag, value()?)?,
            "--guests" => config.guests_per_cluster = number(flag, value()?)?,
            "--storages" => config.storages_per_node = number(flag, value()?)?,
            "--datastores" => config.datastores_per_pbs = number(flag, value()?)?,
            "--task-interval-secs" => config.task_interval_secs = number(flag, value()?)?,
            "--prom" => config.prom_targets = number(flag, value()?)?,
            "--series" => config.prom_series = number(flag, value()?)?,
            "--prom-open" => config.prom_open = true,
            "--fault" => {
                let rule: FaultRule = value()?
                    .parse()
                    .map_err(|e| UsageError(format!("--fault: {e}")))?;
                config.faults.push(rule);
            }
            "--write-config" => write_config = Some(std::path::PathBuf::from(value()?)),
            "-h" | "--help" => return Err(UsageError(String::new())),
            other => return Err(UsageError(format!("unknown option {other:?}"))),
        }
    }
    Ok(SimArgs {
        listen,
        config,
        write_config,
    })
}

/// Runs `fleetpoll sim` with the full argument list (`args[0]` the program, `args[1]`
/// `sim`); returns the process exit code.
pub fn run(args: Vec<String>) -> i32 {
    let parsed = match parse_args(args.get(2..).unwrap_or_default()) {
        Ok(parsed) => parsed,
        Err(UsageError(message)) => {
            if message.is_empty() {
                print!("{USAGE}");
                return 0;
            }
            eprintln!("fleetpoll sim: {message}\n\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("fleetpoll sim: cannot start the runtime: {err}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let sim = match Simulator::start(parsed.config, parsed.listen).await {
            Ok(sim) => sim,
            Err(err) => {
                eprintln!("fleetpoll sim: {err}");
                return 1;
            }
        };
        if let Some(path) = &parsed.write_config {
            if let Err(err) = super::write_config::write_config(&sim, path) {
                eprintln!("fleetpoll sim: cannot write {}: {err}", path.display());
                sim.shutdown().await;
                return 1;
            }
            eprintln!(
                "fleetpoll sim: wrote the fleet's config to {}",
                path.display()
            );
        }
        println!("listening on {}", sim.addr());
        println!("fingerprint {}", sim.fingerprint());
        for remote in sim.remotes() {
            if let Some(url) = remote.url() {
                println!(
                    "remote {} {} {url} token=Bearer {}",
                    remote.id, remote.kind, remote.secret
                );
                continue;
            }
            let separator = if remote.kind == fleetpoll_actors::RemoteKind::Pbs {
                ':'
            } else {
                '='
            };
            println!(
                "remote {} {} https://{}{} nodes={} token={}{separator}{}",
                remote.id,
                remote.kind,
                remote.address,
                remote.path_prefix,
                remote.nodes.join(","),
                remote.token_id,
                remote.secret,
            );
        }
        if tokio::signal::ctrl_c().await.is_err() {
            eprintln!("fleetpoll sim: cannot wait for Ctrl-C; stopping");
        }
        sim.shutdown().await;
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_set_the_fleet_and_the_listener() {
        let parsed = parse_args(&args(
            "--listen 127.0.0.1:0 --seed 9 --pve 10 --pbs 4 --nodes 5 --fault hang@pve-2 \
             --prom 7 --series 1000",
        ))
        .unwrap();
        assert_eq!(parsed.config.prom_targets, 7);
        assert_eq!(parsed.config.prom_series, 1000);
        assert_eq!(parsed.listen.port(), 0);
        assert_eq!(parsed.config.seed, 9);
        assert_eq!(parsed.config.pve_remotes, 10);
        assert_eq!(parsed.config.pbs_remotes, 4);
        assert_eq!(parsed.config.nodes_per_cluster, 5);
        assert_eq!(parsed.config.faults.len(), 1);
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_flag() {
        for (line, needle) in [
            ("--pve many", "--pve"),
            ("--listen nowhere", "--listen"),
            ("--fault explode", "--fault"),
            ("--bogus", "--bogus"),
            ("--seed", "--seed needs a value"),
        ] {
            let err = parse_args(&args(line)).unwrap_err().to_string();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
