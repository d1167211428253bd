//! The API's query strings, JSON bodies and path segments: [`fleetpoll::fuzzing::api_request`] says what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fleetpoll::fuzzing::api_request(data));
