//! The domain definition and its top-level sections (everything outside
//! `<devices>`), with parsing from and formatting to [`Element`] trees.

use crate::common::{
    format_pretty_bytes, size_to_kib, take_enum, take_enum_req, take_i64, take_u32, take_u64,
    CpuSet, OnOff, StrEnum, Uuid, YesNo,
};
use crate::devices::Devices;
use crate::error::{Error, Result};
use crate::qemu_ns::QemuNamespace;
use crate::str_enum;
use crate::xml::Element;

str_enum! {
    /// `<domain type=...>`: the hypervisor/accelerator.
    pub enum DomainType {
        Qemu = "qemu", Kqemu = "kqemu", Kvm = "kvm", Xen = "xen", Lxc = "lxc",
        Uml = "uml", OpenVz = "openvz", Test = "test", Vmware = "vmware",
        Hyperv = "hyperv", Vbox = "vbox", Phyp = "phyp", Parallels = "parallels",
        Bhyve = "bhyve", Vz = "vz", Hvf = "hvf",
    }
}

str_enum! {
    /// `<on_poweroff>`/`<on_reboot>`/`<on_crash>` actions.
    pub enum LifecycleAction {
        Destroy = "destroy", Restart = "restart", Rename = "rename-restart",
        Preserve = "preserve", CoredumpDestroy = "coredump-destroy",
        CoredumpRestart = "coredump-restart",
    }
}

str_enum! {
    /// `<on_lockfailure>` actions.
    pub enum LockFailureAction { Poweroff = "poweroff", Restart = "restart", Pause = "pause", Ignore = "ignore" }
}

str_enum! {
    /// `<vcpu placement=>`.
    pub enum Placement { Static = "static", Auto = "auto" }
}

/// `<memory>`, `<currentMemory>`, `<maxMemory>` (all in KiB).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memory {
    /// `<memory>`: initial/total memory in KiB.
    pub total_kib: u64,
    /// `<memory dumpCore=>`.
    pub dump_core: Option<OnOff>,
    /// `<currentMemory>` in KiB (balloon target), `None` before expansion.
    pub current_kib: Option<u64>,
    /// `<maxMemory slots=>`: hotplug limit in KiB and slots.
    pub max_kib: Option<u64>,
    /// Memory slots for hotplug.
    pub slots: Option<u32>,
}

/// `<hugepages><page>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugePage {
    /// Page size in KiB (0 = default size).
    pub size_kib: u64,
    /// Guest NUMA nodes this size applies to.
    pub nodeset: Option<CpuSet>,
}

str_enum! {
    /// `<memoryBacking><source type=>`.
    pub enum MemorySourceType { Anonymous = "anonymous", File = "file", Memfd = "memfd" }
}

str_enum! {
    /// Memory access mode (`shared`/`private`).
    pub enum MemoryAccess { Shared = "shared", Private = "private" }
}

str_enum! {
    /// `<allocation mode=>`.
    pub enum MemoryAllocation { Immediate = "immediate", Ondemand = "ondemand" }
}

/// `<memoryBacking>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryBacking {
    /// `<hugepages>` present; empty list means default page size.
    pub hugepages: Option<Vec<HugePage>>,
    /// `<nosharepages/>`.
    pub nosharepages: bool,
    /// `<locked/>`.
    pub locked: bool,
    /// `<source type=>`.
    pub source: Option<MemorySourceType>,
    /// `<access mode=>`.
    pub access: Option<MemoryAccess>,
    /// `<allocation mode=>`.
    pub allocation: Option<MemoryAllocation>,
    /// `<allocation threads=>`.
    pub allocation_threads: Option<u32>,
    /// `<discard/>`.
    pub discard: bool,
}

/// `<vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcpu {
    /// Maximum vCPUs.
    pub max: u32,
    /// Online vCPUs at boot (`current=`), `None` = all.
    pub current: Option<u32>,
    /// Placement.
    pub placement: Option<Placement>,
    /// Host CPUs the vCPUs may run on.
    pub cpuset: Option<CpuSet>,
}

impl Default for Vcpu {
    fn default() -> Self {
        Vcpu {
            max: 1,
            current: None,
            placement: None,
            cpuset: None,
        }
    }
}

str_enum! {
    /// `<os firmware=>`.
    pub enum Firmware { Bios = "bios", Efi = "efi" }
}

str_enum! {
    /// `<loader type=>`.
    pub enum LoaderType { Rom = "rom", Pflash = "pflash" }
}

str_enum! {
    /// `<boot dev=>`.
    pub enum BootDev { Fd = "fd", Cdrom = "cdrom", Hd = "hd", Network = "network" }
}

str_enum! {
    /// `<smbios mode=>`.
    pub enum SmbiosMode { Emulate = "emulate", Host = "host", Sysinfo = "sysinfo" }
}

/// `<loader>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    /// Path of the firmware image.
    pub path: Option<String>,
    /// `readonly=`.
    pub readonly: Option<YesNo>,
    /// `secure=`.
    pub secure: Option<YesNo>,
    /// `type=`.
    pub kind: Option<LoaderType>,
    /// `stateless=`.
    pub stateless: Option<YesNo>,
    /// Attributes not typed yet (e.g. `format`).
    pub residue: Element,
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            path: Default::default(),
            readonly: Default::default(),
            secure: Default::default(),
            kind: Default::default(),
            stateless: Default::default(),
            residue: Element::new("loader"),
        }
    }
}

/// `<nvram>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nvram {
    /// Path of the varstore (old-style text content).
    pub path: Option<String>,
    /// `template=`.
    pub template: Option<String>,
    /// New-style `type=` + `<source>` and other untyped parts.
    pub residue: Element,
}

impl Default for Nvram {
    fn default() -> Self {
        Nvram {
            path: Default::default(),
            template: Default::default(),
            residue: Element::new("nvram"),
        }
    }
}

/// `<firmware><feature enabled= name=>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareFeature {
    /// Feature name (`secure-boot`, `enrolled-keys`).
    pub name: String,
    /// Whether it must be enabled.
    pub enabled: YesNo,
}

/// Names of `<firmware><feature>`, in libvirt's (output) order.
pub const FIRMWARE_FEATURES: &[&str] = &["enrolled-keys", "secure-boot"];

/// `<os>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Os {
    /// `<type>` text (`hvm`).
    pub os_type: String,
    /// `<type arch=>`.
    pub arch: Option<String>,
    /// `<type machine=>`.
    pub machine: Option<String>,
    /// `<os firmware=>` (autoselection).
    pub firmware: Option<Firmware>,
    /// `<firmware><feature>` requirements.
    pub firmware_features: Vec<FirmwareFeature>,
    /// `<loader>`.
    pub loader: Option<Loader>,
    /// `<nvram>`.
    pub nvram: Option<Nvram>,
    /// `<kernel>`.
    pub kernel: Option<String>,
    /// `<initrd>`.
    pub initrd: Option<String>,
    /// `<cmdline>`.
    pub cmdline: Option<String>,
    /// `<dtb>`.
    pub dtb: Option<String>,
    /// `<root>`.
    pub root: Option<String>,
    /// `<acpi><table type='slic'>`.
    pub acpi_tables: Vec<String>,
    /// `<boot dev=>` in order.
    pub boot: Vec<BootDev>,
    /// `<bootmenu enable=>`.
    pub bootmenu: Option<YesNo>,
    /// `<bootmenu timeout=>` (ms).
    pub bootmenu_timeout: Option<u32>,
    /// `<bios useserial=>`.
    pub bios_useserial: Option<YesNo>,
    /// `<bios rebootTimeout=>`.
    pub bios_reboot_timeout: Option<i64>,
    /// `<smbios mode=>`.
    pub smbios: Option<SmbiosMode>,
    /// Untyped children (`init*` for containers, ...).
    pub residue: Element,
}

