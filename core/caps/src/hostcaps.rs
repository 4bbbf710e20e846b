//! The host capabilities document (`virsh capabilities`): a pure builder
//! over host facts passed in as structs, plus separate functions that read
//! those facts from this host (`/sys`, `/proc`, CPUID).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::arch;
use crate::cpumap::{self, X86CpuData};
use crate::flags::Flag;
use crate::model::{Accel, QemuCaps};
use crate::xmltree::{escape, format_int_pretty};

/// The host CPU as libvirt reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCpuFacts {
    /// Host architecture (`x86_64`).
    pub arch: String,
    /// Raw identification data (x86); the model, vendor and features are
    /// decoded from it with libvirt's CPU map.
    pub x86: Option<X86CpuData>,
    /// Microcode revision.
    pub microcode: Option<u32>,
    /// TSC frequency in Hz and whether it is scaled, when known.
    pub tsc: Option<(u64, bool)>,
    /// sockets, dies, cores (per socket), threads (per core).
    pub topology: (u32, u32, u32, u32),
    /// Physical address bits (`<maxphysaddr mode='emulate'>`), when known.
    pub phys_bits: Option<u32>,
    /// Supported page sizes in KiB.
    pub page_sizes_kib: Vec<u64>,
}

/// One logical CPU of a NUMA cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellCpu {
    /// CPU id.
    pub id: u32,
    /// Socket id.
    pub socket_id: u32,
    /// Die id.
    pub die_id: u32,
    /// Core id.
    pub core_id: u32,
    /// Thread siblings list (e.g. `0,4` or `0-1`).
    pub siblings: String,
}

/// A NUMA cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaCell {
    /// Node id.
    pub id: u32,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// (page size KiB, count) pairs.
    pub pages: Vec<(u64, u64)>,
    /// (node id, distance) pairs.
    pub distances: Vec<(u32, u32)>,
    /// CPUs.
    pub cpus: Vec<CellCpu>,
}

/// A CPU cache bank (`<cache><bank>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheBank {
    /// Bank id.
    pub id: u32,
    /// Level.
    pub level: u32,
    /// `both`, `code` or `data`.
    pub kind: String,
    /// Size in `unit`s.
    pub size: u64,
    /// `KiB` or `MiB`.
    pub unit: String,
    /// CPU list (`0-1`).
    pub cpus: String,
}

/// A security model of a usable security plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecModel {
    /// Model name (`none`, `dac`, `selinux`, `apparmor`).
    pub model: String,
    /// Domain of interpretation.
    pub doi: String,
    /// (domain type, base label) pairs.
    pub base_labels: Vec<(String, String)>,
}

/// Everything the host part of the document says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFactsDoc {
    /// Host UUID.
    pub uuid: Option<String>,
    /// The CPU.
    pub cpu: HostCpuFacts,
    /// Suspend targets (`suspend_mem`, `suspend_disk`, `suspend_hybrid`).
    pub power_management: Vec<String>,
    /// Whether an IOMMU is enabled.
    pub iommu: bool,
    /// Migration URI transports (`tcp`, `rdma`).
    pub migration_transports: Vec<String>,
    /// NUMA cells.
    pub cells: Vec<NumaCell>,
    /// Cache banks.
    pub cache: Vec<CacheBank>,
    /// Security models, in order.
    pub secmodels: Vec<SecModel>,
}

/// One `<guest>` per emulator: from its capabilities.
#[derive(Debug, Clone)]
pub struct GuestEmulator<'a> {
    /// Guest architecture (`x86_64`, or `i686` served by a 64-bit binary).
    pub arch: String,
    /// The emulator's capabilities.
    pub caps: &'a QemuCaps,
}

