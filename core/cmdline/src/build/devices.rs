//! Device addressing (bus/addr properties), virtio device naming and
//! options, controllers, hubs, inputs, IOMMU and the memory balloon.

use qvisor_caps::Flag;
use qvisor_domain::xml::Element;
use qvisor_domain::{
    Address, Controller, ControllerModel, ControllerType, DeviceInfo, DiskBus, InputBus, InputType,
    OnOff, PciModel, ScsiModel, StrEnum, UsbModel, VirtioModel, YesNo,
};

use super::Ctx;
use crate::error::{Error, Result};
use crate::machine::{has_builtin_ide, is_q35};
use crate::props::Props;

fn controller<'a>(ctx: &'a Ctx, kind: ControllerType, idx: u32) -> Option<&'a Controller> {
    ctx.def
        .devices
        .controllers
        .iter()
        .find(|c| c.kind == kind && c.idx() == idx)
}

fn controller_alias(ctx: &Ctx, kind: ControllerType, idx: u32) -> Result<String> {
    controller(ctx, kind, idx)
        .and_then(|c| c.info.alias.clone())
        .ok_or_else(|| {
            Error::internal(format!(
                "Could not find {kind} controller with index {idx} required for device"
            ))
        })
}

/// The QEMU bus name of PCI bus `bus` (the alias of the controller with
/// that index; built-in roots keep QEMU's names even with a user alias).
fn pci_bus_name(ctx: &Ctx, bus: u32) -> Result<String> {
    let c = controller(ctx, ControllerType::Pci, bus).ok_or_else(|| {
        Error::internal(format!(
            "Could not find PCI controller with index '{bus}' required for device"
        ))
    })?;
    let alias = c.info.alias.clone().unwrap_or_default();
    if alias.starts_with("ua-") {
        match c.pci_model() {
            Some(PciModel::PciRoot) => return Ok("pci.0".into()),
            Some(PciModel::PcieRoot) => return Ok("pcie.0".into()),
            _ => {}
        }
    }
    Ok(alias)
}

/// Adds the bus/address properties of `info` (`qemuBuildDeviceAddressProps`).
pub(super) fn address_props(ctx: &Ctx, p: &mut Props, info: &DeviceInfo) -> Result<()> {
    match &info.address {
        Some(Address::Pci(pci)) => {
            let a = pci.addr;
            p.set("bus", pci_bus_name(ctx, a.bus)?);
            if let Some(m) = pci.multifunction {
                p.set("multifunction", m.is_on());
            }
            let addr = if a.function != 0 {
                format!("0x{:x}.0x{:x}", a.slot, a.function)
            } else {
                format!("0x{:x}", a.slot)
            };
            p.set("addr", addr);
            if let Some(i) = info.acpi_index.filter(|i| *i > 0) {
                p.set("acpi-index", i);
            }
        }
        Some(Address::Usb { bus, port }) => {
            let alias = controller_alias(ctx, ControllerType::Usb, *bus)?;
            p.set("bus", format!("{alias}.0"));
            if let Some(port) = port {
                p.set("port", port.as_str());
            }
        }
        Some(Address::SpaprVio { reg: Some(r) }) => p.set("reg", *r),
        Some(Address::Ccw { cssid, ssid, devno }) => {
            p.set("devno", format!("{cssid:x}.{ssid:x}.{devno:04x}"))
        }
        Some(Address::Isa { iobase, irq }) => {
            p.set("iobase", *iobase);
            if *irq > 0 {
                p.set("irq", *irq);
            }
        }
        Some(Address::Dimm { slot, base }) => {
            p.set("slot", *slot);
            if let Some(b) = base.filter(|b| *b > 0) {
                p.set("addr", b);
            }
        }
        Some(Address::VirtioSerial {
            controller,
            bus,
            port,
        }) => {
            let alias = controller_alias(ctx, ControllerType::VirtioSerial, *controller)?;
            p.set("bus", format!("{alias}.{bus}"));
            p.set("nr", *port);
        }
        _ => {}
    }
    Ok(())
}

