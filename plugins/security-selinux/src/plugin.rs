//! The plugin object. Where SELinux is not enabled (no selinuxfs), the
//! plugin says it is unusable and refuses to label, so naming it in
//! `security_driver` fails a start with the reason; the default probe
//! skips it.

use std::ffi::CString;
use std::path::Path;

use parking_lot::Mutex;
use qvisor_sdk::prelude::*;
use qvisor_security_common::remember::Store;
use qvisor_security_common::slots::Slots;

use crate::context::Context;
use crate::labeller::{Labeller, Policy};
use crate::mcs::{CategoryRange, KernelRandom};
use crate::probe::{selinux_state, SelinuxState};

/// How many domains may be confined at once.
const MAX_DOMAINS: usize = 4096;

/// Plugin settings (RON), all optional:
/// `(domain_context: "...", tcg_context: "...", image_context: "...",
///   content_context: "...", categories: "s0:c0.c1023")`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    domain_context: Option<String>,
    tcg_context: Option<String>,
    image_context: Option<String>,
    content_context: Option<String>,
    categories: Option<String>,
}

/// SELinux sVirt.
pub struct SelinuxPlugin {
    host: HostHandle,
    state: SelinuxState,
    labeller: Mutex<Labeller>,
    exec_labels: Slots<CString>,
    tokens: Mutex<Vec<(String, u64)>>,
    process_labels: Mutex<Vec<(String, String)>>,
}

/// The policy's own virtual-machine contexts, when it ships them.
fn policy_file_context(name: &str) -> Option<Context> {
    let config = std::fs::read_to_string("/etc/selinux/config").ok()?;
    let policy = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("SELINUXTYPE="))?
        .trim()
        .to_string();
    let text = std::fs::read_to_string(format!("/etc/selinux/{policy}/contexts/{name}")).ok()?;
    Context::parse(text.lines().next()?)
}

fn policy_from(settings: &str) -> Result<Policy, PluginError> {
    let s: Settings = if settings.trim().is_empty() {
        Settings::default()
    } else {
        ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .from_str(settings)
            .map_err(|e| PluginError::invalid(format!("settings: {e}")))?
    };
    let mut p = Policy::default();
    if let Some(c) = policy_file_context("virtual_domain_context") {
        p.domain = c;
    }
    if let Some(c) = policy_file_context("virtual_image_context") {
        p.image = c;
    }
    let ctx = |v: &Option<String>, into: &mut Context| -> Result<(), PluginError> {
        if let Some(v) = v {
            *into = Context::parse(v)
                .ok_or_else(|| PluginError::invalid(format!("settings: invalid context '{v}'")))?;
        }
        Ok(())
    };
    ctx(&s.domain_context, &mut p.domain)?;
    ctx(&s.tcg_context, &mut p.tcg_domain)?;
    ctx(&s.image_context, &mut p.image)?;
    ctx(&s.content_context, &mut p.content)?;
    if let Some(r) = &s.categories {
        p.categories = CategoryRange::parse(r).ok_or_else(|| {
            PluginError::invalid(format!("settings: invalid category range '{r}'"))
        })?;
    }
    Ok(p)
}

impl SelinuxPlugin {
    /// Creates the plugin.
    pub fn new(host: HostHandle, settings: &str) -> Result<Self, PluginError> {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        Ok(SelinuxPlugin {
            host,
            state: selinux_state(&mounts, Path::new("/")),
            labeller: Mutex::new(Labeller {
                policy: policy_from(settings)?,
                ..Labeller::default()
            }),
            exec_labels: Slots::new(MAX_DOMAINS),
            tokens: Mutex::new(Vec::new()),
            process_labels: Mutex::new(Vec::new()),
        })
    }

    fn require_enabled(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        if self.state.enabled {
            Ok(())
        } else {
            Err(PluginError::unsupported(format!(
                "domain '{}': {}",
                ctx.name, self.state.reason
            )))
        }
    }
}

impl QvisorPlugin for SelinuxPlugin {
    fn describe(&self) -> Description {
        Description::new(
            "security-selinux",
            PluginKind::Security,
            env!("CARGO_PKG_VERSION"),
            &["security-model:selinux", "pre-exec-phase:label"],
        )
    }

