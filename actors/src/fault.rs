//! Panic injection for the panic-storm tests, compiled only with the `fault-injection`
//! feature: pollers, hooks (the rules) and exporters panic at random at the points
//! where they do their work, so that the supervision tree's restarts, restart
//! intensity and escalation can be watched under load. Without the feature none of
//! this exists.
//!
//! The rates come from a spec such as `poller:0.5@pbs-*,hook:0.05,exporter:0.05`
//! (the daemon reads it from `FLEETPOLL_PANIC_RATE` at start, see
//! [`EngineBuilder::panic_rates`](crate::EngineBuilder::panic_rates)): `SITE:RATE`
//! entries, comma-separated, where `SITE` is `poller` (per metric collection a poller
//! starts), `hook` (per event a hook other than an exporter handles) or `exporter` (per
//! event a hook named `export:…` handles), `RATE` is a probability from 0 to 1, and an
//! optional `@REMOTE` (an id, or a prefix ending in `*`) limits a poller entry to those
//! remotes; the last matching entry wins.

use std::fmt;

/// Where a panic may be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicSite {
    /// A poller, when it starts a metric collection.
    Poller,
    /// A hook other than an exporter, when it handles an event.
    Hook,
    /// An exporter hook (`export:…`), when it handles an event.
    Exporter,
}

impl PanicSite {
    fn name(self) -> &'static str {
        match self {
            PanicSite::Poller => "poller",
            PanicSite::Hook => "hook",
            PanicSite::Exporter => "exporter",
        }
    }

    /// The site of the hook registered as `name`.
    pub(crate) fn of_hook(name: &str) -> PanicSite {
        if name.starts_with("export:") {
            PanicSite::Exporter
        } else {
            PanicSite::Hook
        }
    }
}

/// One `SITE:RATE[@REMOTE]` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    site: PanicSite,
    rate: f64,
    /// An id, or a prefix when it ends in `*`.
    remote: Option<String>,
}

impl Entry {
    fn matches(&self, site: PanicSite, who: &str) -> bool {
        self.site == site
            && match &self.remote {
                None => true,
                Some(r) => match r.strip_suffix('*') {
                    Some(prefix) => who.starts_with(prefix),
                    None => who == r,
                },
            }
    }
}

/// The panic rates of one engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PanicRates {
    entries: Vec<Entry>,
}

/// Why a panic-rate spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid panic rate {entry:?}: {problem}")]
pub struct PanicRateError {
    /// The refused entry.
    pub entry: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl PanicRates {
    /// Parses a spec such as `poller:0.5@pbs-*,hook:0.05,exporter:0.05`.
    pub fn parse(spec: &str) -> Result<PanicRates, PanicRateError> {
        let mut entries = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let fail = |problem| PanicRateError {
                entry: part.to_string(),
                problem,
            };
            let (head, remote) = match part.split_once('@') {
                Some((head, remote)) if !remote.is_empty() => (head, Some(remote.to_string())),
                Some(_) => return Err(fail("the remote after '@' is empty")),
                None => (part, None),
            };
            let (site, rate) = head
                .split_once(':')
                .ok_or_else(|| fail("expected SITE:RATE"))?;
            let site = match site {
                "poller" => PanicSite::Poller,
                "hook" => PanicSite::Hook,
                "exporter" => PanicSite::Exporter,
                _ => return Err(fail("the site is poller, hook or exporter")),
            };
            if remote.is_some() && site != PanicSite::Poller {
                return Err(fail("only a poller entry takes @REMOTE"));
            }
            let rate: f64 = rate
                .parse()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| fail("the rate is a number from 0 to 1"))?;
            entries.push(Entry { site, rate, remote });
        }
        Ok(PanicRates { entries })
    }

    /// The rate at `site` for `who` (a remote id or a hook name).
    pub fn rate(&self, site: PanicSite, who: &str) -> f64 {
        self.entries
            .iter()
            .rev()
            .find(|e| e.matches(site, who))
            .map_or(0.0, |e| e.rate)
    }

    /// Panics with the rate of `site` for `who`. The message starts with
    /// `fault injection:` so that a test can count the injected panics in the log.
    pub(crate) fn maybe_panic(&self, site: PanicSite, who: &str) {
        let rate = self.rate(site, who);
        if rate > 0.0 && rand::random::<f64>() < rate {
            panic!("fault injection: {} {who} panics", site.name());
        }
    }
}

impl fmt::Display for PanicSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_matching_entry_gives_the_rate() {
        let r = PanicRates::parse("poller:0.1, poller:1@pbs-*, poller:0@pbs-2,hook:0.05").unwrap();
        assert_eq!(r.rate(PanicSite::Poller, "pve-1"), 0.1);
        assert_eq!(r.rate(PanicSite::Poller, "pbs-1"), 1.0);
        assert_eq!(r.rate(PanicSite::Poller, "pbs-2"), 0.0);
        assert_eq!(r.rate(PanicSite::Hook, "rules"), 0.05);
        assert_eq!(r.rate(PanicSite::Exporter, "export:a"), 0.0);
        assert_eq!(PanicSite::of_hook("export:a"), PanicSite::Exporter);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry() {
        for (spec, bad) in [
            ("poller", "poller"),
            ("poller:2", "poller:2"),
            ("storage:0.1", "storage:0.1"),
            ("hook:0.1@pve-1", "hook:0.1@pve-1"),
            ("poller:0.1@", "poller:0.1@"),
        ] {
            assert_eq!(PanicRates::parse(spec).unwrap_err().entry, bad, "{spec}");
        }
    }

    #[test]
    #[should_panic(expected = "fault injection: poller pve-1 panics")]
    fn a_rate_of_one_always_panics() {
        PanicRates::parse("poller:1")
            .unwrap()
            .maybe_panic(PanicSite::Poller, "pve-1");
    }
}
