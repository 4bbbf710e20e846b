//! Validation: configurations libvirt's QEMU driver refuses
//! (`virDomainDefValidate` + `qemuValidateDomainDef`), with libvirt's messages.

use crate::address::Address;
use crate::common::{OnOff, YesNo};
use crate::devices::*;
use crate::domain::*;
use crate::error::{Error, Result};
use crate::expand::is_q35;

fn unsupported(msg: impl Into<String>) -> Error {
    Error::Unsupported(msg.into())
}

/// Checks an expanded definition; the first problem found is returned.
pub fn validate(def: &Domain) -> Result<()> {
    validate_disk_uniqueness(def)?;
    validate_firmware(def)?;
    validate_boot(def)?;
    validate_filesystems(def)?;
    validate_features(def)?;
    validate_hugepages(def)?;
    for d in &def.devices.disks {
        validate_disk(d)?;
    }
    validate_hostdevs(def)?;
    validate_graphics(def)?;
    validate_video(def)?;
    validate_iommu(def)?;
    validate_inputs(def)?;
    Ok(())
}

/// libvirt's `virDomainDefOSValidate` (`<loader>` and `<nvram>` together
/// are libvirt's loader definition).
fn validate_firmware(def: &Domain) -> Result<()> {
    let os = &def.os;
    let detail = |m: &str| Error::Plain(m.to_string());
    let has_loader = os.loader.is_some() || os.nvram.is_some();
    let loader = os.loader.clone().unwrap_or_default();
    // a varstore path, old style (text) or new style (<source>)
    let nvram = os
        .nvram
        .as_ref()
        .is_some_and(|n| n.path.is_some() || n.residue.find("source").is_some());
    let template = os.nvram.as_ref().is_some_and(|n| n.template.is_some());
    if let Some(fw) = os.firmware {
        if !has_loader {
            return Ok(());
        }
        if loader.readonly.is_some() {
            return Err(detail(
                "loader attribute 'readonly' cannot be specified when firmware autoselection is enabled",
            ));
        }
        if loader.kind.is_some() {
            return Err(detail(
                "loader attribute 'type' cannot be specified when firmware autoselection is enabled",
            ));
        }
        if loader.path.is_some() {
            return Err(detail(
                "loader path cannot be specified when firmware autoselection is enabled",
            ));
        }
        if template {
            return Err(detail(
                "nvram attribute 'template' cannot be specified when firmware autoselection is enabled",
            ));
        }
        if loader.secure == Some(YesNo::No) {
            return Err(detail(
                "loader attribute 'secure' cannot be specified when firmware autoselection is enabled",
            ));
        }
        if nvram && fw != Firmware::Efi {
            return Err(detail(&format!(
                "firmware type '{fw}' does not support nvram"
            )));
        }
    } else {
        if !os.firmware_features.is_empty() {
            return Err(detail(
                "cannot use feature-based firmware autoselection when firmware autoselection is disabled",
            ));
        }
        if !has_loader {
            return Ok(());
        }
        if loader.path.is_none() {
            return Err(detail(
                "no loader path specified and firmware auto selection disabled",
            ));
        }
    }
    match loader.stateless {
        Some(YesNo::Yes) if template => Err(detail(
            "NVRAM template is not permitted when loader is stateless",
        )),
        Some(YesNo::Yes) if nvram => Err(detail("NVRAM is not permitted when loader is stateless")),
        Some(YesNo::No) if os.firmware.is_none() && loader.kind != Some(LoaderType::Pflash) => {
            Err(detail("Only pflash loader type permits NVRAM"))
        }
        Some(YesNo::No) if os.firmware.is_some_and(|f| f != Firmware::Efi) => {
            Err(detail("Only EFI firmware permits NVRAM"))
        }
        _ => Ok(()),
    }
}

fn validate_features(def: &Domain) -> Result<()> {
    let Some(f) = &def.features else {
        return Ok(());
    };
    if let (Some(OnOff::On), Some(bytes)) = (f.smm, f.smm_tseg_bytes) {
        if !is_q35(def.os.machine.as_deref().unwrap_or("")) {
            return Err(unsupported(
                "SMM TSEG is only supported with q35 machine type",
            ));
        }
        if bytes % (1024 * 1024) != 0 {
            return Err(unsupported("SMM TSEG size must be divisible by 1 MiB"));
        }
    }
    Ok(())
}

fn validate_hugepages(def: &Domain) -> Result<()> {
    let Some(pages) = def
        .memory_backing
        .as_ref()
        .and_then(|m| m.hugepages.as_ref())
    else {
        return Ok(());
    };
    let cells = def.cpu.as_ref().map_or(0, |c| c.numa.len()).max(1) as u32;
    for p in pages {
        if let Some(ns) = &p.nodeset {
            if let Some(bad) = ns.0.iter().find(|n| **n >= cells) {
                return Err(unsupported(format!("hugepages: node {bad} not found")));
            }
        }
    }
    Ok(())
}

