//! `<devices>`: one typed struct per device class, grouped like libvirt's
//! `virDomainDef` (disks, controllers, nets, ...), which is also the order
//! in which they are written back.
//!
//! Every struct keeps a `residue` [`Element`]: the attributes and children
//! of the source element that are not typed yet. They are written back in
//! libvirt's order, so nothing is lost on a round trip.

use crate::address::{DeviceInfo, INFO_CHILDREN};
use crate::common::{take_enum, take_enum_req, take_u32, OnOff, StrEnum, YesNo};
use crate::domain::{FormatOptions, ParseOptions};
use crate::error::{Error, Result};
use crate::str_enum;
use crate::xml::Element;

fn order_with_info(before: &[&'static str], after: &[&'static str]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = before.to_vec();
    v.extend_from_slice(INFO_CHILDREN);
    v.extend_from_slice(after);
    v
}

const CONTROLLER_BEFORE: &[&str] = &["model", "target", "driver"];
const CONTROLLER_AFTER: &[&str] = &["pcihole64"];
const CHR_BEFORE: &[&str] = &["source", "protocol", "log", "target"];
const CHR_SOURCE_ORDER: &[&str] = &["seclabel", "reconnect", "clipboard", "mouse"];
const INPUT_BEFORE: &[&str] = &["driver", "source"];
const VIDEO_BEFORE: &[&str] = &["driver", "model"];
const VIDEO_MODEL_ORDER: &[&str] = &["acceleration", "resolution"];
const AUDIO_ORDER: &[&str] = &["input", "output"];
const BALLOON_BEFORE: &[&str] = &["stats"];
const BALLOON_AFTER: &[&str] = &["driver"];

fn text_of(e: &mut Element, name: &str) -> Option<String> {
    e.take_child(name).and_then(|mut c| c.take_text())
}

// ---------------------------------------------------------------- disks

str_enum! {
    /// `<disk type=>` (libvirt's `virStorageType`).
    pub enum DiskType { File = "file", Block = "block", Dir = "dir", Network = "network", Volume = "volume", Nvme = "nvme", VhostUser = "vhostuser", Vhostvdpa = "vhostvdpa" }
}

str_enum! {
    /// `<disk device=>`.
    pub enum DiskDevice { Disk = "disk", Cdrom = "cdrom", Floppy = "floppy", Lun = "lun" }
}

str_enum! {
    /// `<target bus=>`.
    pub enum DiskBus { Ide = "ide", Fdc = "fdc", Scsi = "scsi", Virtio = "virtio", Xen = "xen", Usb = "usb", Uml = "uml", Sata = "sata", Sd = "sd" }
}

str_enum! {
    /// `<disk model=>`.
    pub enum VirtioModel { Virtio = "virtio", VirtioTransitional = "virtio-transitional", VirtioNonTransitional = "virtio-non-transitional" }
}

str_enum! {
    /// `<driver cache=>`.
    pub enum DiskCache { Default = "default", None = "none", Writethrough = "writethrough", Writeback = "writeback", Directsync = "directsync", Unsafe = "unsafe" }
}

/// `<disk><driver>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDriver {
    /// `name=` (`qemu`).
    pub name: Option<String>,
    /// `type=`: image format (`raw`, `qcow2`, ...).
    pub format: Option<String>,
    /// `cache=`.
    pub cache: Option<DiskCache>,
    /// `io=` (`threads`, `native`, `io_uring`).
    pub io: Option<String>,
    /// `discard=` (`unmap`, `ignore`).
    pub discard: Option<String>,
    /// `detect_zeroes=`.
    pub detect_zeroes: Option<String>,
    /// `iothread=`.
    pub iothread: Option<u32>,
    /// `queues=`.
    pub queues: Option<u32>,
    /// Other attributes (`error_policy`, virtio options, ...), kept as written.
    pub residue: Element,
}

impl Default for DiskDriver {
    fn default() -> Self {
        DiskDriver {
            name: Default::default(),
            format: Default::default(),
            cache: Default::default(),
            io: Default::default(),
            discard: Default::default(),
            detect_zeroes: Default::default(),
            iothread: Default::default(),
            queues: Default::default(),
            residue: Element::new("driver"),
        }
    }
}

/// `<source><host>` of a network disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceHost {
    /// `name=`.
    pub name: Option<String>,
    /// `port=`.
    pub port: Option<String>,
    /// `transport=` (`tcp`, `unix`, `rdma`).
    pub transport: Option<String>,
    /// `socket=` (unix transport).
    pub socket: Option<String>,
}

/// `<disk><source>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSource {
    /// `file=` / `dev=` / `dir=`: the local path, by disk type.
    pub path: Option<String>,
    /// `protocol=` (network disks).
    pub protocol: Option<String>,
    /// `name=` (network disks: image/export name).
    pub name: Option<String>,
    /// `pool=` (volume disks).
    pub pool: Option<String>,
    /// `volume=` (volume disks).
    pub volume: Option<String>,
    /// `startupPolicy=`.
    pub startup_policy: Option<String>,
    /// `<host>`s (network disks).
    pub hosts: Vec<SourceHost>,
    /// Everything else (`auth`, `encryption`, `reservations`, `slices`,
    /// `seclabel`, `index`, `mode`, ...), kept as written.
    pub residue: Element,
}

impl Default for DiskSource {
    fn default() -> Self {
        DiskSource {
            path: Default::default(),
            protocol: Default::default(),
            name: Default::default(),
            pool: Default::default(),
            volume: Default::default(),
            startup_policy: Default::default(),
            hosts: Default::default(),
            residue: Element::new("source"),
        }
    }
}

/// `<disk><target>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskTarget {
    /// `dev=` (`vda`, `hdc`, `sda`).
    pub dev: String,
    /// `bus=` (derived from `dev` when absent).
    pub bus: Option<DiskBus>,
    /// `tray=` (`open`/`closed`).
    pub tray: Option<String>,
    /// `removable=`.
    pub removable: Option<OnOff>,
    /// `rotation_rate=`.
    pub rotation_rate: Option<u32>,
}

/// `<disk>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `type=`.
    pub kind: DiskType,
    /// `device=`.
    pub device: DiskDevice,
    /// `model=`.
    pub model: Option<VirtioModel>,
    /// `<driver>`.
    pub driver: Option<DiskDriver>,
    /// `<source>`.
    pub source: Option<DiskSource>,
    /// `<target>`.
    pub target: DiskTarget,
    /// `<readonly/>`.
    pub readonly: bool,
    /// `<shareable/>`.
    pub shareable: bool,
    /// `<serial>`.
    pub serial: Option<String>,
    /// `<wwn>`.
    pub wwn: Option<String>,
    /// `<vendor>`.
    pub vendor: Option<String>,
    /// `<product>`.
    pub product: Option<String>,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts (`backingStore`, `iotune`, `encryption`, `auth`, ...).
    pub residue: Element,
}

const DISK_ORDER: &[&str] = &[
    "driver",
    "auth",
    "source",
    "backingStore",
    "backenddomain",
    "geometry",
    "blockio",
    "mirror",
    "target",
    "iotune",
    "readonly",
    "shareable",
    "transient",
    "serial",
    "wwn",
    "vendor",
    "product",
    "encryption",
    "boot",
    "alias",
    "master",
    "rom",
    "acpi",
    "address",
];

impl Disk {
    /// The local path of the image (file/block/dir disks).
    pub fn source_path(&self) -> Option<&str> {
        self.source.as_ref().and_then(|s| s.path.as_deref())
    }

    /// The target bus (after expansion always set).
    pub fn bus(&self) -> DiskBus {
        self.target.bus.unwrap_or(DiskBus::Ide)
    }

    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let kind = take_enum(&mut e, "type")?.unwrap_or(DiskType::File);
        let device = take_enum(&mut e, "device")?.unwrap_or(DiskDevice::Disk);
        let model = take_enum(&mut e, "model")?;
        let driver = match e.take_child("driver") {
            Some(mut d) => Some(DiskDriver {
                name: d.take_attr("name"),
                format: d.take_attr("type"),
                cache: take_enum(&mut d, "cache")?,
                io: d.take_attr("io"),
                discard: d.take_attr("discard"),
                detect_zeroes: d.take_attr("detect_zeroes"),
                iothread: take_u32(&mut d, "iothread")?,
                queues: take_u32(&mut d, "queues")?,
                residue: canonical_metadata_cache(d)?,
            }),
            None => None,
        };
        // <auth> and <encryption> may be given on the disk or its source,
        // not both (virDomainDiskDefParseSourceXML)
        if let Some(s) = e.find("source") {
            for (child, what) in [("auth", "an <auth>"), ("encryption", "an <encryption>")] {
                if s.find(child).is_some() && e.find(child).is_some() {
                    return Err(Error::unsupported(format!(
                        "{what} definition already found for disk source"
                    )));
                }
            }
        }
        let source = match e.take_child("source") {
            Some(mut s) => {
                // `index` numbers images of a running domain only
                if opts.inactive {
                    s.take_attr("index");
                }
                Some(parse_disk_source(s, kind)?)
            }
            None => None,
        };
        canonical_backing_chain(&mut e, opts)?;
        // without a <source> the disk is an empty file disk (a drive with
        // no medium), whatever type it claimed
        let kind = if source.is_some() {
            kind
        } else {
            DiskType::File
        };
        let target = match e.take_child("target") {
            Some(mut t) => {
                let dev = t.take_attr("dev");
                let bus = take_enum(&mut t, "bus")?;
                let dev = dev.ok_or_else(|| missing_target(&source))?;
                DiskTarget {
                    dev,
                    bus,
                    tray: t.take_attr("tray"),
                    removable: take_enum(&mut t, "removable")?,
                    rotation_rate: take_u32(&mut t, "rotation_rate")?,
                }
            }
            None => return Err(missing_target(&source)),
        };
        let readonly = e.take_child("readonly").is_some();
        // libvirt never writes snapshot='no' for a read-only disk: it is
        // what read-only implies
        if readonly && e.get_attr("snapshot") == Some("no") {
            e.take_attr("snapshot");
        }
        let shareable = e.take_child("shareable").is_some();
        // identification strings are kept verbatim, spaces included
        // (libvirt reads them with XPath string())
        let raw = |e: &mut Element, n: &str| {
            e.take_child(n)
                .and_then(|c| c.text)
                .filter(|t| !t.is_empty())
        };
        let serial = raw(&mut e, "serial");
        let wwn = text_of(&mut e, "wwn");
        let vendor = raw(&mut e, "vendor");
        let product = raw(&mut e, "product");
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        Ok(Disk {
            kind,
            device,
            model,
            driver,
            source,
            target,
            readonly,
            shareable,
            serial,
            wwn,
            vendor,
            product,
            info,
            residue: e.canonical(DISK_ORDER),
        })
    }

    fn format(&self) -> Element {
        let mut e = Element::new("disk")
            .attr("type", self.kind)
            .attr("device", self.device)
            .attr_opt("model", self.model);
        if let Some(d) = &self.driver {
            let mut de = Element::new("driver")
                .attr_opt("name", d.name.as_ref())
                .attr_opt("type", d.format.as_ref())
                .attr_opt("cache", d.cache);
            // libvirt's attribute order: name type cache error_policy
            // rerror_policy io ioeventfd event_idx copy_on_read discard
            // iothread detect_zeroes queues queue_size ...
            for a in ["error_policy", "rerror_policy"] {
                if let Some(v) = d.residue.get_attr(a) {
                    de.push_attr(a, v);
                }
            }
            de.push_attr_opt("io", d.io.as_ref());
            for a in ["ioeventfd", "event_idx", "copy_on_read"] {
                if let Some(v) = d.residue.get_attr(a) {
                    de.push_attr(a, v);
                }
            }
            de.push_attr_opt("discard", d.discard.as_ref());
            de.push_attr_opt("iothread", d.iothread);
            de.push_attr_opt("detect_zeroes", d.detect_zeroes.as_ref());
            de.push_attr_opt("queues", d.queues);
            de.merge_residue(&d.residue, &[]);
            if !de.is_empty() {
                e.children.push(de);
            }
        }
        if let Some(s) = &self.source {
            let se = format_disk_source(s, self.kind);
            if !se.is_empty() {
                e.children.push(se);
            }
        }
        e.children.push(
            Element::new("target")
                .attr("dev", &self.target.dev)
                .attr_opt("bus", self.target.bus)
                .attr_opt("tray", self.target.tray.as_ref())
                .attr_opt("removable", self.target.removable)
                .attr_opt("rotation_rate", self.target.rotation_rate),
        );
        if self.readonly {
            e.children.push(Element::new("readonly"));
        }
        if self.shareable {
            e.children.push(Element::new("shareable"));
        }
        for (n, v) in [
            ("serial", &self.serial),
            ("wwn", &self.wwn),
            ("vendor", &self.vendor),
            ("product", &self.product),
        ] {
            if let Some(v) = v {
                e.children.push(Element::new(n).text(v));
            }
        }
        self.info.format_into(&mut e, true, false);
        e.merge_residue(&self.residue, DISK_ORDER);
        e
    }
}

