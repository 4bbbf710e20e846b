//! The plugin object: `set_labels` checks reachability and hands files over,
//! `restore_labels` gives them back, `confine` plans the identity switch
//! that `pre_exec` applies in the QEMU child.

use std::path::Path;

use qvisor_sdk::prelude::*;
use qvisor_security_common::remember::Store;
use qvisor_security_common::settings::{flag, seclabel_key};
use qvisor_security_common::slots::Slots;

use crate::identity::{supplementary_groups, Identity};
use crate::ownership::{
    check_device_access, check_searchable, give_back, hand_over, Policy, Restore,
};

/// How many domains may be between `confine` and `release` at once.
const MAX_DOMAINS: usize = 4096;

/// libvirt's DAC driver.
pub struct DacPlugin {
    host: HostHandle,
    identities: Slots<Identity>,
    tokens: parking_lot::Mutex<Vec<(String, u64)>>,
}

fn settings(ctx: &DomainContext) -> impl Iterator<Item = (&str, &str)> {
    ctx.settings
        .iter()
        .map(|s| (s.key.as_str(), s.value.as_str()))
}

/// The policy for one resource of `ctx`.
pub fn policy_for(r: &Resource, private_dir: &str) -> Policy {
    let path = Path::new(r.path.as_str());
    if !private_dir.is_empty() && path.starts_with(private_dir) {
        return Policy::Private;
    }
    match (r.kind, r.access) {
        (ResourceKind::Device, _) => Policy::Skip,
        (ResourceKind::Disk, Access::ReadOnly) => Policy::HandOver,
        _ => Policy::Restore,
    }
}

impl DacPlugin {
    /// Creates the plugin.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(DacPlugin {
            host,
            identities: Slots::new(MAX_DOMAINS),
            tokens: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn store(&self, ctx: &DomainContext) -> Option<Store> {
        if !flag(settings(ctx), "remember_owner", true) {
            return None;
        }
        match Store::new("dac") {
            Ok(s) => Some(s),
            Err(e) => {
                self.host.warn(&format!(
                    "domain '{}': cannot read the host boot time ({e}); owners are not remembered in xattrs",
                    ctx.name
                ));
                None
            }
        }
    }

    fn relabel(ctx: &DomainContext) -> bool {
        flag(settings(ctx), "dynamic_ownership", true)
            && flag(settings(ctx), &seclabel_key("dac", "relabel"), true)
    }

    /// Whether QEMU will still bypass permission checks (root keeping its
    /// capabilities): then no directory can block it.
    fn qemu_bypasses_permissions(ctx: &DomainContext) -> bool {
        ctx.uid == 0 && !flag(settings(ctx), "clear_emulator_capabilities", true)
    }
}