/// Bus properties of a disk on a drive address.
pub(super) fn drive_address_props(
    ctx: &Ctx,
    p: &mut Props,
    bus: DiskBus,
    info: &DeviceInfo,
) -> Result<()> {
    let Some(Address::Drive(d)) = &info.address else {
        return address_props(ctx, p, info);
    };
    match bus {
        DiskBus::Ide => {
            let alias = if has_builtin_ide(ctx.machine()) {
                "ide".to_string()
            } else {
                controller_alias(ctx, ControllerType::Ide, d.controller)?
            };
            p.set("bus", format!("{alias}.{}", d.bus));
            p.set("unit", d.unit);
        }
        DiskBus::Sata => {
            let alias = if is_q35(ctx.machine()) && d.controller == 0 {
                "ide".to_string()
            } else {
                controller_alias(ctx, ControllerType::Sata, d.controller)?
            };
            p.set("bus", format!("{alias}.{}", d.unit));
        }
        DiskBus::Fdc => p.set("unit", d.unit),
        DiskBus::Scsi => {
            let c = controller(ctx, ControllerType::Scsi, d.controller).ok_or_else(|| {
                Error::internal(format!(
                    "unable to find a SCSI controller for idx={}",
                    d.controller
                ))
            })?;
            let alias = c.info.alias.clone().unwrap_or_default();
            match c.scsi_model() {
                Some(
                    ScsiModel::Lsilogic
                    | ScsiModel::Ncr53c90
                    | ScsiModel::Dc390
                    | ScsiModel::Am53c974,
                ) => {
                    p.set("bus", format!("{alias}.{}", d.bus));
                    p.set("scsi-id", d.unit);
                }
                _ => {
                    p.set("bus", format!("{alias}.0"));
                    p.set("channel", d.bus);
                    p.set("scsi-id", d.target);
                    p.set("lun", d.unit);
                }
            }
        }
        other => {
            return Err(Error::internal(format!(
                "address type drive is not supported for bus '{other}'"
            )))
        }
    }
    Ok(())
}

/// `<driver iommu= ats= packed= page_per_vq=>` as virtio device properties.
pub(super) fn virtio_options(p: &mut Props, driver: Option<&Element>) {
    let Some(d) = driver else { return };
    for (attr, prop) in [
        ("iommu", "iommu_platform"),
        ("ats", "ats"),
        ("packed", "packed"),
        ("page_per_vq", "page-per-vq"),
    ] {
        match d.get_attr(attr) {
            Some("on") => p.set(prop, true),
            Some("off") => p.set(prop, false),
            _ => {}
        }
    }
}

/// The QEMU driver name of a virtio device: `base` + `-pci` (or `-ccw`,
/// `-device`) + the (non-)transitional suffix.
pub(super) fn virtio_driver(
    ctx: &Ctx,
    base: &str,
    info: &DeviceInfo,
    model: Option<VirtioModel>,
    bus_suffix: bool,
) -> Result<String> {
    let mut name = base.to_string();
    let implname = match &info.address {
        Some(Address::Ccw { .. }) => "ccw",
        Some(Address::VirtioMmio) => "device",
        _ => "pci",
    };
    if bus_suffix {
        name.push('-');
        name.push_str(implname);
    }
    match model {
        Some(VirtioModel::VirtioTransitional) if ctx.has(Flag::VirtioPciTransitional) => {
            name.push_str("-transitional");
        }
        Some(VirtioModel::VirtioNonTransitional) => {
            if ctx.has(Flag::VirtioPciTransitional) {
                name.push_str("-non-transitional");
            } else {
                return Err(Error::unsupported(
                    "virtio non-transitional model not supported for this qemu",
                ));
            }
        }
        _ => {}
    }
    Ok(name)
}

/// A virtio `-device` start: driver plus virtio options.
pub(super) fn virtio_props(
    ctx: &Ctx,
    base: &str,
    info: &DeviceInfo,
    model: Option<VirtioModel>,
    driver: Option<&Element>,
) -> Result<Props> {
    let mut p = Props::new().with("driver", virtio_driver(ctx, base, info, model, true)?);
    virtio_options(&mut p, driver);
    Ok(p)
}

