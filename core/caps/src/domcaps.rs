//! The domain capabilities document (`virsh domcapabilities`): what a
//! domain of one type, architecture and machine can use with one emulator.
//! A pure builder over [`QemuCaps`] and host facts passed in
//! ([`DomCapsHostFacts`]); libvirt's `virQEMUCapsFillDomainCaps` and
//! `virDomainCapsFormat` define the content and layout.

use std::fmt::Write as _;

use crate::arch;
use crate::cpumap::{self, HvModel};
use crate::flags::Flag;
use crate::model::{Accel, CpuPropValue, QemuCaps};
use crate::xmltree::escape;

/// Host facts the document depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomCapsHostFacts {
    /// Host architecture (`x86_64`).
    pub host_arch: String,
    /// KVM's vCPU limit (`KVM_CAP_MAX_VCPUS`), when known.
    pub kvm_max_vcpus: Option<u32>,
    /// Firmware kinds usable with automatic selection, in libvirt's order
    /// (`bios`, `efi`), from the firmware descriptors.
    pub firmware_auto: Vec<String>,
    /// Loader images that exist, in descriptor order.
    pub loaders: Vec<String>,
    /// Whether a secure-boot capable loader exists.
    pub secure_boot: bool,
    /// Whether VFIO device assignment is possible on the host.
    pub vfio: bool,
    /// swtpm installed, and whether it supports TPM 1.2 and 2.0.
    pub swtpm: Option<(bool, bool)>,
    /// SEV guest limits (max guests, max SEV-ES guests) from CPUID.
    pub sev_limits: Option<(u32, u32)>,
}

/// Why the document cannot be built (libvirt's messages).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomCapsError {
    /// The domain type is not supported by the emulator.
    #[error("unsupported configuration: the accel '{virt_type}' is not supported by '{emulator}' on this host")]
    VirtType {
        /// The domain type.
        virt_type: String,
        /// The emulator.
        emulator: String,
    },
    /// The architecture does not match the emulator.
    #[error("invalid argument: architecture from emulator '{emulator_arch}' doesn't match given architecture '{arch}'")]
    Arch {
        /// The emulator's architecture.
        emulator_arch: String,
        /// The requested one.
        arch: String,
    },
    /// The machine is not supported by the emulator.
    #[error("invalid argument: the machine '{machine}' is not supported by emulator '{emulator}'")]
    Machine {
        /// The machine.
        machine: String,
        /// The emulator.
        emulator: String,
    },
}

/// A host-model CPU as domain capabilities report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostModel {
    /// Model name.
    pub model: String,
    /// Vendor, if known.
    pub vendor: Option<String>,
    /// (policy, feature) pairs.
    pub features: Vec<(String, String)>,
}

/// The host-model CPU libvirt derives from QEMU's host-CPU expansion for an
/// accelerator (x86 only): the expansion's features named after the
/// closest of the accelerator's CPU models.
pub fn host_model(caps: &QemuCaps, accel: Accel) -> Option<HostModel> {
    if !caps.is_x86() {
        return None;
    }
    let info = caps.host_cpu(accel)?;
    let mut features = Vec::new();
    let (mut family, mut model) = (None, None);
    let mut vendor = None;
    for p in &info.props {
        match (&p.value, p.name.as_str()) {
            (CpuPropValue::Boolean(true), name) => {
                if let Some(i) = cpumap::feature_index(name) {
                    features.push(i);
                }
            }
            (CpuPropValue::Number(n), "family") => family = u32::try_from(*n).ok(),
            (CpuPropValue::Number(n), "model") => model = u32::try_from(*n).ok(),
            (CpuPropValue::String(s), "vendor") => {
                vendor = cpumap::VENDORS
                    .iter()
                    .find(|(_, id)| id == s)
                    .map(|(n, _)| *n);
            }
            _ => {}
        }
    }
    features.sort_unstable();
    features.dedup();
    let hv: Vec<HvModel<'_>> = caps
        .accel(accel)
        .cpu_models
        .iter()
        .map(|m| HvModel {
            name: &m.name,
            blockers: &m.blockers,
        })
        .collect();
    let sig = family.zip(model);
    let d = cpumap::decode_guest(&features, vendor, sig, &hv)?;
    Some(HostModel {
        model: d.model.to_string(),
        vendor: d.vendor.map(str::to_string),
        features: d
            .features
            .into_iter()
            .map(|(p, f)| (p.to_string(), f.to_string()))
            .collect(),
    })
}