impl Default for Os {
    fn default() -> Self {
        Os {
            os_type: Default::default(),
            arch: Default::default(),
            machine: Default::default(),
            firmware: Default::default(),
            firmware_features: Default::default(),
            loader: Default::default(),
            nvram: Default::default(),
            kernel: Default::default(),
            initrd: Default::default(),
            cmdline: Default::default(),
            dtb: Default::default(),
            root: Default::default(),
            acpi_tables: Default::default(),
            boot: Default::default(),
            bootmenu: Default::default(),
            bootmenu_timeout: Default::default(),
            bios_useserial: Default::default(),
            bios_reboot_timeout: Default::default(),
            smbios: Default::default(),
            residue: Element::new("os"),
        }
    }
}

/// State-only features (`<hap state=>` etc.): `None` = absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Features {
    /// `<acpi/>`.
    pub acpi: bool,
    /// `<apic/>` present, with `eoi=`.
    pub apic: Option<Option<OnOff>>,
    /// `<pae/>`.
    pub pae: bool,
    /// `<hap state=>`.
    pub hap: Option<OnOff>,
    /// `<viridian/>`.
    pub viridian: bool,
    /// `<privnet/>`.
    pub privnet: bool,
    /// `<hyperv>` (kept as written; not typed yet).
    pub hyperv: Option<Element>,
    /// `<kvm>` (kept as written).
    pub kvm: Option<Element>,
    /// `<pvspinlock state=>`.
    pub pvspinlock: Option<OnOff>,
    /// `<capabilities>` (kept as written).
    pub capabilities: Option<Element>,
    /// `<pmu state=>`.
    pub pmu: Option<OnOff>,
    /// `<vmport state=>`.
    pub vmport: Option<OnOff>,
    /// `<gic>` (kept as written).
    pub gic: Option<Element>,
    /// `<smm state=>`.
    pub smm: Option<OnOff>,
    /// `<smm><tseg>` size in bytes.
    pub smm_tseg_bytes: Option<u64>,
    /// `<ioapic driver=>`.
    pub ioapic: Option<IoapicDriver>,
    /// `<hpt>` (kept as written).
    pub hpt: Option<Element>,
    /// `<vmcoreinfo state=>`.
    pub vmcoreinfo: Option<OnOff>,
    /// `<htm state=>`.
    pub htm: Option<OnOff>,
    /// `<nested-hv state=>`.
    pub nested_hv: Option<OnOff>,
    /// `<msrs unknown=>` (kept as written).
    pub msrs: Option<Element>,
    /// `<ccf-assist state=>`.
    pub ccf_assist: Option<OnOff>,
    /// `<xen>` (kept as written).
    pub xen: Option<Element>,
    /// `<cfpc>`, `<sbbc>`, `<ibs>` (kept as written).
    pub cfpc: Option<Element>,
    /// See `cfpc`.
    pub sbbc: Option<Element>,
    /// See `cfpc`.
    pub ibs: Option<Element>,
    /// `<tcg>` present; `<tb-cache>` in KiB.
    pub tcg: Option<Option<u64>>,
    /// `<async-teardown>` and anything else not typed.
    pub residue: Element,
}

str_enum! {
    /// `<ioapic driver=>`.
    pub enum IoapicDriver { Kvm = "kvm", Qemu = "qemu" }
}

str_enum! {
    /// `<cpu mode=>`.
    pub enum CpuMode { Custom = "custom", HostModel = "host-model", HostPassthrough = "host-passthrough", Maximum = "maximum" }
}

str_enum! {
    /// `<cpu match=>`.
    pub enum CpuMatch { Minimum = "minimum", Exact = "exact", Strict = "strict" }
}

str_enum! {
    /// `<cpu check=>`.
    pub enum CpuCheck { None = "none", Partial = "partial", Full = "full" }
}

str_enum! {
    /// `<model fallback=>`.
    pub enum CpuFallback { Allow = "allow", Forbid = "forbid" }
}

str_enum! {
    /// `<feature policy=>`.
    pub enum CpuFeaturePolicy { Force = "force", Require = "require", Optional = "optional", Disable = "disable", Forbid = "forbid" }
}

/// `<cpu><topology>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    /// Sockets.
    pub sockets: u32,
    /// Dies per socket.
    pub dies: u32,
    /// Cores per die.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

/// `<cpu><feature>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFeature {
    /// Policy (`require` when absent in guest CPUs).
    pub policy: CpuFeaturePolicy,
    /// Feature name.
    pub name: String,
}

/// `<numa><cell>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaCell {
    /// Cell id.
    pub id: u32,
    /// vCPUs of the cell (`None` = memory-only node).
    pub cpus: Option<CpuSet>,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// `memAccess=`.
    pub mem_access: Option<MemoryAccess>,
    /// `discard=`.
    pub discard: Option<YesNo>,
    /// `<distances>`, `<cache>` (kept as written).
    pub residue: Element,
}

/// `<cpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// `mode=` (`None` when the element only carries topology/numa).
    pub mode: Option<CpuMode>,
    /// `match=`.
    pub match_: Option<CpuMatch>,
    /// `check=`.
    pub check: Option<CpuCheck>,
    /// `migratable=`.
    pub migratable: Option<OnOff>,
    /// `<model>` name.
    pub model: Option<String>,
    /// `<model fallback=>`.
    pub fallback: Option<CpuFallback>,
    /// `<model vendor_id=>`.
    pub vendor_id: Option<String>,
    /// `<vendor>`.
    pub vendor: Option<String>,
    /// `<topology>`.
    pub topology: Option<CpuTopology>,
    /// `<cache>` (kept as written).
    pub cache: Option<Element>,
    /// `<maxphysaddr>` (kept as written).
    pub maxphysaddr: Option<Element>,
    /// `<feature>`s in order.
    pub features: Vec<CpuFeature>,
    /// `<numa>` cells.
    pub numa: Vec<NumaCell>,
    /// `<numa><interconnects>` (kept as written).
    pub numa_interconnects: Option<Element>,
    /// Untyped parts.
    pub residue: Element,
}

impl Default for Cpu {
    fn default() -> Self {
        Cpu {
            mode: Default::default(),
            match_: Default::default(),
            check: Default::default(),
            migratable: Default::default(),
            model: Default::default(),
            fallback: Default::default(),
            vendor_id: Default::default(),
            vendor: Default::default(),
            topology: Default::default(),
            cache: Default::default(),
            maxphysaddr: Default::default(),
            features: Default::default(),
            numa: Default::default(),
            numa_interconnects: Default::default(),
            residue: Element::new("cpu"),
        }
    }
}

str_enum! {
    /// `<clock offset=>`.
    pub enum ClockOffset { Utc = "utc", Localtime = "localtime", Variable = "variable", Timezone = "timezone", Absolute = "absolute" }
}

str_enum! {
    /// `<timer name=>`.
    pub enum TimerName { Platform = "platform", Pit = "pit", Rtc = "rtc", Hpet = "hpet", Tsc = "tsc", Kvmclock = "kvmclock", HypervClock = "hypervclock", ArmvTimer = "armvtimer" }
}

str_enum! {
    /// `<timer tickpolicy=>`.
    pub enum TickPolicy { Delay = "delay", Catchup = "catchup", Merge = "merge", Discard = "discard" }
}

str_enum! {
    /// `<timer track=>`.
    pub enum TimerTrack { Boot = "boot", Guest = "guest", Wall = "wall", Realtime = "realtime" }
}

/// `<clock><timer>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Timer name.
    pub name: TimerName,
    /// `present=`.
    pub present: Option<YesNo>,
    /// `tickpolicy=`.
    pub tickpolicy: Option<TickPolicy>,
    /// `track=`.
    pub track: Option<TimerTrack>,
    /// `frequency=` (tsc).
    pub frequency: Option<u64>,
    /// `mode=` (tsc) and `<catchup>` (kept as written).
    pub residue: Element,
}

