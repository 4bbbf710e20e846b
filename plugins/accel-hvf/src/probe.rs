//! The probe logic, with the host access injected so it is testable anywhere.

/// What the probe concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HvfProbe {
    /// Whether HVF can run guests.
    pub usable: bool,
    /// Why, one line.
    pub reason: String,
}

/// Decides whether HVF is usable. `os` is `std::env::consts::OS`;
/// `sysctl` reads an integer sysctl by name (macOS only).
pub fn probe_hvf(os: &str, sysctl: impl Fn(&str) -> Option<i64>) -> HvfProbe {
    if os != "macos" {
        return HvfProbe {
            usable: false,
            reason: format!("Hypervisor.framework is macOS-only (this host runs {os})"),
        };
    }
    match sysctl("kern.hv_support") {
        Some(1) => HvfProbe {
            usable: true,
            reason: "kern.hv_support = 1".to_string(),
        },
        Some(v) => HvfProbe {
            usable: false,
            reason: format!(
                "kern.hv_support = {v}: this Mac does not support Hypervisor.framework"
            ),
        },
        None => HvfProbe {
            usable: false,
            reason: "sysctl kern.hv_support is not available".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_is_unusable_with_reason() {
        let p = probe_hvf("linux", |_| panic!("sysctl must not be read off macOS"));
        assert!(!p.usable);
        assert!(p.reason.contains("macOS-only"));
    }

    #[test]
    fn macos_with_hv_support_is_usable() {
        let p = probe_hvf("macos", |name| (name == "kern.hv_support").then_some(1));
        assert!(p.usable, "{p:?}");
    }

    #[test]
    fn macos_without_hv_support_is_unusable() {
        let p = probe_hvf("macos", |_| Some(0));
        assert!(!p.usable);
        assert!(p.reason.contains("kern.hv_support = 0"));
    }

    #[test]
    fn macos_without_the_sysctl_is_unusable() {
        let p = probe_hvf("macos", |_| None);
        assert!(!p.usable);
        assert!(p.reason.contains("not available"));
    }
}
