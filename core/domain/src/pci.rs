//! PCI address assignment (libvirt's `qemuDomainAssignPCIAddresses`).
//!
//! Two passes, as in libvirt: a dry run on a copy that may grow the bus
//! topology (adding pci-bridges or pcie-root-ports where devices need
//! them), then the real assignment on the final topology.

use qvisor_caps::{Flag, QemuCaps};

use crate::address::{Address, DeviceInfo, PciAddress, PciDeviceAddress};
use crate::common::{OnOff, StrEnum};
use crate::devices::*;
use crate::domain::Domain;
use crate::error::{Error, Result};
use crate::expand::{add_controller, is_i440fx, is_q35};

/// How a device or controller connects to a PCI bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    PciDev,
    PcieDev,
    PciBridge,
    DmiToPci,
    PcieToPci,
    RootPort,
    SwitchUp,
    SwitchDown,
    PciExpander,
    PcieExpander,
}

#[derive(Debug, Clone, Copy)]
struct Flags {
    conn: Conn,
    /// Ordinary device placed automatically (needs an auto-assign bus).
    auto: bool,
    /// Integrated device: only on the root bus (`VIR_PCI_CONNECT_INTEGRATED`).
    integrated: bool,
}

#[derive(Debug, Clone)]
struct Bus {
    model: PciModel,
    min: u32,
    max: u32,
    funcs: [u8; 32],
    aggregate: [bool; 32],
    /// A root port the dry run added only to hold a new pcie-to-pci-bridge:
    /// it takes nothing else (libvirt narrows the bus flags the same way).
    bridge_only: bool,
}

impl Bus {
    fn new(model: PciModel) -> Self {
        let (min, max) = match model {
            PciModel::PcieRootPort | PciModel::PcieSwitchDownstreamPort => (0, 0),
            PciModel::DmiToPciBridge
            | PciModel::PcieSwitchUpstreamPort
            | PciModel::PciExpanderBus
            | PciModel::PcieExpanderBus => (0, 31),
            _ => (1, 31),
        };
        Bus {
            model,
            min,
            max,
            funcs: [0; 32],
            aggregate: [false; 32],
            bridge_only: false,
        }
    }

    /// Whether auto-assigned devices may be placed on this bus
    /// (libvirt's `VIR_PCI_CONNECT_AUTOASSIGN` bus flag).
    fn autoassign(&self) -> bool {
        !self.bridge_only
            && matches!(
                self.model,
                PciModel::PciRoot
                    | PciModel::PciBridge
                    | PciModel::PciExpanderBus
                    | PciModel::PcieToPciBridge
                    | PciModel::PcieRootPort
                    | PciModel::PcieSwitchDownstreamPort
            )
    }

    /// The connection types plugged *into* this bus
    /// (`virDomainPCIAddressBusSetModel`).
    fn takes(&self, c: Conn) -> bool {
        use Conn::*;
        if self.bridge_only {
            return c == PcieToPci;
        }
        match self.model {
            PciModel::PciRoot => matches!(c, PciDev | PciBridge | PciExpander),
            PciModel::PciBridge
            | PciModel::PciExpanderBus
            | PciModel::DmiToPciBridge
            | PciModel::PcieToPciBridge => matches!(c, PciDev | PciBridge),
            PciModel::PcieRoot => matches!(c, PcieDev | RootPort | DmiToPci | PcieExpander),
            PciModel::PcieRootPort | PciModel::PcieSwitchDownstreamPort => {
                matches!(c, PcieDev | SwitchUp | PcieToPci)
            }
            PciModel::PcieSwitchUpstreamPort => c == SwitchDown,
            PciModel::PcieExpanderBus => matches!(c, RootPort | DmiToPci),
        }
    }

    /// libvirt's `virDomainPCIAddressFlagsCompatible` for an address the
    /// assigner picks (not one from the configuration).
    fn accepts(&self, index: usize, f: Flags) -> bool {
        let mut autoassign = self.autoassign();
        if f.integrated {
            // integrated devices sit on the root bus, which then allows them
            if index != 0 {
                return false;
            }
            autoassign = true;
        }
        if f.auto && !autoassign {
            return false;
        }
        self.takes(f.conn)
    }
}

