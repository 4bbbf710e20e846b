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
    validate_firmware(def)?;
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

fn validate_firmware(def: &Domain) -> Result<()> {
    let os = &def.os;
    let loader = os.loader.as_ref();
    if os.firmware.is_none() && !os.firmware_features.is_empty() {
        return Err(unsupported(
            "cannot use feature-based firmware autoselection when firmware autoselection is disabled",
        ));
    }
    if let (Some(l), Some(n)) = (loader, &os.nvram) {
        if l.stateless == Some(YesNo::Yes) && n.template.is_some() {
            return Err(unsupported(
                "NVRAM template is not permitted when loader is stateless",
            ));
        }
    }
    if os.firmware == Some(Firmware::Bios)
        && (loader.is_some_and(|l| l.stateless == Some(YesNo::No)) || os.nvram.is_some())
    {
        return Err(unsupported("Only EFI firmware permits NVRAM"));
    }
    if os.firmware.is_some() && loader.is_some_and(|l| l.secure == Some(YesNo::No)) {
        return Err(unsupported(
            "loader attribute 'secure' cannot be specified when firmware autoselection is enabled",
        ));
    }
    let feat = |n: &str| {
        os.firmware_features
            .iter()
            .find(|f| f.name == n)
            .map(|f| f.enabled)
    };
    if feat("enrolled-keys") == Some(YesNo::Yes) && feat("secure-boot") == Some(YesNo::No) {
        return Err(unsupported(
            "firmware feature 'enrolled-keys' cannot be enabled when firmware feature 'secure-boot' is disabled",
        ));
    }
    Ok(())
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
    if let (Some(auth), Some(proto)) = (auth, d.source.as_ref().and_then(|s| s.protocol.as_deref()))
    {
        let expected = match proto {
            "iscsi" => Some("iscsi"),
            "rbd" => Some("ceph"),
            _ => None,
        };
        if let (Some(exp), Some(t)) = (
            expected,
            auth.find("secret").and_then(|s| s.get_attr("type")),
        ) {
            if t != exp {
                return Err(unsupported(format!("invalid secret type '{t}'")));
            }
        }
    }
    Ok(())
}

fn validate_hostdevs(def: &Domain) -> Result<()> {
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