/// `<clock>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    /// `offset=`.
    pub offset: ClockOffset,
    /// `adjustment=` (seconds, for `variable`), or `reset` flag for utc/localtime.
    pub adjustment: Option<i64>,
    /// `adjustment='reset'` on utc/localtime.
    pub adjustment_reset: bool,
    /// `basis=` for `variable` (`utc` or `localtime`).
    pub basis: Option<String>,
    /// `timezone=`.
    pub timezone: Option<String>,
    /// `start=` for `absolute` (Unix time).
    pub start: Option<u64>,
    /// Timers.
    pub timers: Vec<Timer>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset: ClockOffset::Utc,
            adjustment: None,
            adjustment_reset: false,
            basis: None,
            timezone: None,
            start: None,
            timers: Vec::new(),
        }
    }
}

/// `<pm>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pm {
    /// `<suspend-to-mem enabled=>`.
    pub suspend_to_mem: Option<YesNo>,
    /// `<suspend-to-disk enabled=>`.
    pub suspend_to_disk: Option<YesNo>,
}

/// `<genid>`: present with an optional value (generated when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Genid {
    /// The generation id, `None` until generated.
    pub value: Option<Uuid>,
}

/// A libvirt domain definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Domain {
    /// `type=`.
    pub kind: Option<DomainType>,
    /// Runtime id (`id=`), only in live XML.
    pub id: Option<i32>,
    /// `<name>`.
    pub name: String,
    /// `<uuid>` (`None` until expansion generates one).
    pub uuid: Option<Uuid>,
    /// `<genid>`.
    pub genid: Option<Genid>,
    /// `<title>`.
    pub title: Option<String>,
    /// `<description>`.
    pub description: Option<String>,
    /// `<metadata>` (opaque, kept as written).
    pub metadata: Option<Element>,
    /// Memory sizes.
    pub memory: Memory,
    /// `<blkiotune>` (not typed yet).
    pub blkiotune: Option<Element>,
    /// `<memtune>` (not typed yet).
    pub memtune: Option<Element>,
    /// `<memoryBacking>`.
    pub memory_backing: Option<MemoryBacking>,
    /// `<vcpu>`.
    pub vcpu: Vcpu,
    /// `<vcpus>` (per-vCPU state, not typed yet).
    pub vcpus: Option<Element>,
    /// `<iothreads>` count.
    pub iothreads: Option<u32>,
    /// `<iothreadids>` (not typed yet).
    pub iothreadids: Option<Element>,
    /// `<defaultiothread>` (not typed yet).
    pub defaultiothread: Option<Element>,
    /// `<cputune>` (not typed yet).
    pub cputune: Option<Element>,
    /// `<numatune>` (not typed yet).
    pub numatune: Option<Element>,
    /// `<resource>` (not typed yet).
    pub resource: Option<Element>,
    /// `<sysinfo>`s (not typed yet).
    pub sysinfo: Vec<Element>,
    /// `<bootloader>`.
    pub bootloader: Option<String>,
    /// `<bootloader_args>`.
    pub bootloader_args: Option<String>,
    /// `<os>`.
    pub os: Os,
    /// `<idmap>` (not typed yet).
    pub idmap: Option<Element>,
    /// `<features>` (`None` = element absent).
    pub features: Option<Features>,
    /// `<cpu>`.
    pub cpu: Option<Cpu>,
    /// `<clock>`.
    pub clock: Clock,
    /// `<on_poweroff>`.
    pub on_poweroff: Option<LifecycleAction>,
    /// `<on_reboot>`.
    pub on_reboot: Option<LifecycleAction>,
    /// `<on_crash>`.
    pub on_crash: Option<LifecycleAction>,
    /// `<on_lockfailure>`.
    pub on_lockfailure: Option<LockFailureAction>,
    /// `<pm>`.
    pub pm: Option<Pm>,
    /// `<perf>` (not typed yet).
    pub perf: Option<Element>,
    /// `<devices>`.
    pub devices: Devices,
    /// `<seclabel>`s (not typed yet).
    pub seclabels: Vec<Element>,
    /// `<keywrap>` (not typed yet).
    pub keywrap: Option<Element>,
    /// `<launchSecurity>` (not typed yet).
    pub launch_security: Option<Element>,
    /// `qemu:` namespace data.
    pub qemu: QemuNamespace,
    /// Elements and attributes of `<domain>` the model does not type.
    pub residue: Element,
}

/// How a document is read (libvirt's VIR_DOMAIN_DEF_PARSE_* subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParseOptions {
    /// Parse as an inactive (persistent) definition: drops the runtime `id`
    /// and aliases that are not user aliases.
    pub inactive: bool,
}

/// How a definition is written (libvirt's VIR_DOMAIN_DEF_FORMAT_* subset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatOptions {
    /// Inactive form: no `id`, no runtime-only state.
    pub inactive: bool,
    /// Include secrets (passwords).
    pub secure: bool,
    /// Migratable form (drops default devices libvirt would re-add).
    pub migratable: bool,
}

impl FormatOptions {
    /// `VIR_DOMAIN_DEF_FORMAT_SECURE | VIR_DOMAIN_DEF_FORMAT_INACTIVE`, the form
    /// `virsh dumpxml --inactive --security-info` and the conformance kit use.
    pub fn inactive_secure() -> Self {
        FormatOptions {
            inactive: true,
            secure: true,
            migratable: false,
        }
    }

    /// The live form (`id`, aliases, runtime state) without secrets.
    pub fn live() -> Self {
        FormatOptions::default()
    }
}

/// Order of `<domain>` children, for placing untyped ones.
const DOMAIN_ORDER: &[&str] = &[
    "name",
    "uuid",
    "genid",
    "title",
    "description",
    "metadata",
    "maxMemory",
    "memory",
    "currentMemory",
    "blkiotune",
    "memtune",
    "memoryBacking",
    "vcpu",
    "vcpus",
    "iothreads",
    "iothreadids",
    "defaultiothread",
    "cputune",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "bootloader_args",
    "os",
    "idmap",
    "features",
    "cpu",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_lockfailure",
    "pm",
    "perf",
    "devices",
    "seclabel",
    "keywrap",
    "launchSecurity",
];

const NUMA_CELL_ORDER: &[&str] = &["distances", "cache"];
const TIMER_ORDER: &[&str] = &["catchup"];

fn text_of(e: &mut Element, name: &str) -> Option<String> {
    e.take_child(name).and_then(|mut c| c.take_text())
}

fn parse_mem_elem(mut c: Element, what: &str) -> Result<u64> {
    let unit = c.take_attr("unit");
    let v = c.take_text().unwrap_or_default();
    size_to_kib(&v, unit.as_deref(), "KiB").ok_or_else(|| {
        Error::xml(format!(
            "Invalid value '{v}' for element or attribute '{what}'"
        ))
    })
}

impl Domain {
    /// Parses `<domain>` from its element.
    pub fn from_element(e: Element, opts: ParseOptions) -> Result<Self> {
        Self::from_element_for(e, opts, true)
    }

