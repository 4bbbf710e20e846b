//! The plugin object. `set_labels` (re)generates and validates the domain's
//! profile and loads it where AppArmor runs; `confine` arranges the profile
//! switch at exec; `restore_labels` unloads it after the domain stopped.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;

use qvisor_sdk::prelude::*;
use qvisor_security_common::settings::seclabel_key;
use qvisor_security_common::slots::Slots;

use crate::probe::{host_state, AppArmorState};
use crate::profile::{files, from_template, profile_name, DEFAULT_TEMPLATE};

/// How many domains may be confined at once.
const MAX_DOMAINS: usize = 4096;

/// The parser's default kernel feature set on Debian (used to validate
/// without a kernel, `-K` without `--features-file` would ask the kernel).
const FEATURES_FILE: &str = "/usr/share/apparmor-features/features";

/// The label record of a loaded profile file.
const PROFILE_RECORD: &str = "profile";

/// AppArmor sVirt.
pub struct AppArmorPlugin {
    host: HostHandle,
    state: AppArmorState,
    parser: PathBuf,
    onexec: Slots<CString>,
    tokens: parking_lot::Mutex<Vec<(String, u64)>>,
}

fn setting<'a>(ctx: &'a DomainContext, key: &str) -> Option<&'a str> {
    ctx.setting(key)
}

/// Where a connection keeps its domain profiles: `<profile_root>/libvirt`.
pub fn profile_dir(ctx: &DomainContext) -> PathBuf {
    Path::new(setting(ctx, "profile_root").unwrap_or("/etc/apparmor.d")).join("libvirt")
}

/// Runs `apparmor_parser` with `args`; the error is its stderr.
fn run_parser(parser: &Path, args: &[&str], profile: &Path) -> Result<(), String> {
    let out = Command::new(parser)
        .args(args)
        .arg(profile)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", parser.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.trim();
    Err(if err.is_empty() {
        format!("{} exited with {}", parser.display(), out.status)
    } else {
        err.to_string()
    })
}

fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = path.with_extension("qvisor-new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl AppArmorPlugin {
    /// Creates the plugin. Settings (RON): none.
    pub fn new(host: HostHandle, _settings: &str) -> Result<Self, PluginError> {
        let parser = ["/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("apparmor_parser"));
        Ok(AppArmorPlugin {
            host,
            state: host_state(),
            parser,
            onexec: Slots::new(MAX_DOMAINS),
            tokens: parking_lot::Mutex::new(Vec::new()),
        })
    }

    fn disabled_for(ctx: &DomainContext) -> bool {
        setting(ctx, &seclabel_key("apparmor", "type")) == Some("none")
    }

    /// `-I <profile_root>` so `#include <libvirt/...>` finds this connection's
    /// files; the system's tunables and abstractions come from the default
    /// base directory.
    fn include_args(ctx: &DomainContext) -> Vec<String> {
        let root = setting(ctx, "profile_root").unwrap_or("/etc/apparmor.d");
        vec![
            "-I".into(),
            root.into(),
            "-I".into(),
            "/etc/apparmor.d".into(),
        ]
    }

    /// Generates, writes and validates the profile; returns its path.
    fn generate(&self, ctx: &DomainContext) -> Result<PathBuf, String> {
        let dir = profile_dir(ctx);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create '{}': {e}", dir.display()))?;
        let name = profile_name(ctx.uuid.as_str());
        let template_path = dir.join("TEMPLATE.qemu");
        let (template, from) = match std::fs::read_to_string(&template_path) {
            Ok(t) => (t, template_path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                DEFAULT_TEMPLATE.to_string(),
                "qvisor's default template".to_string(),
            ),
            Err(e) => return Err(format!("cannot read '{}': {e}", template_path.display())),
        };
        let resources: Vec<Resource> = ctx.resources.iter().cloned().collect();
        let file_rules = files(&resources, ctx.emulator.as_str()).map_err(|e| e.to_string())?;
        let profile = from_template(&template, &name)
            .map_err(|e| format!("AppArmor template {from}: {e}"))?;
        let files_path = dir.join(format!("{name}.files"));
        let profile_path = dir.join(&name);
        write_if_changed(&files_path, &file_rules)
            .map_err(|e| format!("cannot write '{}': {e}", files_path.display()))?;
        write_if_changed(&profile_path, &profile)
            .map_err(|e| format!("cannot write '{}': {e}", profile_path.display()))?;
        let mut args: Vec<String> = vec!["-Q".into(), "-K".into()];
        if Path::new(FEATURES_FILE).is_file() {
            args.extend(["--features-file".into(), FEATURES_FILE.into()]);
        }
        args.extend(Self::include_args(ctx));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_parser(&self.parser, &args, &profile_path).map_err(|e| {
            format!(
                "AppArmor profile '{}' made from {from} does not parse: {e}",
                profile_path.display()
            )
        })?;
        Ok(profile_path)
    }
}

impl QvisorPlugin for AppArmorPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "security-apparmor",
            PluginKind::Security,
            env!("CARGO_PKG_VERSION"),
            &["security-model:apparmor", "pre-exec-phase:label"],
        )
    }

    fn probe(&self) -> ProbeResult {
        let s = host_state();
        self.host.debug(&format!("probe: {}", s.reason));
        if s.enabled {
            ProbeResult::usable(s.reason)
        } else {
            ProbeResult::unusable(s.reason)
        }
    }

    fn set_labels(&self, ctx: &DomainContext) -> Result<Vec<LabelRecord>, PluginError> {
        if Self::disabled_for(ctx) {
            return Ok(Vec::new());
        }
        let profile = self
            .generate(ctx)
            .map_err(|e| PluginError::invalid(format!("domain '{}': {e}", ctx.name)))?;
        let name = profile_name(ctx.uuid.as_str());
        let mut records = vec![LabelRecord {
            path: RString::new(),
            data: format!(
                "<seclabel type='dynamic' model='apparmor' relabel='yes'><label>{name}</label><imagelabel>{name}</imagelabel></seclabel>"
            )
            .into(),
        }];
        if self.state.enabled {
            let mut args = vec!["-r".to_string(), "-W".to_string()];
            args.extend(Self::include_args(ctx));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_parser(&self.parser, &args, &profile).map_err(|e| {
                PluginError::failed(format!(
                    "domain '{}': cannot load AppArmor profile '{}': {e}",
                    ctx.name,
                    profile.display()
                ))
            })?;
            records.push(LabelRecord {
                path: profile.display().to_string().into(),
                data: PROFILE_RECORD.into(),
            });
        } else {
            self.host.info(&format!(
                "domain '{}': profile {} generated and validated, not enforcing: {}",
                ctx.name,
                profile.display(),
                self.state.reason
            ));
        }
        Ok(records)
    }

    fn restore_labels(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        for rec in ctx
            .labels
            .iter()
            .filter(|r| r.data.as_str() == PROFILE_RECORD)
        {
            let profile = Path::new(rec.path.as_str());
            if let Err(e) = run_parser(&self.parser, &["-R"], profile) {
                self.host.warn(&format!(
                    "domain '{}': cannot unload AppArmor profile '{}': {e}",
                    ctx.name,
                    profile.display()
                ));
            }
        }
        Ok(())
    }

    fn confine(&self, ctx: &DomainContext) -> Result<Option<u64>, PluginError> {
        if Self::disabled_for(ctx) || !self.state.enabled {
            return Ok(None);
        }
        let name = qvisor_apparmor_sys::profile_name(&profile_name(ctx.uuid.as_str()))
            .map_err(|e| PluginError::invalid(format!("domain '{}': {e}", ctx.name)))?;
        let token = self.onexec.insert(name).ok_or_else(|| {
            PluginError::failed(format!(
                "domain '{}': too many domains starting at once",
                ctx.name
            ))
        })?;
        let mut tokens = self.tokens.lock();
        if let Some(pos) = tokens.iter().position(|(u, _)| u == ctx.uuid.as_str()) {
            let (_, old) = tokens.remove(pos);
            self.onexec.remove(old);
        }
        tokens.push((ctx.uuid.to_string(), token));
        Ok(Some(token))
    }

    fn release(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        if ctx.setting("undefined") == Some("1") && !ctx.uuid.is_empty() {
            // The domain is gone for good: so are its profile files.
            let dir = profile_dir(ctx);
            let name = profile_name(ctx.uuid.as_str());
            let profile = dir.join(&name);
            if self.state.enabled && profile.exists() {
                let _ = run_parser(&self.parser, &["-R"], &profile);
            }
            for f in [profile, dir.join(format!("{name}.files"))] {
                if let Err(e) = std::fs::remove_file(&f) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        self.host.warn(&format!(
                            "domain '{}': cannot remove '{}': {e}",
                            ctx.name,
                            f.display()
                        ));
                    }
                }
            }
        }
        self.tokens.lock().retain(|(uuid, token)| {
            if uuid == ctx.uuid.as_str() {
                self.onexec.remove(*token);
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
        let Some(name) = (unsafe { self.onexec.get_unlocked(token) }) else {
            return libc::EINVAL;
        };
        match qvisor_apparmor_sys::change_onexec(name) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(libc::EPERM),
        }
    }
}
