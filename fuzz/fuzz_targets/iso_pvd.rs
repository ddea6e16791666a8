//! Fuzz target `iso_pvd`: the input and what is checked are in `ovirt_node_reg::fuzzing::iso_pvd`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ovirt_node_reg::fuzzing::iso_pvd(data));
