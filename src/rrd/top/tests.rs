//! The aggregate's rankings against a brute-force ranking of every sample ever added,
//! over random fleets and timelines (entities falling silent and coming back, the
//! window moving across bucket boundaries, samples out of order and from the future,
//! requests for some of the remotes), plus the cases spelled out one by one.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};

use super::*;

use crate::test_batches::gauges as batch;

fn names(l: &[TopEntry]) -> Vec<String> {
    l.iter().map(|e| e.entity.clone()).collect()
}

#[test]
fn rankings_average_the_last_hour_of_stored_samples() {
    let top = TopAggregate::default();
    let r = RemoteId::new("pve-1");
    let now = 100_000;
    top.add(
        &r,
        &batch(&[
            ("qemu/100", "cpu_current", now - 60, 0.2),
            ("qemu/100", "cpu_current", now - 30, 0.4),
            ("qemu/101", "cpu_current", now - 30, 0.9),
            ("qemu/101", "mem_used", now - 30, 1.0),
            ("qemu/101", "mem_total", now - 30, 4.0),
            ("node/n1", "cpu_current", now - 30, 0.5),
            ("node/n1", "mem_used", now - 30, 3.0),
            ("node/n1", "mem_total", now - 30, 4.0),
            // Older than the hour: not counted.
            ("qemu/102", "cpu_current", now - 2 * TOP_WINDOW_SECS, 1.0),
            ("storage/n1/local", "disk_used", now - 30, 1.0),
        ]),
    );
    let lists = top.top(std::slice::from_ref(&r), now, 10);
    assert_eq!(names(&lists.guests_by_cpu), ["qemu/101", "qemu/100"]);
    assert!((lists.guests_by_cpu[1].value - 0.3).abs() < 1e-6);
    assert_eq!(names(&lists.guests_by_memory), ["qemu/101"]);
    assert!((lists.guests_by_memory[0].value - 0.25).abs() < 1e-6);
    assert_eq!(names(&lists.nodes_by_cpu), ["node/n1"]);
    assert!((lists.nodes_by_memory[0].value - 0.75).abs() < 1e-6);
    // A remote no longer polled is not ranked.
    assert_eq!(top.top(&[], now, 10), TopLists::default());
}

#[test]
fn an_entity_is_ranked_until_an_hour_after_its_last_sample() {
    let top = TopAggregate::default();
    let r = RemoteId::new("pve-1");
    let t = 1_000_000;
    top.add(&r, &batch(&[("qemu/100", "cpu_current", t, 0.5)]));
    let ranked = |now| names(&top.top(std::slice::from_ref(&r), now, 10).guests_by_cpu);
    assert_eq!(ranked(t + TOP_WINDOW_SECS - 1), ["qemu/100"]);
    assert!(ranked(t + TOP_WINDOW_SECS).is_empty());
    // Gone from memory once no later request can rank it.
    assert!(ranked(t + TOP_WINDOW_SECS + BUCKET_SECS).is_empty());
    assert!(top.remotes.lock().of.is_empty());
}

#[test]
fn the_window_moving_on_drops_the_oldest_bucket_without_a_new_batch() {
    let top = TopAggregate::default();
    let r = RemoteId::new("pve-1");
    // 1.0 in the bucket at 0 s, 0.5 in the one at 1800 s.
    let t0 = 3_000_000;
    top.add(
        &r,
        &batch(&[
            ("qemu/100", "cpu_current", t0, 1.0),
            ("qemu/100", "cpu_current", t0 + 1800, 0.5),
        ]),
    );
    let value = |now| top.top(std::slice::from_ref(&r), now, 1).guests_by_cpu[0].value;
    assert_eq!(value(t0 + 1800), 0.75);
    // The first bucket ends at t0 + 300: a window starting at or after that leaves it.
    assert_eq!(value(t0 + TOP_WINDOW_SECS + 299), 0.75);
    assert_eq!(value(t0 + TOP_WINDOW_SECS + 300), 0.5);
    // Two windows on, with no batch in between (the remote's rankings are redone).
    assert_eq!(value(t0 + TOP_WINDOW_SECS + 1000), 0.5);
}

