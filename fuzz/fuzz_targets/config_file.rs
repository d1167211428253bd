//! The config file: [`fleetpoll::fuzzing::config_file`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::config_file(data));