/// Builds the host capabilities document.
pub fn host_capabilities_xml(host: &HostFactsDoc, guests: &[GuestEmulator<'_>]) -> String {
    let mut o = String::from("<capabilities>\n\n  <host>\n");
    if let Some(u) = &host.uuid {
        let _ = writeln!(o, "    <uuid>{}</uuid>", escape(u));
    }
    format_cpu(&mut o, &host.cpu);
    if host.power_management.is_empty() {
        o.push_str("    <power_management/>\n");
    } else {
        o.push_str("    <power_management>\n");
        for p in &host.power_management {
            let _ = writeln!(o, "      <{p}/>");
        }
        o.push_str("    </power_management>\n");
    }
    let _ = writeln!(
        o,
        "    <iommu support='{}'/>",
        if host.iommu { "yes" } else { "no" }
    );
    o.push_str("    <migration_features>\n      <live/>\n");
    if !host.migration_transports.is_empty() {
        o.push_str("      <uri_transports>\n");
        for t in &host.migration_transports {
            let _ = writeln!(o, "        <uri_transport>{}</uri_transport>", escape(t));
        }
        o.push_str("      </uri_transports>\n");
    }
    o.push_str("    </migration_features>\n");
    if !host.cells.is_empty() {
        let _ = writeln!(
            o,
            "    <topology>\n      <cells num='{}'>",
            host.cells.len()
        );
        for c in &host.cells {
            let _ = writeln!(o, "        <cell id='{}'>", c.id);
            let _ = writeln!(o, "          <memory unit='KiB'>{}</memory>", c.memory_kib);
            for (size, count) in &c.pages {
                let _ = writeln!(
                    o,
                    "          <pages unit='KiB' size='{size}'>{count}</pages>"
                );
            }
            if !c.distances.is_empty() {
                o.push_str("          <distances>\n");
                for (id, v) in &c.distances {
                    let _ = writeln!(o, "            <sibling id='{id}' value='{v}'/>");
                }
                o.push_str("          </distances>\n");
            }
            let _ = writeln!(o, "          <cpus num='{}'>", c.cpus.len());
            for cpu in &c.cpus {
                let _ = writeln!(
                    o,
                    "            <cpu id='{}' socket_id='{}' die_id='{}' core_id='{}' siblings='{}'/>",
                    cpu.id,
                    cpu.socket_id,
                    cpu.die_id,
                    cpu.core_id,
                    escape(&cpu.siblings)
                );
            }
            o.push_str("          </cpus>\n        </cell>\n");
        }
        o.push_str("      </cells>\n    </topology>\n");
    }
    if !host.cache.is_empty() {
        o.push_str("    <cache>\n");
        for b in &host.cache {
            let _ = writeln!(
                o,
                "      <bank id='{}' level='{}' type='{}' size='{}' unit='{}' cpus='{}'/>",
                b.id,
                b.level,
                escape(&b.kind),
                b.size,
                escape(&b.unit),
                escape(&b.cpus)
            );
        }
        o.push_str("    </cache>\n");
    }
    for s in &host.secmodels {
        let _ = writeln!(
            o,
            "    <secmodel>\n      <model>{}</model>\n      <doi>{}</doi>",
            escape(&s.model),
            escape(&s.doi)
        );
        for (ty, label) in &s.base_labels {
            let _ = writeln!(
                o,
                "      <baselabel type='{}'>{}</baselabel>",
                escape(ty),
                escape(label)
            );
        }
        o.push_str("    </secmodel>\n");
    }
    o.push_str("  </host>\n\n");
    for g in guests {
        format_guest(&mut o, g);
    }
    o.push_str("</capabilities>\n");
    o
}

fn format_cpu(o: &mut String, cpu: &HostCpuFacts) {
    o.push_str("    <cpu>\n");
    let _ = writeln!(o, "      <arch>{}</arch>", escape(&cpu.arch));
    let decoded = cpu.x86.as_ref().and_then(|d| {
        let sig = d.signature();
        cpumap::decode_host(&d.features(), d.vendor(), sig.map(|(f, m, _)| (f, m)), None)
            .map(|x| (x, sig))
    });
    if let Some((d, _)) = &decoded {
        let _ = writeln!(o, "      <model>{}</model>", d.model);
        if let Some(v) = d.vendor {
            let _ = writeln!(o, "      <vendor>{v}</vendor>");
        }
    }
    if let Some(m) = cpu.microcode {
        let _ = writeln!(o, "      <microcode version='{m}'/>");
    }
    if let Some((_, Some((f, m, s)))) = &decoded {
        let _ = writeln!(
            o,
            "      <signature family='{f}' model='{m}' stepping='{s}'/>"
        );
    }
    if let Some((freq, scaling)) = cpu.tsc {
        let _ = writeln!(
            o,
            "      <counter name='tsc' frequency='{freq}' scaling='{}'/>",
            if scaling { "yes" } else { "no" }
        );
    }
    let (s, d, c, t) = cpu.topology;
    let _ = writeln!(
        o,
        "      <topology sockets='{s}' dies='{d}' cores='{c}' threads='{t}'/>"
    );
    if let Some(bits) = cpu.phys_bits {
        let _ = writeln!(o, "      <maxphysaddr mode='emulate' bits='{bits}'/>");
    }
    if let Some((d, _)) = &decoded {
        for f in &d.extra_features {
            let _ = writeln!(o, "      <feature name='{f}'/>");
        }
    }
    for p in &cpu.page_sizes_kib {
        let _ = writeln!(o, "      <pages unit='KiB' size='{p}'/>");
    }
    o.push_str("    </cpu>\n");
}

/// The `<machine>` lines libvirt lists for a guest: the machines of the
/// first probed accelerator, aliases with `canonical=`, and every canonical
/// name also on its own (`virQEMUCapsGetMachineTypesCaps`).
fn guest_machines(caps: &QemuCaps) -> Vec<(String, Option<String>, u32, bool)> {
    let accel = if caps.has(Flag::Kvm) {
        Accel::Kvm
    } else if caps.has(Flag::Hvf) {
        Accel::Hvf
    } else {
        Accel::Tcg
    };
    let mut list: Vec<(String, Option<String>, u32, bool)> = caps
        .accel(accel)
        .machines
        .iter()
        .map(|m| match &m.alias {
            Some(a) => (a.clone(), Some(m.name.clone()), m.max_cpus, m.deprecated),
            None => (m.name.clone(), None, m.max_cpus, m.deprecated),
        })
        .collect();
    let mut i = 0;
    while i < list.len() {
        if let Some(canon) = list[i].1.clone() {
            if !list.iter().any(|m| m.0 == canon) {
                let entry = (canon, None, list[i].2, list[i].3);
                list.insert(i, entry);
                i += 1;
            }
        }
        i += 1;
    }
    list
}

fn format_guest(o: &mut String, g: &GuestEmulator<'_>) {
    let wordsize = arch::arch_info(&g.arch).map_or(64, |a| a.wordsize);
    let _ = writeln!(
        o,
        "  <guest>\n    <os_type>hvm</os_type>\n    <arch name='{}'>\n      <wordsize>{wordsize}</wordsize>\n      <emulator>{}</emulator>",
        escape(&g.arch),
        escape(&g.caps.emulator)
    );
    for (name, canonical, max_cpus, deprecated) in guest_machines(g.caps) {
        o.push_str("      <machine");
        if let Some(c) = canonical {
            let _ = write!(o, " canonical='{}'", escape(&c));
        }
        if max_cpus > 0 {
            let _ = write!(o, " maxCpus='{max_cpus}'");
        }
        if deprecated {
            o.push_str(" deprecated='yes'");
        }
        let _ = writeln!(o, ">{}</machine>", escape(&name));
    }
    for (flag, ty) in [(Flag::Tcg, "qemu"), (Flag::Kvm, "kvm"), (Flag::Hvf, "hvf")] {
        if g.caps.has(flag) {
            let _ = writeln!(o, "      <domain type='{ty}'/>");
        }
    }
    o.push_str("    </arch>\n    <features>\n");
    if g.arch == "i686" {
        o.push_str("      <pae/>\n      <nonpae/>\n");
    }
    if arch::is_x86(&g.arch) || g.arch == "aarch64" {
        o.push_str("      <acpi default='on' toggle='yes'/>\n");
    }
    if arch::is_x86(&g.arch) {
        o.push_str("      <apic default='on' toggle='no'/>\n");
    }
    o.push_str("      <cpuselection/>\n      <deviceboot/>\n      <disksnapshot default='on' toggle='no'/>\n");
    o.push_str("    </features>\n  </guest>\n\n");
}

/// Reads the host part of the document from this host (CPU, NUMA cells,
/// pages, cache banks, IOMMU, power management). Security models are the
/// caller's (they come from the security plugins).
pub fn read_host_facts(secmodels: Vec<SecModel>) -> HostFactsDoc {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let host_arch = crate::cache::host_arch().to_string();
    let cells = read_numa_cells();
    let ncpus: usize = cells.iter().map(|c| c.cpus.len()).sum();
    let sockets = cells
        .iter()
        .flat_map(|c| c.cpus.iter().map(|x| x.socket_id))
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        .max(1);
    let threads = read_trimmed("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list")
        .map(|s| count_cpu_list(&s))
        .unwrap_or(1)
        .max(1);
    let cores = (ncpus / sockets / threads).max(1);
    let mut page_sizes = vec![4u64];
    if let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        let mut hs: Vec<u64> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_prefix("hugepages-")?
                    .strip_suffix("kB")?
                    .parse()
                    .ok()
            })
            .collect();
        hs.sort_unstable();
        page_sizes.extend(hs);
    }
    let phys_bits = crate::host::cpuinfo_field(&cpuinfo, "address sizes")
        .and_then(|v| v.split_whitespace().next()?.parse().ok());
    let (x86, tsc) = host_cpu_identity(&host_arch).clone();
    HostFactsDoc {
        uuid: read_trimmed("/sys/class/dmi/id/product_uuid")
            .or_else(|| read_trimmed("/etc/machine-id").map(|m| machine_id_uuid(&m))),
        cpu: HostCpuFacts {
            x86,
            arch: host_arch,
            microcode: Some(crate::host::microcode_from_cpuinfo(&cpuinfo))
                .filter(|_| cpuinfo.contains("microcode")),
            tsc,
            topology: (
                u32::try_from(sockets).unwrap_or(1),
                1,
                u32::try_from(cores).unwrap_or(1),
                u32::try_from(threads).unwrap_or(1),
            ),
            phys_bits,
            page_sizes_kib: page_sizes,
        },
        power_management: Vec::new(),
        iommu: std::fs::read_dir("/sys/kernel/iommu_groups").is_ok_and(|mut d| d.next().is_some()),
        migration_transports: vec!["tcp".into(), "rdma".into()],
        cells,
        cache: read_cache_banks(Path::new("/sys/devices/system/cpu")),
        secmodels,
    }
}

