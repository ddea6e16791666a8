//! Kernel command lines are attacker-influenced input (PXE menus, boot loaders): parsing any
//! byte string must never panic, hang or blow up memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ovirt_node_reg::cmdline::fuzz_entry(data);
});