    fn probe(&self) -> ProbeResult {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let s = selinux_state(&mounts, Path::new("/"));
        self.host.debug(&format!("probe: {}", s.reason));
        let r = if s.enabled {
            ProbeResult::usable(s.reason)
        } else {
            ProbeResult::unusable(s.reason)
        };
        r.with_detail("doi", "0")
    }

    fn set_labels(&self, ctx: &DomainContext) -> Result<Vec<LabelRecord>, PluginError> {
        self.require_enabled(ctx)?;
        let mut labeller = self.labeller.lock();
        let Some(plan) = labeller
            .plan(ctx, &mut KernelRandom)
            .map_err(|e| PluginError::invalid(format!("domain '{}': {e}", ctx.name)))?
        else {
            return Ok(Vec::new());
        };
        let store = Store::new("selinux").ok();
        match Labeller::apply(&plan, store.as_ref()) {
            Ok(records) => {
                let mut labels = self.process_labels.lock();
                labels.retain(|(u, _)| u != ctx.uuid.as_str());
                labels.push((ctx.uuid.to_string(), plan.process.clone()));
                Ok(records)
            }
            Err(e) => {
                labeller.forget(&plan);
                Err(PluginError::failed(format!("domain '{}': {e}", ctx.name)))
            }
        }
    }

    fn restore_labels(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        let records: Vec<LabelRecord> = ctx.labels.iter().cloned().collect();
        self.labeller.lock().release_recorded(&records);
        let failures = Labeller::restore(&records, Store::new("selinux").ok().as_ref());
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
        self.require_enabled(ctx)?;
        // The process label set_labels decided for this domain, else a
        // static one from the XML.
        let label = self
            .process_labels
            .lock()
            .iter()
            .find(|(u, _)| u == ctx.uuid.as_str())
            .map(|(_, l)| l.clone())
            .or_else(|| ctx.setting("seclabel.selinux.label").map(str::to_string));
        let Some(label) = label else {
            return Ok(None);
        };
        let label =
            CString::new(label).map_err(|_| PluginError::invalid("SELinux label contains NUL"))?;
        let token = self.exec_labels.insert(label).ok_or_else(|| {
            PluginError::failed(format!(
                "domain '{}': too many domains starting at once",
                ctx.name
            ))
        })?;
        let mut tokens = self.tokens.lock();
        if let Some(pos) = tokens.iter().position(|(u, _)| u == ctx.uuid.as_str()) {
            let (_, old) = tokens.remove(pos);
            self.exec_labels.remove(old);
        }
        tokens.push((ctx.uuid.to_string(), token));
        Ok(Some(token))
    }

    fn release(&self, ctx: &DomainContext) -> Result<(), PluginError> {
        self.process_labels
            .lock()
            .retain(|(u, _)| u != ctx.uuid.as_str());
        self.tokens.lock().retain(|(uuid, token)| {
            if uuid == ctx.uuid.as_str() {
                self.exec_labels.remove(*token);
                false
            } else {
                true
            }
        });
        Ok(())
    }

    /// `setexeccon`: the label QEMU gets at exec, written to
    /// `/proc/thread-self/attr/exec` (open/write/close only).
    fn pre_exec(&self, token: u64) -> i32 {
        // SAFETY: pre_exec runs in the forked child: no other thread can
        // remove the entry.
        let Some(label) = (unsafe { self.exec_labels.get_unlocked(token) }) else {
            return libc::EINVAL;
        };
        let errno = || {
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EPERM)
        };
        // SAFETY: a static NUL-terminated path; `label` is a valid C string
        // whose bytes we write; the descriptor is closed before returning.
        unsafe {
            let fd = libc::open(
                c"/proc/thread-self/attr/exec".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return errno();
            }
            let bytes = label.as_bytes();
            let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            let e = if n < 0 { errno() } else { 0 };
            libc::close(fd);
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_the_policy_contexts() {
        let p = policy_from(
            r#"(categories: "s0:c100.c199", tcg_context: "system_u:system_r:svirt_t:s0")"#,
        )
        .unwrap();
        assert_eq!(p.categories.min, 100);
        assert_eq!(p.tcg_domain.kind, "svirt_t");
        assert!(policy_from("(bogus: 1)").is_err());
        assert!(policy_from(r#"(categories: "c9")"#).is_err());
    }
}
