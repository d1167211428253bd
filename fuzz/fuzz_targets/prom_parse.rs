//! Prometheus text and OpenMetrics scrape bodies: [`fleetpoll::fuzzing::prom_parse`]
//! says what is checked. One scrape cache reads every input of the run.
#![no_main]

use std::sync::Mutex;

use fleetpoll::fuzzing::PromState;
use libfuzzer_sys::fuzz_target;

static STATE: Mutex<Option<PromState>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut state = STATE.lock().unwrap();
    fleetpoll::fuzzing::prom_parse(state.get_or_insert_with(PromState::default), data);
});
