//! The capabilities model: everything libvirt keeps about one QEMU binary.

use crate::flags::{Flag, FlagSet};
use crate::xmltree::Element;

/// An accelerator as libvirt's cache file names it (`type='kvm'|'hvf'|'tcg'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// Linux KVM (domain type `kvm`).
    Kvm,
    /// macOS Hypervisor.framework (domain type `hvf`).
    Hvf,
    /// QEMU's emulator (domain type `qemu`).
    Tcg,
}

impl Accel {
    /// Name in the cache file: `kvm`, `hvf` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Tcg => "tcg",
        }
    }

    /// Parses a cache-file accelerator name.
    pub fn from_cache_name(s: &str) -> Option<Accel> {
        match s {
            "kvm" => Some(Accel::Kvm),
            "hvf" => Some(Accel::Hvf),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    /// The domain XML `<domain type=...>` this accelerator serves.
    pub fn virt_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Tcg => "qemu",
        }
    }

    /// The accelerator for a domain type (`kvm`, `hvf`, `qemu`); libvirt maps
    /// every other type to TCG's data as well, so this does too.
    pub fn from_virt_type(virt_type: &str) -> Accel {
        match virt_type {
            "kvm" => Accel::Kvm,
            "hvf" => Accel::Hvf,
            _ => Accel::Tcg,
        }
    }

    /// Whether this is a hardware accelerator (host-passthrough possible).
    pub fn is_hardware(self) -> bool {
        self != Accel::Tcg
    }

    /// The three accelerators in cache-file order.
    pub const ALL: [Accel; 3] = [Accel::Kvm, Accel::Hvf, Accel::Tcg];
}

/// One machine type reported by `query-machines`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineType {
    /// Canonical name, e.g. `pc-i440fx-8.0`.
    pub name: String,
    /// Alias, e.g. `pc`.
    pub alias: Option<String>,
    /// Maximum vCPU count (0 = unknown).
    pub max_cpus: u32,
    /// Whether vCPU hotplug is supported.
    pub hotplug_cpus: bool,
    /// Whether this is the default machine (QEMU's, or libvirt's preferred).
    pub default: bool,
    /// QOM type name of the default CPU, e.g. `qemu64-x86_64-cpu`.
    pub default_cpu: Option<String>,
    /// Whether `-numa node,mem=` is supported.
    pub numa_mem_supported: bool,
    /// Id of the default RAM backend, e.g. `pc.ram`.
    pub default_ram_id: Option<String>,
    /// Whether QEMU marks the machine deprecated.
    pub deprecated: bool,
    /// `acpi` attribute written by newer libvirt versions (kept as read).
    pub acpi: Option<String>,
}

/// Whether a CPU model can run on this host with this accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuUsable {
    /// QEMU did not say.
    #[default]
    Unknown,
    /// Usable.
    Yes,
    /// Not usable; see the blockers.
    No,
}

impl CpuUsable {
    /// `unknown`, `yes` or `no`.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuUsable::Unknown => "unknown",
            CpuUsable::Yes => "yes",
            CpuUsable::No => "no",
        }
    }
}

/// One CPU model reported by `query-cpu-definitions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuModel {
    /// Model name, e.g. `Skylake-Client`.
    pub name: String,
    /// QOM type, e.g. `Skylake-Client-x86_64-cpu`.
    pub typename: Option<String>,
    /// Usability with this accelerator.
    pub usable: CpuUsable,
    /// Features that block the model, in QEMU's spelling.
    pub blockers: Vec<String>,
    /// Whether QEMU marks the model deprecated.
    pub deprecated: bool,
}

/// Value of a host-CPU property from `query-cpu-model-expansion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuPropValue {
    /// A feature or boolean property.
    Boolean(bool),
    /// A string property (`vendor`, `model-id`).
    String(String),
    /// A number property (`family`, `model`, ...).
    Number(i64),
}

/// One host-CPU property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuProperty {
    /// Property name (QEMU's spelling).
    pub name: String,
    /// Its value.
    pub value: CpuPropValue,
    /// Migratability, when known (`migratable='yes'|'no'`).
    pub migratable: Option<bool>,
}

/// The host CPU as QEMU expanded it for one accelerator (`<hostCPU>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostCpuInfo {
    /// Model name QEMU returned (`base` for static expansion).
    pub model: String,
    /// Whether per-property migratability is known.
    pub migratability: bool,
    /// Properties in QEMU's order.
    pub props: Vec<CpuProperty>,
}

impl HostCpuInfo {
    /// A property by name.
    pub fn prop(&self, name: &str) -> Option<&CpuProperty> {
        self.props.iter().find(|p| p.name == name)
    }

