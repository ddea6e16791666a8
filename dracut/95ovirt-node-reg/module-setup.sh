#!/bin/bash
# dracut module: register this oVirt Node with the engine from the initramfs.
#
# Installs the static ovirt-node-reg binary and two hooks:
#   cmdline 05    ovirt-node-reg-cmdline.sh: when an engine is given on the kernel command
#                 line, ask dracut's network module for the network (rd.neednet=1 in
#                 /etc/cmdline.d, read by getarg before network-legacy's pre-udev rules)
#   pre-pivot 50  ovirt-node-reg.sh: `ovirt-node-reg --kmsg boot --stage initramfs`
#                 (the real root is mounted, the network is up: see dracut/README.md)
# and, in a systemd initrd, a drop-in ordering dracut-pre-pivot.service after
# network-online.target (it is not, by default).
#
# The binary's source path: $OVIRT_NODE_REG_BIN (default /usr/sbin/ovirt-node-reg).
#
# Sourced by dracut (no `set -euo pipefail`: it would change dracut's own shell); initdir,
# moddir and systemdsystemunitdir are dracut's variables.
# shellcheck disable=SC2154

# called by dracut
check() {
    local bin=${OVIRT_NODE_REG_BIN:-/usr/sbin/ovirt-node-reg}
    if [[ ! -x $bin ]]; then
        derror "ovirt-node-reg: $bin is missing (set OVIRT_NODE_REG_BIN)"
        return 1
    fi
    # only when asked for: --add ovirt-node-reg / -m ... ovirt-node-reg
    return 255
}

# called by dracut
depends() {
    echo network
    return 0
}

# called by dracut
installkernel() {
    # The management bridge, VLANs and bonds the binary builds; the ext4 config store
    # (metadata_csum needs crc32c, a softdep busybox-style loaders do not follow).
    # NIC drivers come from kernel-network-modules (pulled in by network), disk drivers
    # from kernel-modules or --add-drivers.
    instmods bridge 8021q bonding ext4 crc32c_generic
    instmods -o crc32c-intel
}

# called by dracut
install() {
    local bin=${OVIRT_NODE_REG_BIN:-/usr/sbin/ovirt-node-reg}
    inst_simple "$bin" /usr/sbin/ovirt-node-reg
    chmod 0755 "${initdir}/usr/sbin/ovirt-node-reg"
    inst_dir /config
    inst_hook cmdline 05 "$moddir/ovirt-node-reg-cmdline.sh"
    inst_hook pre-pivot 50 "$moddir/ovirt-node-reg.sh"
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/50-ovirt-node-reg.conf" \
            "$systemdsystemunitdir/dracut-pre-pivot.service.d/50-ovirt-node-reg.conf"
    fi
}
