//! Non-macOS hosts have no Hypervisor.framework sysctls.

/// Always `None` off macOS.
pub fn sysctl_int(_name: &str) -> Option<i64> {
    None
}