struct AddrSet {
    buses: Vec<Option<Bus>>,
    dry_run: bool,
    pcie_to_pci: bool,
}

impl AddrSet {
    fn reserve(&mut self, a: PciAddress, aggregate: bool) {
        if let Some(Some(b)) = self.buses.get_mut(a.bus as usize) {
            let slot = a.slot as usize;
            if let (Some(f), Some(x)) = (b.funcs.get_mut(slot), b.aggregate.get_mut(slot)) {
                // the first device on a slot decides whether it aggregates
                if *f == 0 && aggregate {
                    *x = true;
                }
                *f |= 1 << (a.function & 7);
            }
        }
    }

    fn in_use(&self, a: PciAddress) -> bool {
        match self.buses.get(a.bus as usize) {
            Some(Some(b)) => b.funcs.get(a.slot as usize).is_some_and(|f| *f != 0),
            _ => false,
        }
    }

    fn find_on_bus(b: &Bus, index: usize, f: Flags, function: Option<u32>) -> Option<(u32, u32)> {
        if !b.accepts(index, f) {
            return None;
        }
        let want_fn = function.unwrap_or(0);
        for slot in b.min..=b.max {
            let used = b.funcs[slot as usize];
            if used == 0 {
                return Some((slot, want_fn));
            }
            if f.conn == Conn::RootPort && b.aggregate[slot as usize] {
                if function.is_some() {
                    if used & (1 << want_fn) == 0 {
                        return Some((slot, want_fn));
                    }
                } else if let Some(func) = (0..8u32).find(|fi| used & (1 << fi) == 0) {
                    return Some((slot, func));
                }
            }
        }
        None
    }

    fn next(&mut self, f: Flags, function: Option<u32>) -> Result<PciAddress> {
        for (i, b) in self.buses.iter().enumerate() {
            if let Some(b) = b {
                if let Some((slot, func)) = Self::find_on_bus(b, i, f, function) {
                    return Ok(PciAddress::new(i as u32, slot, func));
                }
            }
        }
        if self.dry_run {
            return self.grow(f);
        }
        Err(Error::Internal("No more available PCI slots".into()))
    }

    /// Adds the bus(es) a device needs when no existing bus has room
    /// (libvirt's `virDomainPCIAddressSetGrow`); returns the device's address
    /// on the first slot of the new bus.
    fn grow(&mut self, f: Flags) -> Result<PciAddress> {
        // bus numbers are 8 bits: no topology has more than 256 buses
        if self.buses.len() + 2 > MAX_BUSES {
            return Err(Error::Internal("No more available PCI slots".into()));
        }
        let model = match f.conn {
            Conn::PciDev => PciModel::PciBridge,
            Conn::PcieDev | Conn::SwitchUp => PciModel::PcieRootPort,
            other => {
                return Err(Error::Internal(match controller_model_of(other) {
                    Some(m) => format!(
                        "a PCI slot is needed to connect a PCI controller model='{}', but none is available, and it cannot be automatically added",
                        m.as_str()
                    ),
                    None => "Cannot automatically add a new PCI bus for a device".into(),
                }))
            }
        };
        if model == PciModel::PciBridge {
            // a pure PCIe topology first needs a way down to legacy PCI:
            // pcie-root-port + pcie-to-pci-bridge, or dmi-to-pci-bridge +
            // pci-bridge when QEMU lacks the former
            let bridge_slot = self
                .buses
                .iter()
                .flatten()
                .any(|b| b.takes(Conn::PciBridge));
            if !bridge_slot && self.pcie_to_pci {
                let mut port = Bus::new(PciModel::PcieRootPort);
                port.bridge_only = true;
                self.buses.push(Some(port));
                self.buses.push(Some(Bus::new(PciModel::PcieToPciBridge)));
                return Ok(self.first_slot_of_last());
            }
            if !bridge_slot {
                self.buses.push(Some(Bus::new(PciModel::DmiToPciBridge)));
            }
        }
        self.buses.push(Some(Bus::new(model)));
        Ok(self.first_slot_of_last())
    }

    fn first_slot_of_last(&self) -> PciAddress {
        let bus = self.buses.len().saturating_sub(1);
        let min = self
            .buses
            .last()
            .and_then(|b| b.as_ref())
            .map_or(1, |b| b.min);
        PciAddress::new(bus as u32, min, 0)
    }

