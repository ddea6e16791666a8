fn main() {
    std::process::exit(ovirt_node_reg_main());
}

fn ovirt_node_reg_main() -> i32 {
    0
}
