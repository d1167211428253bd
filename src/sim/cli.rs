//! `fleetpoll sim`: runs a simulated fleet until interrupted and prints how to reach it.

use std::net::{Ipv4Addr, SocketAddr};

use super::churn::{Churn, NodeOutages};
use super::faults::FaultRule;
use super::fleet::{Listen, SimConfig, DEFAULT_ADDRESS_BASE};
use super::link::Rtt;
use super::server::Simulator;

/// Exit code for bad usage (sysexits' EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

const USAGE: &str = "\
usage: fleetpoll sim [OPTIONS]

The fleet:
  --seed N                 seed for names, tokens, certificates, values, tasks, schedules
                           and fault choice (default 1)
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

Where it listens. By default every node of every remote has its own listener on its own
loopback address with its own certificate (naming the node and its address), as in a
real fleet: nothing that a real fleet would not share is shared between remotes.
  --address-base IP        node n (from 1) of remote i (from 0, in the order PVE, PBS,
                           exposition targets) listens on IP + 256 × i + n (default
                           127.1.0.0: pve-1's nodes on 127.1.0.1, 127.1.0.2, …, pve-2's
                           on 127.1.1.1, …); every address must lie in 127.0.0.0/8
  --port N                 the port of every listener (default: the products' ports,
                           PVE 8006, PBS 8007, exposition targets 9100; 0 picks a free
                           port per listener)
  --shared-listener        instead, one listener for every remote, paths under
                           /{remote-id}: one certificate, one TLS server name, so TLS
                           sessions resume across remotes (the old layout; no per-remote
                           connection costs). Offline nodes then show in the lists and
                           the export, not as refused connections.
  --listen ADDR            the shared listener's address (default 127.0.0.1:8006; port 0
                           picks one)

The network:
  --rtt-ms MS[+JITTER_MS]  the round-trip time of every connection (default 0), paid on
                           the simulator's side: a connection's first bytes reach the
                           server one RTT after the accept (the TCP handshake) plus half
                           an RTT, and every later chunk in either direction arrives half
                           an RTT after it was sent, without waiting for the chunks before
                           it. So a TLS 1.3 handshake, full or resumed, costs 1 RTT
                           (TLS 1.2: 2, resumed 1), each request and reply 1 RTT plus the
                           latency fault: a request on a new connection 3 RTT, on a
                           kept-alive one 1 RTT (plain http: 2 and 1). JITTER draws each
                           chunk's delay anew within it. The client's connect() itself
                           still returns at once (loopback); bandwidth is not limited.

The fleet over time (all off by default: a static fleet):
  --node-outages EVERY_S+DOWN_S
                           each PVE node goes offline once in every EVERY_S seconds, at a
                           seeded moment, for DOWN_S × 0.5–1.5: its listener refuses
                           connections, /nodes and the resource list show it offline, its
                           node, guests and storages leave the metric export, its task
                           list answers 595 and it starts no tasks; it comes back rebooted
  --guest-churn-secs N     guests may start or stop every N seconds (each guest on its own
                           shifted grid, running in 80 % of the periods): their status,
                           uptime and metrics follow
  --long-tasks SHARE       this share (0..1) of tasks runs for 1 to 5 days
  --dynamic                all three at once: --node-outages 21600+600
                           --guest-churn-secs 3600 --long-tasks 0.01 (later options win)
  --clock-behind-secs N    the simulator's clock starts N seconds behind real time and
                           runs at the real rate until SIGHUP, when it catches up: every
                           remote jumps N seconds on, with the metrics and tasks of those
                           seconds (a benchmark backfills, then moves a whole collection
                           interval at once; no point served is ever in the future).
                           Outage windows count on the simulator's clock.

