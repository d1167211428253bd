//! `fleetpoll rrd` command lines: [`fleetpoll::fuzzing::rrd_args`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::rrd_args(data));
