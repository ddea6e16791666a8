#!/bin/bash
# Static checks for the dracut module and the real-root unit:
#   ShellCheck on module-setup.sh (bash) and the hooks (POSIX sh, as dracut runs them),
#   systemd-analyze verify on ovirt-node-reg.service, on the ISO root's stand-in
#   image/live/vdsmd.service with it, and on dracut-pre-pivot.service with our drop-in. Exits non-zero on any complaint. Called by build-support/test-all.sh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
mod=$here/95ovirt-node-reg
fail=0

echo "[dracut/check] shellcheck"
shellcheck -s bash "$mod/module-setup.sh" "$here/check.sh" || fail=1
shellcheck -s sh "$mod/ovirt-node-reg-cmdline.sh" "$mod/ovirt-node-reg.sh" || fail=1

if ! command -v systemd-analyze > /dev/null; then
    echo "[dracut/check] systemd-analyze is missing (apt-get install systemd)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# systemd-analyze verify checks that ExecStart= is executable on this machine: point it at a
# stand-in (the unit is otherwise unchanged); vdsmd.service is a stand-in too.
printf '#!/bin/sh\nexit 0\n' > "$tmp/stand-in"
chmod 755 "$tmp/stand-in"
printf '[Unit]\nDescription=stand-in vdsmd\n[Service]\nExecStart=%s\n' "$tmp/stand-in" \
    > "$tmp/vdsmd.service"

# verify UNIT: run systemd-analyze verify; any output is a complaint
verify() {
    local out
    if ! out=$(cd "$tmp" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$@" 2>&1) \
        || [[ -n $out ]]; then
        echo "$out" >&2
        echo "[dracut/check] systemd-analyze verify $*: FAILED" >&2
        return 1
    fi
}

echo "[dracut/check] systemd-analyze verify ovirt-node-reg.service"
sed -e "s|^ExecStart=/usr/sbin/ovirt-node-reg |ExecStart=$tmp/stand-in |" \
    "$here/ovirt-node-reg.service" > "$tmp/ovirt-node-reg.service"
grep -q "^ExecStart=$tmp/stand-in --kmsg boot --stage system$" "$tmp/ovirt-node-reg.service" \
    || { echo "[dracut/check] unexpected ExecStart= in ovirt-node-reg.service" >&2; fail=1; }
verify "$tmp/ovirt-node-reg.service" "$tmp/vdsmd.service" || fail=1

# The ISO root's stand-in vdsmd.service (image/live/) with the real ovirt-node-reg.service:
# Requires=/After= the registration, as the real vdsmd must be ordered.
echo "[dracut/check] systemd-analyze verify image/live/{vdsmd,qh-report}.service + ovirt-node-reg.service"
mkdir "$tmp/live"
cp "$tmp/ovirt-node-reg.service" "$tmp/live/"
sed -e "s|^ExecStart=/usr/libexec/vdsmd-standin$|ExecStart=$tmp/stand-in|" \
    "$here/../image/live/vdsmd.service" > "$tmp/live/vdsmd.service"
grep -q "^ExecStart=$tmp/stand-in$" "$tmp/live/vdsmd.service" \
    || { echo "[dracut/check] unexpected ExecStart= in image/live/vdsmd.service" >&2; fail=1; }
if ! grep -qx "Requires=ovirt-node-reg.service" "$tmp/live/vdsmd.service" \
    || ! grep -q "^After=ovirt-node-reg.service" "$tmp/live/vdsmd.service"; then
    echo "[dracut/check] vdsmd.service must Require= and come After= ovirt-node-reg.service" >&2
    fail=1
fi
sed -e "s|^ExecStart=/usr/libexec/qh-report$|ExecStart=$tmp/stand-in|" \
    "$here/../image/live/qh-report.service" > "$tmp/live/qh-report.service"
verify "$tmp/live/vdsmd.service" "$tmp/live/ovirt-node-reg.service" \
    "$tmp/live/qh-report.service" || fail=1

pre_pivot=/usr/lib/dracut/modules.d/98dracut-systemd/dracut-pre-pivot.service
if [[ -f $pre_pivot ]]; then
    echo "[dracut/check] systemd-analyze verify dracut-pre-pivot.service + 50-ovirt-node-reg.conf"
    sed -e "s|^ExecStart=-/bin/dracut-pre-pivot|ExecStart=-$tmp/stand-in|" "$pre_pivot" \
        > "$tmp/dracut-pre-pivot.service"
    mkdir "$tmp/dracut-pre-pivot.service.d"
    cp "$mod/50-ovirt-node-reg.conf" "$tmp/dracut-pre-pivot.service.d/"
    verify "$tmp/dracut-pre-pivot.service" || fail=1
else
    echo "[dracut/check] $pre_pivot missing: dracut not installed? (apt-get install dracut dracut-network)" >&2
    fail=1
fi

if [[ $fail -ne 0 ]]; then
    echo "[dracut/check] FAILED" >&2
    exit 1
fi
echo "[dracut/check] ok"
