//! The fleet over time: PVE nodes that go offline and come back, guests that start
//! and stop, tasks that run for days. Every schedule is a seeded function of the
//! simulator's clock — the same seed shows the same history whenever it is asked —
//! and all of it is off by default (a static fleet, as the tests expect).

use super::fleet::{hash, unit, Boots};

/// The share of time slots a churning guest runs in (and of static guests that run).
pub(crate) const RUNNING_SHARE: f64 = 0.8;
/// How many earlier slots a guest's uptime looks back for its last start.
const LOOKBACK_SLOTS: i64 = 64;

/// How the fleet changes over time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Churn {
    /// PVE cluster nodes go offline and come back (`None`: never).
    pub node_outages: Option<NodeOutages>,
    /// Guests may start or stop every this many seconds, each on its own shifted grid
    /// (0: never; a guest keeps the state its seed gave it).
    pub guest_period_secs: i64,
    /// This share (0..=1) of tasks runs for 1 to 5 days instead of seconds to hours.
    pub long_task_share: f64,
}

impl Churn {
    /// `--dynamic`: a node offline for about 10 minutes every 6 hours, guests that may
    /// change state every hour, 1 % of tasks lasting days.
    pub fn lively() -> Churn {
        Churn {
            node_outages: Some(NodeOutages {
                every_secs: 6 * 3600,
                down_secs: 600,
            }),
            guest_period_secs: 3600,
            long_task_share: 0.01,
        }
    }
}

/// Each node of a PVE cluster goes offline once in every period of `every_secs`
/// (its own grid, shifted by its seed), at a seeded moment, for `down_secs` × 0.5–1.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeOutages {
    /// The period: one outage in each.
    pub every_secs: i64,
    /// The mean length of an outage; less than the period.
    pub down_secs: i64,
}

impl NodeOutages {
    /// The schedule, or why `every_secs` and `down_secs` cannot make one.
    pub fn new(every_secs: i64, down_secs: i64) -> Result<NodeOutages, String> {
        if down_secs < 1 {
            return Err("an outage lasts at least 1 second".into());
        }
        if every_secs <= down_secs * 3 / 2 {
            return Err(format!(
                "the period ({every_secs} s) must be longer than 1.5 × the outage ({down_secs} s)"
            ));
        }
        Ok(NodeOutages {
            every_secs,
            down_secs,
        })
    }

    /// The offline interval `[start, end)` of period `k` of the node keyed `key`.
    fn window(&self, key: u64, k: i64) -> (i64, i64) {
        let period = self.every_secs.max(2);
        let phase = (key % period as u64) as i64;
        let h = hash(&[key, k as u64, 0x0FF1]);
        let len =
            (self.down_secs / 2 + (h % (self.down_secs as u64 + 1)) as i64).clamp(1, period - 1);
        let offset = ((h >> 24) % (period - len) as u64) as i64;
        let start = phase + k * period + offset;
        (start, start + len)
    }

    /// The period `ts` falls in.
    fn period_of(&self, key: u64, ts: i64) -> i64 {
        let period = self.every_secs.max(2);
        (ts - (key % period as u64) as i64).div_euclid(period)
    }

    /// Whether the node keyed `key` is offline at `ts`.
    pub(crate) fn offline_at(&self, key: u64, ts: i64) -> bool {
        let (start, end) = self.window(key, self.period_of(key, ts));
        (start..end).contains(&ts)
    }

    /// When the node keyed `key` last came back at or before `ts`: it booted then.
    pub(crate) fn last_return(&self, key: u64, ts: i64) -> i64 {
        let k = self.period_of(key, ts);
        let (_, end) = self.window(key, k);
        if end <= ts {
            end
        } else {
            self.window(key, k - 1).1
        }
    }
}

/// When one node boots and when the churn takes it offline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeSchedule {
    boots: Boots,
    /// The churn's outages and the node's key in them.
    outages: Option<(NodeOutages, u64)>,
}

impl NodeSchedule {
    /// A node rebooting on `boots`, taken offline by `outages` (keyed `key`) if any.
    pub(crate) fn new(boots: Boots, outages: Option<NodeOutages>, key: u64) -> NodeSchedule {
        NodeSchedule {
            boots,
            outages: outages.map(|o| (o, key)),
        }
    }

    /// Whether the churn has it offline at `ts`.
    pub(crate) fn offline_at(&self, ts: i64) -> bool {
        self.outages.is_some_and(|(o, key)| o.offline_at(key, ts))
    }

    /// When it last booted at or before `ts`: a scheduled reboot or its return from an
    /// outage, whichever came later.
    pub(crate) fn last_boot(&self, ts: i64) -> i64 {
        let boot = self.boots.last_at(ts);
        match self.outages {
            Some((o, key)) => boot.max(o.last_return(key, ts)),
            None => boot,
        }
    }
}

/// When one guest runs: always the same (static) or slot by slot.
#[derive(Clone, Debug)]
pub(crate) struct GuestLife {
    key: u64,
    /// Seconds per slot; 0 for a static guest.
    period: i64,
    /// A static guest's state.
    running: bool,
    /// Reboots while it runs (every 5 to 60 days).
    reboots: Boots,
}

