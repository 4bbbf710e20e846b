//! Facts about the host that a probe records (libvirt keeps them in the
//! cache to notice a changed host). These functions read `/proc` and
//! `/sys`; everything else in this crate takes facts as inputs.

use std::path::Path;

/// Host facts recorded with a probe that found a hardware accelerator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `uname -r` and `-v` joined by a space (libvirt's `kernelVersion`).
    pub kernel_version: Option<String>,
    /// CPU microcode revision from `/proc/cpuinfo`.
    pub microcode_version: u32,
    /// libvirt's host CPU signature, e.g.
    /// `GenuineIntel, Intel(R) Xeon(R) Processor, family: 6, model: 167, stepping: 1`.
    pub cpu_signature: Option<String>,
    /// Nested KVM enabled (`/sys/module/kvm_*/parameters/nested`).
    pub kvm_supports_nesting: bool,
    /// AMD SEV usable by KVM (`/sys/module/kvm_amd/parameters/sev` and `/dev/sev`).
    pub kvm_supports_secure_guest: bool,
}

impl HostFacts {
    /// Reads the facts from this host; unreadable parts stay empty.
    pub fn read() -> HostFacts {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let kernel_version = match (
            read_trimmed("/proc/sys/kernel/osrelease"),
            read_trimmed("/proc/sys/kernel/version"),
        ) {
            (Some(r), Some(v)) => Some(format!("{r} {v}")),
            _ => None,
        };
        let nesting = ["kvm_intel", "kvm_amd", "kvm_hv", "kvm"].iter().any(|m| {
            read_trimmed(format!("/sys/module/{m}/parameters/nested"))
                .is_some_and(|v| v.starts_with(['Y', 'y', '1']))
        });
        let sev = read_trimmed("/sys/module/kvm_amd/parameters/sev")
            .is_some_and(|v| v.starts_with(['Y', 'y', '1']))
            && Path::new("/dev/sev").exists();
        HostFacts {
            kernel_version,
            microcode_version: microcode_from_cpuinfo(&cpuinfo),
            cpu_signature: cpu_signature_from_cpuinfo(&cpuinfo),
            kvm_supports_nesting: nesting,
            kvm_supports_secure_guest: sev,
        }
    }
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The first `key : value` of a `/proc/cpuinfo` text.
pub fn cpuinfo_field<'a>(cpuinfo: &'a str, key: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Microcode revision (`microcode : 0x...`), 0 when absent.
pub fn microcode_from_cpuinfo(cpuinfo: &str) -> u32 {
    cpuinfo_field(cpuinfo, "microcode")
        .and_then(|v| {
            let v = v.trim_start_matches("0x");
            u32::from_str_radix(v, 16).ok()
        })
        .unwrap_or(0)
}

/// libvirt's x86 host CPU signature (`virHostCPUGetSignature`).
pub fn cpu_signature_from_cpuinfo(cpuinfo: &str) -> Option<String> {
    let vendor = cpuinfo_field(cpuinfo, "vendor_id")?;
    let name = cpuinfo_field(cpuinfo, "model name")?;
    let family = cpuinfo_field(cpuinfo, "cpu family")?;
    let model = cpuinfo_field(cpuinfo, "model")?;
    let stepping = cpuinfo_field(cpuinfo, "stepping")?;
    Some(format!(
        "{vendor}, {name}, family: {family}, model: {model}, stepping: {stepping}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str =
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 167\n\
model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 1\nmicrocode\t: 0x1\nflags\t\t: fpu vme\n\n\
processor\t: 1\nvendor_id\t: GenuineIntel\n";

    #[test]
    fn signature_and_microcode_follow_libvirt() {
        assert_eq!(
            cpu_signature_from_cpuinfo(CPUINFO).as_deref(),
            Some("GenuineIntel, Intel(R) Xeon(R) Processor, family: 6, model: 167, stepping: 1")
        );
        assert_eq!(microcode_from_cpuinfo(CPUINFO), 1);
        assert_eq!(microcode_from_cpuinfo(""), 0);
        assert_eq!(cpu_signature_from_cpuinfo("vendor_id : X\n"), None);
    }
}
