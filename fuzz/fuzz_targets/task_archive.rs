//! Task cache data files and archives: [`fleetpoll::fuzzing::task_archive`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::task_archive(data));
