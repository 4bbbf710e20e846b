//! Host-level queries: capabilities documents, versions, node information.

use std::path::PathBuf;

use qvisor_caps::domcaps::{domain_capabilities_xml, host_model, DomCapsHostFacts};
use qvisor_caps::hostcaps::{host_capabilities_xml, read_host_facts, GuestEmulator, SecModel};
use qvisor_caps::Accel;

use super::error::{DriverError, Result};
use super::Driver;

/// Node information (`virNodeInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// CPU model (architecture name).
    pub model: String,
    /// Memory in KiB.
    pub memory_kib: u64,
    /// Active CPUs.
    pub cpus: i32,
    /// CPU frequency in MHz.
    pub mhz: i32,
    /// NUMA nodes.
    pub nodes: i32,
    /// Sockets per node.
    pub sockets: i32,
    /// Cores per socket.
    pub cores: i32,
    /// Threads per core.
    pub threads: i32,
}

/// QEMU system emulators installed in the usual places.
fn installed_emulators() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for d in dirs {
        let canonical = d.canonicalize().unwrap_or(d);
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical.clone());
        let Ok(rd) = std::fs::read_dir(&canonical) else {
            continue;
        };
        let mut found: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("qemu-system-") && !n.contains("-microvm"))
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

/// The `MemTotal` of a `/proc/meminfo` or a NUMA node's `meminfo`
/// (`Node 0 MemTotal:       17918156 kB`), in KiB.
fn meminfo_total_kib(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.split_once("MemTotal:").map(|(_, v)| v))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The memory of all NUMA nodes, as libvirt counts it when the host has
/// NUMA information (`numa_node_size64` of each node); `None` without.
fn numa_memory_kib() -> Option<u64> {
    let nodes = std::fs::read_dir("/sys/devices/system/node").ok()?;
    let sizes: Vec<u64> = nodes
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix("node")
                .is_some_and(|d| d.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("meminfo")).ok())
        .filter_map(|t| meminfo_total_kib(&t))
        .collect();
    (!sizes.is_empty()).then(|| sizes.iter().sum())
}

impl Driver {
    /// The emulator for the host architecture (`qemu-system-<arch>`).
    pub fn host_emulator(&self) -> PathBuf {
        let name = format!("qemu-system-{}", std::env::consts::ARCH);
        installed_emulators()
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
            .unwrap_or_else(|| PathBuf::from("/usr/bin").join(name))
    }

    /// The hypervisor version as libvirt reports it (`major*1e6+minor*1e3+micro`).
    pub fn hypervisor_version(&self) -> u64 {
        self.emulator_caps(&self.host_emulator())
            .map(|c| u64::from(c.version()))
            .unwrap_or(0)
    }

    /// The security models as libvirt's capabilities list them: the stack's
    /// primary model first (the configured or probed confinement layer, or
    /// `none` without one), then DAC with its base labels (the QEMU user
    /// and group of qemu.conf as `+uid:+gid`, for both domain types).
    pub fn security_models(&self) -> Vec<SecModel> {
        let stack = self.inner.security_stack_models().unwrap_or_default();
        let primary = stack
            .iter()
            .find(|m| m.as_str() != "dac")
            .cloned()
            .unwrap_or_else(|| "none".into());
        let mut models = vec![SecModel {
            model: primary,
            doi: "0".into(),
            base_labels: Vec::new(),
        }];
        if stack.iter().any(|m| m == "dac") {
            let base_labels = match self.inner.qemu_ids(&qvisor_domain::Domain::default()) {
                Ok((uid, gid)) => {
                    let label = format!("+{uid}:+{gid}");
                    vec![("kvm".into(), label.clone()), ("qemu".into(), label)]
                }
                Err(_) => Vec::new(),
            };
            models.push(SecModel {
                model: "dac".into(),
                doi: "0".into(),
                base_labels,
            });
        }
        models
    }

    /// `virsh capabilities`: the host and a `<guest>` per emulator.
    pub fn capabilities_xml(&self) -> Result<String> {
        let host = read_host_facts(self.security_models());
        let emulators = installed_emulators();
        let caps: Vec<_> = emulators
            .iter()
            .filter_map(|e| self.emulator_caps(e).ok())
            .collect();
        let mut guests = Vec::new();
        for c in &caps {
            let arch = c.arch.clone();
            guests.push(GuestEmulator {
                arch: arch.clone(),
                caps: c,
            });
            // A 64-bit x86 binary also runs i686 guests.
            if arch == "x86_64" && !caps.iter().any(|o| o.arch == "i686") {
                guests.push(GuestEmulator {
                    arch: "i686".into(),
                    caps: c,
                });
            }
        }
        Ok(host_capabilities_xml(&host, &guests))
    }

    /// `virsh domcapabilities`.
    pub fn domain_capabilities_xml(
        &self,
        emulator: Option<&str>,
        arch: Option<&str>,
        machine: Option<&str>,
        virt_type: Option<&str>,
    ) -> Result<String> {
        let emulator = match (emulator, arch) {
            (Some(e), _) => PathBuf::from(e),
            (None, Some(a)) => {
                let name = format!("qemu-system-{a}");
                installed_emulators()
                    .into_iter()
                    .find(|p| p.file_name().is_some_and(|n| n == name.as_str()))
                    .ok_or_else(|| {
                        DriverError::ConfigUnsupported(format!(
                            "unable to find any emulator to serve '{a}' architecture"
                        ))
                    })?
            }
            (None, None) => self.host_emulator(),
        };
        let caps = self.emulator_caps(&emulator)?;
        let accel = Accel::from_virt_type(
            virt_type.unwrap_or(caps.preferred_accel().map_or("qemu", Accel::virt_type)),
        );
        let facts = DomCapsHostFacts {
            host_arch: std::env::consts::ARCH.to_string(),
            vfio: std::path::Path::new("/dev/vfio/vfio").exists(),
            ..DomCapsHostFacts::default()
        };
        let hm = host_model(&caps, accel);
        domain_capabilities_xml(&caps, virt_type, arch, machine, &facts, hm.as_ref()).map_err(|e| {
            let msg = e.to_string();
            match msg.split_once(": ") {
                Some(("unsupported configuration", rest)) => {
                    DriverError::ConfigUnsupported(rest.into())
                }
                Some(("invalid argument", rest)) => DriverError::InvalidArg(rest.into()),
                _ => DriverError::Internal(msg),
            }
        })
    }

    /// `virsh nodeinfo`.
    pub fn node_info(&self) -> NodeInfo {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        let memory_kib = numa_memory_kib().unwrap_or_else(|| {
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            meminfo_total_kib(&meminfo).unwrap_or(0)
        });
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mhz = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("cpu MHz"))
            .and_then(|v| v.split(':').nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as i32;
        let nodes = std::fs::read_dir("/sys/devices/system/node")
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.starts_with("node") && n[4..].parse::<u32>().is_ok()
                    })
                    .count()
            })
            .unwrap_or(1)
            .max(1) as i32;
        NodeInfo {
            model: std::env::consts::ARCH.to_string(),
            memory_kib,
            cpus,
            mhz,
            nodes,
            sockets: 1,
            cores: (cpus / nodes).max(1),
            threads: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_reads_proc_and_numa_node_formats() {
        assert_eq!(
            meminfo_total_kib("MemTotal:       24684084 kB\nMemFree: 1 kB\n"),
            Some(24_684_084)
        );
        assert_eq!(
            meminfo_total_kib("Node 0 MemTotal:       17918156 kB\n"),
            Some(17_918_156)
        );
        assert_eq!(meminfo_total_kib("MemFree: 1 kB\n"), None);
    }
}