/// CPUID/MSR data and the TSC's (frequency, scaling).
type CpuIdentity = (Option<X86CpuData>, Option<(u64, bool)>);

/// The host CPU's identification data and TSC facts, read once per
/// process: they do not change while it runs, and the TSC probe creates a
/// KVM VM.
fn host_cpu_identity(host_arch: &str) -> &'static CpuIdentity {
    static ONCE: std::sync::OnceLock<CpuIdentity> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let x86 = arch::is_x86(host_arch).then(cpumap::read_host_x86);
        // The TSC frequency is worth reporting only when it is invariant.
        let invtsc = x86.as_ref().is_some_and(|d| d.has_feature("invtsc"));
        let tsc = if invtsc { crate::kvm::tsc_info() } else { None };
        (x86, tsc)
    })
}

/// The level 3 (and higher) caches of the online CPUs, one bank per
/// distinct cache, sorted by level then id (libvirt's
/// `virCapabilitiesInitCaches`; lower levels are per core and not shown).
pub fn read_cache_banks(sys_cpu: &Path) -> Vec<CacheBank> {
    let online = std::fs::read_to_string(sys_cpu.join("online")).unwrap_or_default();
    let mut banks: Vec<CacheBank> = Vec::new();
    for cpu in parse_cpu_list(online.trim()) {
        let dir = sys_cpu.join(format!("cpu{cpu}/cache"));
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut indexes: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
            .map(|e| e.path())
            .collect();
        indexes.sort();
        for index in indexes {
            let read = |f: &str| std::fs::read_to_string(index.join(f)).ok();
            let Some(level) = read("level").and_then(|v| v.trim().parse::<u32>().ok()) else {
                continue;
            };
            if level < 3 {
                continue;
            }
            let (Some(id), Some(kind), Some(bytes), Some(cpus)) = (
                read("id").and_then(|v| v.trim().parse::<u32>().ok()),
                read("type").and_then(|t| match t.trim() {
                    "Unified" => Some("both"),
                    "Instruction" => Some("code"),
                    "Data" => Some("data"),
                    _ => None,
                }),
                read("size").and_then(|v| parse_sysfs_size(v.trim())),
                read("shared_cpu_list"),
            ) else {
                continue;
            };
            let (size, unit) = format_int_pretty(bytes);
            let bank = CacheBank {
                id,
                level,
                kind: kind.to_string(),
                size,
                unit: unit.to_string(),
                cpus: cpus.trim().to_string(),
            };
            if !banks.contains(&bank) {
                banks.push(bank);
            }
        }
    }
    banks.sort_by_key(|b| (b.level, b.id));
    banks
}

