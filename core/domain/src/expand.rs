//! Post-parse expansion: what libvirt's QEMU driver fills in for an inactive
//! definition (`virDomainDefPostParse` with the QEMU callbacks, then
//! `qemuDomainAssignAddresses`). The result is what `virsh dumpxml
//! --inactive` shows and what keeps the guest ABI stable.

use qvisor_caps::{Accel, Flag, QemuCaps};

use crate::address::{Address, DriveAddress, PciAddress, PciDeviceAddress};
use crate::common::{OnOff, StrEnum, Uuid};
use crate::devices::*;
use crate::domain::*;
use crate::error::{Error, Result};
use crate::pci::assign_pci_addresses;

/// Host and driver inputs to expansion (everything that is not in the XML).
pub struct ExpandContext<'a> {
    /// Capabilities of the domain's emulator; `None` when the binary has none.
    pub caps: Option<&'a QemuCaps>,
    /// Default emulator when the XML names none.
    pub default_emulator: String,
    /// Directory of generated NVRAM varstores.
    pub nvram_dir: String,
    /// qemu.conf `vnc_allow_host_audio`.
    pub vnc_allow_host_audio: bool,
    /// qemu.conf `nographics_allow_host_audio`.
    pub nographics_allow_host_audio: bool,
    /// `QEMU_AUDIO_DRV` from the environment.
    pub audio_env: Option<String>,
    /// `SDL_AUDIODRIVER` from the environment.
    pub sdl_audio_env: Option<String>,
    /// Source of random bytes (UUIDs, MAC addresses); deterministic in
    /// conformance mode.
    pub random: &'a mut dyn FnMut(&mut [u8]),
}

/// True for machine types of the q35 family.
pub fn is_q35(machine: &str) -> bool {
    machine == "q35" || machine.starts_with("pc-q35")
}

/// True for machine types of the i440fx family.
pub fn is_i440fx(machine: &str) -> bool {
    machine == "pc"
        || machine.starts_with("pc-i440fx")
        || machine.starts_with("pc-0.")
        || machine.starts_with("pc-1.")
}

fn is_x86(arch: &str) -> bool {
    matches!(arch, "x86_64" | "i686")
}

fn accel_of(def: &Domain) -> Accel {
    Accel::from_virt_type(def.kind.map(|k| k.as_str()).unwrap_or("qemu"))
}