    /// Names of boolean properties that are enabled (the host CPU's
    /// features), optionally only the migratable ones.
    pub fn enabled_features(&self, migratable_only: bool) -> impl Iterator<Item = &str> {
        self.props.iter().filter_map(move |p| match p.value {
            CpuPropValue::Boolean(true) if !(migratable_only && p.migratable == Some(false)) => {
                Some(p.name.as_str())
            }
            _ => None,
        })
    }
}

/// Everything that depends on the accelerator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccelCaps {
    /// Host CPU expansion (`<hostCPU type=...>`).
    pub host_cpu: Option<HostCpuInfo>,
    /// CPU models (`<cpu type=...>`), in QEMU's order.
    pub cpu_models: Vec<CpuModel>,
    /// Machine types (`<machine type=...>`); the preferred default is first.
    pub machines: Vec<MachineType>,
}

impl AccelCaps {
    /// Whether nothing was recorded for this accelerator.
    pub fn is_empty(&self) -> bool {
        self.host_cpu.is_none() && self.cpu_models.is_empty() && self.machines.is_empty()
    }
}

/// One GIC version an ARM binary supports (`<gic>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GicCap {
    /// GIC version (2, 3, ...).
    pub version: u32,
    /// In-kernel implementation available.
    pub kernel: bool,
    /// Emulated implementation available.
    pub emulated: bool,
}

/// AMD SEV platform data (`<sev>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SevCaps {
    /// C-bit position.
    pub cbitpos: u32,
    /// Reduced physical address bits.
    pub reduced_phys_bits: u32,
    /// Platform Diffie-Hellman key (base64).
    pub pdh: String,
    /// Certificate chain (base64).
    pub cert_chain: String,
    /// CPU 0 id (base64), when QEMU reports it.
    pub cpu0_id: Option<String>,
    /// Maximum SEV guests (from CPUID, not stored in the cache).
    pub max_guests: u32,
    /// Maximum SEV-ES guests (from CPUID, not stored in the cache).
    pub max_es_guests: u32,
}

/// One SGX EPC section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgxSection {
    /// NUMA node.
    pub node: u32,
    /// Size in KiB.
    pub size_kib: u64,
}

/// Intel SGX platform data (`<sgx>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SgxCaps {
    /// Flexible launch control.
    pub flc: bool,
    /// SGX1 supported.
    pub sgx1: bool,
    /// SGX2 supported.
    pub sgx2: bool,
    /// Total EPC size in KiB.
    pub section_size_kib: u64,
    /// EPC sections per NUMA node.
    pub sections: Vec<SgxSection>,
}

/// Hyper-V enlightenments KVM can pass through (`<hypervCapabilities>`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HypervCaps {
    /// Whether Hyper-V enlightenments are supported at all.
    pub supported: bool,
    /// libvirt names of the supported enlightenments (`relaxed`, `vapic`, ...),
    /// in libvirt's order.
    pub features: Vec<String>,
}

/// libvirt's Hyper-V enlightenment names in libvirt's order
/// (`virDomainHyperv`).
pub const HYPERV_FEATURES: [&str; 15] = [
    "relaxed",
    "vapic",
    "spinlocks",
    "vpindex",
    "runtime",
    "synic",
    "stimer",
    "reset",
    "vendor_id",
    "frequencies",
    "reenlightenment",
    "tlbflush",
    "ipi",
    "evmcs",
    "avic",
];

/// The capabilities of one QEMU binary: libvirt's `virQEMUCaps`, with every
/// part of the cache document (see the crate docs for how to load one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QemuCaps {
    /// Path of the QEMU binary.
    pub emulator: String,
    /// ctime of the binary when probed (seconds).
    pub qemu_ctime: i64,
    /// Size of the binary when probed (qvisor addition, `<qemusize>`; libvirt
    /// ignores it).
    pub qemu_size: Option<u64>,
    /// mtime of QEMU's module directory when probed, if it existed.
    pub qemu_moddir_mtime: Option<i64>,
    /// ctime of the prober itself (libvirt's `selfctime`).
    pub self_ctime: i64,
    /// Version number of the prober (libvirt's `selfvers`).
    pub self_vers: u64,
    /// The capability flags.
    pub flags: FlagSet,
    /// Flag names read from a cache file that this version does not know;
    /// kept so that writing the document back loses nothing.
    pub unknown_flags: Vec<String>,
    /// QEMU version as `major * 1_000_000 + minor * 1_000 + micro`.
    pub version: u32,
    /// KVM version (always 0 for upstream QEMU).
    pub kvm_version: u32,
    /// Host microcode version when probed.
    pub microcode_version: u32,
    /// Host CPU signature when probed.
    pub host_cpu_signature: Option<String>,
    /// Package string from `query-version` (e.g. `Debian 1:7.2+dfsg-7`).
    pub package: Option<String>,
    /// Host kernel version when probed.
    pub kernel_version: Option<String>,
    /// libvirt's `<cpudata>` element, kept verbatim.
    pub cpudata: Option<Element>,
    /// Target architecture in libvirt's spelling (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// KVM data.
    pub kvm: AccelCaps,
    /// HVF data.
    pub hvf: AccelCaps,
    /// TCG data.
    pub tcg: AccelCaps,
    /// GIC capabilities (ARM).
    pub gic: Vec<GicCap>,
    /// SEV platform data.
    pub sev: Option<SevCaps>,
    /// SGX platform data.
    pub sgx: Option<SgxCaps>,
    /// Hyper-V enlightenments.
    pub hyperv: Option<HypervCaps>,
    /// Nested KVM enabled when probed.
    pub kvm_supports_nesting: bool,
    /// Secure guests (SEV / s390 PV) enabled when probed.
    pub kvm_supports_secure_guest: bool,
    /// Children of `<qemuCaps>` this version does not know, kept verbatim.
    pub extra: Vec<Element>,
}