    fn assign(&mut self, info: &mut DeviceInfo, f: Flags) -> Result<()> {
        let a = self.next(f, None)?;
        self.reserve(a, f.conn == Conn::RootPort);
        if !self.dry_run {
            let multi = match &info.address {
                Some(Address::Pci(p)) => p.multifunction,
                _ => None,
            };
            info.address = Some(Address::Pci(PciDeviceAddress {
                addr: a,
                multifunction: multi,
                zpci: None,
            }));
        }
        Ok(())
    }
}

fn wants(info: &DeviceInfo) -> bool {
    info.wants_pci()
}

/// PCI bus numbers are 8 bits wide.
const MAX_BUSES: usize = 256;

/// The controller model plugged in with connection type `c`, if any.
fn controller_model_of(c: Conn) -> Option<PciModel> {
    Some(match c {
        Conn::PciBridge => PciModel::PciBridge,
        Conn::DmiToPci => PciModel::DmiToPciBridge,
        Conn::PcieToPci => PciModel::PcieToPciBridge,
        Conn::RootPort => PciModel::PcieRootPort,
        Conn::SwitchUp => PciModel::PcieSwitchUpstreamPort,
        Conn::SwitchDown => PciModel::PcieSwitchDownstreamPort,
        Conn::PciExpander => PciModel::PciExpanderBus,
        Conn::PcieExpander => PciModel::PcieExpanderBus,
        Conn::PciDev | Conn::PcieDev => return None,
    })
}

fn controller_conn(m: PciModel) -> Option<Conn> {
    Some(match m {
        PciModel::PciBridge => Conn::PciBridge,
        PciModel::DmiToPciBridge => Conn::DmiToPci,
        PciModel::PcieToPciBridge => Conn::PcieToPci,
        PciModel::PcieRootPort => Conn::RootPort,
        PciModel::PcieSwitchUpstreamPort => Conn::SwitchUp,
        PciModel::PcieSwitchDownstreamPort => Conn::SwitchDown,
        PciModel::PciExpanderBus => Conn::PciExpander,
        PciModel::PcieExpanderBus => Conn::PcieExpander,
        PciModel::PciRoot | PciModel::PcieRoot => return None,
    })
}

struct Ctx {
    pci: Flags,
    pcie: Flags,
    virtio: Flags,
}

fn virtio_flags(ctx: &Ctx, transitional: bool) -> Flags {
    if transitional {
        ctx.pci
    } else {
        ctx.virtio
    }
}

fn model_is_transitional(m: Option<&str>) -> bool {
    m == Some("virtio-transitional")
}