impl QvisorPlugin for DacPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "security-dac",
            PluginKind::Security,
            env!("CARGO_PKG_VERSION"),
            &["security-model:dac", "pre-exec-phase:identity"],
        )
    }

    fn probe(&self) -> ProbeResult {
        ProbeResult::usable("POSIX ownership and capabilities are always available")
            .with_detail("doi", "0")
    }

    fn set_labels(&self, ctx: &DomainContext) -> Result<Vec<LabelRecord>, PluginError> {
        let (uid, gid) = (ctx.uid, ctx.gid);
        if !Self::qemu_bypasses_permissions(ctx) {
            let groups = supplementary_groups(uid, gid);
            for r in ctx.resources.iter() {
                // The private directory is handed over below, with its files.
                if matches!(policy_for(r, ctx.private_dir.as_str()), Policy::Private)
                    && r.path.as_str() != ctx.private_dir.as_str()
                {
                    continue;
                }
                check_searchable(Path::new(r.path.as_str()), uid, gid, &groups)
                    .map_err(|m| PluginError::invalid(format!("domain '{}': {m}", ctx.name)))?;
                if r.kind == ResourceKind::Device {
                    check_device_access(
                        Path::new(r.path.as_str()),
                        r.access == Access::ReadWrite,
                        uid,
                        gid,
                        &groups,
                    )
                    .map_err(|m| PluginError::invalid(format!("domain '{}': {m}", ctx.name)))?;
                }
            }
        }
        let mut records = vec![LabelRecord {
            path: RString::new(),
            data: format!(
                "<seclabel type='dynamic' model='dac' relabel='{}'><label>+{uid}:+{gid}</label><imagelabel>+{uid}:+{gid}</imagelabel></seclabel>",
                if Self::relabel(ctx) { "yes" } else { "no" }
            )
            .into(),
        }];
        if !Self::relabel(ctx) {
            return Ok(records);
        }
        let store = self.store(ctx);
        let mut done: Vec<(String, Restore)> = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for r in ctx.resources.iter() {
            if !seen.insert(r.path.as_str()) {
                continue;
            }
            let keep = ctx
                .settings
                .iter()
                .any(|s| s.key.as_str() == "norelabel.dac" && s.value == r.path);
            let policy = if keep {
                Policy::Skip
            } else {
                policy_for(r, ctx.private_dir.as_str())
            };
            let mut note = |m: String| self.host.info(&format!("domain '{}': {m}", ctx.name));
            match hand_over(
                Path::new(r.path.as_str()),
                uid,
                gid,
                policy,
                store.as_ref(),
                &mut note,
            ) {
                Ok(Some(restore)) => done.push((r.path.to_string(), restore)),
                Ok(None) => {}
                Err(e) => {
                    for (path, restore) in done.iter().rev() {
                        let _ = give_back(Path::new(path), restore, store.as_ref());
                    }
                    return Err(PluginError::failed(format!("domain '{}': {e}", ctx.name)));
                }
            }
        }
        records.extend(done.into_iter().map(|(path, restore)| LabelRecord {
            path: path.into(),
            data: restore.to_data().into(),
        }));
        Ok(records)
    }

    fn restore_labels(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        let store = Store::new("dac").ok();
        let mut failures = Vec::new();
        for rec in ctx.labels.iter().rev() {
            if rec.path.is_empty() {
                continue;
            }
            let Some(restore) = Restore::from_data(rec.data.as_str()) else {
                failures.push(format!("unknown record '{}' for '{}'", rec.data, rec.path));
                continue;
            };
            match give_back(Path::new(rec.path.as_str()), &restore, store.as_ref()) {
                Ok(msg) if !msg.is_empty() => {
                    self.host.debug(&format!("domain '{}': {msg}", ctx.name))
                }
                Ok(_) => {}
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(PluginError::failed(format!(
                "domain '{}': {}",
                ctx.name,
                failures.join("; ")
            )))
        }
    }

    fn confine(&self, ctx: &DomainContext) -> Result<Option<u64>, PluginError> {
        // SAFETY: geteuid/getegid cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let may_drop_bounding =
            caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
                .unwrap_or(false);
        let identity = Identity::plan(
            ctx.uid,
            ctx.gid,
            euid,
            egid,
            flag(settings(ctx), "clear_emulator_capabilities", true),
            supplementary_groups(ctx.uid, ctx.gid),
            may_drop_bounding,
        )
        .map_err(|e| PluginError::invalid(format!("domain '{}': {e}", ctx.name)))?;
        let Some(identity) = identity else {
            return Ok(None);
        };
        let token = self.identities.insert(identity).ok_or_else(|| {
            PluginError::failed(format!(
                "domain '{}': too many domains starting at once",
                ctx.name
            ))
        })?;
        let mut tokens = self.tokens.lock();
        // A domain restarted without a release: drop its old state.
        if let Some(pos) = tokens.iter().position(|(u, _)| u == ctx.uuid.as_str()) {
            let (_, old) = tokens.remove(pos);
            self.identities.remove(old);
        }
        tokens.push((ctx.uuid.to_string(), token));
        Ok(Some(token))
    }

    fn release(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        let mut tokens = self.tokens.lock();
        tokens.retain(|(uuid, token)| {
            if uuid == ctx.uuid.as_str() {
                self.identities.remove(*token);
                false
            } else {
                true
            }
        });
        Ok(())
    }

    fn pre_exec(&self, token: u64) -> i32 {
        // SAFETY: pre_exec runs in the forked child, where no other thread
        // exists to remove the entry.
        match unsafe { self.identities.get_unlocked(token) } {
            Some(identity) => identity.apply(),
            None => libc::EINVAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str, kind: ResourceKind, access: Access) -> Resource {
        Resource {
            path: path.into(),
            kind,
            access,
            shared: false,
        }
    }

    #[test]
    fn private_files_and_devices_are_not_restored() {
        let pd = "/var/lib/qvisor/qemu/domain-1-a";
        assert_eq!(
            policy_for(
                &res(
                    "/var/lib/qvisor/qemu/domain-1-a/master-key.aes",
                    ResourceKind::Other,
                    Access::ReadOnly
                ),
                pd
            ),
            Policy::Private
        );
        assert_eq!(
            policy_for(
                &res("/dev/kvm", ResourceKind::Device, Access::ReadWrite),
                pd
            ),
            Policy::Skip
        );
        assert_eq!(
            policy_for(
                &res("/i/base.qcow2", ResourceKind::Disk, Access::ReadOnly),
                pd
            ),
            Policy::HandOver
        );
        assert_eq!(
            policy_for(
                &res("/i/top.qcow2", ResourceKind::Disk, Access::ReadWrite),
                pd
            ),
            Policy::Restore
        );
        assert_eq!(
            policy_for(
                &res("/boot/vmlinuz", ResourceKind::Kernel, Access::ReadOnly),
                pd
            ),
            Policy::Restore
        );
    }
}
