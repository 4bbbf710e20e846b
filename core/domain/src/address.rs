//! Device addresses (`<address type=...>`) and the information every device
//! shares (`<alias>`, `<boot>`, `<acpi>`, `<rom>`, `<address>`).

use crate::common::{parse_uint, take_enum, take_u32, OnOff, StrEnum, YesNo};
use crate::error::{Error, Result};
use crate::xml::Element;

/// A PCI address (`domain:bus:slot.function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number (the `index` of the controller providing the bus).
    pub bus: u32,
    /// Slot 0..31.
    pub slot: u32,
    /// Function 0..7.
    pub function: u32,
}

impl PciAddress {
    /// Builds an address in domain 0.
    pub const fn new(bus: u32, slot: u32, function: u32) -> Self {
        PciAddress {
            domain: 0,
            bus,
            slot,
            function,
        }
    }

    /// All-zero address, which libvirt reads as "not yet assigned".
    pub fn is_empty(&self) -> bool {
        *self == PciAddress::default()
    }
}

impl std::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// zPCI extension of a PCI address (s390).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZpciAddress {
    /// User-defined identifier.
    pub uid: Option<u32>,
    /// Function identifier.
    pub fid: Option<u32>,
}

/// The PCI variant of [`Address`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciDeviceAddress {
    /// The address proper (all zero = to be assigned).
    pub addr: PciAddress,
    /// `multifunction='on|off'`.
    pub multifunction: Option<OnOff>,
    /// s390 zPCI ids.
    pub zpci: Option<ZpciAddress>,
}

/// A drive address on an IDE/SATA/SCSI/FDC controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct DriveAddress {
    /// Controller index.
    pub controller: u32,
    /// Bus on the controller.
    pub bus: u32,
    /// SCSI target.
    pub target: u32,
    /// Unit (LUN).
    pub unit: u32,
}

/// Where a device sits, one variant per libvirt address type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `type='pci'`.
    Pci(PciDeviceAddress),
    /// `type='drive'`.
    Drive(DriveAddress),
    /// `type='virtio-serial'`.
    VirtioSerial {
        /// Controller index.
        controller: u32,
        /// Bus.
        bus: u32,
        /// Port (0 = to be assigned).
        port: u32,
    },
    /// `type='ccid'`.
    Ccid {
        /// Controller index.
        controller: u32,
        /// Slot.
        slot: u32,
    },
    /// `type='usb'`: bus and a port path like `1.2`.
    Usb {
        /// USB controller index.
        bus: u32,
        /// Port path (`None` = to be assigned).
        port: Option<String>,
    },
    /// `type='spapr-vio'`.
    SpaprVio {
        /// Register.
        reg: Option<u64>,
    },
    /// `type='ccw'`.
    Ccw {
        /// Channel subsystem id.
        cssid: u32,
        /// Subchannel set id.
        ssid: u32,
        /// Device number.
        devno: u32,
    },
    /// `type='virtio-mmio'`.
    VirtioMmio,
    /// `type='isa'`.
    Isa {
        /// I/O base (0 = unset).
        iobase: u32,
        /// IRQ (0 = unset).
        irq: u32,
    },
    /// `type='dimm'`.
    Dimm {
        /// Slot.
        slot: u32,
        /// Base address.
        base: Option<u64>,
    },
    /// `type='virtio-s390'` (legacy; never formatted).
    VirtioS390,
    /// `type='unassigned'`.
    Unassigned,
}