/// The chipset's fixed placements (PIIX3 / ICH9 functions, primary video).
fn chipset_slots(def: &mut Domain, set: &mut AddrSet, machine: &str) -> Result<()> {
    if is_i440fx(machine) {
        for c in &mut def.devices.controllers {
            let fixed = match (c.kind, c.idx()) {
                (ControllerType::Ide, 0) => Some(PciAddress::new(0, 1, 1)),
                (ControllerType::Usb, 0)
                    if matches!(c.usb_model(), None | Some(UsbModel::Piix3Uhci)) =>
                {
                    Some(PciAddress::new(0, 1, 2))
                }
                _ => None,
            };
            let Some(fixed) = fixed else { continue };
            match c.info.pci() {
                Some(a) if a != fixed => {
                    return Err(Error::Internal(if c.kind == ControllerType::Ide {
                        "Primary IDE controller must have PCI address 0:0:1.1".into()
                    } else {
                        "PIIX3 USB controller at index 0 must have PCI address 0:0:1.2".into()
                    }))
                }
                Some(_) => {}
                None => c.info.address = Some(Address::pci(fixed)),
            }
            set.reserve(fixed, false);
        }
        set.reserve(PciAddress::new(0, 1, 0), false);
        set.reserve(PciAddress::new(0, 1, 3), false);
        primary_video(def, set, 2)?;
    }
    if is_q35(machine) {
        for c in &mut def.devices.controllers {
            match c.kind {
                ControllerType::Sata if c.idx() == 0 => {
                    let fixed = PciAddress::new(0, 0x1f, 2);
                    match c.info.pci() {
                        Some(a) if a != fixed => {
                            return Err(Error::Internal(
                                "Primary SATA controller must have PCI address 0:0:1f.2".into(),
                            ))
                        }
                        Some(_) => {}
                        None => c.info.address = Some(Address::pci(fixed)),
                    }
                }
                ControllerType::Usb
                    if c.usb_model() == Some(UsbModel::Ich9Uhci1) && c.info.address.is_none() =>
                {
                    for slot in [0x1d, 0x1a] {
                        let a = PciAddress::new(0, slot, 0);
                        if !set.in_use(a) {
                            set.reserve(a, false);
                            c.info.address = Some(Address::Pci(PciDeviceAddress {
                                addr: a,
                                multifunction: Some(OnOff::On),
                                zpci: None,
                            }));
                            break;
                        }
                    }
                }
                ControllerType::Pci
                    if c.pci_model() == Some(PciModel::DmiToPciBridge)
                        && c.info.address.is_none() =>
                {
                    let a = PciAddress::new(0, 0x1e, 0);
                    if !set.in_use(a) {
                        set.reserve(a, false);
                        c.info.address = Some(Address::pci(a));
                    }
                }
                _ => {}
            }
        }
        set.reserve(PciAddress::new(0, 0x1f, 0), false);
        set.reserve(PciAddress::new(0, 0x1f, 3), false);
        primary_video(def, set, 1)?;
        let a = PciAddress::new(0, 0x1b, 0);
        if !set.in_use(a) {
            if let Some(s) = def
                .devices
                .sounds
                .iter_mut()
                .find(|s| s.model == "ich9" && wants(&s.info))
            {
                set.reserve(a, false);
                s.info.address = Some(Address::pci(a));
            }
        }
    }
    Ok(())
}

fn primary_video(def: &mut Domain, set: &mut AddrSet, slot: u32) -> Result<()> {
    let Some(v) = def.devices.videos.first_mut() else {
        return Ok(());
    };
    if matches!(v.kind, Some(VideoType::None | VideoType::Ramfb)) || !wants(&v.info) {
        return Ok(());
    }
    let a = PciAddress::new(0, slot, 0);
    if set.in_use(a) {
        let f = Flags {
            conn: Conn::PciDev,
            auto: true,
            integrated: false,
        };
        set.assign(&mut v.info, f)?;
    } else {
        set.reserve(a, false);
        v.info.address = Some(Address::pci(a));
    }
    Ok(())
}

/// Reserves every address already present in the definition.
fn collect(def: &Domain, set: &mut AddrSet) {
    let mut add = |info: &DeviceInfo, aggregate: bool| {
        if let Some(a) = info.pci() {
            set.reserve(a, aggregate);
        }
    };
    let d = &def.devices;
    d.disks.iter().for_each(|x| add(&x.info, false));
    d.controllers
        .iter()
        .for_each(|x| add(&x.info, x.pci_model() == Some(PciModel::PcieRootPort)));
    d.filesystems.iter().for_each(|x| add(&x.info, false));
    d.interfaces.iter().for_each(|x| add(&x.info, false));
    d.sounds.iter().for_each(|x| add(&x.info, false));
    d.videos.iter().for_each(|x| add(&x.info, false));
    d.hostdevs.iter().for_each(|x| add(&x.info, false));
    d.memballoon.iter().for_each(|x| add(&x.info, false));
    d.rngs.iter().for_each(|x| add(&x.info, false));
    d.watchdogs.iter().for_each(|x| add(&x.info, false));
    d.shmems.iter().for_each(|x| add(&x.info, false));
    d.inputs.iter().for_each(|x| add(&x.info, false));
    d.serials.iter().for_each(|x| add(&x.info, false));
    d.memories.iter().for_each(|x| add(&x.info, false));
    d.iommu.iter().for_each(|x| add(&x.info, false));
    d.vsock.iter().for_each(|x| add(&x.info, false));
    d.tpms.iter().for_each(|x| add(&x.info, false));
    d.panics.iter().for_each(|x| add(&x.info, false));
}