/// libvirt's secret usage types (`virSecretUsageType`).
const SECRET_USAGE_TYPES: &[&str] = &["none", "volume", "ceph", "iscsi", "tls", "vtpm"];

fn encryption_of(d: &Disk) -> Option<&crate::xml::Element> {
    d.residue
        .find("encryption")
        .or_else(|| d.source.as_ref().and_then(|s| s.residue.find("encryption")))
}

fn validate_disk(d: &Disk) -> Result<()> {
    let dst = &d.target.dev;
    let format = d.driver.as_ref().and_then(|x| x.format.as_deref());
    if format == Some("iso") {
        return Err(unsupported(
            "storage format 'iso' is not directly supported by QEMU, use 'raw' instead",
        ));
    }
    if d.device == DiskDevice::Lun && !matches!(d.kind, DiskType::Block | DiskType::Network) {
        return Err(unsupported(
            "disk device='lun' is only valid for block type disk source",
        ));
    }
    if (d.vendor.is_some() || d.product.is_some()) && d.bus() != DiskBus::Scsi {
        return Err(unsupported("Only scsi disk supports vendor and product"));
    }
    if let Some(a) = &d.info.address {
        match d.bus() {
            DiskBus::Ide | DiskBus::Sata | DiskBus::Scsi | DiskBus::Fdc
                if !matches!(a, Address::Drive(_)) =>
            {
                return Err(unsupported(format!(
                    "Invalid address type '{}' for the disk '{dst}' with the bus type '{}'",
                    a.type_name(),
                    d.bus()
                )));
            }
            DiskBus::Usb if !matches!(a, Address::Usb { .. }) => {
                return Err(Error::Internal(
                    "unexpected address type for usb disk".into(),
                ));
            }
            _ => {}
        }
    }
    if d.shareable && d.device != DiskDevice::Cdrom && !matches!(format, None | Some("raw")) {
        return Err(unsupported(format!(
            "shared access for disk '{dst}' requires use of supported storage format"
        )));
    }
    if let Some(enc) = encryption_of(d) {
        if enc.get_attr("format") == Some("luks") {
            if !matches!(format, None | Some("raw") | Some("qcow2")) {
                return Err(unsupported(
                    "encryption is supported only with 'raw' and 'qcow2' image format",
                ));
            }
            if enc.find("cipher").is_some() || enc.find("ivgen").is_some() {
                return Err(unsupported(format!(
                    "supplying <{}> for domain disk definition is unnecessary",
                    if enc.find("cipher").is_some() {
                        "cipher"
                    } else {
                        "ivgen"
                    }
                )));
            }
        }
    }
    let auth = d
        .residue
        .find("auth")
        .or_else(|| d.source.as_ref().and_then(|s| s.residue.find("auth")));
    // virDomainDiskDefValidateSourceChainOne
    if let (DiskType::Network, Some(auth), Some(proto)) = (
        d.kind,
        auth,
        d.source.as_ref().and_then(|s| s.protocol.as_deref()),
    ) {
        if matches!(
            proto,
            "nbd" | "sheepdog" | "gluster" | "tftp" | "vxhs" | "nfs"
        ) {
            return Err(unsupported(format!(
                "authentication is not supported for protocol '{proto}'"
            )));
        }
        let secret_type = auth.find("secret").and_then(|s| s.get_attr("type"));
        if !secret_type.is_some_and(|t| SECRET_USAGE_TYPES.contains(&t)) {
            return Err(unsupported(format!(
                "unknown secret type '{}'",
                secret_type.unwrap_or("<null>")
            )));
        }
        let expected = match proto {
            "iscsi" => Some("iscsi"),
            "rbd" => Some("ceph"),
            _ => None,
        };
        if let (Some(exp), Some(t)) = (expected, secret_type) {
            if t != exp {
                return Err(unsupported(format!("invalid secret type '{t}'")));
            }
        }
    }
    // qemuValidateDomainDeviceDefDisk: targets name a whole disk
    match parse_disk_name(dst) {
        None => return Err(unsupported(format!("invalid disk target '{dst}'"))),
        Some((_, Some(p))) if p != 0 => {
            return Err(unsupported(format!(
                "invalid disk target '{dst}', partitions can't appear in disk targets"
            )))
        }
        _ => {}
    }
    // qemuDomainValidateStorageSource
    match format {
        Some("cow") => return Err(unsupported("'cow' storage format is not supported")),
        Some("dir") => {
            return Err(unsupported(
                "'directory' storage format is not directly supported by QEMU, use 'dir' disk type instead",
            ))
        }
        _ => {}
    }
    Ok(())
}