    /// Parses `<domain>`; `new_definition` is libvirt's
    /// `VIR_DOMAIN_DEF_PARSE_ABI_UPDATE`: set when a definition is created
    /// (define/create), clear when an existing guest is loaded (saved
    /// configuration, migration), where compatibility rules apply.
    pub fn from_element_for(
        mut e: Element,
        opts: ParseOptions,
        new_definition: bool,
    ) -> Result<Self> {
        if e.name != "domain" || e.ns.is_some() {
            return Err(Error::ParseDomainRoot(e.name));
        }
        // libvirt's own wording for the root's type (not the generic
        // attribute message): missing is an internal error, unknown is
        // an unsupported configuration.
        let virt_type = e
            .take_attr("type")
            .ok_or_else(|| Error::Internal("missing domain type attribute".into()))?;
        let kind = StrEnum::from_name(&virt_type)
            .ok_or_else(|| Error::Unsupported(format!("invalid domain type {virt_type}")))?;
        let mut d = Domain {
            kind: Some(kind),
            ..Default::default()
        };
        let id = take_i64(&mut e, "id")?;
        if !opts.inactive {
            d.id = id.and_then(|v| i32::try_from(v).ok()).filter(|v| *v >= 0);
        }
        d.qemu = QemuNamespace::take(&mut e)?;
        d.name = text_of(&mut e, "name")
            .ok_or_else(|| Error::Plain("missing name information".into()))?;
        if let Some(u) = text_of(&mut e, "uuid") {
            d.uuid = Some(Uuid::parse(&u).ok_or_else(|| Error::xml("malformed uuid element"))?);
        }
        if let Some(mut g) = e.take_child("genid") {
            let value = match g.take_text() {
                Some(t) => {
                    Some(Uuid::parse(&t).ok_or_else(|| Error::xml("malformed genid element"))?)
                }
                None => None,
            };
            d.genid = Some(Genid { value });
        }
        d.title = text_of(&mut e, "title");
        d.description = text_of(&mut e, "description");
        d.metadata = e.take_child("metadata");
        if let Some(mut m) = e.take_child("maxMemory") {
            d.memory.slots = take_u32(&mut m, "slots")?;
            d.memory.max_kib = Some(parse_mem_elem(m, "maxMemory")?);
        }
        if let Some(mut m) = e.take_child("memory") {
            d.memory.dump_core = take_enum(&mut m, "dumpCore")?;
            d.memory.total_kib = parse_mem_elem(m, "memory")?;
        }
        if let Some(m) = e.take_child("currentMemory") {
            d.memory.current_kib = Some(parse_mem_elem(m, "currentMemory")?);
        }
        d.blkiotune = e.take_child("blkiotune");
        d.memtune = e.take_child("memtune");
        if let Some(mb) = e.take_child("memoryBacking") {
            d.memory_backing = Some(parse_memory_backing(mb)?);
        }
        if let Some(mut v) = e.take_child("vcpu") {
            let placement = take_enum(&mut v, "placement")?;
            let cpuset = match v.take_attr("cpuset") {
                Some(s) => Some(
                    CpuSet::parse(&s)
                        .ok_or_else(|| Error::xml(format!("Invalid value of 'cpuset': {s}")))?,
                ),
                None => None,
            };
            let current = take_u32(&mut v, "current")?;
            let max = match v.take_text() {
                Some(t) => t
                    .parse::<u32>()
                    .map_err(|_| Error::xml("maximum vcpus count must be an integer"))?,
                None => 1,
            };
            d.vcpu = Vcpu {
                max,
                current,
                // libvirt's default placement is static
                placement: Some(placement.unwrap_or(Placement::Static)),
                cpuset,
            };
        } else {
            d.vcpu.placement = Some(Placement::Static);
        }
        d.vcpus = e.take_child("vcpus");
        if let Some(mut t) = e.take_child("iothreads") {
            let v = t.take_text().unwrap_or_default();
            d.iothreads = Some(
                v.parse::<u32>()
                    .map_err(|_| Error::xml(format!("invalid iothreads count '{v}'")))?,
            );
        }
        d.iothreadids = e.take_child("iothreadids");
        d.defaultiothread = e.take_child("defaultiothread");
        d.cputune = e.take_child("cputune");
        d.numatune = e.take_child("numatune");
        // automatic memory placement makes vCPU placement automatic too,
        // unless something pins CPUs explicitly (libvirt's parser does this)
        let memory_auto = d
            .numatune
            .as_ref()
            .and_then(|n| n.find("memory"))
            .and_then(|m| m.get_attr("placement"))
            == Some("auto");
        let pinned = d.cputune.as_ref().is_some_and(|c| {
            c.find("vcpupin").is_some()
                || c.find("emulatorpin").is_some()
                || c.find("iothreadpin").is_some()
        });
        if memory_auto && d.vcpu.cpuset.is_none() && !pinned {
            d.vcpu.placement = Some(Placement::Auto);
        }
        d.resource = e.take_child("resource");
        d.sysinfo = e.take_children("sysinfo");
        d.bootloader = text_of(&mut e, "bootloader");
        d.bootloader_args = text_of(&mut e, "bootloader_args");
        match e.take_child("os") {
            Some(os) => d.os = parse_os(os, new_definition)?,
            None => {
                return Err(Error::xml("an os <type> must be specified"));
            }
        }
        d.idmap = e.take_child("idmap");
        if let Some(f) = e.take_child("features") {
            d.features = Some(parse_features(f)?);
        }
        if let Some(c) = e.take_child("cpu") {
            d.cpu = Some(parse_cpu(c)?);
        }
        if let Some(c) = e.take_child("clock") {
            d.clock = parse_clock(c)?;
        }
        let action = |e: &mut Element, n: &str| -> Result<Option<LifecycleAction>> {
            match text_of(e, n) {
                None => Ok(None),
                Some(t) => LifecycleAction::from_name(&t)
                    .map(Some)
                    .ok_or_else(|| Error::xml(format!("invalid {n} value: '{t}'"))),
            }
        };
        d.on_poweroff = Some(action(&mut e, "on_poweroff")?.unwrap_or(LifecycleAction::Destroy));
        d.on_reboot = Some(action(&mut e, "on_reboot")?.unwrap_or(LifecycleAction::Restart));
        d.on_crash = Some(action(&mut e, "on_crash")?.unwrap_or(LifecycleAction::Destroy));
        if let Some(t) = text_of(&mut e, "on_lockfailure") {
            d.on_lockfailure = Some(
                LockFailureAction::from_name(&t)
                    .ok_or_else(|| Error::xml(format!("invalid on_lockfailure value: '{t}'")))?,
            );
        }
        if let Some(mut p) = e.take_child("pm") {
            let mut pm = Pm::default();
            if let Some(mut s) = p.take_child("suspend-to-mem") {
                pm.suspend_to_mem = take_enum(&mut s, "enabled")?;
            }
            if let Some(mut s) = p.take_child("suspend-to-disk") {
                pm.suspend_to_disk = take_enum(&mut s, "enabled")?;
            }
            d.pm = Some(pm);
        }
        d.perf = e.take_child("perf");
        if let Some(dev) = e.take_child("devices") {
            d.devices = Devices::parse(dev, opts)?;
        }
        d.seclabels = e.take_children("seclabel");
        d.keywrap = e.take_child("keywrap");
        d.launch_security = e.take_child("launchSecurity");
        // namespace declarations are regenerated on output
        e.ns_decls.clear();
        e.children.retain(|c| c.ns.is_none());
        d.residue = e.canonical(DOMAIN_ORDER);
        Ok(d)
    }