fn usb2_companion_fn(m: Option<UsbModel>) -> Option<(u32, Option<OnOff>)> {
    match m {
        Some(UsbModel::Ich9Ehci1) => Some((7, None)),
        Some(UsbModel::Ich9Uhci1) => Some((0, Some(OnOff::On))),
        Some(UsbModel::Ich9Uhci2) => Some((1, None)),
        Some(UsbModel::Ich9Uhci3) => Some((2, None)),
        _ => None,
    }
}

fn device_slots(def: &mut Domain, set: &mut AddrSet, ctx: &Ctx) -> Result<()> {
    let d = &mut def.devices;
    for c in d.controllers.iter_mut() {
        if c.kind != ControllerType::Pci || !wants(&c.info) {
            continue;
        }
        let Some(conn) = c.pci_model().and_then(controller_conn) else {
            continue;
        };
        set.assign(
            &mut c.info,
            Flags {
                conn,
                auto: false,
                integrated: false,
            },
        )?;
    }
    for fs in d.filesystems.iter_mut() {
        if wants(&fs.info) {
            let tr = model_is_transitional(fs.attr("model"));
            set.assign(&mut fs.info, virtio_flags(ctx, tr))?;
        }
    }
    for n in d.interfaces.iter_mut() {
        if n.kind == NetType::Hostdev || !wants(&n.info) {
            continue;
        }
        let f = match n.model.as_deref() {
            Some("usb-net") => continue,
            Some("virtio" | "virtio-non-transitional") => ctx.virtio,
            Some("virtio-transitional") => ctx.pci,
            Some("e1000e") | None => ctx.pcie,
            Some(_) => ctx.pci,
        };
        set.assign(&mut n.info, f)?;
    }
    for s in d.sounds.iter_mut() {
        if !wants(&s.info) || matches!(s.model.as_str(), "sb16" | "pcspk" | "usb" | "ich7") {
            continue;
        }
        set.assign(&mut s.info, ctx.pci)?;
    }
    // non-PCI controllers
    let n = d.controllers.len();
    for i in 0..n {
        let c = &d.controllers[i];
        if matches!(
            c.kind,
            ControllerType::Pci
                | ControllerType::Fdc
                | ControllerType::Ccid
                | ControllerType::Isa
                | ControllerType::Xenbus
        ) {
            continue;
        }
        if c.kind == ControllerType::Usb && c.usb_model() == Some(UsbModel::None) {
            continue;
        }
        if c.kind == ControllerType::Ide && c.idx() == 0 {
            continue;
        }
        if c.kind == ControllerType::Scsi && c.scsi_model() == Some(ScsiModel::Ncr53c90) {
            continue;
        }
        if !wants(&c.info) {
            continue;
        }
        let f = match c.kind {
            ControllerType::Usb => match c.usb_model() {
                Some(UsbModel::NecXhci | UsbModel::QemuXhci) => ctx.pcie,
                Some(UsbModel::Qusb1 | UsbModel::Qusb2) => continue,
                _ => ctx.pci,
            },
            ControllerType::Scsi => match c.scsi_model() {
                Some(ScsiModel::VirtioScsi | ScsiModel::VirtioNonTransitional) => ctx.virtio,
                None => continue,
                _ => ctx.pci,
            },
            ControllerType::VirtioSerial => match c.model {
                Some(ControllerModel::VirtioSerial(VirtioModel::VirtioTransitional)) => ctx.pci,
                _ => ctx.virtio,
            },
            _ => ctx.pci,
        };
        if c.kind == ControllerType::Usb {
            if let Some((func, multi)) = usb2_companion_fn(c.usb_model()) {
                let idx = c.idx();
                let found = d.controllers.iter().find_map(|o| {
                    (o.kind == ControllerType::Usb
                        && usb2_companion_fn(o.usb_model()).is_some()
                        && o.idx() == idx)
                        .then(|| o.info.pci())
                        .flatten()
                });
                let addr = match found {
                    Some(a) => PciAddress {
                        function: func,
                        ..a
                    },
                    None => set.next(f, Some(func))?,
                };
                set.reserve(addr, false);
                if !set.dry_run {
                    d.controllers[i].info.address = Some(Address::Pci(PciDeviceAddress {
                        addr,
                        multifunction: multi,
                        zpci: None,
                    }));
                }
                continue;
            }
        }
        set.assign(&mut d.controllers[i].info, f)?;
    }
    for disk in d.disks.iter_mut() {
        if disk.bus() != DiskBus::Virtio {
            continue;
        }
        if disk.info.pci().is_some() {
            continue;
        }
        match &disk.info.address {
            Some(Address::Ccw { .. } | Address::VirtioMmio) => continue,
            Some(a) if !matches!(a, Address::Pci(_)) => {
                return Err(Error::unsupported(format!(
                    "virtio disk cannot have an address of type '{}'",
                    a.type_name()
                )))
            }
            _ => {}
        }
        let tr = disk.model == Some(VirtioModel::VirtioTransitional);
        set.assign(&mut disk.info, virtio_flags(ctx, tr))?;
    }
    for h in d.hostdevs.iter_mut() {
        if !wants(&h.info) || h.attr("mode").unwrap_or("subsystem") != "subsystem" {
            continue;
        }
        let t = h.attr("type").unwrap_or("");
        let mdev_pci = t == "mdev" && h.attr("model") == Some("vfio-pci");
        if t != "pci" && t != "scsi_host" && !mdev_pci {
            continue;
        }
        let f = if t == "scsi_host" {
            virtio_flags(ctx, model_is_transitional(h.attr("model")))
        } else {
            ctx.pcie
        };
        set.assign(&mut h.info, f)?;
    }
    if let Some(b) = d.memballoon.as_mut() {
        if b.model != "none" && b.model != "xen" && wants(&b.info) {
            let tr = b.model == "virtio-transitional";
            set.assign(&mut b.info, virtio_flags(ctx, tr))?;
        }
    }
    for r in d.rngs.iter_mut() {
        if wants(&r.info) {
            let tr = model_is_transitional(r.attr("model"));
            set.assign(&mut r.info, virtio_flags(ctx, tr))?;
        }
    }
    for w in d.watchdogs.iter_mut() {
        if w.attr("model") == Some("i6300esb") && wants(&w.info) {
            set.assign(&mut w.info, ctx.pci)?;
        }
    }
    for v in d.videos.iter_mut() {
        if matches!(v.kind, Some(VideoType::None | VideoType::Ramfb)) || !wants(&v.info) {
            continue;
        }
        let f = match v.kind {
            Some(VideoType::Virtio) => ctx.virtio,
            Some(VideoType::Bochs) => ctx.pcie,
            _ => ctx.pci,
        };
        set.assign(&mut v.info, f)?;
    }
    for s in d.shmems.iter_mut() {
        if wants(&s.info) {
            set.assign(&mut s.info, ctx.pci)?;
        }
    }
    for i in d.inputs.iter_mut() {
        if i.bus != Some(InputBus::Virtio) || !wants(&i.info) {
            continue;
        }
        let tr = i.model == Some(VirtioModel::VirtioTransitional);
        set.assign(&mut i.info, virtio_flags(ctx, tr))?;
    }
    for s in d.serials.iter_mut() {
        if s.target.kind.as_deref() == Some("pci-serial") && wants(&s.info) {
            set.assign(&mut s.info, ctx.pci)?;
        }
    }
    if let Some(io) = d.iommu.as_mut() {
        if io.attr("model") == Some("virtio") && wants(&io.info) {
            // integrated device: on the root bus, never behind a port
            let f = Flags {
                integrated: true,
                ..ctx.virtio
            };
            set.assign(&mut io.info, f)?;
        }
    }
    if let Some(v) = d.vsock.as_mut() {
        if wants(&v.info) {
            let tr = model_is_transitional(v.attr("model"));
            set.assign(&mut v.info, virtio_flags(ctx, tr))?;
        }
    }
    for m in d.memories.iter_mut() {
        if matches!(m.attr("model"), Some("virtio-pmem" | "virtio-mem")) && wants(&m.info) {
            set.assign(&mut m.info, ctx.virtio)?;
        }
    }
    Ok(())
}