/// `<metadata_cache><max_size>` in bytes, as libvirt writes it.
fn canonical_metadata_cache(mut e: Element) -> Result<Element> {
    for mc in e.children.iter_mut().filter(|c| c.is("metadata_cache")) {
        for ms in mc.children.iter_mut().filter(|c| c.is("max_size")) {
            let v = ms.trimmed_text().unwrap_or("").to_string();
            let unit = ms.take_attr("unit");
            let bytes = crate::common::parse_uint(&v, false)
                .zip(crate::common::unit_scale(
                    unit.as_deref().unwrap_or("bytes"),
                ))
                .and_then(|(n, scale)| n.checked_mul(scale))
                .ok_or_else(|| {
                    Error::xml(format!(
                        "Invalid value '{v}' for element or attribute './metadata_cache/max_size'"
                    ))
                })?;
            ms.push_attr("unit", "bytes");
            ms.text = Some(bytes.to_string());
        }
    }
    Ok(e)
}

/// `<backingStore>` members as libvirt's parser keeps them: no runtime
/// `index` in an inactive definition, metadata cache sizes in bytes.
fn canonical_backing_chain(e: &mut Element, opts: ParseOptions) -> Result<()> {
    for b in e.children.iter_mut().filter(|c| c.is("backingStore")) {
        if opts.inactive {
            b.take_attr("index");
        }
        for f in b.children.iter_mut().filter(|c| c.is("format")) {
            *f = canonical_metadata_cache(std::mem::take(f))?;
        }
        canonical_backing_chain(b, opts)?;
    }
    Ok(())
}

fn missing_target(source: &Option<DiskSource>) -> Error {
    let what = source
        .as_ref()
        .and_then(|s| s.path.clone().or_else(|| s.name.clone()))
        .unwrap_or_default();
    Error::Plain(format!("missing target information for device {what}"))
}

fn path_attr(kind: DiskType) -> Option<&'static str> {
    match kind {
        DiskType::File => Some("file"),
        DiskType::Block => Some("dev"),
        DiskType::Dir => Some("dir"),
        DiskType::VhostUser | DiskType::Vhostvdpa => Some("path"),
        _ => None,
    }
}

fn parse_disk_source(mut s: Element, kind: DiskType) -> Result<DiskSource> {
    let mut src = DiskSource {
        startup_policy: s.take_attr("startupPolicy"),
        ..Default::default()
    };
    if let Some(a) = path_attr(kind) {
        src.path = s.take_attr(a).filter(|p| !p.is_empty());
    }
    match kind {
        DiskType::Network => {
            src.protocol = Some(
                s.take_attr("protocol")
                    .ok_or_else(|| Error::xml("missing network source protocol type"))?,
            );
            src.name = s.take_attr("name");
            for mut h in s.take_children("host") {
                src.hosts.push(SourceHost {
                    name: h.take_attr("name"),
                    port: h.take_attr("port"),
                    transport: h.take_attr("transport"),
                    socket: h.take_attr("socket"),
                });
            }
        }
        DiskType::Volume => {
            src.pool = s.take_attr("pool");
            src.volume = s.take_attr("volume");
        }
        _ => {}
    }
    src.residue = s.canonical(SOURCE_ORDER);
    Ok(src)
}

/// libvirt's order of `<source>` children (`virDomainDiskSourceFormat`).
const SOURCE_ORDER: &[&str] = &[
    "host",
    "identity",
    "snapshot",
    "config",
    "initiator",
    "ssl",
    "cookies",
    "readahead",
    "timeout",
    "address",
    "reconnect",
    "slices",
    "seclabel",
    "auth",
    "encryption",
    "reservations",
    "privateData",
];

fn format_disk_source(s: &DiskSource, kind: DiskType) -> Element {
    let mut e = Element::new("source");
    match kind {
        DiskType::Network => {
            e.push_attr_opt("protocol", s.protocol.as_ref());
            e.push_attr_opt("name", s.name.as_ref());
        }
        DiskType::Volume => {
            e.push_attr_opt("pool", s.pool.as_ref());
            e.push_attr_opt("volume", s.volume.as_ref());
        }
        _ => {
            if let Some(a) = path_attr(kind) {
                e.push_attr_opt(a, s.path.as_ref());
            }
        }
    }
    // `mode` of volume sources and `index` come before startupPolicy
    for a in [
        "mode",
        "tls",
        "tlsHostname",
        "query",
        "index",
        "namespace",
        "type",
        "managed",
    ] {
        if let Some(v) = s.residue.get_attr(a) {
            e.push_attr(a, v);
        }
    }
    e.push_attr_opt("startupPolicy", s.startup_policy.as_ref());
    for h in &s.hosts {
        e.children.push(
            Element::new("host")
                .attr_opt("name", h.name.as_ref())
                .attr_opt("port", h.port.as_ref())
                .attr_opt("transport", h.transport.as_ref())
                .attr_opt("socket", h.socket.as_ref()),
        );
    }
    e.merge_residue(&s.residue, SOURCE_ORDER);
    e
}

/// Inserts a parsed disk where libvirt's `virDomainDiskInsert` puts it:
/// among the disks of the same (written) bus, ordered by target index.
pub fn insert_disk(list: &mut Vec<Disk>, disk: Disk) -> usize {
    let index = |d: &Disk| disk_name_to_index(&d.target.dev).map_or(-1, i64::from);
    let new_index = index(&disk);
    let mut insert_at = None;
    for (i, cur) in list.iter().enumerate().rev() {
        if cur.target.bus != disk.target.bus {
            continue;
        }
        if index(cur) > new_index {
            insert_at = Some(i);
        } else if insert_at.is_none() {
            insert_at = Some(i + 1);
        }
    }
    let pos = insert_at.unwrap_or(list.len());
    list.insert(pos, disk);
    pos
}

/// Maps a disk target name (`vdb`, `hdc`, `sdaa`) to its index (1, 2, 26).
pub fn disk_name_to_index(name: &str) -> Option<u32> {
    parse_disk_name(name).map(|(idx, _)| idx)
}

/// Splits a disk target name into its index and partition number, like
/// libvirt's `virDiskNameParse` (`vdaa12` is disk 26, partition 12; `None`
/// for names not of the form `(fd|hd|vd|sd|xvd|ubd)[a-z]+[0-9]*`).
pub fn parse_disk_name(name: &str) -> Option<(u32, Option<u32>)> {
    let prefixes = ["fd", "hd", "vd", "sd", "xvd", "ubd"];
    let rest = prefixes.iter().find_map(|p| name.strip_prefix(p))?;
    let letters = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &rest[letters.len()..];
    if letters.is_empty() {
        return None;
    }
    let mut idx: u32 = 0;
    for (i, c) in letters.chars().enumerate() {
        if !c.is_ascii_lowercase() {
            return None;
        }
        let d = c as u32 - 'a' as u32;
        idx = if i == 0 {
            d
        } else {
            idx.checked_add(1)?.checked_mul(26)?.checked_add(d)?
        };
    }
    let partition = match digits {
        "" => None,
        d if d.len() > 1 && d.starts_with('0') => return None,
        d => Some(d.parse().ok()?),
    };
    Some((idx, partition))
}

// ---------------------------------------------------------------- controllers

str_enum! {
    /// `<controller type=>`.
    pub enum ControllerType { Ide = "ide", Fdc = "fdc", Scsi = "scsi", Sata = "sata", VirtioSerial = "virtio-serial", Ccid = "ccid", Usb = "usb", Pci = "pci", Xenbus = "xenbus", Isa = "isa" }
}

str_enum! {
    /// PCI controller models.
    pub enum PciModel { PciRoot = "pci-root", PcieRoot = "pcie-root", PciBridge = "pci-bridge", DmiToPciBridge = "dmi-to-pci-bridge", PcieRootPort = "pcie-root-port", PcieSwitchUpstreamPort = "pcie-switch-upstream-port", PcieSwitchDownstreamPort = "pcie-switch-downstream-port", PciExpanderBus = "pci-expander-bus", PcieExpanderBus = "pcie-expander-bus", PcieToPciBridge = "pcie-to-pci-bridge" }
}

str_enum! {
    /// USB controller models.
    pub enum UsbModel { Piix3Uhci = "piix3-uhci", Piix4Uhci = "piix4-uhci", Ehci = "ehci", Ich9Ehci1 = "ich9-ehci1", Ich9Uhci1 = "ich9-uhci1", Ich9Uhci2 = "ich9-uhci2", Ich9Uhci3 = "ich9-uhci3", Vt82c686bUhci = "vt82c686b-uhci", PciOhci = "pci-ohci", NecXhci = "nec-xhci", Qusb1 = "qusb1", Qusb2 = "qusb2", QemuXhci = "qemu-xhci", None = "none" }
}

str_enum! {
    /// SCSI controller models.
    pub enum ScsiModel { Auto = "auto", Buslogic = "buslogic", Lsilogic = "lsilogic", Lsisas1068 = "lsisas1068", Vmpvscsi = "vmpvscsi", Ibmvscsi = "ibmvscsi", VirtioScsi = "virtio-scsi", Lsisas1078 = "lsisas1078", VirtioTransitional = "virtio-transitional", VirtioNonTransitional = "virtio-non-transitional", Ncr53c90 = "ncr53c90", Am53c974 = "am53c974", Dc390 = "dc390" }
}

str_enum! {
    /// IDE controller models.
    pub enum IdeModel { Piix3 = "piix3", Piix4 = "piix4", Ich6 = "ich6" }
}

str_enum! {
    /// ISA controller models.
    pub enum IsaModel { Default = "default" }
}