/// A sysfs cache size (`491520K`, `32M`, `1024`) in bytes.
fn parse_sysfs_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.as_bytes().last()? {
        b'K' => (&v[..v.len() - 1], 1u64 << 10),
        b'M' => (&v[..v.len() - 1], 1 << 20),
        b'G' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn machine_id_uuid(id: &str) -> String {
    if id.len() == 32 {
        format!(
            "{}-{}-{}-{}-{}",
            &id[0..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..32]
        )
    } else {
        id.to_string()
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Number of CPUs in a kernel CPU list (`0-3,8`).
pub fn count_cpu_list(list: &str) -> usize {
    parse_cpu_list(list).len()
}

/// Expands a kernel CPU list (`0-3,8`).
pub fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(65_536)));
                }
            }
            None => {
                if let Ok(a) = part.trim().parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

fn read_numa_cells() -> Vec<NumaCell> {
    let mut nodes: Vec<u32> = std::fs::read_dir("/sys/devices/system/node")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_prefix("node")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort_unstable();
    let online_cpus = read_trimmed("/sys/devices/system/cpu/online").map(|l| parse_cpu_list(&l));
    if nodes.is_empty() {
        nodes.push(0);
    }
    nodes
        .iter()
        .map(|&n| {
            let base = format!("/sys/devices/system/node/node{n}");
            let meminfo = std::fs::read_to_string(format!("{base}/meminfo"))
                .or_else(|_| std::fs::read_to_string("/proc/meminfo"))
                .unwrap_or_default();
            let memory_kib: u64 = meminfo
                .lines()
                .find(|l| l.contains("MemTotal:"))
                .and_then(|l| l.split_whitespace().rev().nth(1)?.parse().ok())
                .unwrap_or(0);
            let cpus = read_trimmed(&format!("{base}/cpulist"))
                .map(|l| parse_cpu_list(&l))
                .or_else(|| online_cpus.clone())
                .unwrap_or_default();
            let topo = |cpu: u32, f: &str| {
                read_trimmed(&format!("/sys/devices/system/cpu/cpu{cpu}/topology/{f}"))
            };
            let mut pages = vec![(4u64, memory_kib / 4)];
            if let Ok(rd) = std::fs::read_dir(format!("{base}/hugepages")) {
                let mut hp: Vec<(u64, u64)> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        let size: u64 = name
                            .strip_prefix("hugepages-")?
                            .strip_suffix("kB")?
                            .parse()
                            .ok()?;
                        let count = read_trimmed(&format!("{}/nr_hugepages", e.path().display()))?
                            .parse()
                            .ok()?;
                        Some((size, count))
                    })
                    .collect();
                hp.sort_unstable();
                let huge_kib: u64 = hp.iter().map(|(s, c)| s * c).sum();
                pages[0].1 = memory_kib.saturating_sub(huge_kib) / 4;
                pages.extend(hp);
            }
            let distances = read_trimmed(&format!("{base}/distance"))
                .map(|d| {
                    d.split_whitespace()
                        .zip(nodes.iter())
                        .filter_map(|(v, &id)| Some((id, v.parse().ok()?)))
                        .collect()
                })
                .unwrap_or_default();
            NumaCell {
                id: n,
                memory_kib,
                pages,
                distances,
                cpus: cpus
                    .iter()
                    .map(|&c| CellCpu {
                        id: c,
                        socket_id: topo(c, "physical_package_id")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        die_id: topo(c, "die_id").and_then(|v| v.parse().ok()).unwrap_or(0),
                        core_id: topo(c, "core_id").and_then(|v| v.parse().ok()).unwrap_or(0),
                        siblings: topo(c, "thread_siblings_list").unwrap_or_else(|| c.to_string()),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MachineType;

    fn guest_caps() -> QemuCaps {
        let mut c = QemuCaps::new("/usr/bin/qemu-system-x86_64");
        c.arch = "x86_64".into();
        c.set(Flag::Kvm);
        c.set(Flag::Tcg);
        c.kvm.machines = vec![
            MachineType {
                name: "pc-i440fx-7.2".into(),
                alias: Some("pc".into()),
                max_cpus: 255,
                ..Default::default()
            },
            MachineType {
                name: "pc-i440fx-1.5".into(),
                max_cpus: 255,
                deprecated: true,
                ..Default::default()
            },
        ];
        c
    }

    #[test]
    fn document_has_libvirts_layout() {
        let host = HostFactsDoc {
            uuid: Some("5188d969-d29a-4e55-ac20-3aa3820d0223".into()),
            cpu: HostCpuFacts {
                arch: "x86_64".into(),
                topology: (1, 1, 2, 1),
                page_sizes_kib: vec![4, 2048],
                ..Default::default()
            },
            migration_transports: vec!["tcp".into(), "rdma".into()],
            cells: vec![NumaCell {
                id: 0,
                memory_kib: 1024,
                pages: vec![(4, 256), (2048, 0)],
                distances: vec![(0, 10)],
                cpus: vec![CellCpu {
                    id: 0,
                    socket_id: 0,
                    die_id: 0,
                    core_id: 0,
                    siblings: "0".into(),
                }],
            }],
            secmodels: vec![SecModel {
                model: "dac".into(),
                doi: "0".into(),
                base_labels: vec![("kvm".into(), "+0:+0".into())],
            }],
            ..Default::default()
        };
        let caps = guest_caps();
        let xml = host_capabilities_xml(
            &host,
            &[GuestEmulator {
                arch: "x86_64".into(),
                caps: &caps,
            }],
        );
        let expected_guest = "  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <wordsize>64</wordsize>
      <emulator>/usr/bin/qemu-system-x86_64</emulator>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='255' deprecated='yes'>pc-i440fx-1.5</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
    <features>
      <acpi default='on' toggle='yes'/>
      <apic default='on' toggle='no'/>
      <cpuselection/>
      <deviceboot/>
      <disksnapshot default='on' toggle='no'/>
    </features>
  </guest>
";
        assert!(xml.contains(expected_guest), "{xml}");
        assert!(xml.contains("      <topology sockets='1' dies='1' cores='2' threads='1'/>\n"));
        assert!(xml.contains("      <baselabel type='kvm'>+0:+0</baselabel>\n"));
        assert!(xml.starts_with("<capabilities>\n\n  <host>\n    <uuid>"));
        crate::xmltree::parse(&xml).unwrap();
    }

    #[test]
    fn level_3_caches_become_one_bank_each() {
        let dir = std::env::temp_dir().join(format!("qvisor-caps-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("online"), "0-1\n").unwrap();
        for cpu in 0..2 {
            for (i, level, kind, size) in [
                (0, "1", "Data", "32K"),
                (2, "2", "Unified", "1024K"),
                (3, "3", "Unified", "491520K"),
            ] {
                let d = dir.join(format!("cpu{cpu}/cache/index{i}"));
                std::fs::create_dir_all(&d).unwrap();
                for (f, v) in [
                    ("level", level),
                    ("type", kind),
                    ("size", size),
                    ("id", "0"),
                    ("shared_cpu_list", "0-1"),
                ] {
                    std::fs::write(d.join(f), format!("{v}\n")).unwrap();
                }
            }
        }
        let banks = read_cache_banks(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            banks,
            [CacheBank {
                id: 0,
                level: 3,
                kind: "both".into(),
                size: 480,
                unit: "MiB".into(),
                cpus: "0-1".into(),
            }]
        );
        assert_eq!(format_int_pretty(1536), (1536, "B"));
        assert_eq!(format_int_pretty(32 * 1024), (32, "KiB"));
    }

    #[test]
    fn cpu_lists_expand() {
        assert_eq!(parse_cpu_list("0-2,5"), [0, 1, 2, 5]);
        assert_eq!(count_cpu_list("0,4"), 2);
        assert!(parse_cpu_list("x").is_empty());
    }

    #[test]
    fn reading_this_host_gives_a_well_formed_document() {
        let host = read_host_facts(vec![]);
        let xml = host_capabilities_xml(&host, &[]);
        crate::xmltree::parse(&xml).unwrap();
    }
}