impl GuestLife {
    /// A guest keyed `key` that runs as `running` says forever (`period` 0) or changes
    /// state slot by slot, rebooting on the `reboots` schedule while it runs.
    pub(crate) fn new(key: u64, period: i64, running: bool, reboots: Boots) -> GuestLife {
        GuestLife {
            key,
            period: period.max(0),
            running,
            reboots,
        }
    }

    fn slot_of(&self, ts: i64) -> i64 {
        (ts - (self.key % self.period as u64) as i64).div_euclid(self.period)
    }

    fn slot_start(&self, slot: i64) -> i64 {
        (self.key % self.period as u64) as i64 + slot * self.period
    }

    fn runs_in(&self, slot: i64) -> bool {
        unit(&[self.key, slot as u64, 0x6A57]) < RUNNING_SHARE
    }

    /// Whether it runs at `ts`.
    pub(crate) fn running_at(&self, ts: i64) -> bool {
        if self.period == 0 {
            self.running
        } else {
            self.runs_in(self.slot_of(ts))
        }
    }

    /// When it last (re)started at or before `ts`; `None` while it is stopped.
    pub(crate) fn last_boot(&self, ts: i64) -> Option<i64> {
        if !self.running_at(ts) {
            return None;
        }
        let reboot = self.reboots.last_at(ts);
        if self.period == 0 {
            return Some(reboot);
        }
        let mut slot = self.slot_of(ts);
        let oldest = slot - LOOKBACK_SLOTS;
        while slot > oldest && self.runs_in(slot - 1) {
            slot -= 1;
        }
        let started = self.slot_start(slot);
        // A reboot during the streak restarts the uptime; `Boots::never` never does.
        Some(if reboot <= ts {
            started.max(reboot)
        } else {
            started
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const T0: i64 = 1_750_000_000;

    #[test]
    fn a_node_is_offline_once_per_period_for_about_the_outage() {
        let outages = NodeOutages::new(6 * 3600, 600).unwrap();
        for key in [1u64, 99, 12_345] {
            let offline: Vec<i64> = (T0..T0 + 2 * DAY)
                .step_by(10)
                .filter(|&ts| outages.offline_at(key, ts))
                .collect();
            // Eight periods in two days, each 300–900 s offline.
            let seconds = offline.len() as i64 * 10;
            // Up to nine periods overlap the two days (their grid is shifted).
            assert!(
                (7 * 300 - 20..=9 * 900 + 20).contains(&seconds),
                "{key}: {seconds}"
            );
            let returns = offline.windows(2).filter(|w| w[1] - w[0] > 10).count();
            assert!((6..=8).contains(&returns), "{key}: {returns} outages");
        }
    }

    #[test]
    fn a_node_came_back_at_the_end_of_its_last_outage() {
        let outages = NodeOutages::new(3600, 300).unwrap();
        let key = 7;
        let mut ts = T0;
        while !outages.offline_at(key, ts) {
            ts += 1;
        }
        while outages.offline_at(key, ts) {
            ts += 1;
        }
        assert_eq!(outages.last_return(key, ts), ts);
        assert_eq!(outages.last_return(key, ts + 100), ts);
        assert!(outages.last_return(key, ts - 1) < ts - 1);
    }

    #[test]
    fn outage_schedules_are_checked() {
        assert!(NodeOutages::new(600, 0).is_err());
        assert!(NodeOutages::new(900, 600).unwrap_err().contains("1.5"));
        assert!(NodeOutages::new(901, 600).is_ok());
    }

    #[test]
    fn a_churning_guest_runs_most_slots_and_its_uptime_starts_with_its_streak() {
        let life = GuestLife::new(42, 3600, true, Boots::never());
        let states: Vec<bool> = (0..500).map(|h| life.running_at(T0 + h * 3600)).collect();
        let running = states.iter().filter(|r| **r).count();
        assert!((350..450).contains(&running), "{running}");
        assert!(states.windows(2).any(|w| w[0] != w[1]), "it changes state");
        for h in 0..500 {
            let ts = T0 + h * 3600 + 1800;
            match life.last_boot(ts) {
                Some(boot) => {
                    assert!(boot <= ts && life.running_at(boot), "{h}");
                    assert!(
                        !life.running_at(boot - 1) || ts - boot >= LOOKBACK_SLOTS * 3600 - 3600
                    );
                }
                None => assert!(!life.running_at(ts)),
            }
        }
    }

    #[test]
    fn a_static_guest_keeps_its_state_and_reboot_schedule() {
        let reboots = Boots::new(5, 5, 60);
        let life = GuestLife::new(42, 0, true, reboots);
        assert!(life.running_at(T0) && life.running_at(T0 + 100 * DAY));
        assert_eq!(life.last_boot(T0), Some(reboots.last_at(T0)));
        let stopped = GuestLife::new(42, 0, false, reboots);
        assert_eq!(stopped.last_boot(T0), None);
    }

    #[test]
    fn guest_schedules_are_a_function_of_the_seed() {
        let a = GuestLife::new(hash(&[1, 2]), 600, true, Boots::never());
        let b = GuestLife::new(hash(&[1, 2]), 600, true, Boots::never());
        let c = GuestLife::new(hash(&[2, 2]), 600, true, Boots::never());
        let states = |l: &GuestLife| {
            (0..200)
                .map(|i| l.running_at(T0 + i * 600))
                .collect::<Vec<_>>()
        };
        assert_eq!(states(&a), states(&b));
        assert_ne!(states(&a), states(&c));
    }
}