/// A controller model, typed per controller type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerModel {
    /// PCI.
    Pci(PciModel),
    /// USB.
    Usb(UsbModel),
    /// SCSI.
    Scsi(ScsiModel),
    /// virtio-serial.
    VirtioSerial(VirtioModel),
    /// IDE.
    Ide(IdeModel),
}

impl ControllerModel {
    fn parse(kind: ControllerType, s: &str) -> Option<Self> {
        Some(match kind {
            ControllerType::Pci => ControllerModel::Pci(PciModel::from_name(s)?),
            ControllerType::Usb => ControllerModel::Usb(UsbModel::from_name(s)?),
            ControllerType::Scsi => ControllerModel::Scsi(ScsiModel::from_name(s)?),
            ControllerType::VirtioSerial => {
                ControllerModel::VirtioSerial(VirtioModel::from_name(s)?)
            }
            ControllerType::Ide => ControllerModel::Ide(IdeModel::from_name(s)?),
            _ => return None,
        })
    }

    /// libvirt's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ControllerModel::Pci(m) => m.as_str(),
            ControllerModel::Usb(m) => m.as_str(),
            ControllerModel::Scsi(m) => m.as_str(),
            ControllerModel::VirtioSerial(m) => m.as_str(),
            ControllerModel::Ide(m) => m.as_str(),
        }
    }
}

/// PCI controller options (`<model name=>`, `<target>`, `<pcihole64>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PciControllerOpts {
    /// `<model name=>`: the QEMU device implementing the controller.
    pub model_name: Option<String>,
    /// `<target chassisNr=>`.
    pub chassis_nr: Option<u32>,
    /// `<target chassis=>`.
    pub chassis: Option<u32>,
    /// `<target port=>`.
    pub port: Option<u32>,
    /// `<target busNr=>`.
    pub bus_nr: Option<u32>,
    /// `<target index=>`.
    pub target_index: Option<u32>,
    /// `<target hotplug=>`.
    pub hotplug: Option<OnOff>,
    /// `<target><node>`.
    pub numa_node: Option<u32>,
    /// `<pcihole64>` in KiB.
    pub pcihole64_kib: Option<u64>,
}

/// `<controller>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `type=`.
    pub kind: ControllerType,
    /// `index=` (assigned during expansion when absent).
    pub index: Option<u32>,
    /// `model=`.
    pub model: Option<ControllerModel>,
    /// `ports=` (usb, virtio-serial).
    pub ports: Option<u32>,
    /// `vectors=` (virtio-serial).
    pub vectors: Option<u32>,
    /// PCI-specific options.
    pub pci: PciControllerOpts,
    /// `<driver>` (queues, iothread, virtio options), kept as written.
    pub driver: Option<Element>,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts.
    pub residue: Element,
}

impl Controller {
    /// A new controller of `kind` with index `index`.
    pub fn new(kind: ControllerType, index: u32, model: Option<ControllerModel>) -> Self {
        Controller {
            kind,
            index: Some(index),
            model,
            ports: None,
            vectors: None,
            pci: PciControllerOpts::default(),
            driver: None,
            info: DeviceInfo::default(),
            residue: Element::new("controller"),
        }
    }

    /// The index (0 before assignment).
    pub fn idx(&self) -> u32 {
        self.index.unwrap_or(0)
    }

    /// The PCI model, when this is a PCI controller with a model.
    pub fn pci_model(&self) -> Option<PciModel> {
        match self.model {
            Some(ControllerModel::Pci(m)) => Some(m),
            _ => None,
        }
    }

    /// The USB model, when set.
    pub fn usb_model(&self) -> Option<UsbModel> {
        match self.model {
            Some(ControllerModel::Usb(m)) => Some(m),
            _ => None,
        }
    }

    /// The SCSI model, when set.
    pub fn scsi_model(&self) -> Option<ScsiModel> {
        match self.model {
            Some(ControllerModel::Scsi(m)) => Some(m),
            _ => None,
        }
    }

    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let kind = take_enum(&mut e, "type")?.unwrap_or(ControllerType::Ide);
        let index = match e.take_attr("index") {
            None => None,
            Some(v) => Some(
                v.parse::<u32>()
                    .ok()
                    .filter(|i| i32::try_from(*i).is_ok())
                    .ok_or_else(|| Error::xml(format!("Cannot parse controller index {v}")))?,
            ),
        };
        let model = match e.take_attr("model") {
            None => None,
            Some(m) => Some(
                ControllerModel::parse(kind, &m)
                    .ok_or_else(|| Error::xml(format!("Unknown model type '{m}'")))?,
            ),
        };
        let ports = take_u32(&mut e, "ports")?;
        let vectors = take_u32(&mut e, "vectors")?;
        let mut pci = PciControllerOpts::default();
        if kind == ControllerType::Pci {
            if let Some(mut m) = e.take_child("model") {
                pci.model_name = m.take_attr("name");
            }
            if let Some(mut t) = e.take_child("target") {
                pci.chassis_nr = take_u32(&mut t, "chassisNr")?;
                pci.chassis = take_u32(&mut t, "chassis")?;
                pci.port = match t.take_attr("port") {
                    None => None,
                    Some(v) => Some(
                        crate::common::parse_uint(&v, true)
                            .and_then(|n| u32::try_from(n).ok())
                            .ok_or_else(|| Error::invalid("target", "port", &v))?,
                    ),
                };
                pci.bus_nr = take_u32(&mut t, "busNr")?;
                pci.target_index = take_u32(&mut t, "index")?;
                pci.hotplug = take_enum(&mut t, "hotplug")?;
                if let Some(mut n) = t.take_child("node") {
                    pci.numa_node = n.take_text().and_then(|t| t.parse().ok());
                }
            }
            if let Some(mut h) = e.take_child("pcihole64") {
                let unit = h.take_attr("unit");
                let v = h.take_text().unwrap_or_default();
                pci.pcihole64_kib = crate::common::size_to_kib(&v, unit.as_deref(), "KiB");
            }
        }
        let driver = e.take_child("driver");
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        Ok(Controller {
            kind,
            index,
            model,
            ports,
            vectors,
            pci,
            driver,
            info,
            residue: e.canonical(&order_with_info(CONTROLLER_BEFORE, CONTROLLER_AFTER)),
        })
    }

    fn format(&self) -> Element {
        let mut e = Element::new("controller")
            .attr("type", self.kind)
            .attr_opt("index", self.index)
            .attr_opt("model", self.model.map(ControllerModel::as_str))
            .attr_opt("ports", self.ports)
            .attr_opt("vectors", self.vectors);
        if self.kind == ControllerType::Pci {
            if let Some(n) = &self.pci.model_name {
                e.children.push(Element::new("model").attr("name", n));
            }
            let p = &self.pci;
            let mut t = Element::new("target")
                .attr_opt("chassisNr", p.chassis_nr)
                .attr_opt("chassis", p.chassis)
                .attr_opt("port", p.port.map(|v| format!("0x{v:x}")))
                .attr_opt("busNr", p.bus_nr)
                .attr_opt("index", p.target_index)
                .attr_opt("hotplug", p.hotplug);
            if let Some(n) = p.numa_node {
                t.children.push(Element::new("node").text(n));
            }
            if !t.is_empty() {
                e.children.push(t);
            }
        }
        e.children.extend(self.driver.iter().cloned());
        self.info.format_into(&mut e, false, false);
        if let Some(h) = self.pci.pcihole64_kib {
            e.children
                .push(Element::new("pcihole64").attr("unit", "KiB").text(h));
        }
        e.merge_residue(
            &self.residue,
            &order_with_info(CONTROLLER_BEFORE, CONTROLLER_AFTER),
        );
        e
    }
}

/// Inserts a controller where libvirt's `virDomainControllerInsert` puts it:
/// grouped by type, ordered by index, a USB master before its companions.
pub fn insert_controller(list: &mut Vec<Controller>, c: Controller) -> usize {
    let mut insert_at: Option<usize> = None;
    for i in (0..list.len()).rev() {
        let cur = &list[i];
        if cur.kind != c.kind {
            continue;
        }
        let Some(new_idx) = c.index else {
            insert_at = Some(i + 1);
            break;
        };
        let master_first = c.info.master_startport.is_none()
            && cur.info.master_startport.is_some()
            && cur.idx() == new_idx;
        if cur.idx() > new_idx || master_first {
            insert_at = Some(i);
        } else if insert_at.is_none() {
            insert_at = Some(i + 1);
        }
    }
    let pos = insert_at.unwrap_or(list.len());
    list.insert(pos, c);
    pos
}

// ---------------------------------------------------------------- net

str_enum! {
    /// `<interface type=>`.
    pub enum NetType { User = "user", Ethernet = "ethernet", VhostUser = "vhostuser", Server = "server", Client = "client", Mcast = "mcast", Network = "network", Bridge = "bridge", Internal = "internal", Direct = "direct", Hostdev = "hostdev", Udp = "udp", Vdpa = "vdpa", Null = "null", Vds = "vds" }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parses `52:54:00:aa:bb:cc`.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return None;
        }
        let mut m = [0u8; 6];
        for (o, p) in m.iter_mut().zip(parts) {
            if p.is_empty() || p.len() > 2 {
                return None;
            }
            *o = u8::from_str_radix(p, 16).ok()?;
        }
        Some(MacAddr(m))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// `<interface>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `type=`.
    pub kind: NetType,
    /// `<mac address=>` (generated during expansion when absent).
    pub mac: Option<MacAddr>,
    /// `<source>` (first one), kept as written; see the accessors.
    pub source: Option<Element>,
    /// `<model type=>`.
    pub model: Option<String>,
    /// `<target dev=>` etc., kept as written.
    pub target: Option<Element>,
    /// `<driver>`, kept as written.
    pub driver: Option<Element>,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts.
    pub residue: Element,
}

const NET_ORDER: &[&str] = &[
    "mac",
    "source",
    "local",
    "driver_hostdev",
    "vlan",
    "virtualport",
    "bandwidth",
    "port",
    "actual",
    "ip",
    "route",
    "portForward",
    "script",
    "downscript",
    "backenddomain",
    "target",
    "guest",
    "model",
    "driver",
    "backend",
    "filterref",
    "tune",
    "teaming",
    "link",
    "mtu",
    "coalesce",
    "boot",
    "alias",
    "master",
    "rom",
    "acpi",
    "address",
];

/// Whether `<target dev=>` is a tap name the driver generated (and the tap
/// is managed by it): such names are not part of the persistent config.
fn is_generated_ifname(target: &Element) -> bool {
    target.get_attr("managed") != Some("no")
        && target.get_attr("dev").is_some_and(|d| {
            ["vnet", "macvtap", "macvlan"]
                .iter()
                .any(|p| d.starts_with(p))
        })
}

impl Interface {
    /// `<source network=>`, `bridge=`, `dev=` etc.
    pub fn source_attr(&self, name: &str) -> Option<&str> {
        self.source.as_ref().and_then(|s| s.get_attr(name))
    }