impl QemuCaps {
    /// A new, empty set of capabilities for `emulator`.
    pub fn new(emulator: impl Into<String>) -> Self {
        QemuCaps {
            emulator: emulator.into(),
            ..Default::default()
        }
    }

    /// Whether `flag` is set.
    pub fn has(&self, flag: Flag) -> bool {
        self.flags.has(flag)
    }

    /// Sets `flag`.
    pub fn set(&mut self, flag: Flag) {
        self.flags.set(flag);
    }

    /// Clears `flag`.
    pub fn clear(&mut self, flag: Flag) {
        self.flags.clear(flag);
    }

    /// QEMU version as `major * 1_000_000 + minor * 1_000 + micro`
    /// (8.0.0 = 8000000; a 7.2.50 development snapshot = 7002050).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// QEMU version as (major, minor, micro).
    pub fn version_triple(&self) -> (u32, u32, u32) {
        (
            self.version / 1_000_000,
            self.version / 1_000 % 1_000,
            self.version % 1_000,
        )
    }

    /// Data of one accelerator.
    pub fn accel(&self, accel: Accel) -> &AccelCaps {
        match accel {
            Accel::Kvm => &self.kvm,
            Accel::Hvf => &self.hvf,
            Accel::Tcg => &self.tcg,
        }
    }

    /// Mutable data of one accelerator.
    pub fn accel_mut(&mut self, accel: Accel) -> &mut AccelCaps {
        match accel {
            Accel::Kvm => &mut self.kvm,
            Accel::Hvf => &mut self.hvf,
            Accel::Tcg => &mut self.tcg,
        }
    }

    /// Whether the binary supports a domain type (`kvm`, `qemu`, `hvf`), as
    /// libvirt's `virQEMUCapsIsVirtTypeSupported` decides (flags `kvm`,
    /// `tcg`, `hvf`).
    pub fn supports_virt_type(&self, virt_type: &str) -> bool {
        match virt_type {
            "kvm" => self.has(Flag::Kvm),
            "qemu" => self.has(Flag::Tcg),
            "hvf" => self.has(Flag::Hvf),
            _ => false,
        }
    }

    /// Whether a hardware accelerator (KVM or HVF) was found.
    pub fn has_hw_accel(&self) -> bool {
        self.has(Flag::Kvm) || self.has(Flag::Hvf)
    }

    /// The accelerator libvirt would use by default (KVM, then HVF, then TCG).
    pub fn preferred_accel(&self) -> Option<Accel> {
        if self.has(Flag::Kvm) {
            Some(Accel::Kvm)
        } else if self.has(Flag::Hvf) {
            Some(Accel::Hvf)
        } else if self.has(Flag::Tcg) {
            Some(Accel::Tcg)
        } else {
            None
        }
    }

    /// The default machine for an accelerator: the first machine of its list
    /// (the prober puts libvirt's preferred default there, like
    /// `virQEMUCapsGetPreferredMachine`).
    pub fn default_machine(&self, accel: Accel) -> Option<&MachineType> {
        self.accel(accel).machines.first()
    }

    /// Resolves an alias (`pc`, `q35`) to the canonical machine name;
    /// other names are returned unchanged (`virQEMUCapsGetCanonicalMachine`).
    pub fn canonical_machine<'a>(&'a self, accel: Accel, name: &'a str) -> &'a str {
        self.accel(accel)
            .machines
            .iter()
            .find(|m| m.alias.as_deref() == Some(name))
            .map_or(name, |m| m.name.as_str())
    }

    /// A machine by canonical name or alias.
    pub fn machine(&self, accel: Accel, name: &str) -> Option<&MachineType> {
        let canon = self.canonical_machine(accel, name);
        self.accel(accel).machines.iter().find(|m| m.name == canon)
    }

    /// Whether the machine (name or alias) exists for the accelerator.
    pub fn is_machine_supported(&self, accel: Accel, name: &str) -> bool {
        self.machine(accel, name).is_some()
    }

