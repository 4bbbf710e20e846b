//! The benchmark's guests: `../shared/testguest/tiny-kvm.xml` (128 MiB, one
//! vCPU, machine `pc`, serial console to a file, no USB, no balloon) as an
//! idle guest (no kernel: SeaBIOS finds nothing to boot and waits) or
//! booting the test guest, and the "typical domain": the idle guest plus a
//! qcow2 virtio disk and a user-mode virtio NIC.

use std::path::Path;

/// Accelerator of a benchmark guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// `<domain type='kvm'>`.
    Kvm,
    /// `<domain type='qemu'>` (TCG).
    Tcg,
}

impl Accel {
    /// The domain type attribute.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }

    /// `KVM` or `TCG`.
    pub fn label(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG",
        }
    }
}

/// A benchmark guest's domain XML.
#[derive(Debug, Clone)]
pub struct GuestXml<'a> {
    /// Domain name.
    pub name: &'a str,
    /// Accelerator.
    pub accel: Accel,
    /// The QEMU binary (`<emulator>`).
    pub emulator: &'a Path,
    /// File receiving the serial console.
    pub serial: &'a Path,
    /// Test guest directory (`vmlinuz`, `initramfs.img`) to boot; `None`
    /// for an idle guest.
    pub boot: Option<&'a Path>,
    /// A qcow2 image attached as a virtio disk, with a user-mode virtio NIC
    /// (the typical domain).
    pub typical_disk: Option<&'a Path>,
}

/// XML-escapes text for an attribute or element.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

impl GuestXml<'_> {
    /// The domain XML.
    pub fn to_xml(&self) -> String {
        let kernel = match self.boot {
            Some(dir) => format!(
                "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>console=ttyS0 quiet panic=-1</cmdline>\n",
                esc(&dir.join("vmlinuz").display().to_string()),
                esc(&dir.join("initramfs.img").display().to_string()),
            ),
            None => String::new(),
        };
        let typical = match self.typical_disk {
            Some(disk) => format!(
                "    <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='{}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n    <interface type='user'>\n      <model type='virtio'/>\n    </interface>\n",
                esc(&disk.display().to_string())
            ),
            None => String::new(),
        };
        format!(
            "<domain type='{ty}'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
{kernel}  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
{typical}    <serial type='file'>
      <source path='{serial}'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
",
            ty = self.accel.domain_type(),
            name = esc(self.name),
            emulator = esc(&self.emulator.display().to_string()),
            serial = esc(&self.serial.display().to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest<'a>(boot: Option<&'a Path>, disk: Option<&'a Path>) -> GuestXml<'a> {
        GuestXml {
            name: "g",
            accel: Accel::Tcg,
            emulator: Path::new("/usr/bin/qemu-system-x86_64"),
            serial: Path::new("/tmp/g.log"),
            boot,
            typical_disk: disk,
        }
    }

    #[test]
    fn an_idle_guest_has_no_kernel_and_no_disk() {
        let xml = guest(None, None).to_xml();
        assert!(xml.starts_with("<domain type='qemu'>"));
        assert!(!xml.contains("<kernel>") && !xml.contains("<disk"));
        assert!(xml.contains("<source path='/tmp/g.log'/>"));
    }

    #[test]
    fn a_booting_guest_names_the_test_guest_kernel() {
        let xml = guest(Some(Path::new("/tg")), None).to_xml();
        assert!(xml.contains("<kernel>/tg/vmlinuz</kernel>"));
        assert!(xml.contains("<initrd>/tg/initramfs.img</initrd>"));
    }

    #[test]
    fn the_typical_guest_adds_a_qcow2_virtio_disk_and_a_user_nic() {
        let xml = guest(None, Some(Path::new("/d.qcow2"))).to_xml();
        assert!(xml.contains("type='qcow2'") && xml.contains("bus='virtio'"));
        assert!(xml.contains("<interface type='user'>"));
    }
}
