//! Fuzz target `worker_frames`: the input and what is checked are in `ovirt_node_reg::fuzzing::worker_frames`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ovirt_node_reg::fuzzing::worker_frames(data));