    /// Formats the definition as a `<domain>` element.
    pub fn to_element(&self, opts: &FormatOptions) -> Element {
        let mut e = Element::new("domain");
        if let Some(k) = self.kind {
            e.push_attr("type", k);
        }
        if !opts.inactive {
            if let Some(id) = self.id {
                e.push_attr("id", id);
            }
        }
        if self.qemu.needs_namespace() {
            e.ns_decls
                .push((Some("qemu".into()), crate::xml::QEMU_NS.into()));
        }
        let c = &mut e.children;
        c.push(Element::new("name").text(&self.name));
        if let Some(u) = &self.uuid {
            c.push(Element::new("uuid").text(u));
        }
        if let Some(g) = &self.genid {
            let mut ge = Element::new("genid");
            if let Some(v) = g.value {
                ge.text = Some(v.to_string());
            }
            c.push(ge);
        }
        if let Some(t) = &self.title {
            c.push(Element::new("title").text(t));
        }
        if let Some(t) = &self.description {
            c.push(Element::new("description").text(t));
        }
        if let Some(m) = &self.metadata {
            c.push(m.clone());
        }
        if let Some(max) = self.memory.max_kib {
            if self.memory.slots.unwrap_or(0) > 0 || max > 0 {
                c.push(
                    Element::new("maxMemory")
                        .attr_opt("slots", self.memory.slots)
                        .attr("unit", "KiB")
                        .text(max),
                );
            }
        }
        c.push(
            Element::new("memory")
                .attr_opt("dumpCore", self.memory.dump_core)
                .attr("unit", "KiB")
                .text(self.memory.total_kib),
        );
        // unset until expansion (libvirt's post-parse) fills it in
        if let Some(cur) = self.memory.current_kib {
            c.push(Element::new("currentMemory").attr("unit", "KiB").text(cur));
        }
        c.extend(self.blkiotune.iter().cloned());
        c.extend(self.memtune.iter().cloned());
        if let Some(mb) = &self.memory_backing {
            if let Some(x) = format_memory_backing(mb) {
                c.push(x);
            }
        }
        let mut v = Element::new("vcpu").attr(
            "placement",
            self.vcpu.placement.unwrap_or(Placement::Static),
        );
        if let Some(cs) = &self.vcpu.cpuset {
            v.push_attr("cpuset", cs);
        }
        if let Some(cur) = self.vcpu.current.filter(|c| *c != self.vcpu.max) {
            v.push_attr("current", cur);
        }
        c.push(v.text(self.vcpu.max));
        c.extend(self.vcpus.iter().cloned());
        if let Some(n) = self.iothreads {
            c.push(Element::new("iothreads").text(n));
        }
        c.extend(self.iothreadids.iter().cloned());
        c.extend(self.defaultiothread.iter().cloned());
        c.extend(self.cputune.iter().cloned());
        c.extend(self.numatune.iter().cloned());
        c.extend(self.resource.iter().cloned());
        c.extend(self.sysinfo.iter().cloned());
        if let Some(b) = &self.bootloader {
            c.push(Element::new("bootloader").text(b));
        }
        if let Some(b) = &self.bootloader_args {
            c.push(Element::new("bootloader_args").text(b));
        }
        c.push(format_os(&self.os));
        c.extend(self.idmap.iter().cloned());
        if let Some(f) = &self.features {
            c.push(format_features(f));
        }
        if let Some(cpu) = &self.cpu {
            if let Some(x) = format_cpu(cpu) {
                c.push(x);
            }
        }
        c.push(format_clock(&self.clock));
        let push_action = |c: &mut Vec<Element>, n: &str, a: Option<&dyn std::fmt::Display>| {
            if let Some(a) = a {
                c.push(Element::new(n).text(a));
            }
        };
        push_action(
            c,
            "on_poweroff",
            self.on_poweroff
                .as_ref()
                .map(|a| a as &dyn std::fmt::Display),
        );
        push_action(
            c,
            "on_reboot",
            self.on_reboot.as_ref().map(|a| a as &dyn std::fmt::Display),
        );
        push_action(
            c,
            "on_crash",
            self.on_crash.as_ref().map(|a| a as &dyn std::fmt::Display),
        );
        push_action(
            c,
            "on_lockfailure",
            self.on_lockfailure
                .as_ref()
                .map(|a| a as &dyn std::fmt::Display),
        );
        if let Some(pm) = &self.pm {
            if pm.suspend_to_mem.is_some() || pm.suspend_to_disk.is_some() {
                c.push(
                    Element::new("pm")
                        .child_opt(
                            pm.suspend_to_mem
                                .map(|v| Element::new("suspend-to-mem").attr("enabled", v)),
                        )
                        .child_opt(
                            pm.suspend_to_disk
                                .map(|v| Element::new("suspend-to-disk").attr("enabled", v)),
                        ),
                );
            }
        }
        c.extend(self.perf.iter().cloned());
        c.push(self.devices.to_element(opts, self.os.os_type == "hvm"));
        c.extend(self.seclabels.iter().cloned());
        c.extend(self.keywrap.iter().cloned());
        c.extend(self.launch_security.iter().cloned());
        e.merge_residue(&self.residue, DOMAIN_ORDER);
        e.children.extend(self.qemu.format());
        e
    }
}

fn parse_memory_backing(mut mb: Element) -> Result<MemoryBacking> {
    let mut m = MemoryBacking::default();
    if let Some(mut h) = mb.take_child("hugepages") {
        let mut pages = Vec::new();
        for mut p in h.take_children("page") {
            let unit = p.take_attr("unit");
            let size = p
                .take_attr("size")
                .ok_or_else(|| Error::xml("hugepage size can't be zero"))?;
            let size_kib = size_to_kib(&size, unit.as_deref(), "KiB")
                .ok_or_else(|| Error::xml(format!("unable to parse size attribute '{size}'")))?;
            if size_kib == 0 {
                return Err(Error::xml("hugepage size can't be zero"));
            }
            let nodeset = match p.take_attr("nodeset") {
                Some(s) => Some(
                    CpuSet::parse(&s)
                        .ok_or_else(|| Error::xml(format!("Invalid value of 'nodeset': {s}")))?,
                ),
                None => None,
            };
            pages.push(HugePage { size_kib, nodeset });
        }
        m.hugepages = Some(pages);
    }
    m.nosharepages = mb.take_child("nosharepages").is_some();
    m.locked = mb.take_child("locked").is_some();
    if let Some(mut s) = mb.take_child("source") {
        m.source = take_enum(&mut s, "type")?;
    }
    if let Some(mut s) = mb.take_child("access") {
        m.access = take_enum(&mut s, "mode")?;
    }
    if let Some(mut s) = mb.take_child("allocation") {
        m.allocation = take_enum(&mut s, "mode")?;
        m.allocation_threads = take_u32(&mut s, "threads")?;
    }
    m.discard = mb.take_child("discard").is_some();
    Ok(m)
}

fn format_memory_backing(m: &MemoryBacking) -> Option<Element> {
    let mut e = Element::new("memoryBacking");
    if let Some(pages) = &m.hugepages {
        let mut h = Element::new("hugepages");
        if !(pages.len() == 1 && pages[0].size_kib == 0) {
            for p in pages {
                h.children.push(
                    Element::new("page")
                        .attr("size", p.size_kib)
                        .attr("unit", "KiB")
                        .attr_opt("nodeset", p.nodeset.as_ref()),
                );
            }
        }
        e.children.push(h);
    }
    if m.nosharepages {
        e.children.push(Element::new("nosharepages"));
    }
    if m.locked {
        e.children.push(Element::new("locked"));
    }
    if let Some(s) = m.source {
        e.children.push(Element::new("source").attr("type", s));
    }
    if let Some(a) = m.access {
        e.children.push(Element::new("access").attr("mode", a));
    }
    if m.allocation.is_some() || m.allocation_threads.is_some() {
        e.children.push(
            Element::new("allocation")
                .attr_opt("mode", m.allocation)
                .attr_opt("threads", m.allocation_threads),
        );
    }
    if m.discard {
        e.children.push(Element::new("discard"));
    }
    if e.children.is_empty() {
        None
    } else {
        Some(e)
    }
}

