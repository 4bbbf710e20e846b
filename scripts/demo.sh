#!/usr/bin/env bash
# The main job: set up this machine, build qvisor, build the tiny test guest,
# and boot it in an embedded root (no daemon), showing its serial console
# until it powers off and the domain is 'shut off'.
#
#   scripts/demo.sh [ROOT]     default ROOT: /var/tmp/qvisor-demo
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${1:-/var/tmp/qvisor-demo}
GUEST=${QVISOR_TESTGUEST_DIR:-/var/tmp/qvisor-testguest}

scripts/setup-debian.sh
cargo build --release --workspace
scripts/testguest.sh "$GUEST" >/dev/null

QV="target/release/qvisor -c qemu:///embed?root=$ROOT"
mkdir -p "$ROOT"
XML="$ROOT/demo.xml"
cat > "$XML" <<XML
<domain type='qemu'>
  <name>demo</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST/vmlinuz</kernel>
    <initrd>$GUEST/initramfs.img</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path='$ROOT/demo-serial.log'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
rm -f "$ROOT/demo-serial.log"
# A rerun starts from scratch (a definition without <uuid> gets a new one).
$QV destroy demo >/dev/null 2>&1 || true
$QV undefine demo >/dev/null 2>&1 || true
$QV define "$XML"
$QV start demo --console
$QV domstate --reason demo
