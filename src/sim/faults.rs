//! Faults the simulator injects, and the `KIND[=VALUE][@TARGET]` syntax that names them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::fleet::unit;

/// Default size of an oversized reply: past the clients' default 64 MiB body cap.
pub const DEFAULT_OVERSIZE_BYTES: u64 = 80 << 20;

/// How full `datastore-full` makes a datastore when no percentage is given.
pub const DEFAULT_DATASTORE_FULL_PCT: f64 = 90.0;

/// One kind of misbehaviour.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Every answer waits `fixed` plus a random share of `jitter`.
    Latency {
        /// Always waited.
        fixed: Duration,
        /// Up to this much more.
        jitter: Duration,
    },
    /// This share of requests (0..=1) gets an HTTP 500.
    ErrorRate(f64),
    /// The request is read, but never answered.
    Hang,
    /// The reply body trickles out in small pieces with pauses.
    Trickle,
    /// The reply body is cut off mid-JSON.
    Malformed,
    /// The reply body is this many bytes long (valid JSON padded with spaces).
    Oversize(u64),
    /// The connection is closed without an answer.
    Reset,
    /// The remote is served with another certificate than the one it advertises.
    WrongCert,
    /// The remote's clock runs this many seconds ahead.
    ClockSkew(i64),
    /// The last this many nodes of a PVE cluster are offline (in `/nodes` and the
    /// resource list; their guests and storages show status `unknown`).
    NodeOffline(usize),
    /// A PBS's first datastore is this full (percent, 0..=100) in its datastore usage.
    DatastoreFull(f64),
    /// The resource list (`/cluster/resources`, `/status/datastore-usage`) is not the
    /// promised JSON; every other path answers as usual.
    BadResources,
    /// Every listener of the remote refuses connections (and open connections are
    /// dropped) from `start` after the simulator started, for `duration`: the network
    /// between the poller and the fleet is down. The remotes keep running meanwhile.
    Outage(OutageWindow),
}

/// When an `outage` fault strikes, relative to the simulator's start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutageWindow {
    /// How long after the start it begins.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
}

impl OutageWindow {
    /// Whether the outage is on `since_start` after the simulator started.
    pub fn covers(&self, since_start: Duration) -> bool {
        since_start >= self.start && since_start < self.start + self.duration
    }
}

/// Parses `MS[+JITTER_MS]` (whole milliseconds), the syntax of the `latency` fault and of
/// `--rtt-ms`.
pub(crate) fn parse_millis_jitter(text: &str) -> Result<(Duration, Duration), &'static str> {
    let (fixed, jitter) = text.split_once('+').unwrap_or((text, "0"));
    let ms = |t: &str| {
        t.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| "expected whole milliseconds as MS or MS+JITTER_MS")
    };
    Ok((ms(fixed)?, ms(jitter)?))
}

/// Which remotes a fault hits.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultTarget {
    /// Every remote.
    All,
    /// The remote with this id.
    Remote(String),
    /// A share (0..=1) of the fleet, picked deterministically from the seed.
    Share(f64),
}

impl FaultTarget {
    /// Whether the remote `id` (at `index` in the fleet) is hit by rule number `rule`.
    pub(crate) fn selects(&self, seed: u64, rule: usize, id: &str, index: u64) -> bool {
        match self {
            FaultTarget::All => true,
            FaultTarget::Remote(name) => name == id,
            FaultTarget::Share(share) => unit(&[seed, rule as u64, index, 0xFA17]) < *share,
        }
    }
}

/// A fault and whom it hits; parsed from `KIND[=VALUE][@TARGET]`, e.g. `hang@pve-3`,
/// `latency=200+50@10%`, `error-rate=0.5`, `skew=3600@pbs-1`, `oversize=1048576`,
/// `node-offline=1@pve-1`, `datastore-full=95@pbs-1`, `bad-resources@pve-2`,
/// `outage=60+30` (every remote unreachable from 60 s after the start, for 30 s).
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    /// What goes wrong.
    pub fault: Fault,
    /// For whom.
    pub target: FaultTarget,
}

/// Why a fault specification was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault {spec:?}: {problem}")]
pub struct FaultSpecError {
    /// The rejected specification.
    pub spec: String,
    /// What is wrong with it.
    pub problem: String,
}