    /// True for virtio models.
    pub fn is_virtio(&self) -> bool {
        matches!(
            self.model.as_deref(),
            Some("virtio" | "virtio-transitional" | "virtio-non-transitional")
        )
    }

    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let kind = take_enum(&mut e, "type")?.unwrap_or(NetType::User);
        let mac =
            match e.take_child("mac") {
                Some(mut m) => {
                    let a = m.take_attr("address");
                    // keep type/check attributes in residue-friendly form
                    for (n, v) in m.attrs.drain(..) {
                        e.attrs.push((format!("mac:{n}"), v));
                    }
                    match a {
                        Some(a) => Some(MacAddr::parse(&a).ok_or_else(|| {
                            Error::xml(format!("unable to parse mac address '{a}'"))
                        })?),
                        None => None,
                    }
                }
                None => None,
            };
        if let Some(m) = mac {
            if m.0[0] & 1 == 1 {
                return Err(Error::xml(format!(
                    "expected unicast mac address, found multicast '{m}'"
                )));
            }
        }
        let source = e.take_child("source");
        let model = e.take_child("model").and_then(|mut m| m.take_attr("type"));
        let mut target = e.take_child("target");
        // a generated tap name (vnet0, macvtap0, ...) belongs to one run
        if opts.inactive {
            if let Some(t) = &mut target {
                if is_generated_ifname(t) {
                    t.take_attr("dev");
                }
            }
        }
        let driver = e.take_child("driver");
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        Ok(Interface {
            kind,
            mac,
            source,
            model,
            target,
            driver,
            info,
            residue: e.canonical(NET_ORDER),
        })
    }

    fn format(&self, opts: &FormatOptions) -> Element {
        let mut e = Element::new("interface").attr("type", self.kind);
        let mut residue = self.residue.clone();
        let mut mac_extra = Vec::new();
        residue.attrs.retain(|(n, v)| {
            if let Some(k) = n.strip_prefix("mac:") {
                mac_extra.push((k.to_string(), v.clone()));
                false
            } else {
                true
            }
        });
        for a in ["managed", "trustGuestRxFilters"] {
            if let Some(v) = residue.take_attr(a) {
                e.push_attr(a, v);
            }
        }
        if let Some(m) = &self.mac {
            let mut me = Element::new("mac").attr("address", m);
            me.attrs.extend(mac_extra);
            e.children.push(me);
        }
        e.children.extend(self.source.iter().cloned());
        if let Some(t) = &self.target {
            let mut t = t.clone();
            if opts.inactive && is_generated_ifname(&t) {
                t.take_attr("dev");
            }
            if !t.is_empty() {
                e.children.push(t);
            }
        }
        if let Some(m) = &self.model {
            e.children.push(Element::new("model").attr("type", m));
        }
        e.children.extend(self.driver.iter().cloned());
        self.info.format_into(&mut e, true, true);
        e.merge_residue(&residue, NET_ORDER);
        e
    }
}

// ---------------------------------------------------------------- chardevs

str_enum! {
    /// Character device backend type (`<serial type=>` etc.).
    pub enum ChrType { Null = "null", Vc = "vc", Pty = "pty", Dev = "dev", File = "file", Pipe = "pipe", Stdio = "stdio", Udp = "udp", Tcp = "tcp", Unix = "unix", Spicevmc = "spicevmc", Spiceport = "spiceport", Nmdm = "nmdm", QemuVdagent = "qemu-vdagent", Dbus = "dbus" }
}

str_enum! {
    /// `<protocol type=>` of TCP chardevs.
    pub enum ChrTcpProtocol { Raw = "raw", Telnet = "telnet", Telnets = "telnets", Tls = "tls" }
}

/// The host side of a character device (libvirt's `virDomainChrSourceDef`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrSource {
    /// Backend type.
    pub kind: ChrType,
    /// Path (`pty`/`dev`/`file`/`pipe`/`unix`).
    pub path: Option<String>,
    /// `mode='bind'` (listen) for tcp/unix; udp bind side present.
    pub listen: bool,
    /// tcp host / udp connect host.
    pub host: Option<String>,
    /// tcp service / udp connect service.
    pub service: Option<String>,
    /// udp bind host.
    pub bind_host: Option<String>,
    /// udp bind service.
    pub bind_service: Option<String>,
    /// `tls=` on tcp.
    pub tls: Option<YesNo>,
    /// `append=` on file.
    pub append: Option<OnOff>,
    /// spiceport/dbus channel name.
    pub channel: Option<String>,
    /// `<protocol type=>` (tcp).
    pub protocol: Option<ChrTcpProtocol>,
    /// `<log file=>`.
    pub log_file: Option<String>,
    /// `<log append=>`.
    pub log_append: Option<OnOff>,
    /// Untyped parts of `<source>` (`reconnect`, `seclabel`, nmdm
    /// master/slave, vdagent options), kept as written.
    pub source_residue: Element,
}

impl ChrSource {
    /// A source of the given type with nothing else set.
    pub fn new(kind: ChrType) -> Self {
        ChrSource {
            kind,
            path: None,
            listen: false,
            host: None,
            service: None,
            bind_host: None,
            bind_service: None,
            tls: None,
            append: None,
            channel: None,
            protocol: None,
            log_file: None,
            log_append: None,
            source_residue: Element::new("source"),
        }
    }

    /// Parses from the device element (`type=` already taken) by consuming
    /// `<source>`, `<protocol>` and `<log>`.
    pub fn take(e: &mut Element, kind: ChrType) -> Result<Self> {
        let mut s = ChrSource::new(kind);
        for mut src in e.take_children("source") {
            let mode = src.take_attr("mode");
            match kind {
                ChrType::Udp => {
                    let host = src.take_attr("host");
                    let service = src.take_attr("service");
                    if mode.as_deref() == Some("bind") {
                        s.bind_host = host;
                        s.bind_service = service;
                    } else {
                        if s.host.is_none() {
                            s.host = host;
                        }
                        if s.service.is_none() {
                            s.service = service;
                        }
                    }
                }
                ChrType::Tcp => {
                    s.listen = mode.as_deref() == Some("bind");
                    if s.host.is_none() {
                        s.host = src.take_attr("host");
                    }
                    if s.service.is_none() {
                        s.service = src.take_attr("service");
                    }
                    if let Some(t) = take_enum(&mut src, "tls")? {
                        s.tls = Some(t);
                    }
                }
                ChrType::Unix => {
                    s.listen = mode.as_deref() == Some("bind");
                    if s.path.is_none() {
                        s.path = src.take_attr("path");
                    }
                }
                ChrType::Pty | ChrType::Dev | ChrType::File | ChrType::Pipe => {
                    if s.path.is_none() {
                        s.path = src.take_attr("path");
                    }
                    if kind == ChrType::File {
                        s.append = take_enum(&mut src, "append")?;
                    }
                }
                ChrType::Spiceport | ChrType::Dbus => {
                    s.channel = src.take_attr("channel");
                }
                _ => {}
            }
            if let Some(m) = mode {
                if !matches!(kind, ChrType::Udp | ChrType::Tcp | ChrType::Unix) {
                    src.attrs.insert(0, ("mode".into(), m));
                }
            }
            // keep what is left of the first source
            if s.source_residue.is_empty() {
                s.source_residue = src.canonical(CHR_SOURCE_ORDER);
            }
        }
        if let Some(mut p) = e.take_child("protocol") {
            s.protocol = take_enum(&mut p, "type")?;
        }
        if let Some(mut l) = e.take_child("log") {
            s.log_file = l.take_attr("file");
            s.log_append = take_enum(&mut l, "append")?;
        }
        if kind == ChrType::Tcp && s.protocol.is_none() {
            s.protocol = Some(ChrTcpProtocol::Raw);
        }
        Ok(s)
    }

    /// Appends `<source>`/`<protocol>`/`<log>` in libvirt's layout.
    pub fn format_into(&self, e: &mut Element, opts: &FormatOptions) {
        let res = &self.source_residue;
        let with_residue = |mut se: Element| -> Element {
            se.merge_residue(res, CHR_SOURCE_ORDER);
            se
        };
        match self.kind {
            ChrType::Null | ChrType::Vc | ChrType::Stdio | ChrType::Spicevmc => {}
            ChrType::QemuVdagent | ChrType::Nmdm => {
                if !res.is_empty() {
                    e.children.push(res.clone());
                }
            }
            ChrType::Pty | ChrType::Dev | ChrType::File | ChrType::Pipe => {
                if self.kind != ChrType::Pty || (self.path.is_some() && !opts.inactive) {
                    e.children.push(with_residue(
                        Element::new("source")
                            .attr_opt("path", self.path.as_ref())
                            .attr_opt("append", self.append),
                    ));
                }
            }
            ChrType::Udp => {
                if self.bind_host.is_some() || self.bind_service.is_some() {
                    e.children.push(
                        Element::new("source")
                            .attr("mode", "bind")
                            .attr_opt("host", self.bind_host.as_ref())
                            .attr_opt("service", self.bind_service.as_ref()),
                    );
                }
                if self.host.is_some() || self.service.is_some() {
                    e.children.push(
                        Element::new("source")
                            .attr("mode", "connect")
                            .attr_opt("host", self.host.as_ref())
                            .attr_opt("service", self.service.as_ref()),
                    );
                }
            }
            ChrType::Tcp => {
                e.children.push(with_residue(
                    Element::new("source")
                        .attr("mode", if self.listen { "bind" } else { "connect" })
                        .attr_opt("host", self.host.as_ref())
                        .attr_opt("service", self.service.as_ref())
                        .attr_opt("tls", self.tls),
                ));
                e.children.push(
                    Element::new("protocol")
                        .attr("type", self.protocol.unwrap_or(ChrTcpProtocol::Raw)),
                );
            }
            ChrType::Unix => {
                if self.path.is_some() {
                    e.children.push(with_residue(
                        Element::new("source")
                            .attr("mode", if self.listen { "bind" } else { "connect" })
                            .attr_opt("path", self.path.as_ref()),
                    ));
                }
            }
            ChrType::Spiceport | ChrType::Dbus => {
                e.children
                    .push(Element::new("source").attr_opt("channel", self.channel.as_ref()));
            }
        }
        if let Some(f) = &self.log_file {
            e.children.push(
                Element::new("log")
                    .attr("file", f)
                    .attr_opt("append", self.log_append),
            );
        }
    }
}

/// Which list a character device belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChrDeviceKind {
    /// `<serial>`.
    Serial,
    /// `<parallel>`.
    Parallel,
    /// `<console>`.
    Console,
    /// `<channel>`.
    Channel,
}

impl ChrDeviceKind {
    fn element(self) -> &'static str {
        match self {
            ChrDeviceKind::Serial => "serial",
            ChrDeviceKind::Parallel => "parallel",
            ChrDeviceKind::Console => "console",
            ChrDeviceKind::Channel => "channel",
        }
    }
}

/// `<target>` of a character device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChrTarget {
    /// `type=` (serial: `isa-serial`, `usb-serial`, `pci-serial`, ...;
    /// console: `serial`, `virtio`, ...; channel: `virtio`, `guestfwd`, `xen`).
    pub kind: Option<String>,
    /// `port=`.
    pub port: Option<u32>,
    /// `name=` (virtio channels).
    pub name: Option<String>,
    /// `address=` (guestfwd).
    pub address: Option<String>,
    /// `port=` of guestfwd (string form).
    pub guestfwd_port: Option<String>,
    /// `state=` (live only).
    pub state: Option<String>,
    /// `<model name=>` (serial).
    pub model: Option<String>,
}

/// `<serial>`, `<parallel>`, `<console>`, `<channel>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrDevice {
    /// Which list it is in.
    pub device: ChrDeviceKind,
    /// Host side.
    pub source: ChrSource,
    /// Guest side.
    pub target: ChrTarget,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts.
    pub residue: Element,
}