impl Address {
    /// libvirt's name of the address type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Address::Pci(_) => "pci",
            Address::Drive(_) => "drive",
            Address::VirtioSerial { .. } => "virtio-serial",
            Address::Ccid { .. } => "ccid",
            Address::Usb { .. } => "usb",
            Address::SpaprVio { .. } => "spapr-vio",
            Address::Ccw { .. } => "ccw",
            Address::VirtioMmio => "virtio-mmio",
            Address::Isa { .. } => "isa",
            Address::Dimm { .. } => "dimm",
            Address::VirtioS390 => "virtio-s390",
            Address::Unassigned => "unassigned",
        }
    }

    /// A PCI address with no multifunction flag.
    pub fn pci(addr: PciAddress) -> Self {
        Address::Pci(PciDeviceAddress {
            addr,
            multifunction: None,
            zpci: None,
        })
    }

    /// The PCI address, when this is one.
    pub fn as_pci(&self) -> Option<&PciDeviceAddress> {
        match self {
            Address::Pci(p) => Some(p),
            _ => None,
        }
    }

    /// The drive address, when this is one.
    pub fn as_drive(&self) -> Option<&DriveAddress> {
        match self {
            Address::Drive(d) => Some(d),
            _ => None,
        }
    }

    /// Parses `<address>`.
    pub fn parse(mut e: Element) -> Result<Self> {
        let ty = e
            .take_attr("type")
            .ok_or_else(|| Error::xml("No type specified for device address"))?;
        let num = |e: &mut Element, a: &str| -> Result<u32> {
            match e.take_attr(a) {
                None => Ok(0),
                Some(v) => parse_uint(&v, true)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| Error::invalid("address", a, &v)),
            }
        };
        Ok(match ty.as_str() {
            "pci" => {
                let addr = PciAddress {
                    domain: num(&mut e, "domain")?,
                    bus: num(&mut e, "bus")?,
                    slot: num(&mut e, "slot")?,
                    function: num(&mut e, "function")?,
                };
                if !addr.is_empty() {
                    if addr.domain > 0xffff {
                        return Err(Error::xml(format!(
                            "Invalid PCI address domain='0x{:x}', must be <= 0xFFFF",
                            addr.domain
                        )));
                    }
                    if addr.bus > 0xff {
                        return Err(Error::xml(format!(
                            "Invalid PCI address bus='0x{:x}', must be <= 0xFF",
                            addr.bus
                        )));
                    }
                    if addr.slot > 0x1f {
                        return Err(Error::xml(format!(
                            "Invalid PCI address slot='0x{:x}', must be <= 0x1F",
                            addr.slot
                        )));
                    }
                    if addr.function > 7 {
                        return Err(Error::xml(format!(
                            "Invalid PCI address function=0x{:x}, must be <= 7",
                            addr.function
                        )));
                    }
                }
                let multifunction = take_enum(&mut e, "multifunction")?;
                let zpci = e.take_child("zpci").map(|mut z| ZpciAddress {
                    uid: z
                        .take_attr("uid")
                        .and_then(|v| parse_uint(&v, true))
                        .and_then(|n| u32::try_from(n).ok()),
                    fid: z
                        .take_attr("fid")
                        .and_then(|v| parse_uint(&v, true))
                        .and_then(|n| u32::try_from(n).ok()),
                });
                Address::Pci(PciDeviceAddress {
                    addr,
                    multifunction,
                    zpci,
                })
            }
            "drive" => Address::Drive(DriveAddress {
                controller: num(&mut e, "controller")?,
                bus: num(&mut e, "bus")?,
                target: num(&mut e, "target")?,
                unit: num(&mut e, "unit")?,
            }),
            "virtio-serial" => Address::VirtioSerial {
                controller: num(&mut e, "controller")?,
                bus: num(&mut e, "bus")?,
                port: num(&mut e, "port")?,
            },
            "ccid" => Address::Ccid {
                controller: num(&mut e, "controller")?,
                slot: num(&mut e, "slot")?,
            },
            "usb" => Address::Usb {
                bus: num(&mut e, "bus")?,
                port: e.take_attr("port"),
            },
            "spapr-vio" => Address::SpaprVio {
                reg: e.take_attr("reg").and_then(|v| parse_uint(&v, true)),
            },
            "ccw" => Address::Ccw {
                cssid: num(&mut e, "cssid")?,
                ssid: num(&mut e, "ssid")?,
                devno: num(&mut e, "devno")?,
            },
            "virtio-mmio" => Address::VirtioMmio,
            "isa" => Address::Isa {
                iobase: num(&mut e, "iobase")?,
                irq: num(&mut e, "irq")?,
            },
            "dimm" => Address::Dimm {
                slot: num(&mut e, "slot")?,
                base: e.take_attr("base").and_then(|v| parse_uint(&v, true)),
            },
            "virtio-s390" => Address::VirtioS390,
            "unassigned" => Address::Unassigned,
            other => {
                return Err(Error::xml(format!("unknown address type '{other}'")));
            }
        })
    }

    /// Formats `<address>`; `None` for types libvirt never writes.
    pub fn format(&self) -> Option<Element> {
        let mut e = Element::new("address").attr("type", self.type_name());
        match self {
            Address::Pci(p) => {
                if !p.addr.is_empty() {
                    e.push_attr("domain", format!("0x{:04x}", p.addr.domain));
                    e.push_attr("bus", format!("0x{:02x}", p.addr.bus));
                    e.push_attr("slot", format!("0x{:02x}", p.addr.slot));
                    e.push_attr("function", format!("0x{:x}", p.addr.function));
                }
                e.push_attr_opt("multifunction", p.multifunction);
                if let Some(z) = &p.zpci {
                    e.children.push(
                        Element::new("zpci")
                            .attr_opt("uid", z.uid.map(|v| format!("0x{v:04x}")))
                            .attr_opt("fid", z.fid.map(|v| format!("0x{v:08x}"))),
                    );
                }
            }
            Address::Drive(d) => {
                e.push_attr("controller", d.controller);
                e.push_attr("bus", d.bus);
                e.push_attr("target", d.target);
                e.push_attr("unit", d.unit);
            }
            Address::VirtioSerial {
                controller,
                bus,
                port,
            } => {
                e.push_attr("controller", controller);
                e.push_attr("bus", bus);
                e.push_attr("port", port);
            }
            Address::Ccid { controller, slot } => {
                e.push_attr("controller", controller);
                e.push_attr("slot", slot);
            }
            Address::Usb { bus, port } => {
                e.push_attr("bus", bus);
                e.push_attr_opt("port", port.as_ref());
            }
            Address::SpaprVio { reg } => {
                e.push_attr_opt("reg", reg.map(|r| format!("0x{r:08x}")));
            }
            Address::Ccw { cssid, ssid, devno } => {
                e.push_attr("cssid", format!("0x{cssid:x}"));
                e.push_attr("ssid", format!("0x{ssid:x}"));
                e.push_attr("devno", format!("0x{devno:04x}"));
            }
            Address::Isa { iobase, irq } => {
                if *iobase > 0 {
                    e.push_attr("iobase", format!("0x{iobase:x}"));
                }
                if *irq > 0 {
                    e.push_attr("irq", format!("0x{irq:x}"));
                }
            }
            Address::Dimm { slot, base } => {
                e.push_attr("slot", slot);
                if let Some(b) = base.filter(|b| *b != 0) {
                    e.push_attr("base", format!("0x{b:x}"));
                }
            }
            Address::VirtioS390 => return None,
            Address::VirtioMmio | Address::Unassigned => {}
        }
        Some(e)
    }
}

