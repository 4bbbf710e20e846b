//! Machine-type predicates the builder needs (libvirt's `qemuDomainIs*`).

/// A Q35 machine (`q35`, `pc-q35-*`).
pub fn is_q35(machine: &str) -> bool {
    machine == "q35" || machine.starts_with("pc-q35")
}

/// An i440FX machine (`pc`, `pc-i440fx-*`, `pc-0.x`, `pc-1.x`).
pub fn is_i440fx(machine: &str) -> bool {
    machine == "pc"
        || machine.starts_with("pc-i440fx")
        || machine.starts_with("pc-0.")
        || machine.starts_with("pc-1.")
}

/// Machines whose first IDE controller is built in (id `ide`).
pub fn has_builtin_ide(machine: &str) -> bool {
    is_i440fx(machine) || machine == "isapc" || machine == "g3beige" || machine.starts_with("malta")
}

/// Machines with a built-in floppy controller.
pub fn has_builtin_fdc(machine: &str) -> bool {
    is_i440fx(machine) || machine == "isapc"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_families_are_recognised() {
        assert!(is_q35("pc-q35-8.0"));
        assert!(is_i440fx("pc"));
        assert!(!is_i440fx("q35"));
        assert!(has_builtin_ide("pc-i440fx-2.12"));
    }
}
