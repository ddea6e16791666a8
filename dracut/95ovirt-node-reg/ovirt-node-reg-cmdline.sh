#!/bin/sh
# dracut cmdline hook (sourced, priority 05: before network's dhcp-root.sh at 91 and
# network-legacy's parse-*.sh at 92-99 and its pre-udev rules that read rd.neednet).
# When an engine is named on the kernel command line, registration will run in pre-pivot:
# make dracut bring the network up (rd.neednet=1) unless rd.neednet was given explicitly.
# No `exit` here: the file is sourced by dracut's shell.

# shellcheck source=/dev/null
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh

if getarg management_server= > /dev/null || getarg managment_server= > /dev/null \
    || getarg ovirt_managment_server= > /dev/null; then
    if getargbool 0 ovirt_vdsm_disable; then
        info "ovirt-node-reg: ovirt_vdsm_disable is set: not asking for the network"
    else
        : > /tmp/ovirt-node-reg.wanted
        if getarg rd.neednet > /dev/null; then
            info "ovirt-node-reg: engine given; rd.neednet=$(getarg rd.neednet) kept as given"
        else
            mkdir -p /etc/cmdline.d
            echo "rd.neednet=1" > /etc/cmdline.d/95-ovirt-node-reg.conf
            info "ovirt-node-reg: engine given: rd.neednet=1"
        fi
    fi
fi