#[test]
fn ties_rank_by_remote_then_entity_and_n_cuts_the_lists() {
    let top = TopAggregate::default();
    let (a, b) = (RemoteId::new("a"), RemoteId::new("b"));
    let t = 1_000_000;
    for r in [&b, &a] {
        top.add(
            r,
            &batch(&[
                ("qemu/2", "cpu_current", t, 0.5),
                ("qemu/1", "cpu_current", t, 0.5),
                ("qemu/3", "cpu_current", t, 0.25),
            ]),
        );
    }
    let lists = top.top(&[a.clone(), b.clone()], t, 5);
    let got: Vec<(String, String)> = lists
        .guests_by_cpu
        .iter()
        .map(|e| (e.remote.to_string(), e.entity.clone()))
        .collect();
    let want = [
        ("a", "qemu/1"),
        ("a", "qemu/2"),
        ("b", "qemu/1"),
        ("b", "qemu/2"),
        ("a", "qemu/3"),
    ];
    assert_eq!(got, want.map(|(r, e)| (r.to_string(), e.to_string())));
    assert_eq!(
        top.top(std::slice::from_ref(&b), t, 1).guests_by_cpu[0].remote,
        b
    );
}

/// One sample as the brute force keeps it.
#[derive(Debug, Clone)]
struct Sample {
    remote: usize,
    entity: &'static str,
    metric: usize,
    ts: i64,
    value: f64,
}

const ENTITIES: [&str; 7] = [
    "qemu/100",
    "qemu/101",
    "lxc/200",
    "node/a",
    "node/b",
    "host",
    "storage/a/local",
];

/// The ranking the aggregate promises, from every sample ever added: an entity counts
/// while its newest sample is after `now - 1 h`; each of its twelve ring places holds
/// the newest bucket any sample of it fell in (older samples of that place are lost),
/// and the buckets from the window's first on are averaged.
fn brute_force(
    samples: &[Sample],
    ids: &[RemoteId],
    wanted: &[usize],
    now: i64,
    n: usize,
) -> TopLists {
    let since = now - TOP_WINDOW_SECS;
    let first = first_bucket(now);
    let mut by_entity: BTreeMap<(usize, &str), Vec<&Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| wanted.contains(&s.remote)) {
        by_entity.entry((s.remote, s.entity)).or_default().push(s);
    }
    let mut lists: [Vec<(f64, usize, &str)>; 4] = Default::default();
    for ((remote, entity), samples) in by_entity {
        let Some(role) = role(entity) else { continue };
        if samples.iter().map(|s| s.ts).max().unwrap() <= since {
            continue;
        }
        let bucket = |s: &Sample| s.ts.div_euclid(BUCKET_SECS);
        let mut held = [i64::MIN; BUCKETS];
        for s in &samples {
            let place = bucket(s).rem_euclid(BUCKETS as i64) as usize;
            held[place] = held[place].max(bucket(s));
        }
        let mut sum = [[0f32; 3]; BUCKETS];
        let mut count = [[0u32; 3]; BUCKETS];
        for s in &samples {
            let place = bucket(s).rem_euclid(BUCKETS as i64) as usize;
            if bucket(s) == held[place] && held[place] >= first {
                sum[place][s.metric] += s.value as f32;
                count[place][s.metric] += 1;
            }
        }
        let mean = |m: usize| {
            let c: u32 = count.iter().map(|c| c[m]).sum();
            let s: f64 = sum.iter().map(|s| f64::from(s[m])).sum();
            (c > 0).then(|| s / f64::from(c))
        };
        let (by_cpu, by_mem) = match role {
            Role::Guest => (0, 1),
            Role::Node => (2, 3),
        };
        if let Some(cpu) = mean(0) {
            lists[by_cpu].push((cpu, remote, entity));
        }
        if let (Some(used), Some(total)) = (mean(1), mean(2)) {
            if total > 0.0 {
                lists[by_mem].push((used / total, remote, entity));
            }
        }
    }
    let [a, b, c, d] = lists.map(|mut l| {
        l.sort_by(|x, y| {
            y.0.total_cmp(&x.0)
                .then_with(|| ids[x.1].cmp(&ids[y.1]))
                .then_with(|| x.2.cmp(y.2))
        });
        l.into_iter()
            .take(n)
            .map(|(value, r, e)| TopEntry {
                remote: ids[r].clone(),
                entity: e.to_string(),
                value,
            })
            .collect()
    });
    TopLists {
        guests_by_cpu: a,
        guests_by_memory: b,
        nodes_by_cpu: c,
        nodes_by_memory: d,
    }
}