Faults:
  --fault KIND[=VALUE][@TARGET]   inject a fault (repeatable); TARGET is a remote id or a
                           share like 10%; KIND is latency=MS[+JITTER_MS] (the remote's
                           time to answer), error-rate=SHARE, hang, trickle, malformed,
                           oversize[=BYTES], reset, wrong-cert (the remote presents another
                           certificate than the written fingerprint), skew=SECONDS,
                           node-offline[=NODES] (the last NODES nodes), datastore-full[=PERCENT],
                           bad-resources, outage=START_S+DURATION_S (every listener refuses
                           connections from START_S after the start for DURATION_S seconds;
                           repeatable; the remotes keep running meanwhile)
  While running, SIGUSR1 switches an outage of every remote on and SIGUSR2 off, and
  SIGHUP ends a --clock-behind-secs lag.

Output:
  --write-config FILE      write a fleetpoll config for this fleet (mode 0600): every
                           node's address and pinned fingerprint, the tokens
";

/// Parsed command line of `fleetpoll sim`.
#[derive(Debug, Clone)]
pub struct SimArgs {
    /// The fleet to simulate, where it listens included.
    pub config: SimConfig,
    /// Where to write a fleetpoll config for the fleet.
    pub write_config: Option<std::path::PathBuf>,
}

/// Why the command line was rejected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

/// The options that decide where the simulator listens, as given.
#[derive(Default)]
struct Where {
    shared: bool,
    listen: Option<SocketAddr>,
    base: Option<Ipv4Addr>,
    port: Option<u16>,
}

impl Where {
    /// The layout, or why the options contradict each other or do not fit the fleet.
    fn layout(self, config: &SimConfig) -> Result<Listen, UsageError> {
        if self.shared {
            if self.base.is_some() || self.port.is_some() {
                return Err(UsageError(
                    "--address-base and --port set the per-node listeners; \
                     --shared-listener takes --listen"
                        .into(),
                ));
            }
            let default = SocketAddr::from(([127, 0, 0, 1], 8006));
            return Ok(Listen::Shared(self.listen.unwrap_or(default)));
        }
        if self.listen.is_some() {
            return Err(UsageError(
                "--listen sets the address of --shared-listener; the per-node listeners \
                 (the default) take --address-base and --port"
                    .into(),
            ));
        }
        let base = self.base.unwrap_or(DEFAULT_ADDRESS_BASE);
        // The last remote's last node must still fit.
        let remotes = config.pve_remotes + config.pbs_remotes + config.prom_targets;
        let nodes = if config.pve_remotes > 0 {
            config.nodes_per_cluster.max(1)
        } else {
            1
        };
        if remotes > 0 {
            Listen::node_ip(base, remotes - 1, nodes - 1).map_err(|e| {
                let flag = if nodes > 255 {
                    "--nodes"
                } else {
                    "--address-base"
                };
                UsageError(format!("{flag}: {e}"))
            })?;
        }
        Ok(Listen::PerNode {
            base,
            port: self.port,
        })
    }
}