impl ChrDevice {
    fn parse(device: ChrDeviceKind, mut e: Element, opts: ParseOptions) -> Result<Self> {
        let kind = take_enum(&mut e, "type")?.unwrap_or(ChrType::Pty);
        let tty = e.take_attr("tty");
        let mut source = ChrSource::take(&mut e, kind)?;
        if source.path.is_none() && kind == ChrType::Pty {
            source.path = tty;
        }
        // a UNIX socket without a path gets a generated one, which implies
        // that QEMU listens on it (libvirt's inactive post-parse; a running
        // guest always has the path)
        if kind == ChrType::Unix && source.path.is_none() {
            source.listen = true;
        }
        let mut target = ChrTarget::default();
        if let Some(mut t) = e.take_child("target") {
            target.kind = t.take_attr("type");
            let port = t.take_attr("port");
            match (device, target.kind.as_deref()) {
                (ChrDeviceKind::Channel, Some("guestfwd")) => {
                    target.address = t.take_attr("address");
                    target.guestfwd_port = port;
                }
                _ => {
                    target.port = match port {
                        None => None,
                        Some(p) => Some(
                            p.parse::<u32>()
                                .map_err(|_| Error::xml(format!("Invalid port number: {p}")))?,
                        ),
                    };
                }
            }
            target.name = t.take_attr("name");
            let state = t.take_attr("state");
            if !opts.inactive {
                target.state = state;
            }
            if let Some(mut m) = t.take_child("model") {
                target.model = m.take_attr("name");
            }
        }
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        Ok(ChrDevice {
            device,
            source,
            target,
            info,
            residue: e.canonical(&order_with_info(CHR_BEFORE, &[])),
        })
    }

    fn format(&self, opts: &FormatOptions) -> Element {
        let mut e = Element::new(self.device.element()).attr("type", self.source.kind);
        // legacy <console tty='/dev/pts/N'> of the first running pty console
        if self.device == ChrDeviceKind::Console
            && self.target.port == Some(0)
            && self.source.kind == ChrType::Pty
            && !opts.inactive
        {
            e.push_attr_opt("tty", self.source.path.as_ref());
        }
        self.source.format_into(&mut e, opts);
        let t = &self.target;
        let mut te = Element::new("target");
        match self.device {
            ChrDeviceKind::Channel => {
                te.push_attr_opt("type", t.kind.as_ref());
                if t.kind.as_deref() == Some("guestfwd") {
                    te.push_attr_opt("address", t.address.as_ref());
                    te.push_attr_opt("port", t.guestfwd_port.as_ref());
                } else {
                    te.push_attr_opt("name", t.name.as_ref());
                    if !opts.inactive {
                        te.push_attr_opt("state", t.state.as_ref());
                    }
                }
            }
            ChrDeviceKind::Console => {
                te.push_attr_opt("type", t.kind.as_ref());
                te.push_attr_opt("port", t.port);
            }
            ChrDeviceKind::Serial => {
                te.push_attr_opt("type", t.kind.as_ref());
                te.push_attr_opt("port", t.port);
                if let Some(m) = &t.model {
                    te.children.push(Element::new("model").attr("name", m));
                }
            }
            ChrDeviceKind::Parallel => {
                te.push_attr_opt("port", t.port);
            }
        }
        e.children.push(te);
        self.info.format_into(&mut e, false, false);
        e.merge_residue(&self.residue, &order_with_info(CHR_BEFORE, &[]));
        e
    }
}

// ---------------------------------------------------------------- input

str_enum! {
    /// `<input type=>`.
    pub enum InputType { Mouse = "mouse", Tablet = "tablet", Keyboard = "keyboard", Passthrough = "passthrough", Evdev = "evdev" }
}

str_enum! {
    /// `<input bus=>`.
    pub enum InputBus { Ps2 = "ps2", Usb = "usb", Xen = "xen", Parallels = "parallels", Virtio = "virtio", None = "none" }
}

/// `<input>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// `type=`.
    pub kind: InputType,
    /// `bus=` (defaulted during expansion).
    pub bus: Option<InputBus>,
    /// `model=`.
    pub model: Option<VirtioModel>,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts (`<source>`, `<driver>`).
    pub residue: Element,
}

impl Input {
    /// A new input device.
    pub fn new(kind: InputType, bus: InputBus) -> Self {
        Input {
            kind,
            bus: Some(bus),
            model: None,
            info: DeviceInfo::default(),
            residue: Element::new("input"),
        }
    }

    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let kind = take_enum_req(&mut e, "type")?;
        let bus = take_enum(&mut e, "bus")?;
        let model = match e.take_attr("model") {
            None => None,
            Some(m) => Some(
                VirtioModel::from_name(&m)
                    .ok_or_else(|| Error::xml(format!("unknown input model '{m}'")))?,
            ),
        };
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        Ok(Input {
            kind,
            bus,
            model,
            info,
            residue: e.canonical(&order_with_info(INPUT_BEFORE, &[])),
        })
    }

    fn format(&self) -> Element {
        let mut e = Element::new("input")
            .attr("type", self.kind)
            .attr_opt("bus", self.bus.filter(|b| *b != InputBus::None))
            .attr_opt("model", self.model);
        self.info.format_into(&mut e, false, false);
        e.merge_residue(&self.residue, &order_with_info(INPUT_BEFORE, &[]));
        e
    }
}

// ---------------------------------------------------------------- graphics

str_enum! {
    /// `<graphics type=>`.
    pub enum GraphicsType { Sdl = "sdl", Vnc = "vnc", Rdp = "rdp", Desktop = "desktop", Spice = "spice", EglHeadless = "egl-headless", Dbus = "dbus" }
}

str_enum! {
    /// `<listen type=>`.
    pub enum ListenType { None = "none", Address = "address", Network = "network", Socket = "socket" }
}

/// `<graphics><listen>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// `type=`.
    pub kind: ListenType,
    /// `address=`.
    pub address: Option<String>,
    /// `network=`.
    pub network: Option<String>,
    /// `socket=`.
    pub socket: Option<String>,
    /// The socket path was generated (not user supplied).
    pub auto_generated: bool,
    /// Taken from qemu.conf rather than the XML.
    pub from_config: bool,
}

/// `<graphics>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graphics {
    /// `type=`.
    pub kind: GraphicsType,
    /// `port=` (0 = none/auto).
    pub port: i32,
    /// `tlsPort=` (spice).
    pub tls_port: i32,
    /// `autoport=`.
    pub autoport: bool,
    /// `websocket=` (vnc).
    pub websocket: Option<i32>,
    /// `keymap=`.
    pub keymap: Option<String>,
    /// `<listen>`s.
    pub listens: Vec<Listen>,
    /// Untyped attributes (`passwd`, `sharePolicy`, ...) and children
    /// (`channel`, `image`, `gl`, `audio`, ...).
    pub residue: Element,
}

const GRAPHICS_ORDER: &[&str] = &[
    "listen",
    "channel",
    "image",
    "jpeg",
    "zlib",
    "playback",
    "streaming",
    "mouse",
    "clipboard",
    "filetransfer",
    "gl",
    "audio",
];

/// SPICE channel names in libvirt's enum (and output) order.
const SPICE_CHANNELS: &[&str] = &[
    "main",
    "display",
    "inputs",
    "cursor",
    "playback",
    "record",
    "smartcard",
    "usbredir",
];

/// Graphics children in libvirt's order; SPICE `<channel>`s by channel name.
fn canonical_graphics(mut e: Element) -> Element {
    e.children.sort_by_key(|c| {
        let pos = if c.ns.is_some() {
            usize::MAX
        } else {
            GRAPHICS_ORDER
                .iter()
                .position(|n| *n == c.name)
                .unwrap_or(usize::MAX - 1)
        };
        let chan = if c.is("channel") {
            c.get_attr("name")
                .and_then(|n| SPICE_CHANNELS.iter().position(|x| *x == n))
                .unwrap_or(usize::MAX)
        } else {
            0
        };
        (pos, chan)
    });
    e
}