impl FromStr for FaultRule {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fail = |problem: &str| FaultSpecError {
            spec: spec.to_string(),
            problem: problem.to_string(),
        };
        let (head, target) = match spec.split_once('@') {
            Some((head, target)) => (head, Some(target)),
            None => (spec, None),
        };
        let target = match target {
            None => FaultTarget::All,
            Some(t) if t.ends_with('%') => {
                let pct: f64 = t[..t.len() - 1]
                    .parse()
                    .map_err(|_| fail("a share target is a percentage like 10%"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(fail("a share target lies between 0% and 100%"));
                }
                FaultTarget::Share(pct / 100.0)
            }
            Some("") => return Err(fail("the target after '@' is empty")),
            Some(t) => FaultTarget::Remote(t.to_string()),
        };
        let (kind, value) = match head.split_once('=') {
            Some((kind, value)) => (kind, Some(value)),
            None => (head, None),
        };
        let no_value = |fault: Fault| match value {
            None => Ok(fault),
            Some(_) => Err(fail("this fault takes no value")),
        };
        let fault = match kind {
            "latency" => {
                let value = value.ok_or_else(|| fail("latency needs =MS or =MS+JITTER_MS"))?;
                let (fixed, jitter) = parse_millis_jitter(value)
                    .map_err(|_| fail("latency values are whole milliseconds"))?;
                Fault::Latency { fixed, jitter }
            }
            "error-rate" => {
                let rate: f64 = value
                    .ok_or_else(|| fail("error-rate needs =SHARE (0..1)"))?
                    .parse()
                    .map_err(|_| fail("error-rate is a number between 0 and 1"))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(fail("error-rate is a number between 0 and 1"));
                }
                Fault::ErrorRate(rate)
            }
            "hang" => no_value(Fault::Hang)?,
            "trickle" => no_value(Fault::Trickle)?,
            "malformed" => no_value(Fault::Malformed)?,
            "reset" => no_value(Fault::Reset)?,
            "wrong-cert" => no_value(Fault::WrongCert)?,
            "oversize" => Fault::Oversize(match value {
                None => DEFAULT_OVERSIZE_BYTES,
                Some(v) => v
                    .parse()
                    .map_err(|_| fail("oversize takes a size in bytes"))?,
            }),
            "skew" => Fault::ClockSkew(
                value
                    .ok_or_else(|| fail("skew needs =SECONDS"))?
                    .parse()
                    .map_err(|_| fail("skew is whole seconds"))?,
            ),
            "node-offline" => Fault::NodeOffline(match value {
                None => 1,
                Some(v) => v
                    .parse()
                    .map_err(|_| fail("node-offline takes a number of nodes"))?,
            }),
            "datastore-full" => {
                let pct: f64 = match value {
                    None => DEFAULT_DATASTORE_FULL_PCT,
                    Some(v) => v
                        .parse()
                        .map_err(|_| fail("datastore-full takes a percentage (0..100)"))?,
                };
                if !(0.0..=100.0).contains(&pct) {
                    return Err(fail("datastore-full takes a percentage (0..100)"));
                }
                Fault::DatastoreFull(pct)
            }
            "bad-resources" => no_value(Fault::BadResources)?,
            "outage" => {
                let problem = "outage needs =START_S+DURATION_S (seconds after the start)";
                let (start, duration) = value
                    .and_then(|v| v.split_once('+'))
                    .ok_or_else(|| fail(problem))?;
                let secs = |t: &str| {
                    t.parse::<f64>()
                        .ok()
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| fail(problem))
                };
                let (start, duration) = (secs(start)?, secs(duration)?);
                if duration.is_zero() {
                    return Err(fail("an outage lasts longer than 0 seconds"));
                }
                Fault::Outage(OutageWindow { start, duration })
            }
            _ => {
                return Err(fail(
                    "unknown kind; expected latency, error-rate, hang, trickle, malformed, \
                     oversize, reset, wrong-cert, skew, node-offline, datastore-full, \
                     bad-resources or outage",
                ))
            }
        };
        Ok(FaultRule { fault, target })
    }
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::All => f.write_str("all"),
            FaultTarget::Remote(id) => f.write_str(id),
            FaultTarget::Share(share) => write!(f, "{}%", share * 100.0),
        }
    }
}

/// The faults in force for one remote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Fixed delay before answering.
    pub latency: Duration,
    /// Up to this much more delay.
    pub jitter: Duration,
    /// Share of requests answered with HTTP 500.
    pub error_rate: f64,
    /// Requests are never answered.
    pub hang: bool,
    /// Bodies trickle out slowly.
    pub trickle: bool,
    /// Bodies are cut off mid-JSON.
    pub malformed: bool,
    /// Bodies are padded to this size.
    pub oversize: Option<u64>,
    /// Connections are closed without an answer.
    pub reset: bool,
    /// Served with another certificate than advertised.
    pub wrong_cert: bool,
    /// The remote's clock is this far ahead.
    pub skew_secs: i64,
    /// This many of a cluster's nodes (the last ones) are offline.
    pub nodes_offline: usize,
    /// The first datastore is this full (percent).
    pub datastore_full_pct: Option<f64>,
    /// The resource list is not the promised JSON.
    pub bad_resources: bool,
    /// When every listener of the remote refuses connections (each `outage` fault adds
    /// one window).
    pub outages: Vec<OutageWindow>,
}

impl Faults {
    /// Adds one fault.
    pub(crate) fn apply(&mut self, fault: &Fault) {
        match fault {
            Fault::Latency { fixed, jitter } => {
                self.latency = *fixed;
                self.jitter = *jitter;
            }
            Fault::ErrorRate(rate) => self.error_rate = *rate,
            Fault::Hang => self.hang = true,
            Fault::Trickle => self.trickle = true,
            Fault::Malformed => self.malformed = true,
            Fault::Oversize(bytes) => self.oversize = Some(*bytes),
            Fault::Reset => self.reset = true,
            Fault::WrongCert => self.wrong_cert = true,
            Fault::ClockSkew(secs) => self.skew_secs = *secs,
            Fault::NodeOffline(n) => self.nodes_offline = *n,
            Fault::DatastoreFull(pct) => self.datastore_full_pct = Some(*pct),
            Fault::BadResources => self.bad_resources = true,
            Fault::Outage(window) => self.outages.push(*window),
        }
    }