fn new_set(def: &Domain, nbuses: usize, dry_run: bool, caps: &QemuCaps) -> AddrSet {
    let mut buses: Vec<Option<Bus>> = vec![None; nbuses];
    for c in &def.devices.controllers {
        if c.kind != ControllerType::Pci {
            continue;
        }
        if let (Some(m), Some(slot)) = (c.pci_model(), buses.get_mut(c.idx() as usize)) {
            *slot = Some(Bus::new(m));
        }
    }
    AddrSet {
        buses,
        dry_run,
        pcie_to_pci: caps.has(Flag::DevicePciePciBridge),
    }
}

fn model_name(m: PciModel) -> Option<&'static str> {
    Some(match m {
        PciModel::PciBridge => "pci-bridge",
        PciModel::DmiToPciBridge => "i82801b11-bridge",
        PciModel::PcieToPciBridge => "pcie-pci-bridge",
        PciModel::PcieRootPort => "pcie-root-port",
        PciModel::PcieSwitchUpstreamPort => "x3130-upstream",
        PciModel::PcieSwitchDownstreamPort => "xio3130-downstream",
        PciModel::PciExpanderBus => "pxb",
        PciModel::PcieExpanderBus => "pxb-pcie",
        PciModel::PciRoot | PciModel::PcieRoot => return None,
    })
}

