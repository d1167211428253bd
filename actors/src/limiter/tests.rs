//! The rate limiter's grant rules: caps hold, grants are FIFO per lane with manual
//! requests first, neither large nor small requests starve, and leases come back when
//! their holder dies or overruns its deadline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{Acquire, Burst, Lane, Lease, LimiterArgs, LimiterMsg, LimiterRef, RateLimiter};
use crate::config::LimitSettings;
use crate::model::RemoteId;
use crate::testing::wait_until;

/// An actor that only exists to hold leases.
struct Holder;

impl Actor for Holder {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

type Grants = Arc<Mutex<Vec<(u64, Lease)>>>;

/// A limiter without a manual burst: manual requests share the global cap.
async fn limiter(global: u32, head_wait: Duration) -> ActorRef<LimiterMsg> {
    limiter_with(global, head_wait, 0, 0).await
}

async fn limiter_with_reserve(
    global: u32,
    head_wait: Duration,
    reserve: u32,
) -> ActorRef<LimiterMsg> {
    limiter_with(global, head_wait, reserve, 0).await
}

async fn limiter_with(
    global: u32,
    head_wait: Duration,
    reserve: u32,
    burst: u32,
) -> ActorRef<LimiterMsg> {
    limiter_ref(global, head_wait, reserve, burst).await.actor
}

/// The limiter and its burst, as a poller holds them.
async fn limiter_ref(global: u32, head_wait: Duration, reserve: u32, burst: u32) -> LimiterRef {
    let settings = LimitSettings {
        global_connections: global,
        lease_deadline: Duration::from_secs(60),
        head_wait_limit: head_wait,
        manual_reserve: reserve,
        manual_burst: burst,
        ..LimitSettings::default()
    };
    let burst = Arc::new(Burst::default());
    let args = LimiterArgs {
        settings,
        burst: burst.clone(),
    };
    let actor = Actor::spawn(None, RateLimiter, args).await.unwrap().0;
    LimiterRef { actor, burst }
}

async fn holder() -> ActorRef<()> {
    Actor::spawn(None, Holder, ()).await.unwrap().0
}

fn ask(
    lim: &ActorRef<LimiterMsg>,
    holder: &ActorRef<()>,
    ticket: u64,
    remote: &str,
    permits: u32,
    lane: Lane,
    grants: &Grants,
) {
    ask_capped(lim, holder, ticket, (remote, 5), permits, lane, grants);
}

/// [`ask`] for a remote whose own cap is `remote.1`.
fn ask_capped(
    lim: &ActorRef<LimiterMsg>,
    holder: &ActorRef<()>,
    ticket: u64,
    (remote, remote_cap): (&str, u32),
    permits: u32,
    lane: Lane,
    grants: &Grants,
) {
    let grants = grants.clone();
    lim.send_message(LimiterMsg::Acquire(Acquire {
        holder: holder.get_cell(),
        ticket,
        remote: RemoteId::new(remote),
        remote_cap,
        permits,
        lane,
        first: false,
        grant: Box::new(move |lease| grants.lock().unwrap().push((ticket, lease))),
    }))
    .unwrap();
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn granted(grants: &Grants) -> Vec<u64> {
    grants.lock().unwrap().iter().map(|(t, _)| *t).collect()
}

fn release(grants: &Grants, ticket: u64) {
    grants.lock().unwrap().retain(|(t, _)| *t != ticket);
}

#[tokio::test(start_paused = true)]
async fn grants_are_fifo_and_manual_requests_go_first() {
    let lim = limiter(1, Duration::from_secs(5)).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    for t in 1..=5 {
        ask(&lim, &h, t, &format!("r{t}"), 1, Lane::Scheduled, &grants);
    }
    settle().await;
    assert_eq!(granted(&grants), vec![1]);
    ask(&lim, &h, 100, "urgent", 1, Lane::Manual, &grants);
    for expected in [100, 2, 3, 4, 5] {
        let first = granted(&grants)[0];
        release(&grants, first);
        settle().await;
        assert_eq!(granted(&grants), vec![expected], "grant order");
    }
}

#[tokio::test(start_paused = true)]
async fn the_manual_reserve_is_kept_free_for_triggers() {
    let lim = limiter_with_reserve(3, Duration::from_secs(5), 1).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    for t in 1..=4 {
        ask(&lim, &h, t, &format!("s{t}"), 1, Lane::Scheduled, &grants);
    }
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 2],
        "scheduled polls leave the reserve alone"
    );
    ask(&lim, &h, 100, "urgent", 1, Lane::Manual, &grants);
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 2, 100],
        "a trigger finds the reserve free"
    );
    let s = ractor::call!(lim, LimiterMsg::Snapshot).unwrap();
    assert_eq!(s.in_use, 3);
}