    /// A CPU model by name.
    pub fn cpu_model(&self, accel: Accel, name: &str) -> Option<&CpuModel> {
        self.accel(accel).cpu_models.iter().find(|c| c.name == name)
    }

    /// The CPU model name a machine uses by default: its `defaultCPU` QOM type
    /// resolved through the CPU model list (`virQEMUCapsGetMachineDefaultCPU`).
    pub fn machine_default_cpu_model(&self, accel: Accel, machine: &str) -> Option<&str> {
        let typename = self.machine(accel, machine)?.default_cpu.as_deref()?;
        self.accel(accel)
            .cpu_models
            .iter()
            .find(|c| c.typename.as_deref() == Some(typename))
            .map(|c| c.name.as_str())
    }

    /// Host CPU expansion for an accelerator.
    pub fn host_cpu(&self, accel: Accel) -> Option<&HostCpuInfo> {
        self.accel(accel).host_cpu.as_ref()
    }

    /// Whether the architecture is x86 (`i686` or `x86_64`).
    pub fn is_x86(&self) -> bool {
        matches!(self.arch.as_str(), "i686" | "x86_64")
    }

    /// Whether a guest architecture can be served by this binary
    /// (`virQEMUCapsIsArchSupported`: x86_64 also runs i686, aarch64 armv7l,
    /// armv7l armv6l, ppc64 ppc64le).
    pub fn is_arch_supported(&self, arch: &str) -> bool {
        arch == self.arch
            || matches!(
                (self.arch.as_str(), arch),
                ("x86_64", "i686")
                    | ("aarch64", "armv7l")
                    | ("armv7l", "armv6l")
                    | ("ppc64", "ppc64le")
            )
    }

    /// Replaces every aliased machine by an unaliased copy under the alias's
    /// name, as libvirt's test harness does for its "latest" capabilities
    /// (`virQEMUCapsStripMachineAliases`): `pc` then appears as its own
    /// machine with the properties of `pc-i440fx-X`.
    pub fn strip_machine_aliases(&mut self) {
        for accel in Accel::ALL {
            let machines = &mut self.accel_mut(accel).machines;
            let mut added = Vec::new();
            for m in machines.iter_mut() {
                if let Some(alias) = m.alias.take() {
                    let mut copy = m.clone();
                    copy.name = alias;
                    added.push(copy);
                }
            }
            machines.extend(added);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QemuCaps {
        let mut c = QemuCaps::new("/usr/bin/qemu-system-x86_64");
        c.arch = "x86_64".into();
        c.version = 7_002_050;
        c.set(Flag::Kvm);
        c.kvm.machines = vec![
            MachineType {
                name: "pc-i440fx-8.0".into(),
                alias: Some("pc".into()),
                default: true,
                default_cpu: Some("qemu64-x86_64-cpu".into()),
                max_cpus: 255,
                ..Default::default()
            },
            MachineType {
                name: "pc-q35-8.0".into(),
                alias: Some("q35".into()),
                max_cpus: 288,
                ..Default::default()
            },
        ];
        c.kvm.cpu_models = vec![CpuModel {
            name: "qemu64".into(),
            typename: Some("qemu64-x86_64-cpu".into()),
            usable: CpuUsable::Yes,
            ..Default::default()
        }];
        c
    }

    #[test]
    fn machine_lookup_resolves_aliases() {
        let c = sample();
        assert_eq!(c.canonical_machine(Accel::Kvm, "q35"), "pc-q35-8.0");
        assert_eq!(c.canonical_machine(Accel::Kvm, "other"), "other");
        assert_eq!(c.machine(Accel::Kvm, "pc").unwrap().max_cpus, 255);
        assert!(c.machine(Accel::Tcg, "pc").is_none());
        assert_eq!(c.default_machine(Accel::Kvm).unwrap().name, "pc-i440fx-8.0");
    }

    #[test]
    fn default_cpu_model_resolves_through_typename() {
        let c = sample();
        assert_eq!(
            c.machine_default_cpu_model(Accel::Kvm, "pc"),
            Some("qemu64")
        );
        assert_eq!(c.machine_default_cpu_model(Accel::Kvm, "q35"), None);
    }

    #[test]
    fn version_triple_splits_the_number() {
        assert_eq!(sample().version_triple(), (7, 2, 50));
    }

    #[test]
    fn strip_aliases_adds_unaliased_copies() {
        let mut c = sample();
        c.strip_machine_aliases();
        let names: Vec<_> = c.kvm.machines.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["pc-i440fx-8.0", "pc-q35-8.0", "pc", "q35"]);
        assert!(c.kvm.machines.iter().all(|m| m.alias.is_none()));
        assert_eq!(c.machine(Accel::Kvm, "q35").unwrap().max_cpus, 288);
    }
}
