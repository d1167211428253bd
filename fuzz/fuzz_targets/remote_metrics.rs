//! PVE and PBS metric export replies: [`fleetpoll::fuzzing::remote_metrics`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::remote_metrics(data));
