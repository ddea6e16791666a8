#!/bin/sh
# dracut cmdline hook (sourced, priority 05: before network's dhcp-root.sh at 91 and
# network-legacy's parse-*.sh at 92-99 and its pre-udev rules that read rd.neednet).
# When an engine is named on the kernel command line, registration will run in pre-pivot:
# make dracut bring the network up (rd.neednet=1) unless rd.neednet was given explicitly, and
# in a systemd-networkd initrd without ip= give networkd a DHCP configuration (below).
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
        # systemd-networkd reads ip= from /proc/cmdline only and ignores rd.neednet: without
        # ip= nothing would be configured and network-online.target (which the pre-pivot hook
        # is ordered after) would wait for systemd-networkd-wait-online's timeout. Do what
        # network-legacy does for rd.neednet=1 without ip=, and what systemd-network-generator
        # writes for ip=dhcp: DHCPv4 on every physical link. networkd starts after this hook
        # (dracut-cmdline < dracut-pre-udev < systemd-udevd < systemd-networkd).
        if [ -n "$DRACUT_SYSTEMD" ] && ! getarg ip= > /dev/null && getargbool 1 rd.neednet \
            && { [ -x /usr/lib/systemd/systemd-networkd ] || [ -x /lib/systemd/systemd-networkd ]; }; then
            mkdir -p /run/systemd/network
            printf '%s\n' "# ovirt-node-reg: engine given, no ip=: DHCP like ip=dhcp" \
                "[Match]" "Kind=!*" "Type=!loopback" "[Network]" "DHCP=ipv4" \
                > /run/systemd/network/92-ovirt-node-reg-dhcp.network
            info "ovirt-node-reg: engine given, no ip=: systemd-networkd does DHCPv4 on every link"
        fi
    fi
fi
