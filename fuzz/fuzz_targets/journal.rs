//! The framed journals and the records of both stores: [`fleetpoll::fuzzing::journal`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::journal(data));
