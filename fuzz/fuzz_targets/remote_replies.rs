//! PVE and PBS task lists, task status, node and resource lists: [`fleetpoll::fuzzing::remote_replies`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::remote_replies(data));