impl Graphics {
    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let kind = take_enum_req(&mut e, "type")?;
        let port_s = e.take_attr("port");
        let tls_s = e.take_attr("tlsPort");
        let autoport_s: Option<YesNo> = take_enum(&mut e, "autoport")?;
        let listen_attr = e.take_attr("listen");
        let socket_attr = if kind == GraphicsType::Vnc {
            e.take_attr("socket")
        } else {
            None
        };
        let parse_port = |v: &Option<String>, what: &str| -> Result<Option<i32>> {
            match v {
                None => Ok(None),
                Some(p) => p
                    .parse::<i32>()
                    .map(Some)
                    .map_err(|_| Error::Internal(format!("cannot parse {what} port {p}"))),
            }
        };
        let mut port = parse_port(&port_s, "vnc")?.unwrap_or(0);
        let mut tls_port = parse_port(&tls_s, "spice tls")?.unwrap_or(0);
        let mut autoport = false;
        match kind {
            GraphicsType::Vnc => {
                if port_s.is_none() || port == -1 {
                    autoport = true;
                    // -1 only means "pick one": the same as no port yet
                    if port == -1 {
                        port = 0;
                    }
                }
                if let Some(a) = autoport_s {
                    autoport = a.is_yes();
                }
                if autoport && opts.inactive {
                    port = 0;
                }
            }
            GraphicsType::Spice => {
                if port == -1 && tls_port == -1 {
                    autoport = true;
                }
                if let Some(a) = autoport_s {
                    autoport = a.is_yes();
                }
                if autoport && opts.inactive {
                    port = 0;
                    tls_port = 0;
                }
                // -1 only means "pick one": the same as no port yet
                if autoport {
                    port = port.max(0);
                    tls_port = tls_port.max(0);
                }
            }
            GraphicsType::Rdp => {
                if port == -1 {
                    autoport = true;
                    port = 0;
                }
                if let Some(a) = autoport_s {
                    autoport = a.is_yes();
                }
            }
            _ => {
                if let Some(a) = autoport_s {
                    e.attrs.push(("autoport".into(), a.as_str().into()));
                }
                if let Some(p) = port_s {
                    e.attrs.push(("port".into(), p));
                }
            }
        }
        let websocket = match e.take_attr("websocket") {
            None => None,
            Some(w) => Some(
                w.parse::<i32>()
                    .map_err(|_| Error::invalid("graphics", "websocket", &w))?,
            ),
        };
        let keymap = e.take_attr("keymap");
        let mut listens = Vec::new();
        if matches!(
            kind,
            GraphicsType::Vnc | GraphicsType::Spice | GraphicsType::Rdp
        ) {
            for (i, mut l) in e.take_children("listen").into_iter().enumerate() {
                let lk: ListenType = take_enum_req(&mut l, "type")?;
                let mut address = l.take_attr("address");
                let network = l.take_attr("network");
                let socket = l.take_attr("socket");
                let auto_generated = l.take_attr("autoGenerated").as_deref() == Some("yes");
                let from_config = l.take_attr("fromConfig").as_deref() == Some("1");
                if i == 0 && lk == ListenType::Address {
                    if let Some(la) = &listen_attr {
                        match &address {
                            None => address = Some(la.clone()),
                            Some(a) if a != la => {
                                return Err(Error::xml(format!(
                                    "graphics 'listen' attribute '{la}' must match 'address' attribute of first listen element (found '{a}')"
                                )));
                            }
                            _ => {}
                        }
                    }
                }
                if lk == ListenType::Network && opts.inactive {
                    address = None;
                }
                listens.push(Listen {
                    kind: lk,
                    address: address.filter(|a| !a.is_empty()),
                    network,
                    socket,
                    auto_generated,
                    from_config,
                });
            }
            let new_listen = match socket_attr {
                Some(s) => Listen {
                    kind: ListenType::Socket,
                    address: None,
                    network: None,
                    socket: Some(s),
                    auto_generated: false,
                    from_config: false,
                },
                None => Listen {
                    kind: ListenType::Address,
                    address: listen_attr.filter(|a| !a.is_empty()),
                    network: None,
                    socket: None,
                    auto_generated: false,
                    from_config: false,
                },
            };
            if listens.is_empty() {
                listens.push(new_listen);
            } else if matches!(listens[0].kind, ListenType::Address | ListenType::Network)
                && new_listen.kind == ListenType::Socket
            {
                listens[0] = new_listen;
            }
        } else if let Some(l) = listen_attr {
            e.attrs.push(("listen".into(), l));
        }
        Ok(Graphics {
            kind,
            port,
            tls_port,
            autoport,
            websocket,
            keymap,
            listens,
            residue: canonical_graphics(e),
        })
    }

    fn format(&self, opts: &FormatOptions) -> Element {
        let mut e = Element::new("graphics").attr("type", self.kind);
        let first = self.listens.first();
        let listen_addr_attr = |e: &mut Element| {
            if let Some(l) = first {
                if l.kind == ListenType::Address
                    || (l.kind == ListenType::Network && !opts.inactive)
                {
                    e.push_attr_opt("listen", l.address.as_ref());
                }
            }
        };
        let mut residue = self.residue.clone();
        match self.kind {
            GraphicsType::Vnc => {
                match first.map(|l| l.kind) {
                    Some(ListenType::Socket) => {
                        if let Some(s) = first.and_then(|l| l.socket.as_ref()) {
                            if !(opts.migratable
                                && first.is_some_and(|l| l.auto_generated || l.from_config))
                            {
                                e.push_attr("socket", s);
                            }
                        }
                    }
                    Some(ListenType::Address | ListenType::Network) => {
                        if self.port != 0 && (!self.autoport || !opts.inactive) {
                            e.push_attr("port", self.port);
                        } else if self.autoport {
                            e.push_attr("port", -1);
                        }
                        e.push_attr("autoport", YesNo::from_bool(self.autoport));
                        if let Some(w) = self.websocket.filter(|w| *w != 0) {
                            e.push_attr("websocket", w);
                        }
                        listen_addr_attr(&mut e);
                    }
                    _ => {}
                }
                e.push_attr_opt("keymap", self.keymap.as_ref());
                for a in ["sharePolicy", "powerControl"] {
                    if let Some(v) = residue.take_attr(a) {
                        e.push_attr(a, v);
                    }
                }
            }
            GraphicsType::Spice => {
                match first.map(|l| l.kind) {
                    Some(ListenType::Address | ListenType::Network) => {
                        if self.port != 0 {
                            e.push_attr("port", self.port);
                        }
                        if self.tls_port != 0 {
                            e.push_attr("tlsPort", self.tls_port);
                        }
                        e.push_attr("autoport", YesNo::from_bool(self.autoport));
                        listen_addr_attr(&mut e);
                    }
                    Some(ListenType::None) if opts.migratable => {
                        e.push_attr("autoport", "no");
                    }
                    _ => {}
                }
                e.push_attr_opt("keymap", self.keymap.as_ref());
                if let Some(v) = residue.take_attr("defaultMode") {
                    e.push_attr("defaultMode", v);
                }
            }
            GraphicsType::Rdp => {
                if self.port != 0 {
                    e.push_attr("port", self.port);
                } else if self.autoport {
                    e.push_attr("port", 0);
                }
                if self.autoport {
                    e.push_attr("autoport", "yes");
                }
                listen_addr_attr(&mut e);
            }
            _ => {}
        }
        // auth attributes: passwd, passwdValidTo, connected
        if let Some(p) = residue.take_attr("passwd") {
            if opts.secure {
                e.push_attr("passwd", p);
            }
        }
        for l in &self.listens {
            let mut le = Element::new("listen").attr("type", l.kind);
            if l.kind == ListenType::Address || (l.kind == ListenType::Network && !opts.inactive) {
                le.push_attr_opt("address", l.address.as_ref());
            }
            if l.kind == ListenType::Network {
                le.push_attr_opt("network", l.network.as_ref());
            }
            if l.kind == ListenType::Socket && !(l.auto_generated && opts.migratable) {
                le.push_attr_opt("socket", l.socket.as_ref());
            }
            e.children.push(le);
        }
        e.merge_residue(&residue, GRAPHICS_ORDER);
        e
    }
}

// ---------------------------------------------------------------- video

str_enum! {
    /// `<video><model type=>`.
    pub enum VideoType { Default = "default", Vga = "vga", Cirrus = "cirrus", Vmvga = "vmvga", Xen = "xen", Vbox = "vbox", Qxl = "qxl", Parallels = "parallels", Virtio = "virtio", Gop = "gop", None = "none", Bochs = "bochs", Ramfb = "ramfb" }
}

/// `<video>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// `<model type=>` (`None` = chosen during expansion).
    pub kind: Option<VideoType>,
    /// `ram=` KiB (qxl).
    pub ram: Option<u32>,
    /// `vram=` KiB.
    pub vram: Option<u32>,
    /// `vram64=` KiB (qxl).
    pub vram64: Option<u32>,
    /// `vgamem=` KiB (qxl).
    pub vgamem: Option<u32>,
    /// `heads=`.
    pub heads: Option<u32>,
    /// `primary='yes'`.
    pub primary: bool,
    /// `<model>` children (`acceleration`, `resolution`), kept as written.
    pub model_residue: Element,
    /// `<driver>`, kept as written.
    pub driver: Option<Element>,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts.
    pub residue: Element,
}

impl Video {
    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let mut v = Video {
            kind: None,
            ram: None,
            vram: None,
            vram64: None,
            vgamem: None,
            heads: None,
            primary: false,
            model_residue: Element::new("model"),
            driver: None,
            info: DeviceInfo::default(),
            residue: Element::new("video"),
        };
        if let Some(mut m) = e.take_child("model") {
            v.kind = take_enum(&mut m, "type")?;
            v.ram = take_u32(&mut m, "ram")?;
            v.vram = take_u32(&mut m, "vram")?;
            v.vram64 = take_u32(&mut m, "vram64")?;
            v.vgamem = take_u32(&mut m, "vgamem")?;
            v.heads = take_u32(&mut m, "heads")?;
            v.primary = m.take_attr("primary").as_deref() == Some("yes");
            v.model_residue = m.canonical(VIDEO_MODEL_ORDER);
        }
        v.driver = e.take_child("driver");
        v.info = DeviceInfo::take(&mut e, opts.inactive)?;
        v.residue = e.canonical(&order_with_info(VIDEO_BEFORE, &[]));
        Ok(v)
    }

    fn format(&self) -> Element {
        let mut e = Element::new("video");
        e.children.extend(self.driver.iter().cloned());
        let mut m = Element::new("model")
            .attr_opt("type", self.kind)
            .attr_opt("ram", self.ram)
            .attr_opt("vram", self.vram)
            .attr_opt("vram64", self.vram64)
            .attr_opt("vgamem", self.vgamem)
            .attr_opt("heads", self.heads);
        if self.primary {
            m.push_attr("primary", "yes");
        }
        m.merge_residue(&self.model_residue, VIDEO_MODEL_ORDER);
        e.children.push(m);
        self.info.format_into(&mut e, false, false);
        e.merge_residue(&self.residue, &order_with_info(VIDEO_BEFORE, &[]));
        e
    }
}

// ---------------------------------------------------------------- sound/audio

/// `<sound>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sound {
    /// `model=` (`ich6`, `ich9`, `ac97`, `es1370`, `sb16`, `pcspk`, `usb`, `ich7`).
    pub model: String,
    /// `<audio id=>`.
    pub audio_id: Option<u32>,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts (`<codec>`).
    pub residue: Element,
}

impl Sound {
    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let model = e
            .take_attr("model")
            .ok_or_else(|| Error::missing("sound", "model"))?;
        let audio_id = match e.take_child("audio") {
            Some(mut a) => take_u32(&mut a, "id")?,
            None => None,
        };
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        Ok(Sound {
            model,
            audio_id,
            info,
            residue: e,
        })
    }

    fn format(&self) -> Element {
        let mut e = Element::new("sound").attr("model", &self.model);
        e.children.extend(self.residue.children.iter().cloned());
        if let Some(id) = self.audio_id {
            e.children.push(Element::new("audio").attr("id", id));
        }
        self.info.format_into(&mut e, false, false);
        let mut r = self.residue.clone();
        r.children.clear();
        e.merge_residue(&r, &[]);
        e
    }
}

/// `<audio>` backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// `id=`.
    pub id: u32,
    /// `type=` (`none`, `alsa`, `spice`, `sdl`, ...).
    pub kind: String,
    /// Untyped parts (backend attributes, `<input>`, `<output>`).
    pub residue: Element,
}

impl Audio {
    /// A new backend.
    pub fn new(id: u32, kind: &str) -> Self {
        Audio {
            id,
            kind: kind.to_string(),
            residue: Element::new("audio"),
        }
    }

    fn parse(mut e: Element) -> Result<Self> {
        let id = take_u32(&mut e, "id")?.ok_or_else(|| Error::missing("audio", "id"))?;
        if id == 0 {
            return Err(Error::invalid("audio", "id", "0"));
        }
        let kind = e
            .take_attr("type")
            .ok_or_else(|| Error::missing("audio", "type"))?;
        Ok(Audio {
            id,
            kind,
            residue: e.canonical(AUDIO_ORDER),
        })
    }

    fn format(&self) -> Element {
        let mut e = Element::new("audio")
            .attr("id", self.id)
            .attr("type", &self.kind);
        e.merge_residue(&self.residue, AUDIO_ORDER);
        e
    }
}

// ---------------------------------------------------------------- memballoon

/// `<memballoon>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memballoon {
    /// `model=` (`virtio`, `virtio-transitional`, `virtio-non-transitional`, `xen`, `none`).
    pub model: String,
    /// `autodeflate=`.
    pub autodeflate: Option<OnOff>,
    /// `freePageReporting=`.
    pub free_page_reporting: Option<OnOff>,
    /// `<stats period=>`.
    pub stats_period: Option<u32>,
    /// `<driver>`, kept as written.
    pub driver: Option<Element>,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Untyped parts.
    pub residue: Element,
}

