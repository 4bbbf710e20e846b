//! libvirt's architecture names and the facts the prober needs about them.

/// One architecture libvirt knows (`virArch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchInfo {
    /// libvirt's name (`x86_64`, `i686`, `aarch64`, ...).
    pub name: &'static str,
    /// Word size in bits.
    pub wordsize: u32,
    /// Whether the architecture is big-endian.
    pub big_endian: bool,
    /// libvirt's preferred default machine (`preferredMachines`), if any.
    pub preferred_machine: Option<&'static str>,
}

const fn a(
    name: &'static str,
    wordsize: u32,
    big_endian: bool,
    preferred_machine: Option<&'static str>,
) -> ArchInfo {
    ArchInfo {
        name,
        wordsize,
        big_endian,
        preferred_machine,
    }
}

/// All architectures in libvirt's order (`virArch`), with libvirt's
/// preferred default machines.
pub const ARCHES: &[ArchInfo] = &[
    a("alpha", 64, true, Some("clipper")),
    a("armv6l", 32, false, Some("integratorcp")),
    a("armv7l", 32, false, Some("integratorcp")),
    a("armv7b", 32, true, Some("integratorcp")),
    a("aarch64", 64, false, Some("integratorcp")),
    a("cris", 32, false, Some("axis-dev88")),
    a("i686", 32, false, Some("pc")),
    a("ia64", 64, false, None),
    a("lm32", 32, true, Some("lm32-evr")),
    a("m68k", 32, true, Some("mcf5208evb")),
    a("microblaze", 32, true, Some("petalogix-s3adsp1800")),
    a("microblazeel", 32, false, Some("petalogix-s3adsp1800")),
    a("mips", 32, true, Some("malta")),
    a("mipsel", 32, false, Some("malta")),
    a("mips64", 64, true, Some("malta")),
    a("mips64el", 64, false, Some("malta")),
    a("openrisc", 32, true, Some("or1k-sim")),
    a("parisc", 32, true, None),
    a("parisc64", 64, true, None),
    a("ppc", 32, true, Some("g3beige")),
    a("ppcle", 32, false, Some("g3beige")),
    a("ppc64", 64, true, Some("pseries")),
    a("ppc64le", 64, false, Some("pseries")),
    a("ppcemb", 32, true, Some("bamboo")),
    a("riscv32", 32, false, Some("spike_v1.10")),
    a("riscv64", 64, false, Some("spike_v1.10")),
    a("s390", 32, true, None),
    a("s390x", 64, true, Some("s390-ccw-virtio")),
    a("sh4", 32, false, Some("shix")),
    a("sh4eb", 64, true, Some("shix")),
    a("sparc", 32, true, Some("SS-5")),
    a("sparc64", 64, true, Some("sun4u")),
    a("unicore32", 32, false, Some("puv3")),
    a("x86_64", 64, false, Some("pc")),
    a("xtensa", 32, false, Some("sim")),
    a("xtensaeb", 32, true, Some("sim")),
];

/// Facts about a libvirt architecture name.
pub fn arch_info(name: &str) -> Option<&'static ArchInfo> {
    ARCHES.iter().find(|a| a.name == name)
}

/// libvirt's architecture for a QEMU target name (`query-target`):
/// `i386` is `i686`, `arm` is `armv7l`, `or32` is `openrisc`
/// (`virQEMUCapsArchFromString`).
pub fn arch_from_qemu_target(target: &str) -> Option<&'static str> {
    let name = match target {
        "i386" => "i686",
        "arm" => "armv7l",
        "or32" => "openrisc",
        other => other,
    };
    arch_info(name).map(|a| a.name)
}

/// The QEMU target (the `qemu-system-TARGET` suffix) serving a libvirt
/// architecture (`virQEMUCapsArchToString`).
pub fn qemu_target_for_arch(arch: &str) -> &str {
    match arch {
        "i686" => "i386",
        "armv6l" | "armv7l" => "arm",
        "openrisc" => "or32",
        other => other,
    }
}

/// Whether the architecture is x86.
pub fn is_x86(arch: &str) -> bool {
    matches!(arch, "i686" | "x86_64")
}

/// Whether the architecture is ARM (32 or 64 bit).
pub fn is_arm(arch: &str) -> bool {
    matches!(arch, "armv6l" | "armv7l" | "armv7b" | "aarch64")
}

/// Whether the architecture is s390.
pub fn is_s390(arch: &str) -> bool {
    matches!(arch, "s390" | "s390x")
}

/// Whether a guest architecture runs natively (with KVM) on a host
/// architecture (`virQEMUCapsGuestIsNative`).
pub fn guest_is_native(host: &str, guest: &str) -> bool {
    host == guest
        || (host == "x86_64" && guest == "i686")
        || (host == "aarch64" && guest == "armv7l")
        || (host.starts_with("ppc64") && guest.starts_with("ppc64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_target_names_map_to_libvirt_arches() {
        assert_eq!(arch_from_qemu_target("i386"), Some("i686"));
        assert_eq!(arch_from_qemu_target("x86_64"), Some("x86_64"));
        assert_eq!(arch_from_qemu_target("arm"), Some("armv7l"));
        assert_eq!(arch_from_qemu_target("nonsense"), None);
        assert_eq!(qemu_target_for_arch("i686"), "i386");
        assert_eq!(arch_info("x86_64").unwrap().preferred_machine, Some("pc"));
    }
}