    /// The faults of a list, applied in order.
    pub fn from_list(faults: &[Fault]) -> Faults {
        let mut out = Faults::default();
        for fault in faults {
            out.apply(fault);
        }
        out
    }

    /// Whether node `node` of `count` is offline (a remote without nodes, an exposition
    /// target, never is).
    pub(crate) fn node_offline(&self, node: usize, count: usize) -> bool {
        count > 0 && node + self.nodes_offline.min(count) >= count
    }

    /// Whether an `outage` is on `since_start` after the simulator started.
    pub(crate) fn outage_at(&self, since_start: Duration) -> bool {
        self.outages.iter().any(|w| w.covers(since_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(spec: &str) -> FaultRule {
        spec.parse().unwrap()
    }

    #[test]
    fn specs_parse_into_fault_and_target() {
        assert_eq!(
            rule("latency=200+50@10%"),
            FaultRule {
                fault: Fault::Latency {
                    fixed: Duration::from_millis(200),
                    jitter: Duration::from_millis(50)
                },
                target: FaultTarget::Share(0.1)
            }
        );
        assert_eq!(
            rule("hang@pve-3").target,
            FaultTarget::Remote("pve-3".into())
        );
        assert_eq!(rule("error-rate=0.5").fault, Fault::ErrorRate(0.5));
        assert_eq!(rule("error-rate=0.5").target, FaultTarget::All);
        assert_eq!(rule("skew=-30").fault, Fault::ClockSkew(-30));
        assert_eq!(
            rule("oversize").fault,
            Fault::Oversize(DEFAULT_OVERSIZE_BYTES)
        );
        assert_eq!(rule("wrong-cert@pbs-1").fault, Fault::WrongCert);
        assert_eq!(rule("node-offline@pve-1").fault, Fault::NodeOffline(1));
        assert_eq!(rule("node-offline=2").fault, Fault::NodeOffline(2));
        assert_eq!(
            rule("datastore-full@pbs-1").fault,
            Fault::DatastoreFull(DEFAULT_DATASTORE_FULL_PCT)
        );
        assert_eq!(rule("datastore-full=85").fault, Fault::DatastoreFull(85.0));
        assert_eq!(rule("bad-resources@pve-2").fault, Fault::BadResources);
        assert_eq!(
            rule("outage=60+2.5").fault,
            Fault::Outage(OutageWindow {
                start: Duration::from_secs(60),
                duration: Duration::from_millis(2500)
            })
        );
    }

    #[test]
    fn outages_add_up_and_cover_their_window_only() {
        let faults = Faults::from_list(&[rule("outage=10+5").fault, rule("outage=30+1").fault]);
        let at = |s: f64| faults.outage_at(Duration::from_secs_f64(s));
        assert_eq!(
            [at(9.9), at(10.0), at(14.9), at(15.0), at(30.5), at(31.0)],
            [false, true, true, false, true, false]
        );
        assert!(!Faults::default().outage_at(Duration::ZERO));
    }

    #[test]
    fn node_offline_takes_the_last_nodes() {
        let faults = Faults::from_list(&[Fault::NodeOffline(1)]);
        assert_eq!(
            (0..3)
                .map(|n| faults.node_offline(n, 3))
                .collect::<Vec<_>>(),
            [false, false, true]
        );
        assert!(!Faults::default().node_offline(2, 3));
        assert!(!faults.node_offline(0, 0), "a target without nodes");
        let all = Faults::from_list(&[Fault::NodeOffline(9)]);
        assert!((0..3).all(|n| all.node_offline(n, 3)));
    }

    #[test]
    fn bad_specs_are_rejected_with_the_reason() {
        for (spec, why) in [
            ("explode", "unknown kind"),
            ("latency", "latency needs"),
            ("latency=fast", "milliseconds"),
            ("error-rate=2", "between 0 and 1"),
            ("hang=3", "no value"),
            ("hang@", "empty"),
            ("hang@150%", "between 0% and 100%"),
            ("datastore-full=120", "percentage"),
            ("node-offline=some", "number of nodes"),
            ("bad-resources=1", "no value"),
            ("outage", "START_S+DURATION_S"),
            ("outage=10", "START_S+DURATION_S"),
            ("outage=-1+5", "START_S+DURATION_S"),
            ("outage=10+0", "longer than 0"),
        ] {
            let err = spec.parse::<FaultRule>().unwrap_err();
            assert!(err.to_string().contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn a_share_selects_about_that_share_of_the_fleet() {
        let target = FaultTarget::Share(0.25);
        let hit = (0..1000).filter(|&i| target.selects(7, 0, "x", i)).count();
        assert!((200..300).contains(&hit), "{hit}");
    }
}