/// Expands `def` in place as libvirt's post-parse does.
pub fn expand(def: &mut Domain, ctx: &mut ExpandContext<'_>) -> Result<()> {
    if def.devices.emulator.is_none() {
        def.devices.emulator = Some(ctx.default_emulator.clone());
    }
    if def.uuid.is_none() {
        let mut b = [0u8; 16];
        (ctx.random)(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        def.uuid = Some(Uuid(b));
    }
    if let Some(g) = &mut def.genid {
        if g.value.is_none() {
            let mut b = [0u8; 16];
            (ctx.random)(&mut b);
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            g.value = Some(Uuid(b));
        }
    }
    let emulator = def.devices.emulator.clone().unwrap_or_default();
    let empty;
    let caps = match ctx.caps {
        Some(c) => c,
        None => {
            empty = QemuCaps::new(emulator.clone());
            &empty
        }
    };
    if def.os.arch.is_none() {
        def.os.arch = Some(if caps.arch.is_empty() {
            "x86_64".to_string()
        } else {
            caps.arch.clone()
        });
    }
    let arch = def.os.arch.clone().unwrap_or_default();
    if !caps.is_arch_supported(&arch) {
        return Err(Error::unsupported(format!(
            "Emulator '{emulator}' does not support arch '{arch}'"
        )));
    }
    let virt = def.kind.map(|k| k.as_str()).unwrap_or("qemu");
    if !caps.supports_virt_type(virt) {
        return Err(Error::unsupported(format!(
            "Emulator '{emulator}' does not support virt type '{virt}'"
        )));
    }
    let accel = accel_of(def);
    if def.os.machine.is_none() {
        let m = caps.default_machine(accel).ok_or_else(|| {
            Error::OperationFailed(format!(
                "could not get preferred machine for {} type={}",
                def.devices.emulator.as_deref().unwrap_or(""),
                def.kind.map(|k| k.as_str()).unwrap_or("")
            ))
        })?;
        def.os.machine = Some(m.name.clone());
    }
    let machine = def.os.machine.clone().unwrap_or_default();

    post_parse_memory(def)?;
    post_parse_os(def)?;
    assign_controller_indexes(def);

    // qemuDomainDefPostParse
    old_style_nvram(def, &ctx.nvram_dir);
    add_default_devices(def, caps, &arch, &machine, ctx)?;
    set_default_cpu(def, caps, accel, &arch, &machine);
    cpu_post_parse(def, caps, &arch);

    // per-device post-parse
    isa_serial_post_parse(def, &arch)?;
    device_post_parse(def, caps, &arch, &machine, ctx)?;

    // virDomainDefPostParseCommon
    if def.os.os_type == "hvm" {
        boot_order_post_parse(def)?;
    }
    graphics_post_parse(def);
    add_implicit_devices(def, caps, &arch, &machine)?;
    video_post_parse(def, caps, &arch, &machine);

    // qemuDomainAssignAddresses
    assign_virtio_serial_addresses(def)?;
    assign_spapr_vio_addresses(def, &machine)?;
    assign_pci_addresses(def, caps, &machine)?;
    Ok(())
}

/// Size of a `<memory>` device in KiB (`<target><size>`), 0 when absent.
fn memory_device_kib(m: &GenericDevice) -> u64 {
    m.child("target")
        .and_then(|t| t.find("size"))
        .and_then(|s| {
            crate::common::size_to_kib(s.trimmed_text().unwrap_or(""), s.get_attr("unit"), "KiB")
        })
        .unwrap_or(0)
}

/// Memory sizes as libvirt's `virDomainDefPostParseMemory`: the total from
/// the NUMA cells when `<memory>` is absent, the balloon target clamped to
/// the total, and the hotplug limits checked.
fn post_parse_memory(def: &mut Domain) -> Result<()> {
    let hotplug: u64 = def
        .devices
        .memories
        .iter()
        .map(memory_device_kib)
        .fold(0, u64::saturating_add);
    let numa: u64 = if def.memory.total_kib == 0 {
        def.cpu
            .as_ref()
            .map(|c| {
                c.numa
                    .iter()
                    .map(|n| n.memory_kib)
                    .fold(0, u64::saturating_add)
            })
            .unwrap_or(0)
    } else {
        0
    };
    if numa > 0 {
        def.memory.total_kib = numa.saturating_add(hotplug);
    } else if hotplug > def.memory.total_kib {
        return Err(Error::xml(
            "Total size of memory devices exceeds the total memory size",
        ));
    }
    let total = def.memory.total_kib;
    if total.saturating_sub(hotplug) == 0 {
        return Err(Error::xml(
            "Memory size must be specified via <memory> or in the <numa> configuration",
        ));
    }
    match def.memory.current_kib {
        Some(c) if c != 0 && c <= total => {}
        _ => def.memory.current_kib = Some(total),
    }
    let max = def.memory.max_kib.unwrap_or(0);
    let slots = def.memory.slots.unwrap_or(0);
    if (max != 0 || slots != 0) && !(max != 0 && slots != 0) {
        return Err(Error::xml(
            "both maximum memory size and memory slot count must be specified",
        ));
    }
    if max != 0 && max < total {
        return Err(Error::xml(
            "maximum memory size must be equal or greater than the actual memory size",
        ));
    }
    Ok(())
}

/// libvirt's `virDomainDefPostParseOs`: enrolled keys imply Secure Boot,
/// and a loader with a path is a ROM unless said otherwise.
fn post_parse_os(def: &mut Domain) -> Result<()> {
    let os = &mut def.os;
    let feature = |os: &Os, n: &str| {
        os.firmware_features
            .iter()
            .find(|f| f.name == n)
            .map(|f| f.enabled)
    };
    if feature(os, "enrolled-keys") == Some(crate::YesNo::Yes) {
        if feature(os, "secure-boot") == Some(crate::YesNo::No) {
            return Err(Error::xml(
                "firmware feature 'enrolled-keys' cannot be enabled when firmware feature 'secure-boot' is disabled",
            ));
        }
        if feature(os, "secure-boot").is_none() {
            os.firmware_features.push(FirmwareFeature {
                name: "secure-boot".into(),
                enabled: crate::YesNo::Yes,
            });
        }
    }
    if let Some(l) = &mut os.loader {
        if l.path.is_some() && l.kind.is_none() {
            l.kind = Some(LoaderType::Rom);
        }
    }
    Ok(())
}

/// `virDomainDefBootOrderPostParse`: per-device boot orders are unique and
/// exclude `<os><boot>`; with neither, the guest boots from its disk.
fn boot_order_post_parse(def: &mut Domain) -> Result<()> {
    let mut orders = std::collections::BTreeSet::new();
    let mut dup = None;
    def.devices.for_each_info(|i| {
        if let Some(b) = &i.boot {
            if !orders.insert(b.order) && dup.is_none() {
                dup = Some(b.order);
            }
        }
    });
    if let Some(o) = dup {
        return Err(Error::unsupported(format!(
            "boot order '{o}' used for more than one device"
        )));
    }
    if !def.os.boot.is_empty() && !orders.is_empty() {
        return Err(Error::unsupported(
            "per-device boot elements cannot be used together with os/boot elements",
        ));
    }
    if def.os.boot.is_empty() && orders.is_empty() {
        def.os.boot.push(BootDev::Hd);
    }
    Ok(())
}

/// Lowest unused controller index of a type.
fn unused_index(def: &Domain, kind: ControllerType) -> u32 {
    let mut i = 0;
    while def
        .devices
        .controllers
        .iter()
        .any(|c| c.kind == kind && c.index == Some(i))
    {
        i += 1;
    }
    i
}

fn assign_controller_indexes(def: &mut Domain) {
    for i in 0..def.devices.controllers.len() {
        if def.devices.controllers[i].index.is_none() {
            let kind = def.devices.controllers[i].kind;
            let idx = unused_index(def, kind);
            def.devices.controllers[i].index = Some(idx);
        }
    }
}

fn find_controller(def: &Domain, kind: ControllerType, idx: u32) -> Option<usize> {
    def.devices
        .controllers
        .iter()
        .position(|c| c.kind == kind && c.idx() == idx)
}

/// Adds a controller as libvirt's post-parse does (`virDomainDefAddController`):
/// appended after all others. Only the XML parser groups controllers by type
/// ([`insert_controller`]).
pub fn add_controller(def: &mut Domain, c: Controller) -> usize {
    def.devices.controllers.push(c);
    def.devices.controllers.len() - 1
}

fn maybe_add_controller(
    def: &mut Domain,
    kind: ControllerType,
    idx: u32,
    model: Option<ControllerModel>,
) -> bool {
    if find_controller(def, kind, idx).is_some() {
        return false;
    }
    add_controller(def, Controller::new(kind, idx, model));
    true
}

fn old_style_nvram(def: &mut Domain, nvram_dir: &str) {
    let Some(loader) = &def.os.loader else { return };
    let ro_uefi = loader.readonly == Some(crate::YesNo::Yes)
        && loader.kind == Some(LoaderType::Pflash)
        && loader.path.is_some();
    if ro_uefi && def.os.nvram.is_none() && loader.stateless != Some(crate::YesNo::Yes) {
        def.os.nvram = Some(Nvram {
            path: Some(format!("{nvram_dir}/{}_VARS.fd", def.name)),
            template: None,
            residue: crate::xml::Element::new("nvram"),
        });
    }
}

fn add_default_devices(
    def: &mut Domain,
    caps: &QemuCaps,
    arch: &str,
    machine: &str,
    ctx: &ExpandContext<'_>,
) -> Result<()> {
    if is_x86(arch) {
        maybe_add_input(def, InputType::Mouse, InputBus::Ps2);
        maybe_add_input(def, InputType::Keyboard, InputBus::Ps2);
    }
    let mut add_usb = true;
    let mut usb_model = None;
    let mut add_sata = false;
    let mut add_pci_root = false;
    let mut add_pcie_root = false;
    let mut add_balloon = true;
    match arch {
        "x86_64" | "i686" => {
            if machine == "isapc" {
                add_usb = false;
            } else if is_q35(machine) {
                add_pcie_root = true;
                add_sata = true;
                if caps.has(Flag::DeviceQemuXhci) {
                    usb_model = Some(UsbModel::QemuXhci);
                } else if caps.has(Flag::NecUsbXhci) {
                    usb_model = Some(UsbModel::NecXhci);
                } else if caps.has(Flag::Ich9UsbEhci1) {
                    usb_model = Some(UsbModel::Ich9Ehci1);
                } else {
                    add_usb = false;
                }
            } else if is_i440fx(machine) {
                add_pci_root = true;
            }
        }
        "aarch64" | "armv7l" | "armv6l" | "sparc" => {
            add_usb = false;
            add_balloon = false;
        }
        "s390" | "s390x" | "riscv32" | "riscv64" => add_usb = false,
        _ => add_pci_root = true,
    }
    if add_usb && find_controller(def, ControllerType::Usb, 0).is_none() {
        add_controller(
            def,
            Controller::new(ControllerType::Usb, 0, usb_model.map(ControllerModel::Usb)),
        );
    }
    if add_sata {
        maybe_add_controller(def, ControllerType::Sata, 0, None);
    }
    let root = find_controller(def, ControllerType::Pci, 0);
    for (want, model) in [
        (add_pci_root, PciModel::PciRoot),
        (add_pcie_root, PciModel::PcieRoot),
    ] {
        if !want {
            continue;
        }
        match root {
            Some(i) => {
                let found = def.devices.controllers[i].pci_model();
                if found != Some(model) {
                    return Err(Error::xml(format!(
                        "The PCI controller with index='0' must be model='{}' for this machine type, but model='{}' was found instead",
                        model.as_str(),
                        found.map(|m| m.as_str()).unwrap_or("")
                    )));
                }
            }
            None => {
                add_controller(
                    def,
                    Controller::new(ControllerType::Pci, 0, Some(ControllerModel::Pci(model))),
                );
            }
        }
    }
    if add_balloon && def.devices.memballoon.is_none() {
        def.devices.memballoon = Some(Memballoon::new("virtio"));
    }
    if def.devices.audios.is_empty() {
        if let Some(a) = default_audio(def, ctx)? {
            def.devices.audios.push(a);
        }
    }
    Ok(())
}

/// The `<audio>` backend libvirt adds when none is given
/// (`qemuDomainDefSuggestDefaultAudioBackend`).
fn default_audio(def: &Domain, ctx: &ExpandContext<'_>) -> Result<Option<Audio>> {
    let mut add = false;
    let mut passthrough = false;
    let mut backend = "none";
    for g in &def.devices.graphics {
        match g.kind {
            GraphicsType::Vnc => {
                passthrough = ctx.vnc_allow_host_audio;
                if !passthrough {
                    backend = "none";
                }
                add = true;
            }
            GraphicsType::Spice => {
                passthrough = false;
                backend = "spice";
                add = true;
            }
            GraphicsType::Sdl => {
                passthrough = true;
                add = true;
            }
            _ => {}
        }
    }
    if def.devices.graphics.is_empty() {
        passthrough = ctx.nographics_allow_host_audio;
        if !passthrough {
            backend = "none";
        }
        add = true;
    }
    let mut audio = Audio::new(1, backend);
    if add && passthrough {
        match &ctx.audio_env {
            None => add = false,
            Some(env) => {
                let b = match env.as_str() {
                    "none" => "none",
                    "alsa" => "alsa",
                    "coreaudio" => "coreaudio",
                    "dbus" => "dbus",
                    "jack" => "jack",
                    "oss" => "oss",
                    "pa" => "pulseaudio",
                    "sdl" => "sdl",
                    "spice" => "spice",
                    "wav" => "file",
                    other => {
                        return Err(Error::unsupported(format!(
                            "unknown QEMU_AUDIO_DRV setting {other}"
                        )))
                    }
                };
                audio.kind = b.to_string();
                if b == "sdl" {
                    if let Some(d) = &ctx.sdl_audio_env {
                        audio.residue.push_attr("driver", d);
                    }
                }
            }
        }
    }
    Ok(if add { Some(audio) } else { None })
}

fn maybe_add_input(def: &mut Domain, kind: InputType, bus: InputBus) {
    if def
        .devices
        .inputs
        .iter()
        .any(|i| i.kind == kind && i.bus == Some(bus))
    {
        return;
    }
    def.devices.inputs.push(Input::new(kind, bus));
}

fn set_default_cpu(def: &mut Domain, caps: &QemuCaps, accel: Accel, arch: &str, machine: &str) {
    if let Some(c) = &def.cpu {
        if c.mode.unwrap_or(CpuMode::Custom) != CpuMode::Custom || c.model.is_some() {
            return;
        }
    }
    let virt_qemu = def.kind == Some(DomainType::Qemu);
    if !is_x86(arch) && !matches!(arch, "s390" | "s390x" | "ppc64" | "ppc64le") && !virt_qemu {
        return;
    }
    let Some(model) = caps.machine_default_cpu_model(accel, machine) else {
        return;
    };
    let model = model.to_string();
    let cpu = def.cpu.get_or_insert_with(Cpu::default);
    if model == "host" {
        cpu.mode = Some(CpuMode::HostPassthrough);
    } else {
        cpu.check = Some(CpuCheck::None);
        cpu.mode = Some(CpuMode::Custom);
        cpu.match_ = Some(CpuMatch::Exact);
        cpu.fallback = Some(CpuFallback::Forbid);
        cpu.model = Some(model);
    }
}

fn cpu_post_parse(def: &mut Domain, caps: &QemuCaps, arch: &str) {
    let virt_qemu = def.kind == Some(DomainType::Qemu);
    let Some(cpu) = &mut def.cpu else { return };
    let mode = cpu.mode.unwrap_or(CpuMode::Custom);
    if mode == CpuMode::HostPassthrough && cpu.migratable.is_none() {
        if caps.has(Flag::CpuMigratable) {
            cpu.migratable = Some(OnOff::On);
        } else if is_x86(arch) {
            cpu.migratable = Some(OnOff::Off);
        }
    }
    if mode == CpuMode::Custom && cpu.model.is_none() {
        return;
    }
    if cpu.check.is_some() {
        return;
    }
    cpu.check = Some(match mode {
        CpuMode::HostPassthrough | CpuMode::Maximum => CpuCheck::None,
        CpuMode::HostModel => CpuCheck::Partial,
        CpuMode::Custom => {
            if virt_qemu {
                CpuCheck::None
            } else {
                CpuCheck::Partial
            }
        }
    });
    if cpu.mode.is_none() {
        cpu.mode = Some(mode);
    }
}

fn isa_serial_post_parse(def: &mut Domain, arch: &str) -> Result<()> {
    // console compat: an hvm console of type serial (or none) with no
    // serial port makes libvirt add a serial port it mirrors
    if def.os.os_type == "hvm" && def.devices.serials.is_empty() {
        if let Some(con) = def.devices.consoles.first() {
            let t = con.target.kind.as_deref();
            if t.is_none() || t == Some("serial") {
                let mut serial = con.clone();
                serial.device = ChrDeviceKind::Serial;
                serial.target = ChrTarget::default();
                serial.info = crate::address::DeviceInfo::default();
                serial.residue = crate::xml::Element::new("serial");
                def.devices.serials.push(serial);
            }
        }
    }
    // virDomainChrIsaSerialDefPostParse: serials that say isa-serial take
    // the free ISA ports first
    let mut used = [false; MAX_ISA_SERIAL_PORTS];
    let isa = |s: &ChrDevice| s.target.kind.as_deref() == Some("isa-serial");
    for (n, s) in def.devices.serials.iter().filter(|s| isa(s)).enumerate() {
        let port = s.target.port.map(|p| p as usize);
        if n >= MAX_ISA_SERIAL_PORTS || port.is_some_and(|p| p >= MAX_ISA_SERIAL_PORTS) {
            return Err(Error::Internal(format!(
                "Maximum supported number of ISA serial ports is '{MAX_ISA_SERIAL_PORTS}'"
            )));
        }
        if let Some(p) = port {
            if used[p] {
                return Err(Error::Internal(format!(
                    "target port '{p}' already allocated"
                )));
            }
            used[p] = true;
        }
    }
    for s in def.devices.serials.iter_mut() {
        if isa(s) && s.target.port.is_none() {
            if let Some(free) = used.iter().position(|u| !u) {
                used[free] = true;
                s.target.port = Some(free as u32);
            }
        }
    }
    // per device (qemuDomainChrDefPostParse, virDomainChrDefPostParse): the
    // target type, then a port one above the highest of the same kind
    let x86 = is_x86(arch);
    for i in 0..def.devices.serials.len() {
        let next = next_chr_port(&def.devices.serials);
        let s = &mut def.devices.serials[i];
        if s.target.kind.is_none() && x86 {
            s.target.kind = Some("isa-serial".into());
        }
        if s.target.port.is_none() {
            s.target.port = Some(next);
        }
        if s.target.model.is_none() {
            s.target.model = match s.target.kind.as_deref() {
                Some("isa-serial") => Some("isa-serial".into()),
                Some("usb-serial") => Some("usb-serial".into()),
                Some("pci-serial") => Some("pci-serial".into()),
                Some("isa-debug") => Some("isa-debugcon".into()),
                _ => None,
            };
        }
    }
    // console compat, second half (virDomainDefAddConsoleCompat): an hvm
    // guest whose first serial port is a plain one (not PCI, USB or
    // isa-debug) and whose first console is not already its alias gets a
    // stub console in front, which mirrors that serial port
    let mirrors_serial = |c: &ChrDevice| matches!(c.target.kind.as_deref(), None | Some("serial"));
    if def.os.os_type == "hvm" {
        let plain = def.devices.serials.first().is_some_and(|s| {
            matches!(
                s.target.kind.as_deref(),
                None | Some("isa-serial" | "spapr-vio-serial" | "system-serial" | "sclp-serial")
            )
        });
        if plain && !def.devices.consoles.first().is_some_and(mirrors_serial) {
            let mut stub = def.devices.serials[0].clone();
            stub.device = ChrDeviceKind::Console;
            stub.target = ChrTarget {
                kind: Some("serial".into()),
                ..ChrTarget::default()
            };
            stub.info = crate::address::DeviceInfo::default();
            stub.residue = crate::xml::Element::new("console");
            def.devices.consoles.insert(0, stub);
        }
    }
    let first_serial = def.devices.serials.first().cloned();
    for i in 0..def.devices.consoles.len() {
        let next = next_chr_port(&def.devices.consoles);
        let c = &mut def.devices.consoles[i];
        let t = c.target.kind.clone();
        if t.is_none() || t.as_deref() == Some("serial") {
            c.target.kind = Some("serial".into());
            if i == 0 {
                if let Some(s) = &first_serial {
                    c.target.port = s.target.port;
                    c.source = s.source.clone();
                }
            }
        }
        if c.target.port.is_none() {
            c.target.port = Some(next);
        }
    }
    for i in 0..def.devices.parallels.len() {
        let next = next_chr_port(&def.devices.parallels);
        let p = &mut def.devices.parallels[i];
        if p.target.port.is_none() {
            p.target.port = Some(next);
        }
    }
    Ok(())
}

/// ISA serial ports a PC has (libvirt's `VIR_MAX_ISA_SERIAL_PORTS`).
const MAX_ISA_SERIAL_PORTS: usize = 4;

/// One above the highest port given so far in `list` (0 for none).
fn next_chr_port(list: &[ChrDevice]) -> u32 {
    list.iter()
        .filter_map(|c| c.target.port)
        .max()
        .map_or(0, |m| m.saturating_add(1))
}

fn default_disk_bus(dev: &str) -> DiskBus {
    if dev.starts_with("hd") {
        DiskBus::Ide
    } else if dev.starts_with("sd") {
        DiskBus::Scsi
    } else if dev.starts_with("vd") {
        DiskBus::Virtio
    } else if dev.starts_with("fd") {
        DiskBus::Fdc
    } else if dev.starts_with("xvd") {
        DiskBus::Xen
    } else if dev.starts_with("ubd") {
        DiskBus::Uml
    } else {
        DiskBus::Ide
    }
}

/// Assigns a drive address to a disk as `virDomainDiskDefAssignAddress`.
fn disk_drive_address(disk: &Disk) -> Result<Option<DriveAddress>> {
    let idx = disk_name_to_index(&disk.target.dev).ok_or_else(|| {
        Error::xml(format!(
            "Unknown disk name '{}' and no address specified",
            disk.target.dev
        ))
    })?;
    Ok(match disk.bus() {
        DiskBus::Scsi => {
            let mut unit = idx % 15;
            if unit >= 7 {
                unit += 1;
            }
            Some(DriveAddress {
                controller: idx / 15,
                bus: 0,
                target: 0,
                unit,
            })
        }
        DiskBus::Ide => Some(DriveAddress {
            controller: idx / 4,
            bus: (idx % 4) / 2,
            target: 0,
            unit: idx % 2,
        }),
        DiskBus::Sata => Some(DriveAddress {
            controller: idx / 6,
            bus: 0,
            target: 0,
            unit: idx % 6,
        }),
        DiskBus::Fdc => Some(DriveAddress {
            controller: 0,
            bus: 0,
            target: 0,
            unit: idx,
        }),
        _ => None,
    })
}

fn device_post_parse(
    def: &mut Domain,
    caps: &QemuCaps,
    arch: &str,
    machine: &str,
    ctx: &mut ExpandContext<'_>,
) -> Result<()> {
    let x86 = is_x86(arch);
    let have_caps = ctx.caps.is_some();
    let scsi_hostdev_addrs: Vec<DriveAddress> = def
        .devices
        .hostdevs
        .iter()
        .filter(|h| h.attr("type") == Some("scsi"))
        .filter_map(|h| h.info.address.as_ref().and_then(Address::as_drive).copied())
        .collect();
    for disk in &mut def.devices.disks {
        let drv = disk.driver.get_or_insert_with(Default::default);
        if drv.residue.name.is_empty() {
            drv.residue.name = "driver".into();
        }
        if drv.name.is_none() {
            drv.name = Some("qemu".into());
        }
        if drv.format.is_none() && disk.kind != DiskType::Volume {
            drv.format = Some("raw".into());
        }
        set_encryption_engine(&mut disk.residue);
        backing_chain_post_parse(&mut disk.residue);
        // a CD-ROM is always read-only (virDomainDiskDefPostParse)
        if disk.device == DiskDevice::Cdrom {
            disk.readonly = true;
        }
        // vhost-user disks cannot be snapshotted; for read-only disks
        // 'no' is implied and never written (see Disk::parse)
        if disk.readonly && disk.residue.get_attr("snapshot") == Some("no") {
            disk.residue.take_attr("snapshot");
        } else if disk.residue.get_attr("snapshot").is_none()
            && !disk.readonly
            && disk.kind == DiskType::VhostUser
        {
            disk.residue.push_attr("snapshot", "no");
        }
        if let Some(src) = &mut disk.source {
            set_encryption_engine(&mut src.residue);
            if disk.kind == DiskType::Nvme && src.residue.get_attr("managed").is_none() {
                src.residue.push_attr("managed", "yes");
            }
            if let Some(proto) = src.protocol.clone() {
                for h in &mut src.hosts {
                    let tcp = matches!(h.transport.as_deref(), None | Some("tcp"));
                    if h.port.is_none() && tcp && h.name.is_some() {
                        h.port = default_port(&proto).map(|p| p.to_string());
                    }
                }
            }
        }
        if disk.target.bus.is_none() {
            disk.target.bus = Some(if disk.device == DiskDevice::Floppy {
                DiskBus::Fdc
            } else {
                default_disk_bus(&disk.target.dev)
            });
        }
        if disk.info.address.is_none() {
            if let Some(a) = disk_drive_address(disk)? {
                if disk.bus() == DiskBus::Scsi && scsi_hostdev_addrs.contains(&a) {
                    return Err(Error::unsupported(format!(
                        "using disk target name '{}' conflicts with SCSI host device address controller='{}' bus='{}' target='{}' unit='{}",
                        disk.target.dev, a.controller, a.bus, a.target, a.unit
                    )));
                }
                disk.info.address = Some(Address::Drive(a));
            }
        }
    }
    for net in &mut def.devices.interfaces {
        if net.mac.is_none() {
            let mut b = [0u8; 3];
            (ctx.random)(&mut b);
            net.mac = Some(MacAddr([0x52, 0x54, 0x00, b[0], b[1], b[2]]));
        }
        // qemuDomainDeviceNetDefPostParse / qemuDomainDefaultNetModel
        if net.model.is_none() {
            if net.kind == NetType::Vdpa {
                net.model = Some("virtio".into());
            } else if net.kind != NetType::Hostdev {
                net.model = default_net_model(arch, machine, caps, have_caps);
            }
        }
    }
    for c in &mut def.devices.controllers {
        match c.kind {
            ControllerType::Usb if c.model.is_none() => {
                let m = if is_q35(machine) {
                    if caps.has(Flag::DeviceQemuXhci) {
                        Some(UsbModel::QemuXhci)
                    } else if caps.has(Flag::NecUsbXhci) {
                        Some(UsbModel::NecXhci)
                    } else {
                        Some(UsbModel::Ich9Ehci1)
                    }
                } else if x86 && caps.has(Flag::Piix3UsbUhci) {
                    Some(UsbModel::Piix3Uhci)
                } else {
                    None
                };
                c.model = m.map(ControllerModel::Usb);
            }
            ControllerType::Scsi if c.model.is_none() => {
                c.model = Some(ControllerModel::Scsi(default_scsi_model(caps, arch)));
            }
            _ => {}
        }
    }
    let hvm = def.os.os_type == "hvm";
    for i in &mut def.devices.inputs {
        if i.bus.is_none() {
            // libvirt's parser defaults (virDomainInputDefParseXML)
            i.bus = Some(match i.kind {
                _ if !hvm => InputBus::None,
                InputType::Mouse | InputType::Keyboard if x86 => InputBus::Ps2,
                _ if matches!(arch, "s390" | "s390x") => InputBus::Virtio,
                InputType::Passthrough => InputBus::Virtio,
                InputType::Evdev => InputBus::None,
                _ => InputBus::Usb,
            });
        }
    }
    for fs in &mut def.devices.filesystems {
        // virDomainFSDefPostParse: passthrough unless vhost-user (socket)
        let socket = fs
            .child("source")
            .is_some_and(|s| s.get_attr("socket").is_some());
        if fs.attr("accessmode").is_none() && !socket {
            fs.set_attr("accessmode", "passthrough");
        }
    }
    for rng in &mut def.devices.rngs {
        // virDomainRNGDefPostParse: the random backend reads /dev/random
        if let Some(b) = rng.residue.children.iter_mut().find(|c| c.is("backend")) {
            if b.get_attr("model") == Some("random") && b.trimmed_text().is_none() {
                b.text = Some("/dev/random".into());
            }
        }
    }
    for v in &mut def.devices.videos {
        video_defaults(v, caps, arch, machine);
    }
    if let Some(v) = &mut def.devices.vsock {
        if v.attr("model").is_none() {
            v.set_attr("model", "virtio");
        }
    }
    numa_cpus_rectify(def);
    for ch in &mut def.devices.channels {
        if ch.target.kind.is_none() {
            ch.target.kind = Some("virtio".into());
        }
    }
    Ok(())
}

/// The NIC model of an interface that names none (`qemuDomainDefaultNetModel`).
fn default_net_model(
    arch: &str,
    machine: &str,
    caps: &QemuCaps,
    have_caps: bool,
) -> Option<String> {
    let m = if matches!(arch, "s390" | "s390x") {
        "virtio"
    } else if matches!(arch, "armv6l" | "armv7l" | "aarch64") {
        if machine == "versatilepb" {
            "smc91c111"
        } else if machine == "virt" || machine.starts_with("virt-") {
            "virtio"
        } else {
            "lan9118"
        }
    } else if arch.starts_with("riscv") && (machine == "virt" || machine.starts_with("virt-")) {
        "virtio"
    } else if !have_caps {
        return None;
    } else if caps.has(Flag::DeviceRtl8139) {
        "rtl8139"
    } else if caps.has(Flag::DeviceE1000) {
        "e1000"
    } else if caps.has(Flag::DeviceVirtioNet) {
        "virtio"
    } else {
        "rtl8139"
    };
    Some(m.to_string())
}

/// Default TCP port of a network storage protocol
/// (`virStorageSourceNetworkDefaultPort`).
fn default_port(protocol: &str) -> Option<u32> {
    Some(match protocol {
        "http" => 80,
        "https" => 443,
        "ftp" => 21,
        "ftps" => 990,
        "tftp" => 69,
        "sheepdog" => 7000,
        "nbd" => 10809,
        "ssh" => 22,
        "iscsi" => 3260,
        "gluster" => 24007,
        "vxhs" => 9999,
        _ => return None,
    })
}

/// Backing chain members given in the XML (`<backingStore>`): their
/// sources get the same defaults as the top image (encryption engine).
fn backing_chain_post_parse(e: &mut crate::xml::Element) {
    for b in e.children.iter_mut().filter(|c| c.is("backingStore")) {
        for s in b.children.iter_mut().filter(|c| c.is("source")) {
            set_encryption_engine(s);
        }
        backing_chain_post_parse(b);
    }
}

fn set_encryption_engine(e: &mut crate::xml::Element) {
    for c in &mut e.children {
        if c.is("encryption") && c.get_attr("engine").is_none() {
            c.push_attr("engine", "qemu");
        }
    }
}

/// Gives vCPUs that no NUMA cell lists to the first cell
/// (`qemuDomainDefNumaCPUsRectify`).
fn numa_cpus_rectify(def: &mut Domain) {
    let max = def.vcpu.max;
    let Some(cpu) = &mut def.cpu else { return };
    if cpu.numa.is_empty() {
        return;
    }
    let covered: std::collections::BTreeSet<u32> = cpu
        .numa
        .iter()
        .filter_map(|c| c.cpus.as_ref())
        .flat_map(|s| s.0.iter().copied())
        .collect();
    // vCPU ids are bitmap members (at most 16384 of them)
    let missing: Vec<u32> = (0..max.min(16384))
        .filter(|i| !covered.contains(i))
        .collect();
    if missing.is_empty() || covered.len() as u32 >= max {
        return;
    }
    if let Some(first) = cpu.numa.first_mut() {
        let set = first.cpus.get_or_insert_with(Default::default);
        set.0.extend(missing);
    }
}

fn default_scsi_model(caps: &QemuCaps, arch: &str) -> ScsiModel {
    if matches!(arch, "ppc64" | "ppc64le") {
        return ScsiModel::Ibmvscsi;
    }
    if caps.has(Flag::ScsiLsi) {
        ScsiModel::Lsilogic
    } else {
        ScsiModel::VirtioScsi
    }
}

fn video_defaults(v: &mut Video, caps: &QemuCaps, arch: &str, machine: &str) {
    let _ = machine;
    if v.kind.is_none() || v.kind == Some(VideoType::Default) {
        v.kind = Some(if matches!(arch, "ppc64" | "ppc64le") {
            VideoType::Vga
        } else if !is_x86(arch) {
            VideoType::Virtio
        } else if caps.has(Flag::DeviceCirrusVga) {
            VideoType::Cirrus
        } else {
            VideoType::Vga
        });
    }
    let kind = v.kind.unwrap_or(VideoType::Default);
    if kind == VideoType::None {
        return;
    }
    if v.vram.is_none() {
        v.vram = match kind {
            VideoType::Vga
            | VideoType::Cirrus
            | VideoType::Vmvga
            | VideoType::Vbox
            | VideoType::Xen => Some(16384),
            VideoType::Qxl => Some(65536),
            VideoType::Bochs => Some(16384),
            _ => None,
        };
    }
    if kind == VideoType::Qxl {
        if v.ram.is_none() {
            v.ram = Some(65536);
        }
        if v.vgamem.is_none() {
            v.vgamem = Some(16384);
        }
    }
    if v.heads.is_none() && kind != VideoType::Ramfb {
        v.heads = Some(1);
    }
}

fn add_implicit_devices(
    def: &mut Domain,
    caps: &QemuCaps,
    arch: &str,
    machine: &str,
) -> Result<()> {
    // controllers for disks with drive addresses
    let mut needed: Vec<(ControllerType, u32)> = Vec::new();
    for d in &def.devices.disks {
        let kind = match d.bus() {
            DiskBus::Ide => ControllerType::Ide,
            DiskBus::Scsi => ControllerType::Scsi,
            DiskBus::Sata => ControllerType::Sata,
            DiskBus::Fdc => ControllerType::Fdc,
            _ => continue,
        };
        if let Some(Address::Drive(a)) = &d.info.address {
            needed.push((kind, a.controller));
        }
    }
    for h in &def.devices.hostdevs {
        let is_scsi = h.attr("type") == Some("scsi");
        if let (true, Some(Address::Drive(a))) = (is_scsi, &h.info.address) {
            needed.push((ControllerType::Scsi, a.controller));
        }
    }
    let mut present: std::collections::HashSet<(ControllerType, u32)> = def
        .devices
        .controllers
        .iter()
        .map(|c| (c.kind, c.idx()))
        .collect();
    for (kind, idx) in needed {
        // each implicit controller needs a PCI function: an index past
        // what 256 buses can hold would never be placed
        if idx as usize >= 256 * 32 * 8 {
            return Err(Error::Internal("No more available PCI slots".into()));
        }
        for i in 0..=idx {
            if present.insert((kind, i)) {
                let model = if kind == ControllerType::Scsi {
                    Some(ControllerModel::Scsi(default_scsi_model(caps, arch)))
                } else {
                    None
                };
                add_controller(def, Controller::new(kind, i, model));
            }
        }
    }
    // virtio-serial controller for virtio channels/consoles
    let needs_vs = def
        .devices
        .channels
        .iter()
        .any(|c| c.target.kind.as_deref() == Some("virtio"))
        || def
            .devices
            .consoles
            .iter()
            .any(|c| c.target.kind.as_deref() == Some("virtio"));
    if needs_vs {
        let mut idxs: Vec<u32> = def
            .devices
            .channels
            .iter()
            .chain(def.devices.consoles.iter())
            .filter_map(|c| match &c.info.address {
                Some(Address::VirtioSerial { controller, .. }) => Some(*controller),
                _ => None,
            })
            .collect();
        if idxs.is_empty() {
            idxs.push(0);
        }
        for i in idxs {
            maybe_add_controller(def, ControllerType::VirtioSerial, i, None);
        }
    }
    // ccid controller for smartcards
    if !def.devices.smartcards.is_empty() {
        maybe_add_controller(def, ControllerType::Ccid, 0, None);
    }
    // video for graphics
    if !def.devices.graphics.is_empty() && def.devices.videos.is_empty() {
        // virDomainDefAddImplicitVideo: any graphics, egl-headless included
        {
            let mut v = Video {
                kind: None,
                ram: None,
                vram: None,
                vram64: None,
                vgamem: None,
                heads: None,
                primary: false,
                model_residue: crate::xml::Element::new("model"),
                driver: None,
                info: crate::address::DeviceInfo::default(),
                residue: crate::xml::Element::new("video"),
            };
            video_defaults(&mut v, caps, arch, machine);
            def.devices.videos.push(v);
        }
    }
    Ok(())
}

fn video_post_parse(def: &mut Domain, caps: &QemuCaps, arch: &str, machine: &str) {
    if let Some(pos) = def.devices.videos.iter().position(|v| v.primary) {
        if pos != 0 {
            let v = def.devices.videos.remove(pos);
            def.devices.videos.insert(0, v);
        }
    }
    if let Some(v) = def.devices.videos.first_mut() {
        if v.kind == Some(VideoType::None) {
            let alias = v.info.alias.take();
            v.ram = None;
            v.vram = None;
            v.vgamem = None;
            v.heads = None;
            v.info = crate::address::DeviceInfo {
                alias,
                ..Default::default()
            };
        } else {
            v.primary = true;
            video_defaults(v, caps, arch, machine);
        }
    }
}

/// Ports of a virtio-serial controller without `ports=` (QEMU's default).
const VIRTIO_SERIAL_PORTS: u32 = 31;

/// virtio-serial ports (`qemuDomainAssignVirtioSerialAddresses`): channels
/// take the first free port from 1 up, on the controller they name or the
/// first with room (adding a controller when all are full). Consoles get
/// no address: libvirt computes one and then drops it, port 0 belonging to
/// the first virtconsole implicitly.
fn assign_virtio_serial_addresses(def: &mut Domain) -> Result<()> {
    let mut ctrls: Vec<VsController> = def
        .devices
        .controllers
        .iter()
        .filter(|c| c.kind == ControllerType::VirtioSerial)
        .map(|c| {
            (
                c.idx(),
                c.ports.unwrap_or(VIRTIO_SERIAL_PORTS),
                Default::default(),
            )
        })
        .collect();
    let mut err = None;
    def.devices.for_each_info(|info| {
        if let Some(Address::VirtioSerial {
            controller, port, ..
        }) = info.address
        {
            if port == 0 || err.is_some() {
                return;
            }
            err = reserve_vs_port(&mut ctrls, controller, port).err();
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    for i in 0..def.devices.channels.len() {
        let ch = &def.devices.channels[i];
        if ch.target.kind.as_deref() != Some("virtio") {
            continue;
        }
        let (controller, port) = match ch.info.address {
            Some(Address::VirtioSerial { port, .. }) if port != 0 => continue,
            Some(Address::VirtioSerial { controller, .. }) => {
                let c = ctrls.iter().find(|c| c.0 == controller).ok_or_else(|| {
                    Error::Internal(format!(
                        "virtio-serial controller {controller} not available"
                    ))
                })?;
                let free = first_free_vs_port(c).ok_or_else(|| {
                    Error::xml(format!(
                        "Unable to find a free port on virtio-serial controller {controller}"
                    ))
                })?;
                (controller, free)
            }
            None => match ctrls
                .iter()
                .find_map(|c| first_free_vs_port(c).map(|p| (c.0, p)))
            {
                Some(found) => found,
                None => {
                    let idx = unused_index(def, ControllerType::VirtioSerial);
                    add_controller(
                        def,
                        Controller::new(ControllerType::VirtioSerial, idx, None),
                    );
                    ctrls.push((idx, VIRTIO_SERIAL_PORTS, Default::default()));
                    (idx, 1)
                }
            },
            Some(_) => continue,
        };
        reserve_vs_port(&mut ctrls, controller, port)?;
        def.devices.channels[i].info.address = Some(Address::VirtioSerial {
            controller,
            bus: 0,
            port,
        });
    }
    Ok(())
}

/// A virtio-serial controller: index, number of ports, ports in use.
type VsController = (u32, u32, std::collections::BTreeSet<u32>);

/// The lowest free port from 1 up (port 0 belongs to virtconsoles).
fn first_free_vs_port(c: &VsController) -> Option<u32> {
    (1..c.1).find(|p| !c.2.contains(p))
}

fn reserve_vs_port(ctrls: &mut [VsController], controller: u32, port: u32) -> Result<()> {
    let c = ctrls
        .iter_mut()
        .find(|c| c.0 == controller)
        .ok_or_else(|| Error::xml(format!("virtio serial controller {controller} is missing")))?;
    if port >= c.1 {
        return Err(Error::xml(format!(
            "virtio serial controller {controller} does not have port {port}"
        )));
    }
    if !c.2.insert(port) {
        return Err(Error::xml(format!(
            "virtio serial port {port} on controller {controller} is already occupied"
        )));
    }
    Ok(())
}

/// libvirt's `virDomainDefPostParseGraphics`: SPICE with an address listen,
/// no ports and no autoport listens nowhere, which is `<listen type='none'/>`.
fn graphics_post_parse(def: &mut Domain) {
    for g in &mut def.devices.graphics {
        if g.kind != GraphicsType::Spice || g.port != 0 || g.tls_port != 0 || g.autoport {
            continue;
        }
        if let Some(l) = g.listens.first_mut() {
            if l.kind == ListenType::Address {
                l.kind = ListenType::None;
                l.address = None;
            }
        }
    }
}

/// Default `reg` of each spapr-vio device class (QEMU's defaults).
const VIO_ADDR_NET: u64 = 0x1000;
const VIO_ADDR_SCSI: u64 = 0x2000;
const VIO_ADDR_SERIAL: u64 = 0x3000_0000;
const VIO_ADDR_NVRAM: u64 = 0x3000;
const VIO_ADDR_TPM: u64 = 0x4000;

/// Gives spapr-vio devices a `reg` (`qemuDomainAssignSpaprVIOAddresses`):
/// the class default, moved up by 0x1000 past registers already in use.
fn assign_spapr_vio_addresses(def: &mut Domain, machine: &str) -> Result<()> {
    let pseries = machine.starts_with("pseries");
    // which devices sit on the spapr-vio bus
    for n in &mut def.devices.interfaces {
        if n.model.as_deref() == Some("spapr-vlan") {
            make_spapr_vio(&mut n.info.address);
        }
    }
    for c in &mut def.devices.controllers {
        if c.kind == ControllerType::Scsi && c.scsi_model() == Some(ScsiModel::Ibmvscsi) {
            make_spapr_vio(&mut c.info.address);
        }
    }
    for s in &mut def.devices.serials {
        if s.target.kind.as_deref() == Some("spapr-vio-serial") {
            make_spapr_vio(&mut s.info.address);
        }
    }
    if pseries {
        if let Some(n) = &mut def.devices.nvram {
            make_spapr_vio(&mut n.info.address);
        }
        for t in &mut def.devices.tpms {
            if t.attr("model") != Some("spapr-tpm-proxy") {
                make_spapr_vio(&mut t.info.address);
            }
        }
    }
    let mut used: Vec<u64> = Vec::new();
    def.devices.for_each_info(|i| {
        if let Some(Address::SpaprVio { reg: Some(r) }) = i.address {
            used.push(r);
        }
    });
    let mut assign = |info: &mut crate::address::DeviceInfo, default: u64| -> Result<()> {
        let Some(Address::SpaprVio { reg }) = &mut info.address else {
            return Ok(());
        };
        match reg {
            Some(r) => {
                if used.iter().filter(|u| *u == r).count() > 1 {
                    return Err(Error::xml(format!(
                        "spapr-vio address {r:#x} already in use"
                    )));
                }
            }
            None => {
                let mut r = default;
                while used.contains(&r) {
                    r = r.checked_add(0x1000).ok_or_else(|| {
                        Error::Internal("No more available spapr-vio addresses".into())
                    })?;
                }
                used.push(r);
                *reg = Some(r);
            }
        }
        Ok(())
    };
    let d = &mut def.devices;
    for n in &mut d.interfaces {
        assign(&mut n.info, VIO_ADDR_NET)?;
    }
    for c in &mut d.controllers {
        assign(&mut c.info, VIO_ADDR_SCSI)?;
    }
    for s in &mut d.serials {
        assign(&mut s.info, VIO_ADDR_SERIAL)?;
    }
    if let Some(n) = &mut d.nvram {
        assign(&mut n.info, VIO_ADDR_NVRAM)?;
    }
    for t in &mut d.tpms {
        assign(&mut t.info, VIO_ADDR_TPM)?;
    }
    Ok(())
}

/// Turns an address into a spapr-vio one, keeping a `reg` already given.
fn make_spapr_vio(a: &mut Option<Address>) {
    if !matches!(a, Some(Address::SpaprVio { .. })) {
        *a = Some(Address::SpaprVio { reg: None });
    }
}

/// Helper for other modules: the PCI address of a device, if assigned.
pub fn pci_of(a: &Option<Address>) -> Option<PciAddress> {
    match a {
        Some(Address::Pci(PciDeviceAddress { addr, .. })) if !addr.is_empty() => Some(*addr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse, ParseOptions};

    fn caps() -> QemuCaps {
        let mut c = QemuCaps::new("/usr/bin/qemu-system-x86_64");
        c.arch = "x86_64".into();
        for f in [
            Flag::Kvm,
            Flag::Tcg,
            Flag::VirtioPciTransitional,
            Flag::DevicePciePciBridge,
            Flag::DeviceQemuXhci,
        ] {
            c.set(f);
        }
        c
    }

    fn expanded(devices: &str, machine: &str) -> Result<Domain> {
        let xml = format!(
            "<domain type='kvm'><name>t</name><memory>1024</memory>\
             <os><type arch='x86_64' machine='{machine}'>hvm</type></os>\
             <devices>{devices}</devices></domain>"
        );
        let mut def = parse(&xml, ParseOptions { inactive: true })?;
        let caps = caps();
        let mut random = |b: &mut [u8]| b.fill(0);
        let mut ctx = ExpandContext {
            caps: Some(&caps),
            default_emulator: "/usr/bin/qemu-system-x86_64".into(),
            nvram_dir: "/nvram".into(),
            vnc_allow_host_audio: false,
            nographics_allow_host_audio: false,
            audio_env: None,
            sdl_audio_env: None,
            random: &mut random,
        };
        expand(&mut def, &mut ctx)?;
        Ok(def)
    }

    fn pci_models(def: &Domain) -> Vec<(u32, Option<PciModel>)> {
        def.devices
            .controllers
            .iter()
            .filter(|c| c.kind == ControllerType::Pci)
            .map(|c| (c.idx(), c.pci_model()))
            .collect()
    }

    #[test]
    fn legacy_pci_device_on_q35_gets_a_root_port_and_pcie_to_pci_bridge() {
        let def = expanded(
            "<disk type='file' model='virtio-transitional'><source file='/a'/><target dev='vda'/></disk>\
             <controller type='usb' model='none'/><memballoon model='none'/>",
            "pc-q35-8.0",
        )
        .unwrap();
        assert_eq!(
            pci_models(&def),
            vec![
                (0, Some(PciModel::PcieRoot)),
                (1, Some(PciModel::PcieRootPort)),
                (2, Some(PciModel::PcieToPciBridge)),
                (3, Some(PciModel::PcieRootPort)),
            ]
        );
        assert_eq!(
            def.devices.disks[0].info.pci(),
            Some(PciAddress::new(2, 1, 0))
        );
    }

    #[test]
    fn pcie_devices_skip_legacy_pci_bridges() {
        let def = expanded(
            "<controller type='pci' model='pcie-root'/>\
             <controller type='pci' model='dmi-to-pci-bridge'/>\
             <controller type='pci' model='pci-bridge'/>\
             <controller type='pci' model='pcie-root-port'/>\
             <disk type='file'><source file='/a'/><target dev='vda'/></disk>\
             <controller type='usb' model='none'/><memballoon model='none'/>",
            "pc-q35-8.0",
        )
        .unwrap();
        assert_eq!(
            def.devices.disks[0].info.pci(),
            Some(PciAddress::new(3, 0, 0))
        );
    }

    #[test]
    fn controllers_added_by_expansion_come_after_parsed_ones() {
        let def = expanded(
            "<controller type='pci' index='0' model='pcie-root'/>\
             <controller type='usb' model='none'/>\
             <interface type='user'><model type='virtio'/></interface>\
             <memballoon model='none'/>",
            "pc-q35-8.0",
        )
        .unwrap();
        let kinds: Vec<ControllerType> = def.devices.controllers.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ControllerType::Pci,
                ControllerType::Usb,
                ControllerType::Sata,
                ControllerType::Pci,
                ControllerType::Pci,
            ]
        );
    }

    #[test]
    fn ibmvscsi_controller_gets_the_next_free_spapr_vio_register() {
        let def = expanded(
            "<controller type='scsi' index='0' model='ibmvscsi'/>\
             <controller type='scsi' index='1' model='ibmvscsi'/>\
             <memballoon model='none'/>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        let regs: Vec<Option<Address>> = def
            .devices
            .controllers
            .iter()
            .filter(|c| c.kind == ControllerType::Scsi)
            .map(|c| c.info.address.clone())
            .collect();
        assert_eq!(
            regs,
            vec![
                Some(Address::SpaprVio { reg: Some(0x2000) }),
                Some(Address::SpaprVio { reg: Some(0x3000) }),
            ]
        );
    }

    #[test]
    fn memory_total_comes_from_numa_cells_and_balloon_follows_it() {
        let xml = "<domain type='kvm'><name>t</name>\
             <os><type arch='x86_64' machine='pc'>hvm</type></os>\
             <cpu><numa><cell cpus='0' memory='512'/><cell cpus='0' memory='256'/></numa></cpu>\
             </domain>";
        let mut def = parse(xml, ParseOptions { inactive: true }).unwrap();
        post_parse_memory(&mut def).unwrap();
        assert_eq!(def.memory.total_kib, 768);
        assert_eq!(def.memory.current_kib, Some(768));
    }

    #[test]
    fn memory_without_size_is_rejected() {
        let xml = "<domain type='kvm'><name>t</name><os><type>hvm</type></os></domain>";
        let mut def = parse(xml, ParseOptions { inactive: true }).unwrap();
        let err = post_parse_memory(&mut def).unwrap_err();
        assert!(err.to_string().contains("Memory size must be specified"));
    }

    #[test]
    fn enrolled_keys_imply_secure_boot() {
        let xml = "<domain type='kvm'><name>t</name><memory>1</memory><os firmware='efi'>\
             <type>hvm</type><firmware><feature enabled='yes' name='enrolled-keys'/></firmware>\
             </os></domain>";
        let mut def = parse(xml, ParseOptions { inactive: true }).unwrap();
        post_parse_os(&mut def).unwrap();
        let names: Vec<&str> = def
            .os
            .firmware_features
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["enrolled-keys", "secure-boot"]);
    }

    #[test]
    fn a_plain_serial_port_gets_a_console_alias_in_front() {
        let def = expanded(
            "<serial type='file'><source path='/tmp/s.log'/></serial>\
             <console type='pty'><target type='virtio'/></console>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        let kinds: Vec<Option<&str>> = def
            .devices
            .consoles
            .iter()
            .map(|c| c.target.kind.as_deref())
            .collect();
        assert_eq!(kinds, [Some("serial"), Some("virtio")]);
        let out = crate::format(&def, &crate::FormatOptions::inactive_secure());
        assert!(
            out.contains(
                "<console type='file'>\n      <source path='/tmp/s.log'/>\n      \
                 <target type='serial' port='0'/>"
            ),
            "{out}"
        );

        let pci = expanded(
            "<serial type='pty'><target type='pci-serial'/></serial>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        assert!(pci.devices.consoles.is_empty());
    }

    #[test]
    fn virtio_consoles_get_no_address_and_channels_start_at_port_one() {
        let def = expanded(
            "<console type='pty'><target type='virtio'/></console>\
             <channel type='pty'><target type='virtio' name='a'/></channel>\
             <channel type='pty'><target type='virtio' name='b'/>\
             <address type='virtio-serial' controller='0' bus='0' port='1'/></channel>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        assert_eq!(def.devices.consoles[0].info.address, None);
        assert_eq!(
            def.devices.channels[0].info.address,
            Some(Address::VirtioSerial {
                controller: 0,
                bus: 0,
                port: 2
            })
        );
    }

    #[test]
    fn occupied_virtio_serial_port_is_rejected() {
        let err = expanded(
            "<channel type='pty'><target type='virtio' name='a'/>\
             <address type='virtio-serial' controller='0' bus='0' port='1'/></channel>\
             <channel type='pty'><target type='virtio' name='b'/>\
             <address type='virtio-serial' controller='0' bus='0' port='1'/></channel>",
            "pc-i440fx-8.0",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "XML error: virtio serial port 1 on controller 0 is already occupied"
        );
    }

    #[test]
    fn spice_without_ports_or_autoport_listens_nowhere() {
        let def = expanded("<graphics type='spice'/>", "pc-i440fx-8.0").unwrap();
        assert_eq!(def.devices.graphics[0].listens[0].kind, ListenType::None);
        // and, like any graphics, it implies a video device
        assert_eq!(def.devices.videos.len(), 1);
    }

    #[test]
    fn absurd_drive_controller_index_fails_fast() {
        let start = std::time::Instant::now();
        let err = expanded(
            "<disk type='file'><source file='/a'/><target dev='sda' bus='sata'/>\
             <address type='drive' controller='32768' bus='0' target='0' unit='0'/></disk>",
            "pc-q35-8.0",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "internal error: No more available PCI slots"
        );
        assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    }

    #[test]
    fn huge_user_numbers_are_refused_or_cost_nothing() {
        let err = expanded(
            "<controller type='pci' index='300' model='pci-bridge'/>",
            "pc-i440fx-8.0",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported configuration: PCI controller index 300 too high, maximum is 255"
        );
        assert!(expanded(
            "<controller type='usb' index='2147483648'/>",
            "pc-i440fx-8.0"
        )
        .is_err());
        let err = expanded(
            "<disk type='file'><source file='/a'/><target dev='hda' bus='ide'/>\
             <address type='drive' controller='4294967295' bus='0' target='0' unit='0'/></disk>",
            "pc-i440fx-8.0",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "internal error: No more available PCI slots"
        );
        // a virtio-serial controller may claim any number of ports
        let def = expanded(
            "<controller type='virtio-serial' index='0' ports='4294967295'/>\
             <channel type='pty'><target type='virtio' name='a'/></channel>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        assert!(matches!(
            def.devices.channels[0].info.address,
            Some(Address::VirtioSerial { port: 1, .. })
        ));
    }

    #[test]
    fn serial_without_port_goes_above_the_highest_port() {
        let def = expanded(
            "<serial type='pty'/><serial type='pty'><target port='0'/></serial>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        let ports: Vec<Option<u32>> = def.devices.serials.iter().map(|s| s.target.port).collect();
        assert_eq!(ports, [Some(1), Some(0)]);
    }

    #[test]
    fn explicit_isa_serials_take_free_isa_ports_first() {
        let def = expanded(
            "<serial type='pty'><target type='isa-serial' port='0'/></serial>\
             <serial type='pty'><target type='isa-serial'/></serial>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        assert_eq!(def.devices.serials[1].target.port, Some(1));
        let err = expanded(
            "<serial type='pty'><target type='isa-serial' port='4'/></serial>",
            "pc-i440fx-8.0",
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("Maximum supported number of ISA serial ports is '4'"));
    }

    #[test]
    fn vdpa_interface_defaults_to_virtio_and_others_to_the_caps_model() {
        let mut c = caps();
        c.set(Flag::DeviceRtl8139);
        let def = expanded(
            "<interface type='vdpa'><source dev='/dev/vhost-vdpa-0'/></interface>\
             <interface type='user'/>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        assert_eq!(def.devices.interfaces[0].model.as_deref(), Some("virtio"));
        // the test caps have no NIC flags: libvirt's last resort
        assert_eq!(def.devices.interfaces[1].model.as_deref(), Some("rtl8139"));
        assert_eq!(default_net_model("x86_64", "pc", &c, false), None);
    }

    #[test]
    fn evdev_input_has_no_bus_and_filesystem_defaults_to_passthrough() {
        let def = expanded(
            "<input type='evdev'><source dev='/dev/input/event1'/></input>\
             <filesystem type='mount'><source dir='/a'/><target dir='b'/></filesystem>",
            "pc-i440fx-8.0",
        )
        .unwrap();
        assert_eq!(def.devices.inputs[0].bus, Some(InputBus::None));
        assert_eq!(
            def.devices.filesystems[0].attr("accessmode"),
            Some("passthrough")
        );
    }
}