fn parse_os(mut os: Element, new_definition: bool) -> Result<Os> {
    let mut o = Os {
        firmware: take_enum(&mut os, "firmware")?,
        ..Default::default()
    };
    let mut t = os
        .take_child("type")
        .ok_or_else(|| Error::xml("an os <type> must be specified"))?;
    o.arch = t.take_attr("arch");
    o.machine = t.take_attr("machine");
    o.os_type = t
        .take_text()
        .ok_or_else(|| Error::xml("an os <type> must be specified"))?;
    if let Some(mut f) = os.take_child("firmware") {
        for mut fe in f.take_children("feature") {
            let name = fe
                .take_attr("name")
                .ok_or_else(|| Error::missing("feature", "name"))?;
            if !FIRMWARE_FEATURES.contains(&name.as_str()) {
                return Err(Error::invalid("feature", "name", &name));
            }
            let enabled = take_enum_req(&mut fe, "enabled")?;
            // one value per feature, the last one wins (libvirt keeps an array)
            o.firmware_features.retain(|f| f.name != name);
            o.firmware_features.push(FirmwareFeature { name, enabled });
        }
        o.firmware_features.sort_by_key(|f| {
            FIRMWARE_FEATURES
                .iter()
                .position(|n| *n == f.name)
                .unwrap_or(usize::MAX)
        });
        // libvirt 8.6-9.1 wrote <firmware><feature> without firmware=
        // into migratable XML; an existing guest keeps its loader and the
        // features are ignored (virDomainDefParseBootFirmwareOptions)
        if o.firmware.is_none() && !new_definition {
            o.firmware_features.clear();
        }
    }
    if let Some(mut l) = os.take_child("loader") {
        o.loader = Some(Loader {
            readonly: take_enum(&mut l, "readonly")?,
            secure: take_enum(&mut l, "secure")?,
            kind: take_enum(&mut l, "type")?,
            stateless: take_enum(&mut l, "stateless")?,
            path: l.take_text(),
            residue: l,
        });
    }
    if let Some(mut n) = os.take_child("nvram") {
        let template = n.take_attr("template");
        let path = if n.children.is_empty() {
            n.take_text()
        } else {
            None
        };
        o.nvram = Some(Nvram {
            path,
            template,
            residue: n,
        });
    }
    o.kernel = text_of(&mut os, "kernel");
    o.initrd = text_of(&mut os, "initrd");
    o.cmdline = text_of(&mut os, "cmdline");
    o.dtb = text_of(&mut os, "dtb");
    o.root = text_of(&mut os, "root");
    if let Some(mut a) = os.take_child("acpi") {
        for mut t in a.take_children("table") {
            let _ = t.take_attr("type");
            if let Some(p) = t.take_text() {
                o.acpi_tables.push(p);
            }
        }
    }
    for mut b in os.take_children("boot") {
        let dev = b
            .take_attr("dev")
            .ok_or_else(|| Error::Internal("missing boot device".into()))?;
        o.boot.push(
            BootDev::from_name(&dev)
                .ok_or_else(|| Error::Internal(format!("unknown boot device '{dev}'")))?,
        );
    }
    if let Some(mut b) = os.take_child("bootmenu") {
        o.bootmenu = take_enum(&mut b, "enable")?;
        o.bootmenu_timeout = take_u32(&mut b, "timeout")?;
    }
    if let Some(mut b) = os.take_child("bios") {
        o.bios_useserial = take_enum(&mut b, "useserial")?;
        o.bios_reboot_timeout = take_i64(&mut b, "rebootTimeout")?;
    }
    if let Some(mut s) = os.take_child("smbios") {
        o.smbios = take_enum(&mut s, "mode")?;
    }
    o.residue = os.canonical(OS_ORDER);
    Ok(o)
}

const OS_ORDER: &[&str] = &[
    "type",
    "firmware",
    "init",
    "initarg",
    "initenv",
    "initdir",
    "inituser",
    "initgroup",
    "loader",
    "nvram",
    "kernel",
    "initrd",
    "cmdline",
    "dtb",
    "root",
    "acpi",
    "boot",
    "bootmenu",
    "bios",
    "smbios",
];

fn format_os(o: &Os) -> Element {
    let mut e = Element::new("os").attr_opt("firmware", o.firmware);
    e.children.push(
        Element::new("type")
            .attr_opt("arch", o.arch.as_ref())
            .attr_opt("machine", o.machine.as_ref())
            .text(&o.os_type),
    );
    if !o.firmware_features.is_empty() {
        let mut f = Element::new("firmware");
        for ff in &o.firmware_features {
            f.children.push(
                Element::new("feature")
                    .attr("enabled", ff.enabled)
                    .attr("name", &ff.name),
            );
        }
        e.children.push(f);
    }
    if let Some(l) = &o.loader {
        let mut le = Element::new("loader")
            .attr_opt("readonly", l.readonly)
            .attr_opt("secure", l.secure)
            .attr_opt("type", l.kind)
            .attr_opt("stateless", l.stateless);
        le.text = l.path.clone();
        le.merge_residue(&l.residue, &[]);
        e.children.push(le);
    }
    if let Some(n) = &o.nvram {
        let mut ne = Element::new("nvram").attr_opt("template", n.template.as_ref());
        ne.text = n.path.clone();
        ne.merge_residue(&n.residue, &[]);
        e.children.push(ne);
    }
    for (n, v) in [
        ("kernel", &o.kernel),
        ("initrd", &o.initrd),
        ("cmdline", &o.cmdline),
        ("dtb", &o.dtb),
        ("root", &o.root),
    ] {
        if let Some(v) = v {
            e.children.push(Element::new(n).text(v));
        }
    }
    if !o.acpi_tables.is_empty() {
        let mut a = Element::new("acpi");
        for t in &o.acpi_tables {
            a.children
                .push(Element::new("table").attr("type", "slic").text(t));
        }
        e.children.push(a);
    }
    for b in &o.boot {
        e.children.push(Element::new("boot").attr("dev", b));
    }
    if o.bootmenu.is_some() {
        e.children.push(
            Element::new("bootmenu")
                .attr_opt("enable", o.bootmenu)
                .attr_opt("timeout", o.bootmenu_timeout),
        );
    }
    if o.bios_useserial.is_some() || o.bios_reboot_timeout.is_some() {
        e.children.push(
            Element::new("bios")
                .attr_opt("useserial", o.bios_useserial)
                .attr_opt("rebootTimeout", o.bios_reboot_timeout),
        );
    }
    if let Some(s) = o.smbios {
        e.children.push(Element::new("smbios").attr("mode", s));
    }
    e.merge_residue(&o.residue, OS_ORDER);
    e
}

fn feature_state(f: &mut Element) -> Result<OnOff> {
    Ok(take_enum(f, "state")?.unwrap_or(OnOff::On))
}

fn parse_features(mut fe: Element) -> Result<Features> {
    let mut f = Features::default();
    let children = std::mem::take(&mut fe.children);
    for mut c in children {
        if c.ns.is_some() {
            f.residue.children.push(c);
            continue;
        }
        match c.name.as_str() {
            "acpi" => f.acpi = true,
            "pae" => f.pae = true,
            "viridian" => f.viridian = true,
            "privnet" => f.privnet = true,
            "apic" => {
                let eoi = take_enum(&mut c, "eoi")?;
                f.apic = Some(eoi);
            }
            "hap" => f.hap = Some(feature_state(&mut c)?),
            "pvspinlock" => f.pvspinlock = Some(feature_state(&mut c)?),
            "pmu" => f.pmu = Some(feature_state(&mut c)?),
            "vmport" => f.vmport = Some(feature_state(&mut c)?),
            "vmcoreinfo" => f.vmcoreinfo = Some(feature_state(&mut c)?),
            "htm" => f.htm = Some(feature_state(&mut c)?),
            "nested-hv" => f.nested_hv = Some(feature_state(&mut c)?),
            "ccf-assist" => f.ccf_assist = Some(feature_state(&mut c)?),
            "smm" => {
                let st = feature_state(&mut c)?;
                f.smm = Some(st);
                if let Some(mut t) = c.take_child("tseg") {
                    let unit = t.take_attr("unit");
                    let v = t.take_text().unwrap_or_default();
                    let kib = size_to_kib(&v, unit.as_deref(), "MiB").ok_or_else(|| {
                        Error::xml(format!(
                            "Invalid value '{v}' for element or attribute './tseg'"
                        ))
                    })?;
                    // bytes: libvirt parses the size in bytes; keep exactness
                    let bytes = crate::common::parse_uint(&v, false)
                        .and_then(|n| {
                            crate::common::unit_scale(unit.as_deref().unwrap_or("MiB"))
                                .and_then(|s| n.checked_mul(s))
                        })
                        .unwrap_or(kib * 1024);
                    if st == OnOff::On {
                        f.smm_tseg_bytes = Some(bytes);
                    }
                }
            }
            "ioapic" => {
                f.ioapic = take_enum(&mut c, "driver")?;
            }
            "tcg" => {
                let mut size = None;
                if let Some(mut t) = c.take_child("tb-cache") {
                    let unit = t.take_attr("unit");
                    let v = t.take_text().unwrap_or_default();
                    size = Some(size_to_kib(&v, unit.as_deref(), "MiB").ok_or_else(|| {
                        Error::xml(format!(
                            "Invalid value '{v}' for element or attribute './tb-cache'"
                        ))
                    })?);
                }
                f.tcg = Some(size);
            }
            "hyperv" => f.hyperv = Some(c),
            "kvm" => f.kvm = Some(c),
            "capabilities" => f.capabilities = Some(c),
            "gic" => f.gic = Some(c),
            "hpt" => f.hpt = Some(c),
            "msrs" => f.msrs = Some(c),
            "xen" => f.xen = Some(c),
            "cfpc" => f.cfpc = Some(c),
            "sbbc" => f.sbbc = Some(c),
            "ibs" => f.ibs = Some(c),
            _ => f.residue.children.push(c),
        }
    }
    Ok(f)
}