pub(super) fn iommu(ctx: &mut Ctx) -> Result<()> {
    let Some(io) = ctx.def.devices.iommu.clone() else {
        return Ok(());
    };
    let alias = io.info.alias.clone().unwrap_or_default();
    let drv = io.child("driver");
    let onoff = |a: &str| {
        drv.and_then(|d| d.get_attr(a))
            .and_then(OnOff::from_name_opt)
    };
    match io.attr("model") {
        Some("intel") => {
            let aw: Option<u32> = drv
                .and_then(|d| d.get_attr("aw_bits"))
                .and_then(|s| s.parse().ok())
                .filter(|n| *n > 0);
            let p = Props::new()
                .with("driver", "intel-iommu")
                .with("id", alias)
                .opt("intremap", onoff("intremap").map(|o| o.as_str()))
                .opt("caching-mode", onoff("caching_mode").map(OnOff::is_on))
                .opt("eim", onoff("eim").map(|o| o.as_str()))
                .opt("device-iotlb", onoff("iotlb").map(OnOff::is_on))
                .opt("aw-bits", aw);
            ctx.device(p);
        }
        Some("virtio") => {
            let mut p = Props::new()
                .with("driver", "virtio-iommu")
                .with("id", alias);
            address_props(ctx, &mut p, &io.info)?;
            ctx.device(p);
        }
        _ => {}
    }
    Ok(())
}

trait OnOffExt {
    fn from_name_opt(s: &str) -> Option<OnOff>;
}

impl OnOffExt for OnOff {
    fn from_name_opt(s: &str) -> Option<OnOff> {
        <OnOff as qvisor_domain::StrEnum>::from_name(s)
    }
}

pub(super) fn global_controller_opts(ctx: &mut Ctx) -> Result<()> {
    let mut globals = Vec::new();
    for c in &ctx.def.devices.controllers {
        if c.kind != ControllerType::Pci {
            continue;
        }
        let Some(kib) = c.pci.pcihole64_kib else {
            continue;
        };
        let host = match c.pci_model() {
            Some(PciModel::PciRoot) => "i440FX-pcihost",
            Some(PciModel::PcieRoot) => "q35-pcihost",
            _ => {
                return Err(Error::internal(
                    "64-bit PCI hole setting is only for root PCI controllers",
                ))
            }
        };
        globals.push(format!("{host}.pci-hole64-size={kib}K"));
    }
    for g in globals {
        ctx.word("-global", g);
    }
    Ok(())
}

fn usb_driver(m: UsbModel) -> Option<&'static str> {
    Some(match m {
        UsbModel::Piix3Uhci => "piix3-usb-uhci",
        UsbModel::Piix4Uhci => "piix4-usb-uhci",
        UsbModel::Ehci => "usb-ehci",
        UsbModel::Ich9Ehci1 => "ich9-usb-ehci1",
        UsbModel::Ich9Uhci1 => "ich9-usb-uhci1",
        UsbModel::Ich9Uhci2 => "ich9-usb-uhci2",
        UsbModel::Ich9Uhci3 => "ich9-usb-uhci3",
        UsbModel::Vt82c686bUhci => "vt82c686b-usb-uhci",
        UsbModel::PciOhci => "pci-ohci",
        UsbModel::NecXhci => "nec-usb-xhci",
        UsbModel::Qusb1 => "qusb1",
        UsbModel::Qusb2 => "qusb2",
        UsbModel::QemuXhci => "qemu-xhci",
        UsbModel::None => return None,
    })
}

fn pci_model_name(c: &Controller) -> Option<String> {
    if let Some(n) = &c.pci.model_name {
        return Some(n.clone());
    }
    Some(
        match c.pci_model()? {
            PciModel::PciBridge => "pci-bridge",
            PciModel::DmiToPciBridge => "i82801b11-bridge",
            PciModel::PcieRootPort => "pcie-root-port",
            PciModel::PcieSwitchUpstreamPort => "x3130-upstream",
            PciModel::PcieSwitchDownstreamPort => "xio3130-downstream",
            PciModel::PciExpanderBus => "pxb",
            PciModel::PcieExpanderBus => "pxb-pcie",
            PciModel::PcieToPciBridge => "pcie-pci-bridge",
            PciModel::PciRoot | PciModel::PcieRoot => return None,
        }
        .to_string(),
    )
}

