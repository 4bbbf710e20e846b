//! The connection settings the supervisor hands to security plugins in
//! `DomainContext::settings`. Keys (all optional):
//!
//! | key | value |
//! |---|---|
//! | `dynamic_ownership`, `remember_owner`, `clear_emulator_capabilities` | `1`/`0` (qemu.conf) |
//! | `user`, `group` | the names QEMU runs as, when they have one |
//! | `privileged` | `1` for a root driver |
//! | `profile_root` | where per-domain MAC profiles live (`/etc/apparmor.d` for the system driver, `$root/etc/apparmor.d` embedded) |
//! | `seclabel.<model>.<field>` | the domain's `<seclabel model=...>`: `type`, `relabel`, `label`, `imagelabel`, `baselabel` |
//! | `norelabel.<model>` | an image whose `<source><seclabel model=... relabel='no'/>` keeps it as it is (one entry per image) |
//! | `state_dir` | the connection's status files (`<domstatus>` of running domains) |
//! | `undefined` | `1` in a `Release` sent when the domain was undefined |

/// The boolean value of `key` in `settings`, `default` when absent.
pub fn flag<'a>(
    mut settings: impl Iterator<Item = (&'a str, &'a str)>,
    key: &str,
    default: bool,
) -> bool {
    settings
        .find(|(k, _)| *k == key)
        .map(|(_, v)| matches!(v, "1" | "yes" | "true" | "on"))
        .unwrap_or(default)
}

/// The key of a domain `<seclabel>` field for `model`.
pub fn seclabel_key(model: &str, field: &str) -> String {
    format!("seclabel.{model}.{field}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_libvirt_style_booleans() {
        let s = [("dynamic_ownership", "1"), ("remember_owner", "0")];
        assert!(flag(s.iter().copied(), "dynamic_ownership", false));
        assert!(!flag(s.iter().copied(), "remember_owner", true));
        assert!(flag(s.iter().copied(), "absent", true));
    }
}