/// Parses the options after `sim`.
pub fn parse_args(args: &[String]) -> Result<SimArgs, UsageError> {
    let mut config = SimConfig::default();
    let mut place = Where::default();
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
                place.listen = Some(v.parse().map_err(|_| {
                    UsageError(format!("--listen: {v:?} is not an IP:PORT address"))
                })?);
            }
            "--shared-listener" => place.shared = true,
            "--address-base" => {
                let v = value()?;
                place.base = Some(v.parse().map_err(|_| {
                    UsageError(format!("--address-base: {v:?} is not an IPv4 address"))
                })?);
            }
            "--port" => place.port = Some(number(flag, value()?)?),
            "--rtt-ms" => {
                config.rtt = value()?
                    .parse::<Rtt>()
                    .map_err(|e| UsageError(format!("--rtt-ms: {e}")))?;
            }
            "--node-outages" => {
                let v = value()?;
                let (every, down) = v
                    .split_once('+')
                    .and_then(|(e, d)| Some((e.parse().ok()?, d.parse().ok()?)))
                    .ok_or_else(|| {
                        UsageError(format!(
                            "--node-outages: {v:?} is not EVERY_S+DOWN_S (whole seconds)"
                        ))
                    })?;
                config.churn.node_outages = Some(
                    NodeOutages::new(every, down)
                        .map_err(|e| UsageError(format!("--node-outages: {e}")))?,
                );
            }
            "--guest-churn-secs" => {
                let secs: i64 = number(flag, value()?)?;
                if secs < 0 {
                    return Err(UsageError(format!("{flag}: must not be negative")));
                }
                config.churn.guest_period_secs = secs;
            }
            "--long-tasks" => {
                let share: f64 = number(flag, value()?)?;
                if !(0.0..=1.0).contains(&share) {
                    return Err(UsageError(format!("{flag}: a share between 0 and 1")));
                }
                config.churn.long_task_share = share;
            }
            "--dynamic" => config.churn = Churn::lively(),
            "--clock-behind-secs" => {
                config.clock_behind = std::time::Duration::from_secs(number(flag, value()?)?);
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
    config.listen = place.layout(&config)?;
    Ok(SimArgs {
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
        let mut signals = match Signals::listen() {
            Ok(signals) => signals,
            Err(err) => {
                eprintln!("fleetpoll sim: cannot listen for signals: {err}");
                return 1;
            }
        };
        let sim = match Simulator::start(parsed.config).await {
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
        print_banner(&sim);
        let code = signals.wait(&sim).await;
        sim.shutdown().await;
        code
    })
}

/// Prints how to reach every remote: a `remote` line with its token, then a `node`
/// line per node with its URL and the fingerprint to pin.
fn print_banner(sim: &Simulator) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", sim.describe_listeners());
    for remote in sim.remotes() {
        if let Some(url) = remote.url() {
            let _ = writeln!(
                out,
                "remote {} {} token=Bearer {}",
                remote.id, remote.kind, remote.secret
            );
            let _ = writeln!(out, "node {} {} {url}", remote.id, remote.id);
            continue;
        }
        let separator = if remote.kind == fleetpoll_actors::RemoteKind::Pbs {
            ':'
        } else {
            '='
        };
        let _ = writeln!(
            out,
            "remote {} {} token={}{separator}{}",
            remote.id, remote.kind, remote.token_id, remote.secret,
        );
        for node in &remote.nodes {
            let _ = writeln!(
                out,
                "node {} {} https://{}{}/api2/json fingerprint {}",
                remote.id, node.name, node.address, remote.path_prefix, node.fingerprint
            );
        }
    }
    let _ = out.flush();
}