fn controller_props(ctx: &Ctx, c: &Controller) -> Result<Option<Props>> {
    let alias = c.info.alias.clone().unwrap_or_default();
    let mut p = match c.kind {
        ControllerType::Scsi => {
            let model = c.scsi_model().unwrap_or(ScsiModel::Lsilogic);
            let simple = |d: &str| Props::new().with("driver", d).with("id", alias.as_str());
            match model {
                ScsiModel::VirtioScsi
                | ScsiModel::VirtioTransitional
                | ScsiModel::VirtioNonTransitional => {
                    let vm = match model {
                        ScsiModel::VirtioTransitional => Some(VirtioModel::VirtioTransitional),
                        ScsiModel::VirtioNonTransitional => {
                            Some(VirtioModel::VirtioNonTransitional)
                        }
                        _ => None,
                    };
                    let drv = c.driver.as_ref();
                    let mut p = virtio_props(ctx, "virtio-scsi", &c.info, vm, drv)?;
                    let num = |a: &str| -> Option<u64> {
                        drv.and_then(|d| d.get_attr(a))
                            .and_then(|v| v.parse().ok())
                            .filter(|n| *n > 0)
                    };
                    if let Some(t) = num("iothread") {
                        p.set("iothread", format!("iothread{t}"));
                    }
                    p.set("id", alias.as_str());
                    p.set_opt("num_queues", num("queues"));
                    p.set_opt("cmd_per_lun", num("cmd_per_lun"));
                    p.set_opt("max_sectors", num("max_sectors"));
                    match drv.and_then(|d| d.get_attr("ioeventfd")) {
                        Some("on") => p.set("ioeventfd", true),
                        Some("off") => p.set("ioeventfd", false),
                        _ => {}
                    }
                    p
                }
                ScsiModel::Lsilogic => simple("lsi"),
                ScsiModel::Ibmvscsi => simple("spapr-vscsi"),
                ScsiModel::Lsisas1068 => simple("mptsas1068"),
                ScsiModel::Lsisas1078 => simple("megasas"),
                ScsiModel::Vmpvscsi => simple("pvscsi"),
                ScsiModel::Am53c974 => simple("am53c974"),
                ScsiModel::Dc390 => simple("dc-390"),
                other => {
                    return Err(Error::unsupported(format!(
                        "Unsupported controller model: {other}"
                    )))
                }
            }
        }
        ControllerType::VirtioSerial => {
            let vm = match c.model {
                Some(ControllerModel::VirtioSerial(m)) => Some(m),
                _ => None,
            };
            let mut p = virtio_props(ctx, "virtio-serial", &c.info, vm, c.driver.as_ref())?;
            p.set("id", alias.as_str());
            p.set_opt("max_ports", c.ports);
            p.set_opt("vectors", c.vectors);
            p
        }
        ControllerType::Ccid => Props::new()
            .with("driver", "usb-ccid")
            .with("id", alias.as_str()),
        ControllerType::Sata => Props::new()
            .with("driver", "ahci")
            .with("id", alias.as_str()),
        ControllerType::Usb => {
            let model = c
                .usb_model()
                .ok_or_else(|| Error::unsupported("no model provided for USB controller"))?;
            let drv = usb_driver(model).unwrap_or("");
            let mut p = Props::new()
                .with("driver", drv)
                .opt("p2", c.ports)
                .opt("p3", c.ports);
            match c.info.master_startport {
                Some(start) => {
                    let master = ctx
                        .def
                        .devices
                        .controllers
                        .iter()
                        .find(|m| {
                            m.kind == ControllerType::Usb
                                && m.idx() == c.idx()
                                && m.info.master_startport.is_none()
                        })
                        .and_then(|m| m.info.alias.clone())
                        .ok_or_else(|| Error::internal("masterbus not found"))?;
                    p.set("masterbus", format!("{master}.0"));
                    p.set("firstport", start);
                }
                None => p.set("id", alias.as_str()),
            }
            p
        }
        ControllerType::Pci => {
            let Some(model) = c.pci_model() else {
                return Ok(None);
            };
            let name = pci_model_name(c).unwrap_or_default();
            let o = &c.pci;
            match model {
                PciModel::PciBridge => Props::new()
                    .with("driver", name)
                    .with("chassis_nr", o.chassis_nr.unwrap_or(0))
                    .with("id", alias.as_str()),
                PciModel::PciExpanderBus | PciModel::PcieExpanderBus => Props::new()
                    .with("driver", name)
                    .with("bus_nr", o.bus_nr.unwrap_or(0))
                    .with("id", alias.as_str())
                    .opt("numa_node", o.numa_node),
                PciModel::DmiToPciBridge
                | PciModel::PcieSwitchUpstreamPort
                | PciModel::PcieToPciBridge => {
                    Props::new().with("driver", name).with("id", alias.as_str())
                }
                PciModel::PcieRootPort | PciModel::PcieSwitchDownstreamPort => Props::new()
                    .with("driver", name)
                    .with("port", o.port.unwrap_or(0))
                    .with("chassis", o.chassis.unwrap_or(0))
                    .with("id", alias.as_str())
                    .opt("hotplug", o.hotplug.map(OnOff::is_on)),
                PciModel::PciRoot => Props::new()
                    .with("driver", name)
                    .with("index", o.target_index.unwrap_or(0))
                    .with("id", alias.as_str())
                    .opt("numa_node", o.numa_node),
                PciModel::PcieRoot => {
                    return Err(Error::unsupported(
                        "Unsupported PCI Express root controller",
                    ))
                }
            }
        }
        other => {
            return Err(Error::unsupported(format!(
                "Unsupported controller type: {other}"
            )))
        }
    };
    address_props(ctx, &mut p, &c.info)?;
    Ok(Some(p))
}

