#!/usr/bin/env bash
# Builds qvisor's tiny Linux test guest: a Debian cloud kernel and a busybox
# initramfs whose /init prints stable markers on the serial console and powers
# off. Nothing is installed on the host: packages are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x`.
#
#   scripts/testguest.sh [DIR]    default ${QVISOR_TESTGUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qvisor/testguest}
#
# Prints DIR on stdout. Rebuilds only when the package versions or this script
# change (FORCE=1 forces). Override the packages with QVISOR_GUEST_KERNEL_META
# (default linux-image-cloud-amd64), QVISOR_GUEST_KERNEL_PKG, QVISOR_GUEST_BUSYBOX_PKG.
#
# Markers (one per line): TESTGUEST-BOOTED, TESTGUEST-UPTIME: <s>,
# TESTGUEST-CMDLINE: <cmdline>, then TESTGUEST-VDA-SIZE: <bytes> and
# TESTGUEST-VDA-HEAD: <first 16 bytes, hex> when /dev/vda exists (else
# TESTGUEST-VDA: none), then TESTGUEST-POWEROFF.
set -euo pipefail

DIR=${1:-${QVISOR_TESTGUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/qvisor/testguest}}
KERNEL_META=${QVISOR_GUEST_KERNEL_META:-linux-image-cloud-amd64}
BUSYBOX_PKG=${QVISOR_GUEST_BUSYBOX_PKG:-busybox-static}
# virtio-blk over PCI; the cloud kernel builds these as modules. Load order.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk"

say() { echo "testguest: $*" >&2; }
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

known() { apt-cache show "$1" >/dev/null 2>&1; }
need_lists() { known "$1" || { say "apt does not know $1: apt-get update"; apt-get update -q >&2; }; }
candidate() { apt-cache policy "$1" | awk '/Candidate:/ {print $2; exit}'; }

KERNEL_PKG=${QVISOR_GUEST_KERNEL_PKG:-}
if [ -z "$KERNEL_PKG" ]; then
    need_lists "$KERNEL_META"
    KERNEL_PKG=$(apt-cache depends "$KERNEL_META" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$KERNEL_PKG" ] || { say "cannot resolve $KERNEL_META to a kernel package"; exit 1; }
fi
need_lists "$KERNEL_PKG"
need_lists "$BUSYBOX_PKG"
STAMP="kernel=$KERNEL_PKG/$(candidate "$KERNEL_PKG") busybox=$BUSYBOX_PKG/$(candidate "$BUSYBOX_PKG") script=$(sha256sum "$0" | cut -d' ' -f1)"
if [ -z "${FORCE:-}" ] && [ -s "$DIR/vmlinuz" ] && [ -s "$DIR/initramfs.img" ] &&
   [ "$(cat "$DIR/stamp" 2>/dev/null)" = "$STAMP" ]; then
    say "up to date: $DIR"
    echo "$DIR"
    exit 0
fi

WORK=$(mktemp -d "$DIR/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
chmod 0777 "$WORK"   # apt's _apt sandbox user writes the .debs here
say "fetching $KERNEL_PKG and $BUSYBOX_PKG"
(cd "$WORK" && apt-get download -q "$KERNEL_PKG" "$BUSYBOX_PKG" >&2)
dpkg-deb -x "$WORK/$KERNEL_PKG"_*.deb "$WORK/k"
dpkg-deb -x "$WORK/$BUSYBOX_PKG"_*.deb "$WORK/b"

VMLINUZ=$(ls "$WORK"/k/boot/vmlinuz-* | head -n1)
KVER=${VMLINUZ##*/vmlinuz-}
CONFIG="$WORK/k/boot/config-$KVER"
for opt in SERIAL_8250_CONSOLE ACPI BLK_DEV_INITRD RD_GZIP DEVTMPFS PCI; do
    grep -q "^CONFIG_$opt=y" "$CONFIG" || { say "kernel $KVER lacks CONFIG_$opt=y"; exit 1; }
done

R="$WORK/root"
mkdir -p "$R/bin" "$R/dev" "$R/proc" "$R/sys" "$R/lib/modules"
cp "$WORK/b/bin/busybox" "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
: > "$R/lib/modules/order"
for m in $MODULES; do
    upper=$(echo "$m" | tr '[:lower:]' '[:upper:]')
    grep -q "^CONFIG_$upper=y" "$CONFIG" && continue      # built in
    ko=$(find "$WORK/k/lib/modules/$KVER" -name "$m.ko" | head -n1)
    [ -n "$ko" ] || { say "module $m.ko not found in $KERNEL_PKG"; exit 1; }
    cp "$ko" "$R/lib/modules/"
    echo "$m" >> "$R/lib/modules/order"
done

cat > "$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
exec </dev/console >/dev/console 2>&1
mark() { echo "$*"; }
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko 2>/dev/null; done
mark "TESTGUEST-BOOTED"
mark "TESTGUEST-UPTIME: $(cut -d' ' -f1 /proc/uptime)"
mark "TESTGUEST-CMDLINE: $(cat /proc/cmdline)"
if grep -qx 0x0002 /sys/bus/virtio/devices/*/device 2>/dev/null; then
    n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do usleep 20000; n=$((n+1)); done
fi
if [ -b /dev/vda ]; then
    mark "TESTGUEST-VDA-SIZE: $(blockdev --getsize64 /dev/vda)"
    mark "TESTGUEST-VDA-HEAD: $(head -c 16 /dev/vda | hexdump -v -e '16/1 "%02x"')"
else
    mark "TESTGUEST-VDA: none"
fi
mark "TESTGUEST-POWEROFF"
poweroff -f
echo o > /proc/sysrq-trigger
EOF
chmod 0755 "$R/init"
find "$R" -exec touch -h -d @0 {} +
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' |
    "$R/bin/busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 -n > "$WORK/initramfs.img"
cp "$VMLINUZ" "$WORK/vmlinuz"
chmod 0644 "$WORK/vmlinuz" "$WORK/initramfs.img"
mv -f "$WORK/vmlinuz" "$WORK/initramfs.img" "$DIR/"
echo "$STAMP" > "$DIR/stamp"
say "built $DIR ($KERNEL_PKG, $KVER)"
echo "$DIR"