fn format_features(f: &Features) -> Element {
    let mut e = Element::new("features");
    let c = &mut e.children;
    let state = |c: &mut Vec<Element>, n: &str, s: Option<OnOff>| {
        if let Some(s) = s {
            c.push(Element::new(n).attr("state", s));
        }
    };
    if f.acpi {
        c.push(Element::new("acpi"));
    }
    if let Some(eoi) = f.apic {
        c.push(Element::new("apic").attr_opt("eoi", eoi));
    }
    if f.pae {
        c.push(Element::new("pae"));
    }
    state(c, "hap", f.hap);
    if f.viridian {
        c.push(Element::new("viridian"));
    }
    if f.privnet {
        c.push(Element::new("privnet"));
    }
    c.extend(f.hyperv.iter().cloned());
    c.extend(f.kvm.iter().cloned());
    state(c, "pvspinlock", f.pvspinlock);
    c.extend(f.capabilities.iter().cloned());
    state(c, "pmu", f.pmu);
    state(c, "vmport", f.vmport);
    c.extend(f.gic.iter().cloned());
    if let Some(s) = f.smm {
        let mut se = Element::new("smm").attr("state", s);
        if let (OnOff::On, Some(b)) = (s, f.smm_tseg_bytes) {
            let (v, unit) = format_pretty_bytes(b);
            se.children
                .push(Element::new("tseg").attr("unit", unit).text(v));
        }
        c.push(se);
    }
    if let Some(d) = f.ioapic {
        c.push(Element::new("ioapic").attr("driver", d));
    }
    c.extend(f.hpt.iter().cloned());
    state(c, "vmcoreinfo", f.vmcoreinfo);
    state(c, "htm", f.htm);
    state(c, "nested-hv", f.nested_hv);
    c.extend(f.msrs.iter().cloned());
    state(c, "ccf-assist", f.ccf_assist);
    c.extend(f.xen.iter().cloned());
    c.extend(f.cfpc.iter().cloned());
    c.extend(f.sbbc.iter().cloned());
    c.extend(f.ibs.iter().cloned());
    if let Some(tb) = f.tcg {
        let mut t = Element::new("tcg");
        if let Some(kib) = tb.filter(|k| *k > 0) {
            t.children
                .push(Element::new("tb-cache").attr("unit", "KiB").text(kib));
        }
        c.push(t);
    }
    c.extend(f.residue.children.iter().cloned());
    e
}

fn parse_cpu(mut c: Element) -> Result<Cpu> {
    let mode: Option<CpuMode> = take_enum(&mut c, "mode")?;
    let mut cpu = Cpu {
        mode,
        // libvirt's defaults: match exact, fallback allow
        match_: Some(take_enum(&mut c, "match")?.unwrap_or(CpuMatch::Exact)),
        check: take_enum(&mut c, "check")?,
        migratable: take_enum(&mut c, "migratable")?,
        ..Default::default()
    };
    if !matches!(mode, Some(CpuMode::HostPassthrough | CpuMode::Maximum)) {
        cpu.fallback = Some(CpuFallback::Allow);
    }
    if let Some(mut m) = c.take_child("model") {
        let fallback = take_enum(&mut m, "fallback")?;
        if cpu.fallback.is_some() {
            cpu.fallback = fallback.or(cpu.fallback);
        }
        cpu.vendor_id = m.take_attr("vendor_id");
        cpu.model = m.take_text();
    }
    cpu.vendor = text_of(&mut c, "vendor");
    if let Some(mut t) = c.take_child("topology") {
        let mut get = |a: &str, def: Option<u32>| -> Result<u32> {
            match take_u32(&mut t, a)? {
                Some(0) => Err(Error::xml(format!("Invalid '{a}' value in CPU topology"))),
                Some(v) => Ok(v),
                None => def
                    .ok_or_else(|| Error::xml(format!("Missing '{a}' attribute in CPU topology"))),
            }
        };
        cpu.topology = Some(CpuTopology {
            sockets: get("sockets", None)?,
            dies: get("dies", Some(1))?,
            cores: get("cores", None)?,
            threads: get("threads", None)?,
        });
    }
    cpu.cache = c.take_child("cache");
    cpu.maxphysaddr = c.take_child("maxphysaddr");
    for mut f in c.take_children("feature") {
        let policy = take_enum(&mut f, "policy")?.unwrap_or(CpuFeaturePolicy::Require);
        let name = f
            .take_attr("name")
            .ok_or_else(|| Error::xml("Invalid CPU feature name"))?;
        cpu.features.push(CpuFeature { policy, name });
    }
    if let Some(mut n) = c.take_child("numa") {
        for mut cell in n.take_children("cell") {
            let id = take_u32(&mut cell, "id")?;
            let cpus = match cell.take_attr("cpus") {
                Some(s) if !s.is_empty() => Some(CpuSet::parse(&s).ok_or_else(|| {
                    Error::xml(format!("Invalid 'cpus' attribute in NUMA cell: '{s}'"))
                })?),
                _ => None,
            };
            let unit = cell.take_attr("unit");
            let mem = cell
                .take_attr("memory")
                .ok_or_else(|| Error::xml("Missing 'memory' attribute in NUMA cell"))?;
            let memory_kib = size_to_kib(&mem, unit.as_deref(), "KiB").ok_or_else(|| {
                Error::xml(format!("Invalid 'memory' value in NUMA cell: '{mem}'"))
            })?;
            let idx = cpu.numa.len() as u32;
            let id = id.unwrap_or(idx);
            if id != idx {
                return Err(Error::xml(
                    "Exactly one 'cell' element per guest NUMA cell allowed, non-contiguous ranges or ranges not in ascending order are not allowed",
                ));
            }
            cpu.numa.push(NumaCell {
                id,
                cpus,
                memory_kib,
                mem_access: take_enum(&mut cell, "memAccess")?,
                discard: take_enum(&mut cell, "discard")?,
                residue: cell.canonical(NUMA_CELL_ORDER),
            });
        }
        cpu.numa_interconnects = n.take_child("interconnects");
    }
    cpu.residue = c;
    Ok(cpu)
}