impl Memballoon {
    /// A new balloon of `model`.
    pub fn new(model: &str) -> Self {
        Memballoon {
            model: model.to_string(),
            autodeflate: None,
            free_page_reporting: None,
            stats_period: None,
            driver: None,
            info: DeviceInfo::default(),
            residue: Element::new("memballoon"),
        }
    }

    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let model = e
            .take_attr("model")
            .ok_or_else(|| Error::missing("memballoon", "model"))?;
        let autodeflate = take_enum(&mut e, "autodeflate")?;
        let free_page_reporting = take_enum(&mut e, "freePageReporting")?;
        let stats_period = match e.take_child("stats") {
            Some(mut s) => take_u32(&mut s, "period")?,
            None => None,
        };
        let driver = e.take_child("driver");
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        Ok(Memballoon {
            model,
            autodeflate,
            free_page_reporting,
            stats_period,
            driver,
            info,
            residue: e.canonical(&order_with_info(BALLOON_BEFORE, BALLOON_AFTER)),
        })
    }

    fn format(&self) -> Element {
        let mut e = Element::new("memballoon")
            .attr("model", &self.model)
            .attr_opt("autodeflate", self.autodeflate)
            .attr_opt("freePageReporting", self.free_page_reporting);
        if let Some(p) = self.stats_period {
            e.children.push(Element::new("stats").attr("period", p));
        }
        self.info.format_into(&mut e, false, false);
        e.children.extend(self.driver.iter().cloned());
        e.merge_residue(
            &self.residue,
            &order_with_info(BALLOON_BEFORE, BALLOON_AFTER),
        );
        e
    }
}

// ---------------------------------------------------------------- generic devices

/// A device class whose details are not typed yet beyond its key attribute
/// (`model`/`type`), its address and alias. Used for hostdev, rng, tpm,
/// filesystem, memory, iommu, vsock, watchdog, smartcard, redirdev, hub,
/// panic, shmem, lease and nvram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericDevice {
    /// Element name (`hostdev`, `rng`, ...).
    pub element: String,
    /// Shared device information.
    pub info: DeviceInfo,
    /// Everything else, kept as written.
    pub residue: Element,
}

impl GenericDevice {
    /// Attribute of the device element (`model`, `type`, `mode`, ...).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.residue.get_attr(name)
    }

    /// First child element by name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.residue.find(name)
    }

    /// Sets an attribute (replacing).
    pub fn set_attr(&mut self, name: &str, value: &str) {
        match self.residue.attrs.iter_mut().find(|(n, _)| n == name) {
            Some(a) => a.1 = value.to_string(),
            None => self.residue.push_attr(name, value),
        }
    }

    fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let element = e.name.clone();
        // hostdev: the <address> inside <source> belongs to the source
        let info = DeviceInfo::take(&mut e, opts.inactive)?;
        match element.as_str() {
            // a subsystem hostdev is managed or not; libvirt always says which
            "hostdev" if e.get_attr("mode").unwrap_or("subsystem") == "subsystem" => {
                let managed = e.take_attr("managed").as_deref() == Some("yes");
                e.push_attr("managed", if managed { "yes" } else { "no" });
            }
            "filesystem" => {
                for a in ["fmode", "dmode"] {
                    if let Some(v) = e.take_attr(a) {
                        let mode = u32::from_str_radix(v.trim(), 8)
                            .map_err(|_| Error::invalid("filesystem", a, &v))?;
                        if mode > 0o777 {
                            return Err(Error::xml(format!("invalid {a}: '0{mode:o}'")));
                        }
                        e.push_attr(a, format!("{mode:04o}"));
                    }
                }
            }
            _ => {}
        }
        let (before, after) = generic_order(&element);
        Ok(GenericDevice {
            element,
            info,
            residue: e.canonical(&order_with_info(before, after)),
        })
    }

    fn format(&self, order_before: &[&'static str], order_after: &[&'static str]) -> Element {
        let mut e = Element::new(&self.element);
        let allow_boot =
            self.element == "hostdev" || self.element == "redirdev" || self.element == "filesystem";
        let allow_rom = self.element == "hostdev";
        self.info.format_into(&mut e, allow_boot, allow_rom);
        e.attrs = self.residue.attrs.clone();
        e.children.extend(self.residue.children.iter().cloned());
        e.sort_children(&order_with_info(order_before, order_after));
        if e.text.is_none() {
            e.text = self.residue.trimmed_text().map(str::to_string);
        }
        e
    }
}

fn generic_order(name: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match name {
        "hostdev" => (&["source", "driver", "readonly", "shareable"], &[]),
        "rng" => (&["rate", "backend", "driver"], &[]),
        "tpm" => (&["backend"], &[]),
        "filesystem" => (
            &[
                "driver",
                "binary",
                "source",
                "target",
                "idmap",
                "readonly",
                "space_hard_limit",
                "space_soft_limit",
            ],
            &[],
        ),
        "memory" => (&["uuid", "source", "target"], &[]),
        "iommu" => (&["driver"], &[]),
        "vsock" => (&["cid"], &["driver"]),
        "watchdog" => (&[], &[]),
        "smartcard" => (&["certificate", "database", "source", "protocol"], &[]),
        "redirdev" => (&["source", "protocol"], &[]),
        "shmem" => (&["model", "size", "server", "msi"], &[]),
        "lease" => (&["lockspace", "key", "target"], &[]),
        _ => (&[], &[]),
    }
}

// ---------------------------------------------------------------- devices

/// All devices, grouped by class in libvirt's output order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Devices {
    /// `<emulator>`.
    pub emulator: Option<String>,
    /// Disks.
    pub disks: Vec<Disk>,
    /// Controllers.
    pub controllers: Vec<Controller>,
    /// Leases.
    pub leases: Vec<GenericDevice>,
    /// Filesystems.
    pub filesystems: Vec<GenericDevice>,
    /// Network interfaces.
    pub interfaces: Vec<Interface>,
    /// Smartcards.
    pub smartcards: Vec<GenericDevice>,
    /// Serial ports.
    pub serials: Vec<ChrDevice>,
    /// Parallel ports.
    pub parallels: Vec<ChrDevice>,
    /// Consoles.
    pub consoles: Vec<ChrDevice>,
    /// Channels.
    pub channels: Vec<ChrDevice>,
    /// Input devices.
    pub inputs: Vec<Input>,
    /// TPMs.
    pub tpms: Vec<GenericDevice>,
    /// Graphics.
    pub graphics: Vec<Graphics>,
    /// Sound cards.
    pub sounds: Vec<Sound>,
    /// Audio backends.
    pub audios: Vec<Audio>,
    /// Video adapters.
    pub videos: Vec<Video>,
    /// Host devices.
    pub hostdevs: Vec<GenericDevice>,
    /// USB redirection.
    pub redirdevs: Vec<GenericDevice>,
    /// `<redirfilter>`, kept as written.
    pub redirfilter: Option<Element>,
    /// USB hubs.
    pub hubs: Vec<GenericDevice>,
    /// Watchdog.
    pub watchdogs: Vec<GenericDevice>,
    /// Memory balloon.
    pub memballoon: Option<Memballoon>,
    /// RNGs.
    pub rngs: Vec<GenericDevice>,
    /// NVRAM device (pSeries).
    pub nvram: Option<GenericDevice>,
    /// Panic devices.
    pub panics: Vec<GenericDevice>,
    /// Shared memory.
    pub shmems: Vec<GenericDevice>,
    /// Memory devices (dimm, nvdimm, virtio-mem, virtio-pmem).
    pub memories: Vec<GenericDevice>,
    /// IOMMU.
    pub iommu: Option<GenericDevice>,
    /// vsock.
    pub vsock: Option<GenericDevice>,
    /// Unknown device elements, kept as written.
    pub residue: Element,
}

/// Calls `$f` on the [`DeviceInfo`] of every device, in libvirt's device
/// order (`virDomainDeviceInfoIterate`).
macro_rules! each_info {
    ($d:expr, $f:expr, $iter:ident $(, $m:tt)?) => {{
        let d = $d;
        let mut f = $f;
        d.disks.$iter().for_each(|x| f(&$($m)? x.info));
        d.controllers.$iter().for_each(|x| f(&$($m)? x.info));
        d.leases.$iter().for_each(|x| f(&$($m)? x.info));
        d.filesystems.$iter().for_each(|x| f(&$($m)? x.info));
        d.interfaces.$iter().for_each(|x| f(&$($m)? x.info));
        d.smartcards.$iter().for_each(|x| f(&$($m)? x.info));
        d.serials.$iter().for_each(|x| f(&$($m)? x.info));
        d.parallels.$iter().for_each(|x| f(&$($m)? x.info));
        d.consoles.$iter().for_each(|x| f(&$($m)? x.info));
        d.channels.$iter().for_each(|x| f(&$($m)? x.info));
        d.inputs.$iter().for_each(|x| f(&$($m)? x.info));
        d.tpms.$iter().for_each(|x| f(&$($m)? x.info));
        d.sounds.$iter().for_each(|x| f(&$($m)? x.info));
        d.videos.$iter().for_each(|x| f(&$($m)? x.info));
        d.hostdevs.$iter().for_each(|x| f(&$($m)? x.info));
        d.redirdevs.$iter().for_each(|x| f(&$($m)? x.info));
        d.hubs.$iter().for_each(|x| f(&$($m)? x.info));
        d.watchdogs.$iter().for_each(|x| f(&$($m)? x.info));
        d.memballoon.$iter().for_each(|x| f(&$($m)? x.info));
        d.rngs.$iter().for_each(|x| f(&$($m)? x.info));
        d.nvram.$iter().for_each(|x| f(&$($m)? x.info));
        d.panics.$iter().for_each(|x| f(&$($m)? x.info));
        d.shmems.$iter().for_each(|x| f(&$($m)? x.info));
        d.memories.$iter().for_each(|x| f(&$($m)? x.info));
        d.iommu.$iter().for_each(|x| f(&$($m)? x.info));
        d.vsock.$iter().for_each(|x| f(&$($m)? x.info));
    }};
}

impl Devices {
    /// Visits the shared information of every device.
    pub fn for_each_info(&self, f: impl FnMut(&DeviceInfo)) {
        each_info!(self, f, iter);
    }

    /// Visits the shared information of every device, mutably.
    pub fn for_each_info_mut(&mut self, f: impl FnMut(&mut DeviceInfo)) {
        each_info!(self, f, iter_mut, mut);
    }

    /// Parses `<devices>`.
    pub fn parse(mut e: Element, opts: ParseOptions) -> Result<Self> {
        let mut d = Devices::default();
        for c in std::mem::take(&mut e.children) {
            if c.ns.is_some() {
                d.residue.children.push(c);
                continue;
            }
            match c.name.as_str() {
                "emulator" => {
                    let mut c = c;
                    d.emulator = c.take_text();
                }
                "disk" => {
                    let disk = Disk::parse(c, opts)?;
                    insert_disk(&mut d.disks, disk);
                }
                "controller" => {
                    let c = Controller::parse(c, opts)?;
                    insert_controller(&mut d.controllers, c);
                }
                "interface" => d.interfaces.push(Interface::parse(c, opts)?),
                "serial" => d
                    .serials
                    .push(ChrDevice::parse(ChrDeviceKind::Serial, c, opts)?),
                "parallel" => d
                    .parallels
                    .push(ChrDevice::parse(ChrDeviceKind::Parallel, c, opts)?),
                "console" => d
                    .consoles
                    .push(ChrDevice::parse(ChrDeviceKind::Console, c, opts)?),
                "channel" => d
                    .channels
                    .push(ChrDevice::parse(ChrDeviceKind::Channel, c, opts)?),
                "input" => d.inputs.push(Input::parse(c, opts)?),
                "graphics" => d.graphics.push(Graphics::parse(c, opts)?),
                "sound" => d.sounds.push(Sound::parse(c, opts)?),
                "audio" => d.audios.push(Audio::parse(c)?),
                "video" => d.videos.push(Video::parse(c, opts)?),
                "memballoon" => {
                    if d.memballoon.is_none() {
                        d.memballoon = Some(Memballoon::parse(c, opts)?);
                    }
                }
                "redirfilter" => d.redirfilter = Some(c),
                "lease" => d.leases.push(GenericDevice::parse(c, opts)?),
                "filesystem" => d.filesystems.push(GenericDevice::parse(c, opts)?),
                "smartcard" => d.smartcards.push(GenericDevice::parse(c, opts)?),
                "tpm" => d.tpms.push(GenericDevice::parse(c, opts)?),
                "hostdev" => d.hostdevs.push(GenericDevice::parse(c, opts)?),
                "redirdev" => d.redirdevs.push(GenericDevice::parse(c, opts)?),
                "hub" => d.hubs.push(GenericDevice::parse(c, opts)?),
                "watchdog" => d.watchdogs.push(GenericDevice::parse(c, opts)?),
                "rng" => d.rngs.push(GenericDevice::parse(c, opts)?),
                "nvram" => d.nvram = Some(GenericDevice::parse(c, opts)?),
                "panic" => d.panics.push(GenericDevice::parse(c, opts)?),
                "shmem" => d.shmems.push(GenericDevice::parse(c, opts)?),
                "memory" => d.memories.push(GenericDevice::parse(c, opts)?),
                "iommu" => d.iommu = Some(GenericDevice::parse(c, opts)?),
                "vsock" => d.vsock = Some(GenericDevice::parse(c, opts)?),
                _ => d.residue.children.push(c),
            }
        }
        Ok(d)
    }