fn skip_controller(ctx: &Ctx, c: &Controller) -> bool {
    let machine = ctx.machine();
    match (c.kind, c.model) {
        (ControllerType::Pci, Some(ControllerModel::Pci(PciModel::PcieRoot))) => true,
        (ControllerType::Pci, Some(ControllerModel::Pci(PciModel::PciRoot))) => {
            !machine.starts_with("pseries")
        }
        (ControllerType::Sata, _) => c.idx() == 0 && is_q35(machine),
        (ControllerType::Ide, _) => c.idx() == 0 && has_builtin_ide(machine),
        _ => false,
    }
}

fn controllers_of_type(ctx: &mut Ctx, kind: ControllerType) -> Result<()> {
    let forbid_legacy_usb = is_q35(ctx.machine());
    let def = ctx.def;
    for c in def.devices.controllers.iter().filter(|c| c.kind == kind) {
        if c.kind == ControllerType::Pci && c.pci_model() == Some(PciModel::PciRoot) && c.idx() == 0
        {
            if let Some(h) = c.pci.hotplug {
                ctx.word("-global", format!("PIIX4_PM.acpi-root-pci-hotplug={h}"));
            }
        }
        if skip_controller(ctx, c) {
            continue;
        }
        if c.kind == ControllerType::Usb {
            match c.usb_model() {
                Some(UsbModel::None) => continue,
                None if !forbid_legacy_usb => continue,
                _ => {}
            }
        }
        if let Some(p) = controller_props(ctx, c)? {
            ctx.device(p);
        }
    }
    Ok(())
}

pub(super) fn controllers(ctx: &mut Ctx) -> Result<()> {
    for kind in [
        ControllerType::Pci,
        ControllerType::Usb,
        ControllerType::Scsi,
        ControllerType::Ide,
        ControllerType::Sata,
        ControllerType::VirtioSerial,
    ] {
        controllers_of_type(ctx, kind)?;
    }
    // legacy -usb
    let usb: Vec<_> = ctx
        .def
        .devices
        .controllers
        .iter()
        .filter(|c| c.kind == ControllerType::Usb)
        .collect();
    if usb.iter().any(|c| c.usb_model() == Some(UsbModel::None)) {
        return Ok(());
    }
    let nlegacy = usb.iter().filter(|c| c.usb_model().is_none()).count();
    let nusb = usb.len() - nlegacy;
    if nlegacy > 1 {
        return Err(Error::unsupported(
            "Multiple legacy USB controllers are not supported",
        ));
    }
    if nusb == 0 && !is_q35(ctx.machine()) && !ctx.arch().starts_with("s390") {
        ctx.flag("-usb");
    }
    Ok(())
}

pub(super) fn ccid_controllers(ctx: &mut Ctx) -> Result<()> {
    controllers_of_type(ctx, ControllerType::Ccid)
}