/// The signals `fleetpoll sim` answers, listened for before anything announces the
/// fleet (the config file, the banner), so a script that signals as soon as it sees
/// either never meets the default action.
struct Signals {
    on: tokio::signal::unix::Signal,
    off: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            on: signal(SignalKind::user_defined1())?,
            off: signal(SignalKind::user_defined2())?,
            hangup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for Ctrl-C or SIGTERM, switching the outage on at SIGUSR1 and off at
    /// SIGUSR2 and catching the clock up at SIGHUP; returns the exit code.
    async fn wait(&mut self, sim: &Simulator) -> i32 {
        loop {
            tokio::select! {
                interrupted = tokio::signal::ctrl_c() => {
                    if interrupted.is_err() {
                        eprintln!("fleetpoll sim: cannot wait for Ctrl-C; stopping");
                        return 1;
                    }
                    return 0;
                }
                _ = self.term.recv() => return 0,
                _ = self.on.recv() => {
                    sim.set_outage(true);
                    eprintln!("fleetpoll sim: outage on (every remote refuses connections)");
                }
                _ = self.off.recv() => {
                    sim.set_outage(false);
                    eprintln!("fleetpoll sim: outage off");
                }
                _ = self.hangup.recv() => {
                    let behind = sim.clock_behind().as_secs();
                    sim.catch_up_clock();
                    eprintln!("fleetpoll sim: clock caught up ({behind} s)");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_set_the_fleet_and_the_layout() {
        let parsed = parse_args(&args(
            "--port 0 --seed 9 --pve 10 --pbs 4 --nodes 5 --fault hang@pve-2 \
             --prom 7 --series 1000 --rtt-ms 50+10 --guest-churn-secs 600 --clock-behind-secs 900",
        ))
        .unwrap();
        let c = &parsed.config;
        assert_eq!((c.prom_targets, c.prom_series), (7, 1000));
        assert_eq!(c.seed, 9);
        assert_eq!(
            (c.pve_remotes, c.pbs_remotes, c.nodes_per_cluster),
            (10, 4, 5)
        );
        assert_eq!(c.faults.len(), 1);
        assert_eq!(c.rtt.to_string(), "50+10");
        assert_eq!(c.churn.guest_period_secs, 600);
        assert_eq!(c.clock_behind, std::time::Duration::from_secs(900));
        assert_eq!(
            c.listen,
            Listen::PerNode {
                base: DEFAULT_ADDRESS_BASE,
                port: Some(0)
            }
        );
    }

    #[test]
    fn the_default_layout_is_per_node_on_the_products_ports() {
        let parsed = parse_args(&[]).unwrap();
        assert_eq!(
            parsed.config.listen,
            Listen::PerNode {
                base: DEFAULT_ADDRESS_BASE,
                port: None
            }
        );
        assert!(parsed.config.rtt.is_zero());
        assert_eq!(parsed.config.churn, Churn::default());
    }

    #[test]
    fn the_shared_listener_takes_listen() {
        let parsed = parse_args(&args("--shared-listener --listen 127.0.0.1:0")).unwrap();
        assert_eq!(
            parsed.config.listen,
            Listen::Shared("127.0.0.1:0".parse().unwrap())
        );
        let default = parse_args(&args("--shared-listener")).unwrap();
        assert_eq!(
            default.config.listen,
            Listen::Shared("127.0.0.1:8006".parse().unwrap())
        );
    }

    #[test]
    fn dynamic_turns_on_the_churn_and_later_options_win() {
        let parsed = parse_args(&args("--dynamic --long-tasks 0.5")).unwrap();
        let churn = parsed.config.churn;
        assert_eq!(churn.node_outages, Churn::lively().node_outages);
        assert_eq!(churn.long_task_share, 0.5);
        let outages = parse_args(&args("--node-outages 3600+60")).unwrap();
        assert_eq!(
            outages.config.churn.node_outages,
            Some(NodeOutages::new(3600, 60).unwrap())
        );
    }

    #[test]
    fn bad_flags_are_usage_errors_naming_the_flag() {
        for (line, needle) in [
            ("--pve many", "--pve"),
            ("--listen nowhere", "--listen"),
            (
                "--listen 127.0.0.1:0",
                "--listen sets the address of --shared-listener",
            ),
            (
                "--shared-listener --port 0",
                "--shared-listener takes --listen",
            ),
            ("--address-base 10.0.0.0", "--address-base"),
            ("--address-base nowhere", "--address-base"),
            ("--address-base 127.255.255.0 --pve 2", "--address-base"),
            ("--nodes 300", "--nodes"),
            ("--port 70000", "--port"),
            ("--rtt-ms fast", "--rtt-ms"),
            ("--rtt-ms 10+", "--rtt-ms"),
            ("--node-outages 600", "--node-outages"),
            ("--node-outages 600+600", "--node-outages"),
            ("--guest-churn-secs -5", "--guest-churn-secs"),
            ("--long-tasks 2", "--long-tasks"),
            ("--fault explode", "--fault"),
            ("--fault outage=10", "--fault"),
            ("--bogus", "--bogus"),
            ("--seed", "--seed needs a value"),
        ] {
            let err = parse_args(&args(line)).unwrap_err().to_string();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
