//! The `.names` sidecars of RRD files: [`fleetpoll::fuzzing::rrd_names`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::rrd_names(data));
