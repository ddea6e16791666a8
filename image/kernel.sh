# shellcheck shell=bash
# Sourced by the image/ scripts and build-support/qemu-lib.sh: the one place that picks the
# guest kernel (the Rust harness's twin is qemu-tests/src/qemu/host.rs kernel_version).

# guest_kver: the newest kernel K (version order) with both /lib/modules/K/modules.dep and a
# readable /boot/vmlinuz-K, i.e. the Debian kernel installed from apt. Never hard-coded: the
# ABI number changes with updates.
guest_kver() {
    local k found=
    for k in $(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V); do
        if [ -f "/lib/modules/$k/modules.dep" ] && [ -r "/boot/vmlinuz-$k" ]; then
            found=$k
        fi
    done
    if [ -z "$found" ]; then
        echo "no guest kernel (/lib/modules/K with a readable /boot/vmlinuz-K):" \
            "apt-get install linux-image-amd64 (build-support/setup.sh installs it)" >&2
        return 1
    fi
    echo "$found"
}