/// `virDomainDefDuplicateDiskInfoValidate` and the disk half of
/// `virDomainDefDuplicateDriveAddressesValidate`.
fn validate_disk_uniqueness(def: &Domain) -> Result<()> {
    let disks = &def.devices.disks;
    for (i, a) in disks.iter().enumerate() {
        for b in &disks[i + 1..] {
            if a.target.dev == b.target.dev {
                let src = |d: &Disk| {
                    d.source
                        .as_ref()
                        .and_then(|s| s.path.clone().or_else(|| s.name.clone()))
                        .unwrap_or_else(|| "<null>".into())
                };
                return Err(Error::xml(format!(
                    "target '{}' duplicated for disk sources '{}' and '{}'",
                    a.target.dev,
                    src(a),
                    src(b)
                )));
            }
        }
    }
    for (i, a) in disks.iter().enumerate() {
        let Some(Address::Drive(x)) = &a.info.address else {
            continue;
        };
        for b in &disks[i + 1..] {
            if a.bus() == b.bus() && b.info.address == a.info.address {
                return Err(unsupported(format!(
                    "Found duplicate drive address for disk with target name '{}' controller='{}' bus='{}' target='{}' unit='{}'",
                    a.target.dev, x.controller, x.bus, x.target, x.unit
                )));
            }
        }
    }
    Ok(())
}

/// `virDomainDefBootValidate`.
fn validate_boot(def: &Domain) -> Result<()> {
    if def.os.bootmenu_timeout.is_some_and(|t| t > 65535) {
        return Err(unsupported(
            "invalid value for boot menu timeout, must be in range [0,65535]",
        ));
    }
    if def
        .os
        .bios_reboot_timeout
        .is_some_and(|t| !(-1..=65535).contains(&t))
    {
        return Err(unsupported(
            "invalid value for rebootTimeout, must be in range [-1,65535]",
        ));
    }
    Ok(())
}

/// Filesystems QEMU cannot provide (`qemuValidateDomainDeviceDefFS`).
fn validate_filesystems(def: &Domain) -> Result<()> {
    for fs in &def.devices.filesystems {
        let virtiofs = fs.child("driver").and_then(|d| d.get_attr("type")) == Some("virtiofs");
        let socket = fs
            .child("source")
            .is_some_and(|s| s.get_attr("socket").is_some());
        if virtiofs && !socket && fs.child("readonly").is_some() {
            return Err(unsupported("virtiofs does not yet support read-only mode"));
        }
    }
    Ok(())
}

fn validate_hostdevs(def: &Domain) -> Result<()> {
    for h in &def.devices.hostdevs {
        if h.attr("type") == Some("scsi_host") && h.info.boot.is_some() {
            return Err(unsupported(
                "booting from assigned devices is not supported by vhost SCSI devices",
            ));
        }
    }
    let mut seen = Vec::new();
    for h in &def.devices.hostdevs {
        if h.attr("type") == Some("scsi") {
            if let Some(Address::Drive(a)) = &h.info.address {
                if seen.contains(a) {
                    return Err(unsupported(format!(
                        "SCSI host address controller='{}' bus='{}' target='{}' unit='{}' in use by another SCSI host device",
                        a.controller, a.bus, a.target, a.unit
                    )));
                }
                seen.push(*a);
            }
        }
    }
    let ramfb = def
        .devices
        .hostdevs
        .iter()
        .filter(|h| h.attr("ramfb") == Some("on"))
        .count();
    if ramfb > 1 {
        return Err(unsupported("Only one vgpu device can have 'ramfb' enabled"));
    }
    Ok(())
}

fn validate_graphics(def: &Domain) -> Result<()> {
    let g = &def.devices.graphics;
    if g.iter().any(|x| x.kind == GraphicsType::EglHeadless)
        && g.iter().any(|x| {
            !matches!(
                x.kind,
                GraphicsType::Vnc | GraphicsType::Spice | GraphicsType::EglHeadless
            )
        })
    {
        return Err(unsupported(
            "graphics type 'egl-headless' is only supported with one of: 'vnc', 'spice' graphics types",
        ));
    }
    let gl = g
        .iter()
        .filter(|x| match x.kind {
            GraphicsType::EglHeadless => true,
            GraphicsType::Spice | GraphicsType::Dbus | GraphicsType::Sdl => {
                x.residue.find("gl").and_then(|e| e.get_attr("enable")) == Some("yes")
            }
            _ => false,
        })
        .count();
    if gl > 1 {
        return Err(unsupported(
            "multiple OpenGL displays are not supported by QEMU",
        ));
    }
    Ok(())
}

fn validate_video(def: &Domain) -> Result<()> {
    for v in &def.devices.videos {
        if v.kind == Some(VideoType::Ramfb) && v.info.address.is_some() {
            return Err(unsupported("address not supported for video type ramfb"));
        }
    }
    Ok(())
}