/// Assigns PCI addresses to every device that needs one, adding the
/// bridges/root ports the topology needs.
pub fn assign_pci_addresses(def: &mut Domain, caps: &QemuCaps, machine: &str) -> Result<()> {
    // libvirt validates this after post-parse; the address sets below are
    // sized by the index, so check it first
    if let Some(c) = def
        .devices
        .controllers
        .iter()
        .find(|c| c.kind == ControllerType::Pci && c.idx() as usize >= MAX_BUSES)
    {
        return Err(Error::unsupported(format!(
            "PCI controller index {} too high, maximum is 255",
            c.idx()
        )));
    }
    let max_idx = def
        .devices
        .controllers
        .iter()
        .filter(|c| c.kind == ControllerType::Pci)
        .map(|c| c.idx() as i64)
        .max()
        .unwrap_or(-1);
    let nbuses = (max_idx + 1) as usize;
    // devices are PCIe when the root bus is (qemuDomainHasPCIeRoot)
    let pcie_machine = def.devices.controllers.iter().any(|c| {
        c.kind == ControllerType::Pci && c.idx() == 0 && c.pci_model() == Some(PciModel::PcieRoot)
    });
    let pci = Flags {
        conn: Conn::PciDev,
        auto: true,
        integrated: false,
    };
    let pcie = if pcie_machine {
        Flags {
            conn: Conn::PcieDev,
            auto: true,
            integrated: false,
        }
    } else {
        pci
    };
    // virtio devices are PCIe only when QEMU has the (non-)transitional models
    let virtio = if caps.has(Flag::VirtioPciTransitional) {
        pcie
    } else {
        pci
    };
    let ctx = Ctx { pci, pcie, virtio };
    if nbuses == 0 {
        return Ok(());
    }
    // pass 1: dry run on a copy, growing the topology
    let mut copy = def.clone();
    let mut set = new_set(&copy, nbuses, true, caps);
    collect(&copy, &mut set);
    chipset_slots(&mut copy, &mut set, machine)?;
    let has_pci_root = set
        .buses
        .first()
        .and_then(|b| b.as_ref())
        .is_some_and(|b| b.model == PciModel::PciRoot);
    if has_pci_root {
        let full = set
            .buses
            .iter()
            .flatten()
            .all(|b| (b.min..=b.max).all(|s| b.funcs[s as usize] == 0xff));
        if !full {
            let a = set.next(pci, None)?;
            set.reserve(a, false);
        }
    }
    device_slots(&mut copy, &mut set, &ctx)?;
    let has_pcie_root = set
        .buses
        .first()
        .and_then(|b| b.as_ref())
        .is_some_and(|b| b.model == PciModel::PcieRoot);
    if max_idx <= 0 && set.buses.len() > (max_idx + 1) as usize && has_pcie_root {
        let a = set.next(pcie, None)?;
        set.reserve(a, false);
    }
    let mut i = 1;
    while i < set.buses.len() {
        let model = set.buses[i].as_ref().map(|b| b.model);
        if let Some(model) = model {
            if !def
                .devices
                .controllers
                .iter()
                .any(|c| c.kind == ControllerType::Pci && c.idx() == i as u32)
            {
                let c = Controller::new(
                    ControllerType::Pci,
                    i as u32,
                    Some(ControllerModel::Pci(model)),
                );
                add_controller(def, c);
                if let Some(conn) = controller_conn(model) {
                    let a = set.next(
                        Flags {
                            conn,
                            auto: false,
                            integrated: false,
                        },
                        None,
                    )?;
                    set.reserve(a, conn == Conn::RootPort);
                }
            }
        }
        i += 1;
    }
    let nbuses = set.buses.len();
    // pass 2: the real assignment
    let mut set = new_set(def, nbuses, false, caps);
    collect(def, &mut set);
    chipset_slots(def, &mut set, machine)?;
    device_slots(def, &mut set, &ctx)?;
    set_all_multi(def);
    for c in &mut def.devices.controllers {
        if c.kind != ControllerType::Pci {
            continue;
        }
        let Some(m) = c.pci_model() else { continue };
        if c.pci.model_name.is_none() {
            c.pci.model_name = model_name(m).map(str::to_string);
        }
        let addr = c.info.pci().unwrap_or_default();
        match m {
            PciModel::PciBridge if c.pci.chassis_nr.is_none() => {
                c.pci.chassis_nr = Some(c.idx());
            }
            PciModel::PcieRootPort => {
                if c.pci.chassis.is_none() {
                    c.pci.chassis = Some(c.idx());
                }
                if c.pci.port.is_none() {
                    c.pci.port = Some((addr.slot << 3) + addr.function);
                }
            }
            PciModel::PcieSwitchDownstreamPort => {
                if c.pci.chassis.is_none() {
                    c.pci.chassis = Some(c.idx());
                }
                if c.pci.port.is_none() {
                    c.pci.port = Some(addr.slot);
                }
            }
            _ => {}
        }
        if m == PciModel::PciBridge && c.idx() <= addr.bus && c.info.pci().is_some() {
            return Err(Error::unsupported(format!(
                "PCI controller at index {} (0x{:02x}) has bus='0x{:02x}', but index must be larger than bus",
                c.idx(),
                c.idx(),
                addr.bus
            )));
        }
    }
    let _ = StrEnum::as_str(PciModel::PciRoot);
    Ok(())
}