/// `<boot order= loadparm=>` of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOrder {
    /// Boot order (1-based).
    pub order: u32,
    /// s390 loadparm.
    pub loadparm: Option<String>,
}

/// `<rom>` of a PCI device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rom {
    /// `enabled=`.
    pub enabled: Option<YesNo>,
    /// `bar=`.
    pub bar: Option<OnOff>,
    /// `file=`.
    pub file: Option<String>,
}

/// What every device has (libvirt's `virDomainDeviceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// Device alias (`<alias name=>`), the QEMU id. Only user aliases
    /// (`ua-` prefix) survive an inactive parse; others are assigned at
    /// start by the command-line builder (libvirt's `qemuAssignDeviceAliases`).
    pub alias: Option<String>,
    /// `<boot order=>` (only for bootable devices).
    pub boot: Option<BootOrder>,
    /// `<acpi index=>`.
    pub acpi_index: Option<u32>,
    /// `<rom>`.
    pub rom: Option<Rom>,
    /// USB controller companion `<master startport=>`.
    pub master_startport: Option<u32>,
    /// `<address>`.
    pub address: Option<Address>,
}

/// Characters allowed in a user alias after the `ua-` prefix.
fn is_user_alias(a: &str) -> bool {
    a.starts_with("ua-")
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl DeviceInfo {
    /// Takes the shared children out of a device element.
    pub fn take(e: &mut Element, inactive: bool) -> Result<Self> {
        let mut info = DeviceInfo::default();
        if let Some(mut a) = e.take_child("alias") {
            if let Some(name) = a.take_attr("name") {
                if !inactive || is_user_alias(&name) {
                    info.alias = Some(name);
                }
            }
        }
        if let Some(mut b) = e.take_child("boot") {
            let order =
                take_u32(&mut b, "order")?.ok_or_else(|| Error::missing("boot", "order"))?;
            if order == 0 {
                return Err(Error::invalid("boot", "order", "0"));
            }
            info.boot = Some(BootOrder {
                order,
                loadparm: b.take_attr("loadparm").map(|s| s.to_uppercase()),
            });
        }
        if let Some(mut a) = e.take_child("acpi") {
            info.acpi_index = take_u32(&mut a, "index")?;
        }
        if let Some(mut r) = e.take_child("rom") {
            info.rom = Some(Rom {
                enabled: take_enum(&mut r, "enabled")?,
                bar: take_enum(&mut r, "bar")?,
                file: r.take_attr("file"),
            });
        }
        if let Some(mut m) = e.take_child("master") {
            info.master_startport = take_u32(&mut m, "startport")?;
        }
        if let Some(a) = e.take_child("address") {
            info.address = Some(Address::parse(a)?);
        }
        Ok(info)
    }

    /// Appends the shared children in libvirt's order (boot, alias, master,
    /// rom, acpi, address). `allow_boot`/`allow_rom` mirror libvirt's flags.
    pub fn format_into(&self, e: &mut Element, allow_boot: bool, allow_rom: bool) {
        if allow_boot {
            if let Some(b) = &self.boot {
                e.children.push(
                    Element::new("boot")
                        .attr("order", b.order)
                        .attr_opt("loadparm", b.loadparm.as_ref()),
                );
            }
        }
        if let Some(a) = &self.alias {
            e.children.push(Element::new("alias").attr("name", a));
        }
        if let Some(p) = self.master_startport {
            e.children.push(Element::new("master").attr("startport", p));
        }
        if allow_rom {
            if let Some(r) = &self.rom {
                if r.enabled.is_some() || r.bar.is_some() || r.file.is_some() {
                    e.children.push(
                        Element::new("rom")
                            .attr_opt("enabled", r.enabled.map(StrEnum::as_str))
                            .attr_opt("bar", r.bar.map(StrEnum::as_str))
                            .attr_opt("file", r.file.as_ref()),
                    );
                }
            }
        }
        if let Some(i) = self.acpi_index.filter(|i| *i != 0) {
            e.children.push(Element::new("acpi").attr("index", i));
        }
        if let Some(a) = self.address.as_ref().and_then(Address::format) {
            e.children.push(a);
        }
    }

    /// The PCI address, if the device has one assigned (non-empty).
    pub fn pci(&self) -> Option<PciAddress> {
        match &self.address {
            Some(Address::Pci(p)) if !p.addr.is_empty() => Some(p.addr),
            _ => None,
        }
    }

    /// True when the device has no address or an empty PCI one.
    pub fn wants_pci(&self) -> bool {
        match &self.address {
            None => true,
            Some(Address::Pci(p)) => p.addr.is_empty(),
            _ => false,
        }
    }
}

/// Names of the shared device children, in libvirt's order, for sorting residue.
pub const INFO_CHILDREN: &[&str] = &["boot", "alias", "master", "rom", "acpi", "address"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_document;

    #[test]
    fn pci_address_round_trips_in_libvirt_format() {
        let e = parse_document(
            "<address type='pci' domain='0' bus='0x1' slot='3' function='0' multifunction='on'/>",
        )
        .unwrap();
        let a = Address::parse(e).unwrap();
        assert_eq!(
            a.format().unwrap().to_xml_string(),
            "<address type='pci' domain='0x0000' bus='0x01' slot='0x03' function='0x0' multifunction='on'/>\n"
        );
    }

    #[test]
    fn pci_slot_out_of_range_is_rejected() {
        let e = parse_document("<address type='pci' bus='0' slot='0x20' function='0'/>").unwrap();
        assert!(Address::parse(e).is_err());
    }

    #[test]
    fn inactive_parse_keeps_only_user_aliases() {
        let mut e = parse_document("<disk><alias name='virtio-disk0'/></disk>").unwrap();
        assert_eq!(DeviceInfo::take(&mut e, true).unwrap().alias, None);
        let mut e = parse_document("<disk><alias name='ua-x'/></disk>").unwrap();
        assert_eq!(
            DeviceInfo::take(&mut e, true).unwrap().alias.as_deref(),
            Some("ua-x")
        );
    }
}