#[tokio::test(start_paused = true)]
async fn manual_requests_burst_beyond_the_global_cap_and_scheduled_ones_never_do() {
    let lim = limiter_with(2, Duration::from_secs(5), 0, 2).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    for t in 1..=4 {
        ask(&lim, &h, t, &format!("s{t}"), 1, Lane::Scheduled, &grants);
    }
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 2],
        "scheduled polls stop at the cap"
    );
    for t in 100..=102 {
        ask(&lim, &h, t, &format!("m{t}"), 1, Lane::Manual, &grants);
    }
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 2, 100, 101],
        "triggers get the burst at once, and no more than it"
    );
    assert_eq!(ractor::call!(lim, LimiterMsg::Snapshot).unwrap().in_use, 4);
    // A scheduled poll ending frees a connection, but the total is over the global cap:
    // the waiting trigger takes it, the waiting scheduled polls do not.
    release(&grants, 1);
    settle().await;
    assert_eq!(granted(&grants), vec![2, 100, 101, 102]);
    release(&grants, 100);
    release(&grants, 101);
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![2, 102],
        "back under the global cap only once triggers' connections returned"
    );
    release(&grants, 102);
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![2, 3],
        "scheduled polls resume at the cap"
    );
}

#[tokio::test(start_paused = true)]
async fn burst_permits_a_poller_takes_itself_count_for_its_remote_and_come_back_on_drop() {
    let lim = limiter_ref(1, Duration::from_secs(5), 0, 2).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    ask(&lim.actor, &h, 1, "s1", 1, Lane::Scheduled, &grants);
    settle().await;
    assert_eq!(granted(&grants), vec![1], "the global cap is used up");
    let of_a = lim
        .take_burst(&RemoteId::new("a"), 1)
        .expect("the burst has room");
    let of_b = lim
        .take_burst(&RemoteId::new("b"), 1)
        .expect("the burst has room");
    assert!(
        lim.take_burst(&RemoteId::new("c"), 1).is_none(),
        "no more than the burst"
    );
    let snap = ractor::call!(lim.actor, LimiterMsg::Snapshot).unwrap();
    assert_eq!(
        (snap.in_use, snap.burst_in_use, snap.leases),
        (3, 2, 3),
        "the books show the permits taken directly"
    );
    // "a" (cap 1) holds its one connection already; "c" may use any burst permit.
    ask_capped(&lim.actor, &h, 100, ("a", 1), 1, Lane::Manual, &grants);
    ask_capped(&lim.actor, &h, 101, ("c", 5), 1, Lane::Manual, &grants);
    settle().await;
    assert_eq!(granted(&grants), vec![1], "nothing is free");
    drop(of_b);
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 101],
        "the permit that came back goes to the waiting trigger its remote's cap allows"
    );
    drop(of_a);
    settle().await;
    assert_eq!(granted(&grants), vec![1, 101, 100]);
    grants.lock().unwrap().clear();
    settle().await;
    let snap = ractor::call!(lim.actor, LimiterMsg::Snapshot).unwrap();
    assert_eq!((snap.in_use, snap.burst_in_use, snap.leases), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_lowers_the_global_cap_below_its_use_leaves_triggers_the_burst() {
    let lim = limiter_with(2, Duration::from_secs(5), 0, 1).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    ask(&lim, &h, 1, "s1", 1, Lane::Scheduled, &grants);
    ask(&lim, &h, 2, "s2", 1, Lane::Scheduled, &grants);
    settle().await;
    let lower = LimitSettings {
        global_connections: 1,
        manual_burst: 1,
        ..LimitSettings::default()
    };
    lim.send_message(LimiterMsg::Reconfigure(lower)).unwrap();
    ask(&lim, &h, 100, "m", 1, Lane::Manual, &grants);
    ask(&lim, &h, 3, "s3", 1, Lane::Scheduled, &grants);
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 2, 100],
        "the trigger takes the burst, the scheduled poll waits"
    );
    let snap = ractor::call!(lim, LimiterMsg::Snapshot).expect("the limiter runs on");
    assert_eq!((snap.in_use, snap.burst_in_use), (3, 1));
    release(&grants, 1);
    settle().await;
    assert_eq!(granted(&grants), vec![2, 100], "still over the lowered cap");
    release(&grants, 2);
    settle().await;
    assert_eq!(granted(&grants), vec![100, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_poller_takes_the_burst_itself_only_when_the_global_cap_is_used_up() {
    let lim = limiter_ref(2, Duration::from_secs(5), 0, 2).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    ask(&lim.actor, &h, 1, "s1", 1, Lane::Scheduled, &grants);
    settle().await;
    assert!(
        lim.take_burst(&RemoteId::new("a"), 1).is_none(),
        "room under the global cap: the trigger asks the limiter"
    );
    ask(&lim.actor, &h, 2, "s2", 1, Lane::Scheduled, &grants);
    settle().await;
    let lease = lim.take_burst(&RemoteId::new("a"), 1);
    assert!(lease.is_some(), "the global cap is used up");
    // A trigger queued with the limiter is not passed by one that takes the burst.
    ask(&lim.actor, &h, 100, "b", 2, Lane::Manual, &grants);
    settle().await;
    assert!(lim.take_burst(&RemoteId::new("c"), 1).is_none());
    drop(lease);
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 2, 100],
        "the queued trigger got the burst"
    );
}

