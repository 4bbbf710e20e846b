#!/usr/bin/env bash
# Installs what qvisor needs to build, run and test on Debian 12 (run as root,
# or with sudo available). Idempotent; skips apt when everything is present.
set -euo pipefail

PKGS=(
    qemu-system-x86      # the emulator qvisor drives
    qemu-utils           # qemu-img, for qcow2 volumes
    libvirt-clients      # virsh, to drive qvisord like libvirtd
    python3-libvirt      # python bindings (for /usr/bin/python3), daemon tests
    libapparmor-dev      # the in-tree apparmor-sys binding links libapparmor
    apparmor             # apparmor_parser, to validate generated profiles
    dpkg-dev             # apt-get download / dpkg-deb for the test guest
    ca-certificates
)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust (https://rustup.rs) and re-run" >&2
    exit 1
fi
echo "setup: ok" >&2