fn enum_block(o: &mut String, indent: usize, name: &str, values: &[&str]) {
    let pad = " ".repeat(indent);
    if values.is_empty() {
        let _ = writeln!(o, "{pad}<enum name='{name}'/>");
        return;
    }
    let _ = writeln!(o, "{pad}<enum name='{name}'>");
    for v in values {
        let _ = writeln!(o, "{pad}  <value>{}</value>", escape(v));
    }
    let _ = writeln!(o, "{pad}</enum>");
}

/// Builds the domain capabilities document. `virt_type` defaults to the
/// best accelerator, `arch` to the emulator's, `machine` to the default
/// machine; `host_model` is normally [`host_model`]'s result.
pub fn domain_capabilities_xml(
    caps: &QemuCaps,
    virt_type: Option<&str>,
    arch_req: Option<&str>,
    machine: Option<&str>,
    host: &DomCapsHostFacts,
    host_model: Option<&HostModel>,
) -> Result<String, DomCapsError> {
    let virt_type = match virt_type {
        Some(v) => v,
        None => caps.preferred_accel().map_or("qemu", Accel::virt_type),
    };
    if !caps.supports_virt_type(virt_type) {
        return Err(DomCapsError::VirtType {
            virt_type: virt_type.to_string(),
            emulator: caps.emulator.clone(),
        });
    }
    let accel = Accel::from_virt_type(virt_type);
    let arch_name = arch_req.unwrap_or(&caps.arch);
    if !caps.is_arch_supported(arch_name) {
        return Err(DomCapsError::Arch {
            emulator_arch: caps.arch.clone(),
            arch: arch_name.to_string(),
        });
    }
    let machine = match machine {
        Some(m) => Some(
            caps.machine(accel, m)
                .ok_or_else(|| DomCapsError::Machine {
                    machine: m.to_string(),
                    emulator: caps.emulator.clone(),
                })?
                .clone(),
        ),
        None => caps.default_machine(accel).cloned(),
    };
    let machine_name = machine.as_ref().map(|m| m.name.as_str()).unwrap_or("");

    let mut o = String::from("<domainCapabilities>\n");
    let _ = writeln!(o, "  <path>{}</path>", escape(&caps.emulator));
    let _ = writeln!(o, "  <domain>{virt_type}</domain>");
    if let Some(m) = &machine {
        let _ = writeln!(o, "  <machine>{}</machine>", escape(&m.name));
    }
    let _ = writeln!(o, "  <arch>{}</arch>", escape(arch_name));
    let mut max_vcpus = machine.as_ref().map_or(0, |m| m.max_cpus);
    if accel == Accel::Kvm {
        if let Some(k) = host.kvm_max_vcpus {
            max_vcpus = max_vcpus.min(k);
        }
    }
    if max_vcpus > 0 {
        let _ = writeln!(o, "  <vcpu max='{max_vcpus}'/>");
    }
    let yn = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        o,
        "  <iothreads supported='{}'/>",
        yn(caps.has(Flag::ObjectIothread))
    );

    // <os>
    o.push_str("  <os supported='yes'>\n");
    let fw: Vec<&str> = ["bios", "efi"]
        .into_iter()
        .filter(|f| host.firmware_auto.iter().any(|x| x == f))
        .collect();
    enum_block(&mut o, 4, "firmware", &fw);
    o.push_str("    <loader supported='yes'>\n");
    let mut seen: Vec<&str> = Vec::new();
    for l in &host.loaders {
        if !seen.contains(&l.as_str()) {
            seen.push(l);
            let _ = writeln!(o, "      <value>{}</value>", escape(l));
        }
    }
    enum_block(&mut o, 6, "type", &["rom", "pflash"]);
    enum_block(&mut o, 6, "readonly", &["yes", "no"]);
    let secure: &[&str] = if host.secure_boot {
        &["yes", "no"]
    } else {
        &["no"]
    };
    enum_block(&mut o, 6, "secure", secure);
    o.push_str("    </loader>\n  </os>\n");

    // <cpu>
    o.push_str("  <cpu>\n");
    let passthrough = accel.is_hardware() && arch::guest_is_native(&host.host_arch, &caps.arch);
    if passthrough {
        o.push_str("    <mode name='host-passthrough' supported='yes'>\n");
        let vals: &[&str] = if caps.has(Flag::CpuMigratable) {
            &["on", "off"]
        } else {
            &["off"]
        };
        enum_block(&mut o, 6, "hostPassthroughMigratable", vals);
        o.push_str("    </mode>\n");
    } else {
        o.push_str("    <mode name='host-passthrough' supported='no'/>\n");
    }
    if caps.has(Flag::CpuMax) {
        o.push_str("    <mode name='maximum' supported='yes'>\n");
        enum_block(&mut o, 6, "maximumMigratable", &["on", "off"]);
        o.push_str("    </mode>\n");
    } else {
        o.push_str("    <mode name='maximum' supported='no'/>\n");
    }
    match host_model {
        Some(h) => {
            o.push_str("    <mode name='host-model' supported='yes'>\n");
            let _ = writeln!(
                o,
                "      <model fallback='forbid'>{}</model>",
                escape(&h.model)
            );
            if let Some(v) = &h.vendor {
                let _ = writeln!(o, "      <vendor>{}</vendor>", escape(v));
            }
            for (policy, name) in &h.features {
                let _ = writeln!(
                    o,
                    "      <feature policy='{}' name='{}'/>",
                    escape(policy),
                    escape(name)
                );
            }
            o.push_str("    </mode>\n");
        }
        None => o.push_str("    <mode name='host-model' supported='no'/>\n"),
    }
    let custom: Vec<_> = caps
        .accel(accel)
        .cpu_models
        .iter()
        .filter(|m| m.name != "host" && (!caps.is_x86() || cpumap::has_model(&m.name)))
        .collect();
    if custom.is_empty() {
        o.push_str("    <mode name='custom' supported='no'/>\n");
    } else {
        o.push_str("    <mode name='custom' supported='yes'>\n");
        for m in custom {
            let _ = write!(o, "      <model usable='{}'", m.usable.as_str());
            if m.deprecated {
                o.push_str(" deprecated='yes'");
            }
            let vendor = if caps.is_x86() {
                cpumap::model_vendor(&m.name)
            } else {
                None
            };
            let _ = writeln!(
                o,
                " vendor='{}'>{}</model>",
                vendor.unwrap_or("unknown"),
                escape(&m.name)
            );
        }
        o.push_str("    </mode>\n");
    }
    o.push_str("  </cpu>\n");

    // <memoryBacking>
    o.push_str("  <memoryBacking supported='yes'>\n");
    let mut src = vec!["file", "anonymous"];
    if caps.has(Flag::ObjectMemoryMemfd) {
        src.push("memfd");
    }
    enum_block(&mut o, 4, "sourceType", &src);
    o.push_str("  </memoryBacking>\n  <devices>\n");

    // disk
    let pseries = machine_name.starts_with("pseries") && caps.arch.starts_with("ppc64");
    let mut dev = vec!["disk", "cdrom"];
    if !pseries {
        dev.push("floppy");
    }
    dev.push("lun");
    let builtin_ide = arch::is_x86(&caps.arch)
        && (machine_name.starts_with("pc-i440fx")
            || machine_name == "pc"
            || machine_name == "isapc"
            || machine_name.starts_with("pc-0.")
            || machine_name.starts_with("pc-1."))
        || machine_name == "malta"
        || machine_name == "sun4u"
        || machine_name == "g3beige";
    let mut bus = Vec::new();
    if builtin_ide {
        bus.push("ide");
    }
    if !pseries {
        bus.push("fdc");
    }
    bus.extend(["scsi", "virtio"]);
    if caps.has(Flag::DeviceUsbStorage) {
        bus.push("usb");
    }
    if caps.has(Flag::Ich9Ahci) {
        bus.push("sata");
    }
    let mut model = vec!["virtio"];
    if caps.has(Flag::VirtioPciTransitional) {
        model.extend(["virtio-transitional", "virtio-non-transitional"]);
    }
    o.push_str("    <disk supported='yes'>\n");
    enum_block(&mut o, 6, "diskDevice", &dev);
    enum_block(&mut o, 6, "bus", &bus);
    enum_block(&mut o, 6, "model", &model);
    o.push_str("    </disk>\n");

    // graphics
    let gfx: Vec<&str> = [
        (Flag::Sdl, "sdl"),
        (Flag::Vnc, "vnc"),
        (Flag::Spice, "spice"),
        (Flag::EglHeadless, "egl-headless"),
        (Flag::DisplayDbus, "dbus"),
    ]
    .iter()
    .filter(|(f, _)| caps.has(*f))
    .map(|(_, n)| *n)
    .collect();
    o.push_str("    <graphics supported='yes'>\n");
    enum_block(&mut o, 6, "type", &gfx);
    o.push_str("    </graphics>\n");

    // video, in libvirt's enum order
    let video: Vec<&str> = [
        (Some(Flag::DeviceVga), "vga"),
        (Some(Flag::DeviceCirrusVga), "cirrus"),
        (Some(Flag::DeviceVmwareSvga), "vmvga"),
        (Some(Flag::DeviceQxl), "qxl"),
        (Some(Flag::DeviceVirtioGpu), "virtio"),
        (None, "none"),
        (Some(Flag::DeviceBochsDisplay), "bochs"),
        (Some(Flag::DeviceRamfb), "ramfb"),
    ]
    .iter()
    .filter(|(f, _)| f.is_none_or(|f| caps.has(f)))
    .map(|(_, n)| *n)
    .collect();
    o.push_str("    <video supported='yes'>\n");
    enum_block(&mut o, 6, "modelType", &video);
    o.push_str("    </video>\n");

    // hostdev
    let usb = [
        Flag::Piix3UsbUhci,
        Flag::Piix4UsbUhci,
        Flag::UsbEhci,
        Flag::Ich9UsbEhci1,
        Flag::Vt82c686bUsbUhci,
        Flag::PciOhci,
        Flag::NecUsbXhci,
        Flag::DeviceQemuXhci,
    ]
    .iter()
    .any(|&f| caps.has(f));
    let mut subsys = Vec::new();
    if usb {
        subsys.push("usb");
    }
    subsys.extend(["pci", "scsi"]);
    o.push_str("    <hostdev supported='yes'>\n");
    enum_block(&mut o, 6, "mode", &["subsystem"]);
    enum_block(
        &mut o,
        6,
        "startupPolicy",
        &["default", "mandatory", "requisite", "optional"],
    );
    enum_block(&mut o, 6, "subsysType", &subsys);
    enum_block(&mut o, 6, "capsType", &[]);
    let backend: &[&str] = if host.vfio && caps.has(Flag::DeviceVfioPci) {
        &["default", "vfio"]
    } else {
        &[]
    };
    enum_block(&mut o, 6, "pciBackend", backend);
    o.push_str("    </hostdev>\n");

    // rng
    let mut rng_model = Vec::new();
    if caps.has(Flag::DeviceVirtioRng) {
        rng_model.push("virtio");
        if caps.has(Flag::VirtioPciTransitional) {
            rng_model.extend(["virtio-transitional", "virtio-non-transitional"]);
        }
    }
    let rng_backend: Vec<&str> = [
        (Flag::ObjectRngRandom, "random"),
        (Flag::ObjectRngEgd, "egd"),
        (Flag::ObjectRngBuiltin, "builtin"),
    ]
    .iter()
    .filter(|(f, _)| caps.has(*f))
    .map(|(_, n)| *n)
    .collect();
    o.push_str("    <rng supported='yes'>\n");
    enum_block(&mut o, 6, "model", &rng_model);
    enum_block(&mut o, 6, "backendModel", &rng_backend);
    o.push_str("    </rng>\n");

    // filesystem
    let mut fs = vec!["path", "handle"];
    if caps.has(Flag::DeviceVhostUserFs) {
        fs.push("virtiofs");
    }
    o.push_str("    <filesystem supported='yes'>\n");
    enum_block(&mut o, 6, "driverType", &fs);
    o.push_str("    </filesystem>\n");

    // tpm
    let tpm_models: Vec<&str> = [
        (Flag::DeviceTpmTis, "tpm-tis"),
        (Flag::DeviceTpmCrb, "tpm-crb"),
        (Flag::DeviceTpmSpapr, "tpm-spapr"),
        (Flag::DeviceSpaprTpmProxy, "spapr-tpm-proxy"),
    ]
    .iter()
    .filter(|(f, _)| caps.has(*f))
    .map(|(_, n)| *n)
    .collect();
    if tpm_models.is_empty() {
        o.push_str("    <tpm supported='no'/>\n");
    } else {
        let mut backends = Vec::new();
        if caps.has(Flag::DeviceTpmPassthrough) {
            backends.push("passthrough");
        }
        let mut versions = Vec::new();
        if let Some((v12, v20)) = host.swtpm {
            if caps.has(Flag::DeviceTpmEmulator) {
                backends.extend(["emulator", "external"]);
            }
            if v12 {
                versions.push("1.2");
            }
            if v20 {
                versions.push("2.0");
            }
        }
        o.push_str("    <tpm supported='yes'>\n");
        enum_block(&mut o, 6, "model", &tpm_models);
        enum_block(&mut o, 6, "backendModel", &backends);
        if !versions.is_empty() {
            enum_block(&mut o, 6, "backendVersion", &versions);
        }
        o.push_str("    </tpm>\n");
    }

    // redirdev
    if caps.has(Flag::UsbRedir) {
        o.push_str("    <redirdev supported='yes'>\n");
        enum_block(&mut o, 6, "bus", &["usb"]);
        o.push_str("    </redirdev>\n");
    } else {
        o.push_str("    <redirdev supported='no'/>\n");
    }

    // channel
    let mut chan = vec!["pty", "unix"];
    if caps.has(Flag::Spice) {
        chan.push("spicevmc");
    }
    o.push_str("    <channel supported='yes'>\n");
    enum_block(&mut o, 6, "type", &chan);
    o.push_str("    </channel>\n  </devices>\n");

    // <features>
    o.push_str("  <features>\n");
    let arm_virt =
        arch::is_arm(arch_name) && (machine_name == "virt" || machine_name.starts_with("virt-"));
    let gic: Vec<u32> = if arm_virt {
        let mut v: Vec<u32> = caps
            .gic
            .iter()
            .filter(|g| match accel {
                Accel::Kvm => g.kernel,
                Accel::Tcg => g.emulated,
                Accel::Hvf => false,
            })
            .map(|g| g.version)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    } else {
        Vec::new()
    };
    if gic.is_empty() {
        o.push_str("    <gic supported='no'/>\n");
    } else {
        o.push_str("    <gic supported='yes'>\n");
        let names: Vec<String> = gic.iter().map(u32::to_string).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        enum_block(&mut o, 6, "version", &refs);
        o.push_str("    </gic>\n");
    }
    for (name, on) in [
        ("vmcoreinfo", caps.has(Flag::DeviceVmcoreinfo)),
        ("genid", caps.has(Flag::DeviceVmgenid)),
        ("backingStoreInput", true),
        ("backup", caps.has(Flag::IncrementalBackup)),
    ] {
        let _ = writeln!(o, "    <{name} supported='{}'/>", yn(on));
    }
    if arch::is_s390(&caps.arch) {
        let pv = caps.has(Flag::MachineConfidentalGuestSupport)
            && caps.has(Flag::S390PvGuest)
            && caps.kvm_supports_secure_guest;
        let _ = writeln!(o, "    <s390-pv supported='{}'/>", yn(pv));
    }
    match &caps.sev {
        Some(s) => {
            let (max, max_es) = host.sev_limits.unwrap_or((s.max_guests, s.max_es_guests));
            let _ = writeln!(
                o,
                "    <sev supported='yes'>\n      <cbitpos>{}</cbitpos>\n      <reducedPhysBits>{}</reducedPhysBits>\n      <maxGuests>{max}</maxGuests>\n      <maxESGuests>{max_es}</maxESGuests>",
                s.cbitpos, s.reduced_phys_bits
            );
            if let Some(id) = &s.cpu0_id {
                let _ = writeln!(o, "      <cpu0Id>{}</cpu0Id>", escape(id));
            }
            o.push_str("    </sev>\n");
        }
        None => o.push_str("    <sev supported='no'/>\n"),
    }
    match &caps.sgx {
        Some(s) => {
            let _ = writeln!(
                o,
                "    <sgx supported='yes'>\n      <flc>{}</flc>\n      <sgx1>{}</sgx1>\n      <sgx2>{}</sgx2>\n      <section_size unit='KiB'>{}</section_size>",
                yn(s.flc),
                yn(s.sgx1),
                yn(s.sgx2),
                s.section_size_kib
            );
            if !s.sections.is_empty() {
                o.push_str("      <sections>\n");
                for sec in &s.sections {
                    let _ = writeln!(
                        o,
                        "        <section node='{}' size='{}' unit='KiB'/>",
                        sec.node, sec.size_kib
                    );
                }
                o.push_str("      </sections>\n");
            }
            o.push_str("    </sgx>\n");
        }
        None => o.push_str("    <sgx supported='no'/>\n"),
    }
    if let Some(h) = &caps.hyperv {
        if h.supported {
            o.push_str("    <hyperv supported='yes'>\n");
            let refs: Vec<&str> = h.features.iter().map(String::as_str).collect();
            enum_block(&mut o, 6, "features", &refs);
            o.push_str("    </hyperv>\n");
        } else {
            o.push_str("    <hyperv supported='no'/>\n");
        }
    }
    o.push_str("  </features>\n</domainCapabilities>\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance/caps/caps_8.0.0.x86_64.xml"
    );

    fn host() -> DomCapsHostFacts {
        DomCapsHostFacts {
            host_arch: "x86_64".into(),
            firmware_auto: vec!["efi".into()],
            loaders: vec!["/usr/share/OVMF/OVMF_CODE_4M.fd".into()],
            swtpm: Some((true, true)),
            ..Default::default()
        }
    }

    #[test]
    fn kvm_document_for_the_default_machine() {
        let Ok(caps) = QemuCaps::load_cache_file(CAPS) else {
            eprintln!("skipping: {CAPS} not available");
            return;
        };
        let hm = host_model(&caps, Accel::Kvm);
        let xml =
            domain_capabilities_xml(&caps, Some("kvm"), None, None, &host(), hm.as_ref()).unwrap();
        crate::xmltree::parse(&xml).unwrap();
        assert!(xml.contains(
            "  <machine>pc-i440fx-8.0</machine>\n  <arch>x86_64</arch>\n  <vcpu max='255'/>\n"
        ));
        assert!(xml.contains("<value>/usr/share/OVMF/OVMF_CODE_4M.fd</value>"));
        assert!(xml.contains("<model usable='no' vendor='Intel'>Skylake-Client</model>"));
        assert!(xml.contains("<mode name='host-model' supported='yes'>"));
        assert!(xml.contains("        <value>ide</value>\n        <value>fdc</value>"));
        assert!(xml.contains("    <backup supported='yes'/>\n"));
        assert!(!xml.contains(">host</model>"));
    }

    #[test]
    fn q35_has_no_builtin_ide_and_errors_read_like_libvirt() {
        let Ok(caps) = QemuCaps::load_cache_file(CAPS) else {
            return;
        };
        let xml =
            domain_capabilities_xml(&caps, Some("qemu"), None, Some("q35"), &host(), None).unwrap();
        assert!(xml.contains("<machine>pc-q35-8.0</machine>"));
        assert!(!xml.contains("<value>ide</value>"));
        assert!(xml.contains("<mode name='host-passthrough' supported='no'/>"));
        let e = domain_capabilities_xml(&caps, Some("hvf"), None, None, &host(), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported configuration: the accel 'hvf' is not supported by '/usr/bin/qemu-system-x86_64' on this host"
        );
        let e =
            domain_capabilities_xml(&caps, None, None, Some("virt"), &host(), None).unwrap_err();
        assert!(matches!(e, DomCapsError::Machine { .. }));
        let e =
            domain_capabilities_xml(&caps, None, Some("aarch64"), None, &host(), None).unwrap_err();
        assert!(matches!(e, DomCapsError::Arch { .. }));
    }
}
