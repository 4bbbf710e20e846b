//! The plugin object: `confine` builds the domain's ruleset in the
//! supervisor and keeps its descriptor; `pre_exec` sets `no_new_privs` and
//! calls `landlock_restrict_self` in the QEMU child, two system calls on a
//! descriptor that already exists.

use std::os::fd::{AsRawFd, OwnedFd};

use landlock::Access as _;
use landlock::{AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI};
use qvisor_sdk::prelude::*;
use qvisor_security_common::slots::Slots;

use crate::rules::domain_rules;

/// How many domains may be confined at once.
const MAX_DOMAINS: usize = 4096;

/// Landlock.
pub struct LandlockPlugin {
    host: HostHandle,
    rulesets: Slots<OwnedFd>,
    tokens: parking_lot::Mutex<Vec<(String, u64)>>,
}

/// The kernel's Landlock ABI version, or why there is none.
pub fn kernel_abi() -> Result<i32, String> {
    // SAFETY: landlock_create_ruleset(NULL, 0, VERSION) only returns a number.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    if v < 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) => {
                "Landlock is built into the kernel but disabled at boot (lsm=)".into()
            }
            Some(libc::ENOSYS) => "Landlock is not in this kernel".into(),
            _ => format!("Landlock is unavailable: {e}"),
        });
    }
    Ok(v as i32)
}

impl LandlockPlugin {
    /// Creates the plugin.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        Ok(LandlockPlugin {
            host,
            rulesets: Slots::new(MAX_DOMAINS),
            tokens: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn build(&self, ctx: &DomainContext, abi: ABI) -> Result<OwnedFd, String> {
        let resources: Vec<Resource> = ctx.resources.iter().cloned().collect();
        let rules = domain_rules(&resources, ctx.emulator.as_str(), abi);
        let mut ruleset = Ruleset::default()
            .handle_access(AccessFs::from_all(abi))
            .and_then(|r| r.create())
            .map_err(|e| format!("cannot create a ruleset: {e}"))?;
        for rule in &rules {
            let fd = PathFd::new(&rule.path)
                .map_err(|e| format!("cannot open '{}': {e}", rule.path.display()))?;
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, rule.access))
                .map_err(|e| format!("cannot allow '{}': {e}", rule.path.display()))?;
        }
        self.host.debug(&format!(
            "domain '{}': Landlock ruleset with {} rules",
            ctx.name,
            rules.len()
        ));
        let fd: Option<OwnedFd> = ruleset.into();
        fd.ok_or_else(|| "the kernel does not enforce Landlock".to_string())
    }
}

impl QvisorPlugin for LandlockPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "security-landlock",
            PluginKind::Security,
            env!("CARGO_PKG_VERSION"),
            &["security-model:landlock", "pre-exec-phase:restrict"],
        )
    }

    fn probe(&self) -> ProbeResult {
        match kernel_abi() {
            Ok(v) => {
                ProbeResult::usable(format!("Landlock ABI {v}")).with_detail("abi", v.to_string())
            }
            Err(reason) => ProbeResult::unusable(reason),
        }
    }

    fn set_labels(&self, _ctx: &DomainContext) -> Result<Vec<LabelRecord>, PluginError> {
        // Nothing on disk changes: the confinement is all in the ruleset.
        Ok(Vec::new())
    }

    fn restore_labels(&self, _ctx: &DomainContext) -> Result<(), PluginError> {
        Ok(())
    }

    fn confine(&self, ctx: &DomainContext) -> Result<Option<u64>, PluginError> {
        if ctx.setting("seclabel.landlock.type") == Some("none") {
            return Ok(None);
        }
        let version = kernel_abi()
            .map_err(|r| PluginError::unsupported(format!("domain '{}': {r}", ctx.name)))?;
        let fd = self
            .build(ctx, ABI::from(version))
            .map_err(|e| PluginError::failed(format!("domain '{}': {e}", ctx.name)))?;
        let token = self.rulesets.insert(fd).ok_or_else(|| {
            PluginError::failed(format!(
                "domain '{}': too many domains starting at once",
                ctx.name
            ))
        })?;
        let mut tokens = self.tokens.lock();
        if let Some(pos) = tokens.iter().position(|(u, _)| u == ctx.uuid.as_str()) {
            let (_, old) = tokens.remove(pos);
            self.rulesets.remove(old);
        }
        tokens.push((ctx.uuid.to_string(), token));
        Ok(Some(token))
    }

    fn release(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        self.tokens.lock().retain(|(uuid, token)| {
            if uuid == ctx.uuid.as_str() {
                self.rulesets.remove(*token);
                false
            } else {
                true
            }
        });
        Ok(())
    }

    fn pre_exec(&self, token: u64) -> i32 {
        // SAFETY: pre_exec runs in the forked child: no other thread can
        // remove the entry.
        let Some(fd) = (unsafe { self.rulesets.get_unlocked(token) }) else {
            return libc::EINVAL;
        };
        let errno = || {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM)
        };
        // SAFETY: prctl and landlock_restrict_self take integers only; the
        // ruleset descriptor is ours and open.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                return errno();
            }
            if libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0u32) < 0 {
                return errno();
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn test_host() -> HostHandle {
        use abi_stable::sabi_trait::TD_Opaque;
        use abi_stable::std_types::RStr;
        struct Quiet;
        impl qvisor_sdk::Host for Quiet {
            fn log(&self, _l: LogLevel, _t: RStr<'_>, _m: RStr<'_>) {}
            fn event(&self, _e: PluginEvent) {}
        }
        HostHandle::new(qvisor_sdk::Host_TO::from_value(Quiet, TD_Opaque))
    }

    #[test]
    fn a_confined_child_reads_its_own_file_and_not_another() {
        if let Err(r) = kernel_abi() {
            eprintln!("skipping: {r}");
            return;
        }
        let dir = std::env::temp_dir().join(format!("qvisor-landlock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mine = dir.join("mine.img");
        let theirs = dir.join("theirs.img");
        std::fs::write(&mine, "mine\n").unwrap();
        std::fs::write(&theirs, "theirs\n").unwrap();
        let plugin = LandlockPlugin::new(test_host(), "").unwrap();
        let ctx = DomainContext {
            name: "a".into(),
            uuid: "u".into(),
            virt_type: "qemu".into(),
            emulator: "/bin/sh".into(),
            xml: RString::new(),
            private_dir: RString::new(),
            uid: 0,
            gid: 0,
            resources: vec![Resource {
                path: mine.display().to_string().into(),
                kind: ResourceKind::Disk,
                access: Access::ReadOnly,
                shared: false,
            }]
            .into(),
            settings: RVec::new(),
            labels: RVec::new(),
        };
        let token = plugin.confine(&ctx).unwrap().unwrap();
        let plugin = std::sync::Arc::new(plugin);
        let p = plugin.clone();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c").arg(format!(
            "cat {}; cat {}; echo x >> {}",
            mine.display(),
            theirs.display(),
            mine.display()
        ));
        // SAFETY: the hook makes two system calls on prepared state.
        unsafe {
            cmd.pre_exec(move || match p.pre_exec(token) {
                0 => Ok(()),
                e => Err(std::io::Error::from_raw_os_error(e)),
            });
        }
        let out = cmd.output().unwrap();
        plugin.release(&ctx).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stdout, "mine\n", "stderr: {stderr}");
        assert!(stderr.contains("theirs.img: Permission denied"), "{stderr}");
        // Read-only: appending to its own file is refused too.
        assert!(stderr.contains("mine.img: Permission denied"), "{stderr}");
    }
}