    /// Console `n` as libvirt prints it: in an hvm guest a console with
    /// a `serial` (or no) target is an alias of serial port `n` and shows
    /// that port's live source and alias.
    fn console_as_formatted<'a>(
        &self,
        n: usize,
        con: &'a ChrDevice,
        hvm: bool,
    ) -> std::borrow::Cow<'a, ChrDevice> {
        let aliased = matches!(con.target.kind.as_deref(), None | Some("serial"));
        match self.serials.get(n) {
            Some(serial) if hvm && aliased => {
                let mut c = serial.clone();
                c.device = ChrDeviceKind::Console;
                c.target = ChrTarget {
                    kind: Some("serial".into()),
                    port: serial.target.port,
                    ..ChrTarget::default()
                };
                c.residue = con.residue.clone();
                std::borrow::Cow::Owned(c)
            }
            _ => std::borrow::Cow::Borrowed(con),
        }
    }

    /// Rewrites each console that aliases a serial port into what libvirt
    /// prints for it (see [`Devices::to_element`]), so the model equals
    /// what reading the printed XML back gives.
    pub fn mirror_serial_consoles(&mut self, hvm: bool) {
        let mirrored: Vec<ChrDevice> = self
            .consoles
            .iter()
            .enumerate()
            .map(|(n, con)| self.console_as_formatted(n, con, hvm).into_owned())
            .collect();
        self.consoles = mirrored;
    }

    /// Formats `<devices>`; `hvm` makes serial consoles mirror their
    /// serial port, as libvirt prints them.
    pub fn to_element(&self, opts: &FormatOptions, hvm: bool) -> Element {
        let mut e = Element::new("devices");
        let c = &mut e.children;
        if let Some(em) = &self.emulator {
            c.push(Element::new("emulator").text(em));
        }
        let gen = |g: &GenericDevice| {
            let (b, a) = generic_order(&g.element);
            g.format(b, a)
        };
        c.extend(self.disks.iter().map(Disk::format));
        c.extend(self.controllers.iter().map(Controller::format));
        c.extend(self.leases.iter().map(gen));
        c.extend(self.filesystems.iter().map(gen));
        c.extend(self.interfaces.iter().map(|n| n.format(opts)));
        c.extend(self.smartcards.iter().map(gen));
        c.extend(self.serials.iter().map(|s| s.format(opts)));
        c.extend(self.parallels.iter().map(|s| s.format(opts)));
        c.extend(
            self.consoles
                .iter()
                .enumerate()
                .map(|(n, con)| self.console_as_formatted(n, con, hvm).format(opts)),
        );
        c.extend(self.channels.iter().map(|s| s.format(opts)));
        c.extend(self.inputs.iter().map(Input::format));
        c.extend(self.tpms.iter().map(gen));
        c.extend(self.graphics.iter().map(|g| g.format(opts)));
        c.extend(self.sounds.iter().map(Sound::format));
        c.extend(self.audios.iter().map(Audio::format));
        c.extend(self.videos.iter().map(Video::format));
        c.extend(self.hostdevs.iter().map(gen));
        c.extend(self.redirdevs.iter().map(gen));
        c.extend(self.redirfilter.iter().cloned());
        c.extend(self.hubs.iter().map(gen));
        c.extend(self.watchdogs.iter().map(gen));
        c.extend(self.memballoon.iter().map(Memballoon::format));
        c.extend(self.rngs.iter().map(gen));
        c.extend(self.nvram.iter().map(gen));
        c.extend(self.panics.iter().map(gen));
        c.extend(self.shmems.iter().map(gen));
        c.extend(self.memories.iter().map(gen));
        c.extend(self.iommu.iter().map(gen));
        c.extend(self.vsock.iter().map(gen));
        c.extend(self.residue.children.iter().cloned());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_names_map_to_indexes() {
        assert_eq!(disk_name_to_index("vda"), Some(0));
        assert_eq!(disk_name_to_index("hdc"), Some(2));
        assert_eq!(disk_name_to_index("sdz"), Some(25));
        assert_eq!(disk_name_to_index("sdaa"), Some(26));
        assert_eq!(disk_name_to_index("xyz"), None);
    }

    fn devices(xml: &str) -> Devices {
        let e = crate::xml::parse_document(&format!("<devices>{xml}</devices>")).unwrap();
        Devices::parse(e, ParseOptions { inactive: true }).unwrap()
    }

    #[test]
    fn disk_without_source_is_an_empty_file_disk() {
        let d = devices("<disk type='network' device='cdrom'><target dev='hdc'/></disk>");
        assert_eq!(d.disks[0].kind, DiskType::File);
    }

    #[test]
    fn inactive_parse_drops_image_indexes_and_scales_metadata_cache() {
        let d = devices(
            "<disk type='file'><driver name='qemu' type='qcow2'><metadata_cache>             <max_size unit='KiB'>2</max_size></metadata_cache></driver>             <source file='/a' index='3'/>             <backingStore type='file' index='4'><format type='raw'/><source file='/b'/></backingStore>             <target dev='vda'/></disk>",
        );
        let disk = &d.disks[0];
        let out = disk.format().to_xml_string();
        assert!(!out.contains("index="), "{out}");
        assert!(
            out.contains("<max_size unit='bytes'>2048</max_size>"),
            "{out}"
        );
    }

    #[test]
    fn filesystem_modes_are_four_digit_octal_and_checked() {
        let d = devices(
            "<filesystem type='mount' fmode='644'><source dir='/a'/><target dir='b'/></filesystem>",
        );
        assert_eq!(d.filesystems[0].attr("fmode"), Some("0644"));
        let e = crate::xml::parse_document(
            "<devices><filesystem fmode='1777'><target dir='b'/></filesystem></devices>",
        )
        .unwrap();
        let err = Devices::parse(e, ParseOptions { inactive: true }).unwrap_err();
        assert_eq!(err.to_string(), "XML error: invalid fmode: '01777'");
    }

    #[test]
    fn subsystem_hostdev_always_says_whether_it_is_managed() {
        let d = devices("<hostdev mode='subsystem' type='pci'><source/></hostdev>");
        assert_eq!(d.hostdevs[0].attr("managed"), Some("no"));
    }

    #[test]
    fn spice_channels_are_kept_in_libvirt_order() {
        let d = devices(
            "<graphics type='spice'><mouse mode='client'/><channel name='inputs' mode='secure'/>             <channel name='main' mode='secure'/></graphics>",
        );
        let names: Vec<String> = d.graphics[0]
            .residue
            .children
            .iter()
            .map(|c| format!("{}{}", c.name, c.get_attr("name").unwrap_or("")))
            .collect();
        assert_eq!(names, ["channelmain", "channelinputs", "mouse"]);
    }

    #[test]
    fn disks_are_ordered_by_target_within_a_bus() {
        let d = devices(
            "<disk><target dev='vdb' bus='virtio'/></disk>\
             <disk><target dev='hda' bus='ide'/></disk>\
             <disk><target dev='vda' bus='virtio'/></disk>",
        );
        let devs: Vec<&str> = d.disks.iter().map(|d| d.target.dev.as_str()).collect();
        assert_eq!(devs, ["vda", "vdb", "hda"]);
    }

    #[test]
    fn disk_serial_keeps_its_spaces() {
        let d = devices("<disk><target dev='vda'/><serial>  WD-1 </serial></disk>");
        assert_eq!(d.disks[0].serial.as_deref(), Some("  WD-1 "));
    }

    #[test]
    fn repeated_singleton_children_are_ignored_like_libvirt() {
        let d = devices(
            "<sound model='ac97'><address type='pci' slot='3'/><address type='pci' slot='x'/></sound>",
        );
        assert!(d.sounds[0].residue.children.is_empty());
        assert_eq!(d.sounds[0].info.pci().map(|a| a.slot), Some(3));
    }

    #[test]
    fn generated_tap_name_is_runtime_only() {
        let xml =
            "<interface type='bridge'><source bridge='br0'/><target dev='vnet3'/></interface>\
                   <interface type='ethernet'><target dev='vnet4' managed='no'/></interface>";
        let d = devices(xml);
        assert!(d.interfaces[0]
            .target
            .as_ref()
            .unwrap()
            .get_attr("dev")
            .is_none());
        assert_eq!(
            d.interfaces[1].target.as_ref().unwrap().get_attr("dev"),
            Some("vnet4")
        );
        let e = crate::xml::parse_document(&format!("<devices>{xml}</devices>")).unwrap();
        let live = Devices::parse(e, ParseOptions { inactive: false }).unwrap();
        let out = live.interfaces[0]
            .format(&FormatOptions::live())
            .to_xml_string();
        assert!(out.contains("<target dev='vnet3'/>"), "{out}");
        let out = live.interfaces[0]
            .format(&FormatOptions::inactive_secure())
            .to_xml_string();
        assert!(!out.contains("vnet3"), "{out}");
    }

    #[test]
    fn running_pty_console_shows_its_tty() {
        let xml = "<console type='pty'><source path='/dev/pts/4'/><target type='serial' port='0'/></console>";
        let e = crate::xml::parse_document(&format!("<devices>{xml}</devices>")).unwrap();
        let d = Devices::parse(e, ParseOptions { inactive: false }).unwrap();
        let live = d.consoles[0].format(&FormatOptions::live()).to_xml_string();
        assert!(
            live.starts_with("<console type='pty' tty='/dev/pts/4'>"),
            "{live}"
        );
        let inactive = d.consoles[0]
            .format(&FormatOptions::inactive_secure())
            .to_xml_string();
        assert!(!inactive.contains("/dev/pts/4"), "{inactive}");
    }

    #[test]
    fn mac_parses_and_prints() {
        let m = MacAddr::parse("52:54:00:AA:bb:0c").unwrap();
        assert_eq!(m.to_string(), "52:54:00:aa:bb:0c");
        assert!(MacAddr::parse("52:54:00:aa:bb").is_none());
    }
}
