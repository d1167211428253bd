//! Task cache index snapshots: [`fleetpoll::fuzzing::task_snapshot`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::task_snapshot(data));