fn format_cpu(cpu: &Cpu) -> Option<Element> {
    let mut e = Element::new("cpu");
    let mode = cpu.mode.unwrap_or(CpuMode::Custom);
    if mode != CpuMode::Custom || cpu.model.is_some() {
        e.push_attr("mode", mode);
        if mode == CpuMode::Custom {
            e.push_attr("match", cpu.match_.unwrap_or(CpuMatch::Exact));
        }
        e.push_attr_opt("check", cpu.check);
        if matches!(mode, CpuMode::HostPassthrough | CpuMode::Maximum) {
            e.push_attr_opt("migratable", cpu.migratable);
        }
    }
    let format_model = matches!(mode, CpuMode::Custom | CpuMode::HostModel);
    if format_model && (cpu.model.is_some() || cpu.vendor_id.is_some()) {
        let mut m = Element::new("model");
        if cpu.model.is_some() {
            m.push_attr("fallback", cpu.fallback.unwrap_or(CpuFallback::Allow));
        }
        m.push_attr_opt("vendor_id", cpu.vendor_id.as_ref());
        m.text = cpu.model.clone();
        e.children.push(m);
    }
    if format_model {
        if let Some(v) = &cpu.vendor {
            e.children.push(Element::new("vendor").text(v));
        }
    }
    if let Some(t) = &cpu.topology {
        e.children.push(
            Element::new("topology")
                .attr("sockets", t.sockets)
                .attr("dies", t.dies)
                .attr("cores", t.cores)
                .attr("threads", t.threads),
        );
    }
    e.children.extend(cpu.cache.iter().cloned());
    e.children.extend(cpu.maxphysaddr.iter().cloned());
    for f in &cpu.features {
        e.children.push(
            Element::new("feature")
                .attr("policy", f.policy)
                .attr("name", &f.name),
        );
    }
    if !cpu.numa.is_empty() {
        let mut n = Element::new("numa");
        for cell in &cpu.numa {
            let mut ce = Element::new("cell").attr("id", cell.id);
            ce.push_attr_opt("cpus", cell.cpus.as_ref());
            ce.push_attr("memory", cell.memory_kib);
            ce.push_attr("unit", "KiB");
            ce.push_attr_opt("memAccess", cell.mem_access);
            ce.push_attr_opt("discard", cell.discard);
            ce.merge_residue(&cell.residue, NUMA_CELL_ORDER);
            n.children.push(ce);
        }
        n.children.extend(cpu.numa_interconnects.iter().cloned());
        e.children.push(n);
    }
    e.merge_residue(&cpu.residue, &[]);
    if e.attrs.is_empty() && e.children.is_empty() {
        None
    } else {
        Some(e)
    }
}

fn parse_clock(mut c: Element) -> Result<Clock> {
    let offset = take_enum(&mut c, "offset")?.unwrap_or(ClockOffset::Utc);
    let mut clock = Clock {
        offset,
        ..Default::default()
    };
    let adj = c.take_attr("adjustment");
    match offset {
        ClockOffset::Utc | ClockOffset::Localtime => {
            if let Some(a) = adj {
                if a == "reset" {
                    clock.adjustment_reset = true;
                } else {
                    clock.adjustment = Some(
                        a.parse::<i64>()
                            .map_err(|_| Error::xml(format!("unknown clock adjustment '{a}'")))?,
                    );
                    // a numeric adjustment turns utc/localtime into variable
                    clock.basis = Some(offset.as_str().to_string());
                    clock.offset = ClockOffset::Variable;
                }
            }
        }
        ClockOffset::Variable => {
            clock.adjustment = Some(match adj {
                Some(a) => a
                    .parse::<i64>()
                    .map_err(|_| Error::invalid("clock", "adjustment", &a))?,
                None => 0,
            });
            clock.basis = Some(c.take_attr("basis").unwrap_or_else(|| "utc".into()));
        }
        ClockOffset::Timezone => {
            clock.timezone = Some(c.take_attr("timezone").ok_or_else(|| {
                Error::xml("missing 'timezone' attribute for clock with offset='timezone'")
            })?);
        }
        ClockOffset::Absolute => {
            clock.start = Some(take_u64(&mut c, "start")?.ok_or_else(|| {
                Error::xml("missing 'start' attribute for clock with offset='absolute'")
            })?);
        }
    }
    for mut t in c.take_children("timer") {
        let n = t
            .take_attr("name")
            .ok_or_else(|| Error::xml("missing timer name"))?;
        let name = TimerName::from_name(&n)
            .ok_or_else(|| Error::xml(format!("unknown timer name '{n}'")))?;
        clock.timers.push(Timer {
            name,
            present: take_enum(&mut t, "present")?,
            tickpolicy: take_enum(&mut t, "tickpolicy")?,
            track: take_enum(&mut t, "track")?,
            frequency: take_u64(&mut t, "frequency")?,
            residue: t.canonical(TIMER_ORDER),
        });
    }
    Ok(clock)
}

fn format_clock(c: &Clock) -> Element {
    let mut e = Element::new("clock").attr("offset", c.offset);
    match c.offset {
        ClockOffset::Utc | ClockOffset::Localtime => {
            if c.adjustment_reset {
                e.push_attr("adjustment", "reset");
            }
        }
        ClockOffset::Variable => {
            e.push_attr("adjustment", c.adjustment.unwrap_or(0));
            e.push_attr("basis", c.basis.as_deref().unwrap_or("utc"));
        }
        ClockOffset::Timezone => e.push_attr_opt("timezone", c.timezone.as_ref()),
        ClockOffset::Absolute => e.push_attr_opt("start", c.start),
    }
    for t in &c.timers {
        let mut te = Element::new("timer")
            .attr("name", t.name)
            .attr_opt("present", t.present)
            .attr_opt("tickpolicy", t.tickpolicy)
            .attr_opt("track", t.track);
        if t.name == TimerName::Tsc {
            te.push_attr_opt("frequency", t.frequency.filter(|f| *f > 0));
        }
        te.merge_residue(&t.residue, TIMER_ORDER);
        e.children.push(te);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Domain {
        crate::parse(xml, ParseOptions { inactive: true }).unwrap()
    }

    #[test]
    fn parser_fills_libvirt_defaults_the_formatter_writes() {
        let d = parse(
            "<domain type='kvm'><name>a</name><os><type>hvm</type></os>\
             <cpu><model>qemu64</model></cpu></domain>",
        );
        assert_eq!(d.vcpu.placement, Some(Placement::Static));
        let cpu = d.cpu.unwrap();
        assert_eq!(cpu.match_, Some(CpuMatch::Exact));
        assert_eq!(cpu.fallback, Some(CpuFallback::Allow));
    }

    #[test]
    fn automatic_numa_placement_makes_vcpu_placement_automatic() {
        let d = parse(
            "<domain type='kvm'><name>a</name><os><type>hvm</type></os>\
             <numatune><memory placement='auto'/></numatune></domain>",
        );
        assert_eq!(d.vcpu.placement, Some(Placement::Auto));
    }

    #[test]
    fn unexpanded_definition_round_trips_without_invented_values() {
        let xml = "<domain type='kvm'><name>a</name><memory>1024</memory><os><type>hvm</type></os>\
             <devices><controller type='usb'/><serial type='pty'/></devices></domain>";
        let d = parse(xml);
        let out = crate::format(&d, &FormatOptions::inactive_secure());
        assert!(!out.contains("currentMemory"), "{out}");
        assert!(!out.contains("index="), "{out}");
        assert!(!out.contains("port="), "{out}");
        assert_eq!(parse(&out), d);
    }

    #[test]
    fn existing_guest_ignores_firmware_features_without_autoselection() {
        let xml = "<domain type='kvm'><name>a</name><os><type>hvm</type>\
             <firmware><feature enabled='yes' name='secure-boot'/></firmware></os></domain>";
        let opts = ParseOptions { inactive: true };
        assert!(crate::parse_existing(xml, opts)
            .unwrap()
            .os
            .firmware_features
            .is_empty());
        assert_eq!(
            crate::parse(xml, opts).unwrap().os.firmware_features.len(),
            1
        );
    }

    #[test]
    fn unknown_firmware_feature_is_rejected() {
        let err = crate::parse(
            "<domain type='kvm'><name>a</name><os firmware='efi'><type>hvm</type>\
             <firmware><feature enabled='yes' name='bogus'/></firmware></os></domain>",
            ParseOptions { inactive: true },
        )
        .unwrap_err();
        assert!(err.to_string().contains("'bogus'"), "{err}");
    }
}