#[test]
fn rankings_equal_a_brute_force_ranking_over_random_timelines() {
    for seed in 0..24 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let remotes = rng.random_range(1..=4);
        let ids: Vec<RemoteId> = (0..remotes)
            .map(|r| RemoteId::new(format!("r{r}")))
            .collect();
        let top = TopAggregate::default();
        let mut samples: Vec<Sample> = Vec::new();
        // Which entities are being sampled; they fall silent and come back.
        let mut on = vec![[true; ENTITIES.len()]; remotes];
        // Times on a one-minute grid (as PVE's samples are), so that samples and
        // requests land exactly on bucket ends and on the hour's edge.
        let mut clock: i64 = 60 * (33_334 + rng.random_range(0..5));
        let mut queries = 0;
        for step in 0..500 {
            clock += 60 * rng.random_range(0..4);
            for flags in &mut on {
                for f in flags.iter_mut() {
                    if rng.random_bool(0.03) {
                        *f = !*f;
                    }
                }
            }
            if rng.random_bool(0.3) {
                let wanted: Vec<usize> = (0..remotes).filter(|_| rng.random_bool(0.8)).collect();
                let asked: Vec<RemoteId> = wanted.iter().map(|&r| ids[r].clone()).collect();
                let n = rng.random_range(1..=8);
                let got = top.top(&asked, clock, n);
                let want = brute_force(&samples, &ids, &wanted, clock, n);
                assert_eq!(got, want, "seed {seed}, step {step}, now {clock}, n {n}");
                queries += 1;
                continue;
            }
            let remote = rng.random_range(0..remotes);
            let mut points = Vec::new();
            for (e, entity) in ENTITIES.iter().enumerate() {
                if !on[remote][e] {
                    continue;
                }
                for _ in 0..rng.random_range(1..=2) {
                    let ts = 60
                        * match rng.random_range(0..20) {
                            0 => clock / 60 - rng.random_range(15..100), // late
                            1 => clock / 60 + rng.random_range(1..7),    // clock skew
                            _ => clock / 60 - rng.random_range(0..2),
                        };
                    // Exact in f32, so any order of summing gives the same mean.
                    let values = [
                        f64::from(rng.random_range(0..=16u8)) / 16.0,
                        f64::from(rng.random_range(0..=64u8)),
                        f64::from([0u8, 32, 64][rng.random_range(0..3)]),
                    ];
                    for (metric, value) in values.into_iter().enumerate() {
                        if rng.random_bool(0.85) {
                            points.push((*entity, METRICS[metric], ts, value));
                            samples.push(Sample {
                                remote,
                                entity,
                                metric,
                                ts,
                                value,
                            });
                        }
                    }
                }
            }
            top.add(&ids[remote], &batch(&points));
        }
        assert!(queries > 100, "seed {seed} ran only {queries} queries");
    }
}

#[test]
fn a_remote_no_longer_asked_for_is_freed_an_hour_after_its_last_sample() {
    let top = TopAggregate::default();
    let (a, b) = (RemoteId::new("a"), RemoteId::new("b"));
    let t = 1_000_000;
    top.add(&a, &batch(&[("qemu/1", "cpu_current", t, 0.5)]));
    top.add(&b, &batch(&[("qemu/1", "cpu_current", t, 0.5)]));
    let later = t + TOP_WINDOW_SECS + BUCKET_SECS;
    top.add(&a, &batch(&[("qemu/1", "cpu_current", later, 0.5)]));
    // Only `a` is asked for; `b` is freed all the same.
    let lists = top.top(std::slice::from_ref(&a), later, 10);
    assert_eq!(names(&lists.guests_by_cpu), ["qemu/1"]);
    let held: Vec<RemoteId> = top.remotes.lock().of.keys().cloned().collect();
    assert_eq!(held, [a]);
}
