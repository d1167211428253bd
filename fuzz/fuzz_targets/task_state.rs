//! The task cache's state and tracked-task files: [`fleetpoll::fuzzing::task_state`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::task_state(data));
