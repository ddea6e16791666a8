#!/bin/sh
# dracut pre-pivot hook (sourced by dracut's shell: no `exit`).
# Runs the initramfs stage of the registration: configure, network, clock, engine trust,
# register, submit the CSRs; the real root's ovirt-node-reg.service resumes from there.
# pre-pivot has the network: shell-init waits for it in the initqueue (rd.neednet=1), a
# systemd initrd orders dracut-pre-pivot.service after network-online.target (drop-in).
# A failed registration never stops the boot: the exit code is only logged.

# shellcheck source=/dev/null
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh

if [ -e /tmp/ovirt-node-reg.wanted ]; then
    info "ovirt-node-reg: boot --stage initramfs"
    /usr/sbin/ovirt-node-reg --kmsg boot --stage initramfs
    _ovirt_node_reg_rc=$?
    if [ "$_ovirt_node_reg_rc" -ne 0 ]; then
        warn "ovirt-node-reg: boot --stage initramfs exited with $_ovirt_node_reg_rc; the boot goes on"
    else
        info "ovirt-node-reg: initramfs stage done (rc=0)"
    fi
    unset _ovirt_node_reg_rc
else
    info "ovirt-node-reg: no management_server= on the command line: nothing to do in the initramfs"
fi