#[tokio::test(start_paused = true)]
async fn a_large_request_is_passed_by_small_ones_only_until_its_wait_limit() {
    let lim = limiter(5, Duration::from_secs(2)).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    // Three permits busy; a 5-permit request waits at the head.
    ask(&lim, &h, 1, "a", 3, Lane::Scheduled, &grants);
    ask(&lim, &h, 2, "big", 5, Lane::Scheduled, &grants);
    ask(&lim, &h, 3, "c", 1, Lane::Scheduled, &grants);
    settle().await;
    assert_eq!(
        granted(&grants),
        vec![1, 3],
        "a small request passes the blocked head"
    );
    release(&grants, 3);
    // Past the head's wait limit, capacity is held back for it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    ask(&lim, &h, 4, "d", 1, Lane::Scheduled, &grants);
    settle().await;
    assert_eq!(granted(&grants), vec![1], "the head now blocks newcomers");
    release(&grants, 1);
    settle().await;
    assert_eq!(granted(&grants), vec![2], "the large request gets all five");
    release(&grants, 2);
    settle().await;
    assert_eq!(granted(&grants), vec![4]);
}

#[tokio::test(start_paused = true)]
async fn a_request_blocked_by_its_own_remote_cap_does_not_hold_up_others() {
    let lim = limiter(10, Duration::from_secs(1)).await;
    let h = holder().await;
    let grants: Grants = Default::default();
    ask(&lim, &h, 1, "pve", 5, Lane::Scheduled, &grants);
    ask(&lim, &h, 2, "pve", 5, Lane::Scheduled, &grants);
    ask(&lim, &h, 3, "pbs", 1, Lane::Scheduled, &grants);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(granted(&grants), vec![1, 3]);
    release(&grants, 1);
    settle().await;
    assert_eq!(granted(&grants), vec![3, 2]);
}

#[tokio::test(start_paused = true)]
async fn leases_of_a_dead_holder_and_overdue_leases_are_reclaimed() {
    let lim = limiter(2, Duration::from_secs(5)).await;
    let doomed = holder().await;
    let grants: Grants = Default::default();
    ask(&lim, &doomed, 1, "a", 1, Lane::Scheduled, &grants);
    settle().await;
    // The holder leaks its lease (never drops it) and dies.
    let (_, lease) = grants.lock().unwrap().pop().unwrap();
    std::mem::forget(lease);
    doomed.stop_and_wait(None, None).await.unwrap();
    wait_until(
        Duration::from_secs(3),
        "the dead holder's lease is reclaimed",
        || async {
            let s = ractor::call!(lim, LimiterMsg::Snapshot).unwrap();
            s.in_use == 0 && s.reclaimed == 1
        },
    )
    .await;

    // A live holder that sits on its lease past the deadline loses it too.
    let slow = holder().await;
    ask(&lim, &slow, 2, "b", 2, Lane::Scheduled, &grants);
    settle().await;
    assert_eq!(granted(&grants), vec![2]);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let s = ractor::call!(lim, LimiterMsg::Snapshot).unwrap();
    assert_eq!((s.in_use, s.reclaimed), (0, 2));
    // Returning the reclaimed lease later does not free capacity twice.
    grants.lock().unwrap().clear();
    settle().await;
    let s = ractor::call!(lim, LimiterMsg::Snapshot).unwrap();
    assert_eq!(s.in_use, 0);
}