/// Sets `multifunction='on'` on function 0 of every slot with more functions.
fn set_all_multi(def: &mut Domain) {
    let mut used: Vec<PciAddress> = Vec::new();
    let mut gather = |info: &DeviceInfo| {
        if let Some(a) = info.pci() {
            used.push(a);
        }
    };
    let d = &def.devices;
    d.disks.iter().for_each(|x| gather(&x.info));
    d.controllers.iter().for_each(|x| gather(&x.info));
    d.filesystems.iter().for_each(|x| gather(&x.info));
    d.interfaces.iter().for_each(|x| gather(&x.info));
    d.sounds.iter().for_each(|x| gather(&x.info));
    d.videos.iter().for_each(|x| gather(&x.info));
    d.hostdevs.iter().for_each(|x| gather(&x.info));
    d.memballoon.iter().for_each(|x| gather(&x.info));
    d.rngs.iter().for_each(|x| gather(&x.info));
    d.inputs.iter().for_each(|x| gather(&x.info));
    let multi = |info: &mut DeviceInfo| {
        if let Some(Address::Pci(p)) = &mut info.address {
            if !p.addr.is_empty()
                && p.addr.function == 0
                && p.multifunction.is_none()
                && used.iter().any(|u| {
                    u.domain == p.addr.domain
                        && u.bus == p.addr.bus
                        && u.slot == p.addr.slot
                        && u.function != 0
                })
            {
                p.multifunction = Some(OnOff::On);
            }
        }
    };
    let d = &mut def.devices;
    d.controllers.iter_mut().for_each(|x| multi(&mut x.info));
    d.disks.iter_mut().for_each(|x| multi(&mut x.info));
    d.interfaces.iter_mut().for_each(|x| multi(&mut x.info));
    d.sounds.iter_mut().for_each(|x| multi(&mut x.info));
    d.videos.iter_mut().for_each(|x| multi(&mut x.info));
    d.hostdevs.iter_mut().for_each(|x| multi(&mut x.info));
    d.memballoon.iter_mut().for_each(|x| multi(&mut x.info));
    d.rngs.iter_mut().for_each(|x| multi(&mut x.info));
    d.inputs.iter_mut().for_each(|x| multi(&mut x.info));
}