pub(super) fn hubs(ctx: &mut Ctx) -> Result<()> {
    let hubs = ctx.def.devices.hubs.clone();
    for h in &hubs {
        let mut p = Props::new()
            .with("driver", "usb-hub")
            .with("id", h.info.alias.clone().unwrap_or_default());
        address_props(ctx, &mut p, &h.info)?;
        ctx.device(p);
    }
    Ok(())
}

pub(super) fn inputs(ctx: &mut Ctx) -> Result<()> {
    let inputs = ctx.def.devices.inputs.clone();
    for i in &inputs {
        let alias = i.info.alias.clone().unwrap_or_default();
        let src = i.residue.find("source");
        if i.kind == InputType::Evdev {
            let s = src.cloned().unwrap_or_default();
            let mut p = Props::new()
                .with("qom-type", "input-linux")
                .with("id", alias)
                .with("evdev", s.get_attr("dev").unwrap_or(""));
            match s.get_attr("repeat") {
                Some("on") => p.set("repeat", true),
                Some("off") => p.set("repeat", false),
                _ => {}
            }
            if s.get_attr("grab") == Some("all") {
                p.set("grab_all", true);
            }
            if let Some(t) = s.get_attr("grabToggle") {
                p.set("grab-toggle", t);
            }
            ctx.object(p);
            continue;
        }
        match i.bus {
            Some(InputBus::Usb) => {
                let drv = match i.kind {
                    InputType::Mouse => "usb-mouse",
                    InputType::Tablet => "usb-tablet",
                    _ => "usb-kbd",
                };
                let mut p = Props::new().with("driver", drv).with("id", alias);
                address_props(ctx, &mut p, &i.info)?;
                ctx.device(p);
            }
            Some(InputBus::Virtio) => {
                let base = match i.kind {
                    InputType::Mouse => "virtio-mouse",
                    InputType::Tablet => "virtio-tablet",
                    InputType::Keyboard => "virtio-keyboard",
                    _ => "virtio-input-host",
                };
                let mut p = virtio_props(ctx, base, &i.info, i.model, i.residue.find("driver"))?;
                p.set("id", alias);
                if i.kind == InputType::Passthrough {
                    p.set_opt("evdev", src.and_then(|s| s.get_attr("evdev")));
                }
                address_props(ctx, &mut p, &i.info)?;
                ctx.device(p);
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn memballoon(ctx: &mut Ctx) -> Result<()> {
    let Some(b) = ctx.def.devices.memballoon.clone() else {
        return Ok(());
    };
    let model = match b.model.as_str() {
        "virtio" => None,
        "virtio-transitional" => Some(VirtioModel::VirtioTransitional),
        "virtio-non-transitional" => Some(VirtioModel::VirtioNonTransitional),
        _ => return Ok(()),
    };
    let mut p = virtio_props(ctx, "virtio-balloon", &b.info, model, b.driver.as_ref())?;
    p.set("id", b.info.alias.clone().unwrap_or_default());
    p.set_opt("deflate-on-oom", b.autodeflate.map(OnOff::is_on));
    p.set_opt(
        "free-page-reporting",
        b.free_page_reporting.map(OnOff::is_on),
    );
    address_props(ctx, &mut p, &b.info)?;
    ctx.device(p);
    Ok(())
}

/// `<rom>` tuning as `rombar`/`romfile` (PCI devices only).
pub(super) fn rom_props(p: &mut Props, info: &DeviceInfo) -> Result<()> {
    let Some(rom) = &info.rom else { return Ok(()) };
    if rom.enabled.is_none() && rom.bar.is_none() && rom.file.is_none() {
        return Ok(());
    }
    if !matches!(info.address, Some(Address::Pci(_))) {
        return Err(Error::unsupported(
            "ROM tuning is only supported for PCI devices",
        ));
    }
    if rom.enabled == Some(YesNo::No) {
        p.set("romfile", "");
        return Ok(());
    }
    match rom.bar {
        Some(OnOff::On) => p.set("rombar", 1),
        Some(OnOff::Off) => p.set("rombar", 0),
        None => {}
    }
    p.set_opt("romfile", rom.file.as_deref());
    Ok(())
}