fn validate_iommu(def: &Domain) -> Result<()> {
    let Some(io) = &def.devices.iommu else {
        return Ok(());
    };
    let model = io.attr("model").unwrap_or("");
    let machine = def.os.machine.as_deref().unwrap_or("");
    match model {
        "intel" if !is_q35(machine) => {
            return Err(unsupported(
                "IOMMU device: 'intel' is only supported with Q35 machines",
            ))
        }
        "virtio" => {
            if !is_q35(machine) && !machine.starts_with("virt") {
                return Err(unsupported(
                    "IOMMU device: 'virtio' is only supported with Q35 and ARM Virt machines",
                ));
            }
            if !def.features.as_ref().is_some_and(|f| f.acpi) {
                return Err(unsupported("IOMMU device: 'virtio' requires ACPI"));
            }
            match &io.info.address {
                Some(Address::Pci(p)) if !p.addr.is_empty() && p.addr.bus != 0 => {
                    return Err(Error::xml(format!(
                        "The device at PCI address {} needs to be an integrated device (bus=0)",
                        p.addr
                    )));
                }
                Some(Address::Pci(_)) => {}
                Some(_) => {
                    return Err(unsupported("IOMMU device: 'virtio' needs a PCI address"));
                }
                None => {}
            }
        }
        _ => {}
    }
    Ok(())
}

fn validate_inputs(def: &Domain) -> Result<()> {
    for i in &def.devices.inputs {
        if i.model.is_some()
            && matches!(
                i.kind,
                InputType::Keyboard | InputType::Mouse | InputType::Tablet
            )
            && i.model != Some(VirtioModel::Virtio)
        {
            return Err(unsupported(format!(
                "virtio (non-)transitional models are not supported for input type={}",
                crate::common::StrEnum::as_str(i.kind)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, ParseOptions};

    fn check(devices: &str, os: &str) -> Result<()> {
        let xml = format!(
            "<domain type='kvm'><name>t</name><memory>1</memory>\
             <os>{os}<type>hvm</type></os><devices>{devices}</devices></domain>"
        );
        validate(&parse(&xml, ParseOptions { inactive: true })?)
    }

    fn message(r: Result<()>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn duplicate_disk_targets_are_rejected_with_both_sources() {
        let m = message(check(
            "<disk type='file'><source file='/a'/><target dev='sda'/></disk>\
             <disk type='file'><source file='/b'/><target dev='sda' bus='usb'/></disk>",
            "",
        ));
        assert_eq!(
            m,
            "XML error: target 'sda' duplicated for disk sources '/a' and '/b'"
        );
    }

    #[test]
    fn partition_targets_and_unusable_formats_are_rejected() {
        let m = message(check("<disk><target dev='vdb1'/></disk>", ""));
        assert!(m.contains("partitions can't appear in disk targets"), "{m}");
        let m = message(check(
            "<disk><driver name='qemu' type='cow'/><target dev='vda'/></disk>",
            "",
        ));
        assert!(m.contains("'cow' storage format is not supported"), "{m}");
    }

    #[test]
    fn network_disk_secret_needs_a_known_type() {
        let m = message(check(
            "<disk type='network'><auth username='u'><secret usage='x'/></auth>\
             <source protocol='iscsi' name='iqn/1'><host name='h'/></source>\
             <target dev='vda'/></disk>",
            "",
        ));
        assert_eq!(m, "unsupported configuration: unknown secret type '<null>'");
    }

    #[test]
    fn firmware_autoselection_rules_follow_libvirt() {
        let m = message(check("", "<nvram>/x_VARS.fd</nvram>"));
        assert!(m.contains("no loader path specified"), "{m}");
        let xml = "<domain type='kvm'><name>t</name><memory>1</memory>\
             <os firmware='bios'><type>hvm</type><nvram>/x</nvram></os></domain>";
        let m = message(validate(
            &parse(xml, ParseOptions { inactive: true }).unwrap(),
        ));
        assert_eq!(m, "firmware type 'bios' does not support nvram");
        let xml = "<domain type='kvm'><name>t</name><memory>1</memory>\
             <os firmware='efi'><type>hvm</type><loader type='pflash'/></os></domain>";
        let m = message(validate(
            &parse(xml, ParseOptions { inactive: true }).unwrap(),
        ));
        assert!(
            m.starts_with("loader attribute 'type' cannot be specified"),
            "{m}"
        );
    }

    #[test]
    fn boot_menu_timeout_is_range_checked() {
        let m = message(check("", "<bootmenu enable='yes' timeout='65536'/>"));
        assert!(m.contains("must be in range [0,65535]"), "{m}");
    }
}
