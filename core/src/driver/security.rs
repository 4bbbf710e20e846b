//! The security part of starting and stopping a domain.
//!
//! Before QEMU is spawned: which host files and devices QEMU will open (the
//! [`domain_resources`] of the live definition), which uid/gid it runs as,
//! then the security stack (qemu.conf `security_driver`, DAC always first):
//! each layer's plugin labels the resources (`SetLabels`, whose records go to
//! the status XML) and prepares its confinement (`Confine`), which its
//! `pre_exec` applies in the child. The domain's cgroup (core, not a
//! plugin) is created with its device list and joined first in the child.
//!
//! Order in the child, whatever the configured order: join the cgroups, then
//! the layers that set an exec label (`pre-exec-phase:label`: SELinux,
//! AppArmor; they write to `/proc/self/attr`), then the identity switch
//! (`pre-exec-phase:identity`: DAC), then the layers that restrict what can
//! be opened (`pre-exec-phase:restrict`: Landlock), which would otherwise
//! block the label writes. A plugin says its phase in its description.
//!
//! After QEMU exits: the labels are restored (`Inner::restore_labels`), each
//! layer releases the domain, and the cgroup is removed.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qvisor_conf::qemu::IdKind;
use qvisor_conf::Mode;
use qvisor_domain::xml::{parse_document, Element};
use qvisor_domain::{ChrType, DiskDevice, DiskType, Domain, DomainType};
use qvisor_sdk::{
    Access, DomainContext, LabelRecord, PluginKind, Reply, Request, Resource, ResourceKind, Setting,
};

use super::cgroup::{self, DeviceRule, DeviceType, DomainCgroup, Layout, PTY_MAJOR};
use super::error::{DriverError, Result};
use super::process::PreExecHook;
use super::runtime::AppliedLabel;
use super::Inner;
use crate::plugins::PluginInstance;

/// The deepest backing chain followed.
const MAX_BACKING_DEPTH: usize = 64;

/// The qcow2 header extension naming the backing file's format.
const QCOW2_EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;

/// Everything QEMU will open for `def`: images (with their backing chains),
/// kernel/initrd/DTB, firmware and NVRAM, character device files, sockets
/// and logs, the private directory with its monitor socket and master key,
/// the domain log, and `/dev/kvm` for KVM. Paths appear once, read-write
/// winning over read-only.
pub fn domain_resources(
    def: &Domain,
    private_dir: &Path,
    monitor: &Path,
    domain_log: &Path,
) -> Vec<Resource> {
    let mut list = ResourceList::default();
    for disk in &def.devices.disks {
        let Some(path) = disk.source_path() else {
            continue;
        };
        if !matches!(disk.kind, DiskType::File | DiskType::Block | DiskType::Dir) {
            continue;
        }
        let readonly = disk.readonly || matches!(disk.device, DiskDevice::Cdrom);
        let kind = if disk.kind == DiskType::Dir {
            ResourceKind::Directory
        } else {
            ResourceKind::Disk
        };
        list.add(path, kind, access(readonly), disk.shareable);
        let format = disk
            .driver
            .as_ref()
            .and_then(|d| d.format.as_deref())
            .unwrap_or("raw");
        for layer in backing_chain(&disk.residue, Path::new(path), format) {
            // Every layer below the top is shared and only read.
            list.add(&layer, ResourceKind::Disk, Access::ReadOnly, true);
        }
    }
    let os = &def.os;
    for (p, kind) in [
        (&os.kernel, ResourceKind::Kernel),
        (&os.initrd, ResourceKind::Initrd),
        (&os.dtb, ResourceKind::Other),
    ] {
        if let Some(p) = p {
            list.add(p, kind, Access::ReadOnly, false);
        }
    }
    for t in &os.acpi_tables {
        list.add(t, ResourceKind::Other, Access::ReadOnly, false);
    }
    if let Some(p) = os.loader.as_ref().and_then(|l| l.path.as_ref()) {
        list.add(p, ResourceKind::Loader, Access::ReadOnly, false);
    }
    if let Some(p) = os.nvram.as_ref().and_then(|n| n.path.as_ref()) {
        list.add(p, ResourceKind::Nvram, Access::ReadWrite, false);
    }
    let d = &def.devices;
    for chr in d
        .serials
        .iter()
        .chain(&d.parallels)
        .chain(&d.consoles)
        .chain(&d.channels)
    {
        let src = &chr.source;
        if let Some(p) = &src.path {
            match src.kind {
                ChrType::File => list.add(p, ResourceKind::Log, Access::ReadWrite, false),
                ChrType::Unix => list.add(p, ResourceKind::Socket, Access::ReadWrite, false),
                ChrType::Dev => list.add(p, ResourceKind::Device, Access::ReadWrite, false),
                ChrType::Pipe => {
                    for suffix in ["", ".in", ".out"] {
                        let p = format!("{p}{suffix}");
                        list.add(&p, ResourceKind::Other, Access::ReadWrite, false);
                    }
                }
                _ => {}
            }
        }
        if let Some(p) = &src.log_file {
            list.add(p, ResourceKind::Log, Access::ReadWrite, false);
        }
    }
    let pd = private_dir.display().to_string();
    list.add(&pd, ResourceKind::Directory, Access::ReadWrite, false);
    list.add(
        &private_dir.join("master-key.aes").display().to_string(),
        ResourceKind::Other,
        Access::ReadOnly,
        false,
    );
    list.add(
        &monitor.display().to_string(),
        ResourceKind::Socket,
        Access::ReadWrite,
        false,
    );
    list.add(
        &domain_log.display().to_string(),
        ResourceKind::Log,
        Access::ReadWrite,
        false,
    );
    if def.kind == Some(DomainType::Kvm) {
        list.add("/dev/kvm", ResourceKind::Device, Access::ReadWrite, false);
    }
    list.0
}

fn access(readonly: bool) -> Access {
    if readonly {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    }
}

#[derive(Default)]
struct ResourceList(Vec<Resource>);

impl ResourceList {
    fn add(&mut self, path: &str, kind: ResourceKind, access: Access, shared: bool) {
        // Relative paths (network sources, QEMU-side names) are not host files.
        if !path.starts_with('/') {
            return;
        }
        if let Some(r) = self.0.iter_mut().find(|r| r.path.as_str() == path) {
            if access == Access::ReadWrite {
                r.access = Access::ReadWrite;
            }
            r.shared |= shared;
            return;
        }
        self.0.push(Resource {
            path: path.into(),
            kind,
            access,
            shared,
        });
    }
}

/// The layers below an image: from the XML's `<backingStore>` when it
/// names them, else from the image headers (qcow2 only: another format is
/// never probed, as libvirt refuses to guess formats).
fn backing_chain(disk_residue: &Element, top: &Path, format: &str) -> Vec<String> {
    if let Some(bs) = disk_residue.find("backingStore") {
        let mut out = Vec::new();
        let mut cur = Some(bs);
        while let Some(b) = cur {
            let path = b
                .find("source")
                .and_then(|s| s.get_attr("file").or_else(|| s.get_attr("dev")));
            let Some(path) = path else { break };
            out.push(path.to_string());
            cur = b.find("backingStore");
        }
        if !out.is_empty() {
            return out;
        }
    }
    let mut out = Vec::new();
    let mut path = top.to_path_buf();
    let mut format = format.to_string();
    while format == "qcow2" && out.len() < MAX_BACKING_DEPTH {
        let Some((backing, backing_format)) = qcow2_backing(&path) else {
            break;
        };
        let backing = if backing.is_absolute() {
            backing
        } else {
            path.parent().unwrap_or(Path::new("/")).join(backing)
        };
        out.push(backing.display().to_string());
        path = backing;
        format = backing_format.unwrap_or_else(|| "raw".into());
    }
    out
}

/// The backing file of a qcow2 image and its format (header extension), if any.
fn qcow2_backing(path: &Path) -> Option<(PathBuf, Option<String>)> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = vec![0u8; 64 * 1024];
    let n = f.read(&mut head).ok()?;
    head.truncate(n);
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_be_bytes(head.get(o..o + 4)?.try_into().ok()?))
    };
    let u64_at = |o: usize| -> Option<u64> {
        Some(u64::from_be_bytes(head.get(o..o + 8)?.try_into().ok()?))
    };
    if u32_at(0)? != 0x5146_49fb {
        return None;
    }
    let version = u32_at(4)?;
    let offset = usize::try_from(u64_at(8)?).ok()?;
    let size = usize::try_from(u32_at(16)?).ok()?;
    if offset == 0 || size == 0 || size > 4096 {
        return None;
    }
    let name = head.get(offset..offset + size)?;
    let backing = PathBuf::from(String::from_utf8_lossy(name).into_owned());
    // Header extensions follow the header (72 bytes in v2, header_length in v3).
    let mut pos = if version >= 3 {
        usize::try_from(u32_at(100)?).ok()?
    } else {
        72
    };
    let mut format = None;
    while let (Some(kind), Some(len)) = (u32_at(pos), u32_at(pos + 4)) {
        let len = usize::try_from(len).ok()?;
        if kind == 0 {
            break;
        }
        if kind == QCOW2_EXT_BACKING_FORMAT {
            format = head
                .get(pos + 8..pos + 8 + len)
                .map(|b| String::from_utf8_lossy(b).into_owned());
        }
        pos += 8 + len.div_ceil(8) * 8;
    }
    Some((backing, format))
}

/// The device list of a domain's cgroup: qemu.conf's `cgroup_device_acl`,
/// every pty, and the device nodes among its resources.
pub fn device_rules(acl: &[PathBuf], resources: &[Resource]) -> Vec<DeviceRule> {
    let mut rules = Vec::new();
    for path in acl {
        if let Ok(Some(r)) = DeviceRule::for_path(path, true) {
            rules.push(r);
        }
    }
    rules.push(DeviceRule {
        kind: DeviceType::Char,
        major: PTY_MAJOR,
        minor: None,
        write: true,
    });
    for r in resources {
        let write = r.access == Access::ReadWrite;
        if let Ok(Some(rule)) = DeviceRule::for_path(Path::new(r.path.as_str()), write) {
            rules.push(rule);
        }
    }
    cgroup::merge_rules(rules)
}

/// The domain-level `<seclabel>`s as settings (`seclabel.<model>.<field>`).
fn seclabel_settings(def: &Domain) -> Vec<Setting> {
    let mut out = Vec::new();
    for s in &def.seclabels {
        let model = s.get_attr("model").unwrap_or("none");
        for attr in ["type", "relabel"] {
            if let Some(v) = s.get_attr(attr) {
                out.push(Setting::new(format!("seclabel.{model}.{attr}"), v));
            }
        }
        for child in ["label", "imagelabel", "baselabel"] {
            if let Some(v) = s.find(child).and_then(|c| c.trimmed_text()) {
                out.push(Setting::new(format!("seclabel.{model}.{child}"), v));
            }
        }
    }
    // A disk's own `<source><seclabel model=... relabel='no'/>`: that image
    // keeps its owner/label under that model (one setting per image).
    for disk in &def.devices.disks {
        let (Some(src), Some(path)) = (disk.source.as_ref(), disk.source_path()) else {
            continue;
        };
        for s in src.residue.children.iter().filter(|c| c.is("seclabel")) {
            if s.get_attr("relabel") == Some("no") {
                let model = s.get_attr("model").unwrap_or("none");
                out.push(Setting::new(format!("norelabel.{model}"), path));
            }
        }
    }
    out
}

/// `+UID:+GID` or `user:group` of a DAC `<seclabel><label>`.
fn parse_dac_label(label: &str) -> Option<(u32, u32)> {
    let (u, g) = label.split_once(':')?;
    let user = match u.strip_prefix('+') {
        Some(n) => n.parse().ok()?,
        None => lookup_user(u).or_else(|| u.parse().ok())?,
    };
    let group = match g.strip_prefix('+') {
        Some(n) => n.parse().ok()?,
        None => lookup_group(g).or_else(|| g.parse().ok())?,
    };
    Some((user, group))
}

fn lookup_user(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: getpwnam with a NUL-terminated name; the result is read at
    // once (the driver resolves ids on one thread at a time per start).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    // SAFETY: non-null results point to a valid passwd.
    (!pw.is_null()).then(|| unsafe { (*pw).pw_uid })
}

fn lookup_group(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: as in lookup_user.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: non-null results point to a valid group.
    (!gr.is_null()).then(|| unsafe { (*gr).gr_gid })
}

/// A security layer of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layer {
    /// `dac`, `selinux`, `apparmor`, `landlock`.
    model: String,
    /// The plugin providing it.
    plugin: String,
    /// When its `pre_exec` runs (0 label, 1 identity, 2 restrict).
    phase: u8,
}

/// The models probed when qemu.conf does not name any (libvirt's order);
/// Landlock is not libvirt's and is used only when named.
const PROBED_MODELS: &[&str] = &["selinux", "apparmor"];

/// Labels, hooks and cgroup of a domain being started. Dropped without
/// [`SecuritySetup::commit`], it undoes everything (a failed start).
pub(crate) struct SecuritySetup<'a> {
    inner: &'a Inner,
    ctx: DomainContext,
    layers: Vec<Layer>,
    /// Labels applied, with their plugin.
    pub labels: Vec<AppliedLabel>,
    /// Hooks for the QEMU child, in order.
    pub hooks: Vec<PreExecHook>,
    cgroup: Option<(Layout, PathBuf)>,
    committed: bool,
}

impl SecuritySetup<'_> {
    /// The start went through: keep everything. Returns the labels to
    /// record and the pipeline steps.
    pub fn commit(mut self) -> (Vec<AppliedLabel>, Vec<(String, String)>) {
        self.committed = true;
        let pipeline = self
            .layers
            .iter()
            .map(|l| (format!("security:{}", l.model), l.plugin.clone()))
            .collect();
        (std::mem::take(&mut self.labels), pipeline)
    }
}

impl Drop for SecuritySetup<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        let name = self.ctx.name.to_string();
        self.inner
            .restore_applied(&name, &self.ctx, &std::mem::take(&mut self.labels));
        let plugins: Vec<String> = self.layers.iter().map(|l| l.plugin.clone()).collect();
        self.inner.release_layers(&self.ctx, &plugins);
        if let Some((layout, rel)) = &self.cgroup {
            for e in cgroup::remove(layout, rel) {
                tracing::warn!(domain = %name, "{e}");
            }
        }
    }
}

impl Inner {
    /// The uid and gid QEMU runs as: a static DAC `<seclabel>`, else
    /// qemu.conf `user`/`group` (the caller for session and unprivileged
    /// embedded drivers unless configured).
    pub(crate) fn qemu_ids(&self, def: &Domain) -> Result<(u32, u32)> {
        if let Some(label) = def
            .seclabels
            .iter()
            .find(|s| s.get_attr("model") == Some("dac") && s.get_attr("type") != Some("none"))
            .and_then(|s| s.find("label"))
            .and_then(|l| l.trimmed_text())
        {
            return parse_dac_label(label).ok_or_else(|| {
                DriverError::ConfigUnsupported(format!(
                    "failed to parse DAC seclabel '{label}' for domain '{}'",
                    def.name
                ))
            });
        }
        // SAFETY: getuid/getgid cannot fail.
        let (me, my_group) = unsafe { (libc::getuid(), libc::getgid()) };
        let uid = self
            .conf
            .user
            .resolve(IdKind::User, lookup_user, me)
            .map_err(DriverError::ConfigUnsupported)?;
        let gid = self
            .conf
            .group
            .resolve(IdKind::Group, lookup_group, my_group)
            .map_err(DriverError::ConfigUnsupported)?;
        Ok((uid, gid))
    }

    /// The models of the security stack, DAC first (what capabilities and
    /// `virNodeGetSecurityModel` report).
    pub(crate) fn security_stack_models(&self) -> Result<Vec<String>> {
        Ok(self
            .security_layers()?
            .into_iter()
            .map(|l| l.model)
            .collect())
    }

    /// The layers of the stack: DAC first, then `security_driver` in order
    /// (`none` = no confinement layer; unset = the first usable of
    /// SELinux/AppArmor). A named layer must have a plugin; one whose probe
    /// failed is still asked (AppArmor validates profiles without a kernel
    /// to load them into; SELinux refuses with its reason).
    fn security_layers(&self) -> Result<Vec<Layer>> {
        let find = |model: &str| {
            self.plugin_statuses.iter().find(|s| {
                s.kind() == Some(PluginKind::Security)
                    && s.description
                        .as_ref()
                        .is_some_and(|d| d.provided("security-model").any(|m| m == model))
            })
        };
        let layer = |model: &str, s: &crate::plugins::PluginStatus| Layer {
            model: model.to_string(),
            plugin: s.name(),
            phase: match s
                .description
                .as_ref()
                .and_then(|d| d.provided("pre-exec-phase").next())
            {
                Some("identity") => 1,
                Some("restrict") => 2,
                _ => 0,
            },
        };
        let mut layers = Vec::new();
        if let Some(dac) = find("dac") {
            layers.push(layer("dac", dac));
        }
        match &self.conf.security_driver {
            None => {
                if let Some((m, s)) = PROBED_MODELS
                    .iter()
                    .filter_map(|m| find(m).map(|s| (*m, s)))
                    .find(|(_, s)| s.usable())
                {
                    layers.push(layer(m, s));
                }
            }
            Some(models) => {
                for m in models
                    .iter()
                    .filter(|m| m.as_str() != "none" && m.as_str() != "dac")
                {
                    let s = find(m).ok_or_else(|| {
                        DriverError::ConfigUnsupported(format!(
                            "security driver '{m}' is not available: no loaded plugin provides security-model:{m}"
                        ))
                    })?;
                    layers.push(layer(m, s));
                }
            }
        }
        Ok(layers)
    }

    /// The settings every security plugin gets.
    fn security_settings(&self, def: &Domain) -> Vec<Setting> {
        let flag = |b: bool| if b { "1" } else { "0" };
        let profile_root = match &self.paths.mode {
            Mode::System => PathBuf::from("/etc/apparmor.d"),
            Mode::Embed { root } => root.join("etc/apparmor.d"),
            Mode::Session => self.paths.config_base_dir.join("apparmor.d"),
        };
        let mut s = vec![
            Setting::new("dynamic_ownership", flag(self.conf.dynamic_ownership)),
            Setting::new("remember_owner", flag(self.conf.remember_owner)),
            Setting::new(
                "clear_emulator_capabilities",
                flag(self.conf.clear_emulator_capabilities),
            ),
            Setting::new("privileged", flag(self.paths.privileged)),
            Setting::new("profile_root", profile_root.display().to_string()),
            Setting::new("state_dir", self.paths.state_dir.display().to_string()),
        ];
        s.extend(seclabel_settings(def));
        s
    }

    /// Where the domain's cgroup lives below each hierarchy root:
    /// `machine/qemu-ID-NAME.libvirt-qemu`, with the embedded root hashed in
    /// so embedded drivers never collide with each other or the system one.
    fn cgroup_rel(&self, id: i32, name: &str) -> PathBuf {
        let short: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect();
        let scope = match &self.paths.mode {
            Mode::Embed { root } => {
                // FNV-1a: stable across runs and builds.
                let h = root
                    .as_os_str()
                    .as_encoded_bytes()
                    .iter()
                    .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
                    });
                format!("qemu-embed-{:08x}-{id}-{short}", h as u32)
            }
            _ => format!("qemu-{id}-{short}"),
        };
        PathBuf::from("machine").join(format!("{scope}.libvirt-qemu"))
    }

    /// Whether this driver manages cgroups (root only: cgroup files are
    /// root's; an unprivileged session has no say over devices).
    fn uses_cgroups(&self) -> bool {
        // SAFETY: geteuid cannot fail.
        self.paths.privileged && unsafe { libc::geteuid() } == 0
    }

    /// Runs the security stack and sets up the cgroup for `live` before its
    /// QEMU is spawned. Seclabels the layers report go into `live`.
    pub(crate) fn setup_security(
        &self,
        live: &mut Domain,
        base: &DomainContext,
        id: i32,
        monitor: &Path,
        domain_log: &Path,
    ) -> Result<SecuritySetup<'_>> {
        let (uid, gid) = self.qemu_ids(live)?;
        let private_dir = PathBuf::from(base.private_dir.as_str());
        let mut resources = domain_resources(live, &private_dir, monitor, domain_log);
        // What earlier steps found (the storage plugin's volumes and chains).
        let mut list = ResourceList(std::mem::take(&mut resources));
        for r in base.resources.iter() {
            list.add(r.path.as_str(), r.kind, r.access, r.shared);
        }
        let resources = list.0;
        let mut ctx = base.clone();
        ctx.uid = uid;
        ctx.gid = gid;
        ctx.resources = resources.iter().cloned().collect();
        let layers = self.security_layers()?;
        let mut settings = self.security_settings(live);
        confinement_policy(
            &live.name,
            &layers,
            &mut settings,
            self.conf.security_default_confined,
            self.conf.security_require_confined,
        )?;
        ctx.settings = settings.into_iter().collect();
        let mut setup = SecuritySetup {
            inner: self,
            ctx,
            layers,
            labels: Vec::new(),
            hooks: Vec::new(),
            cgroup: None,
            committed: false,
        };
        let name = live.name.clone();

        let selected = self.conf.cgroup_controllers.as_deref();
        if self.uses_cgroups() && selected.is_none_or(|c| !c.is_empty()) {
            let layout = Layout::host();
            let rel = self.cgroup_rel(id, &name);
            let rules = device_rules(&self.conf.cgroup_device_acl, &resources);
            setup.cgroup = Some((layout.clone(), rel.clone()));
            let cg = DomainCgroup::create(&layout, &rel, selected, &rules)
                .map_err(|e| DriverError::OperationFailed(format!("domain '{name}': {e}")))?;
            tracing::debug!(domain = %name, dirs = ?cg.dirs(), "cgroups created");
            // The live XML names the partition the guest's cgroup sits in.
            if live.resource.is_none() {
                live.resource = Some(
                    qvisor_domain::xml::Element::new("resource")
                        .child(qvisor_domain::xml::Element::new("partition").text("/machine")),
                );
            }
            setup.hooks.push(cg.join_hook());
        }

        let layers = setup.layers.clone();
        for layer in &layers {
            let reply = self
                .call_plugin(
                    &layer.plugin,
                    Request::SetLabels(Box::new(setup.ctx.clone()).into()),
                )
                .map_err(|e| security_error(&name, &layer.model, e.to_string()))?;
            let Reply::Labels(records) = reply else {
                return Err(DriverError::Internal(format!(
                    "plugin '{}' answered set-labels with {reply:?}",
                    layer.plugin
                )));
            };
            for record in records {
                if record.path.is_empty() {
                    set_live_seclabel(live, &layer.model, record.data.as_str());
                }
                setup.labels.push(AppliedLabel {
                    plugin: layer.plugin.clone(),
                    record,
                });
            }
        }

        let mut confined: Vec<(u8, PreExecHook)> = Vec::new();
        for layer in &layers {
            let reply = self
                .call_plugin(
                    &layer.plugin,
                    Request::Confine(Box::new(setup.ctx.clone()).into()),
                )
                .map_err(|e| security_error(&name, &layer.model, e.to_string()))?;
            let token = match reply {
                Reply::Confine(t) => t.into_option(),
                other => {
                    return Err(DriverError::Internal(format!(
                        "plugin '{}' answered confine with {other:?}",
                        layer.plugin
                    )))
                }
            };
            let Some(token) = token else { continue };
            let instance = self.plugin_instance(&layer.plugin).ok_or_else(|| {
                security_error(&name, &layer.model, "the plugin instance is gone".into())
            })?;
            let hook: PreExecHook = Arc::new(move || match instance.pre_exec(token) {
                0 => Ok(()),
                errno => Err(std::io::Error::from_raw_os_error(errno)),
            });
            confined.push((layer.phase, hook));
        }
        confined.sort_by_key(|(phase, _)| *phase);
        setup.hooks.extend(confined.into_iter().map(|(_, h)| h));
        Ok(setup)
    }

    /// After QEMU exited (labels already restored): each layer releases the
    /// domain and its cgroup goes away.
    pub(crate) fn teardown_security(
        &self,
        name: &str,
        uuid: &[u8; 16],
        id: i32,
        plugins: &[String],
    ) {
        let ctx = DomainContext {
            name: name.into(),
            uuid: qvisor_domain::Uuid(*uuid).to_string().into(),
            virt_type: Default::default(),
            emulator: Default::default(),
            xml: Default::default(),
            private_dir: Default::default(),
            uid: 0,
            gid: 0,
            resources: Default::default(),
            settings: Default::default(),
            labels: Default::default(),
        };
        self.release_layers(&ctx, plugins);
        if self.uses_cgroups() {
            for e in cgroup::remove(&Layout::host(), &self.cgroup_rel(id, name)) {
                tracing::warn!(domain = %name, "{e}");
            }
        }
    }

    /// A QEMU recorded in a status file is gone (it died while no
    /// supervisor watched): restore its labels, release it, remove its cgroup.
    pub(crate) fn restore_after_lost_qemu(&self, st: &super::status::Status) {
        let name = st.def.name.clone();
        let uuid = st.def.uuid.map(|u| u.0).unwrap_or_default();
        let ctx = DomainContext {
            name: name.clone().into(),
            uuid: qvisor_domain::Uuid(uuid).to_string().into(),
            virt_type: Default::default(),
            emulator: Default::default(),
            xml: Default::default(),
            private_dir: st.private_dir.display().to_string().into(),
            uid: 0,
            gid: 0,
            resources: Default::default(),
            settings: Default::default(),
            labels: Default::default(),
        };
        self.restore_applied(&name, &ctx, &st.labels);
        let plugins: Vec<String> = st.labels.iter().map(|l| l.plugin.clone()).collect();
        self.teardown_security(&name, &uuid, st.id, &plugins);
    }

    /// A domain was undefined: every security plugin forgets it for good
    /// (`Release` with `undefined=1`: AppArmor removes its profile files).
    pub(crate) fn security_undefined(&self, name: &str, uuid: &[u8; 16]) {
        let def = Domain {
            name: name.to_string(),
            ..Domain::default()
        };
        let ctx = DomainContext {
            name: name.into(),
            uuid: qvisor_domain::Uuid(*uuid).to_string().into(),
            virt_type: Default::default(),
            emulator: Default::default(),
            xml: Default::default(),
            private_dir: Default::default(),
            uid: 0,
            gid: 0,
            resources: Default::default(),
            settings: self
                .security_settings(&def)
                .into_iter()
                .chain([Setting::new("undefined", "1")])
                .collect(),
            labels: Default::default(),
        };
        let plugins: Vec<String> = self
            .plugin_statuses
            .iter()
            .filter(|s| s.kind() == Some(PluginKind::Security) && s.description.is_some())
            .map(|s| s.name())
            .collect();
        self.release_layers(&ctx, &plugins);
    }

    fn release_layers(&self, ctx: &DomainContext, plugins: &[String]) {
        let mut seen = Vec::new();
        for p in plugins {
            if seen.contains(p) {
                continue;
            }
            seen.push(p.clone());
            if let Err(e) = self.call_plugin(p, Request::Release(Box::new(ctx.clone()).into())) {
                tracing::warn!(domain = %ctx.name, "releasing the domain in {p}: {e}");
            }
        }
    }

    /// Restores labels applied during a start that then failed.
    fn restore_applied(&self, name: &str, base: &DomainContext, labels: &[AppliedLabel]) {
        let mut by_plugin: BTreeMap<&str, Vec<LabelRecord>> = BTreeMap::new();
        let mut order = Vec::new();
        for l in labels {
            if !by_plugin.contains_key(l.plugin.as_str()) {
                order.push(l.plugin.as_str());
            }
            by_plugin
                .entry(l.plugin.as_str())
                .or_default()
                .push(l.record.clone());
        }
        for plugin in order.into_iter().rev() {
            let mut ctx = base.clone();
            ctx.labels = by_plugin
                .remove(plugin)
                .unwrap_or_default()
                .into_iter()
                .collect();
            if let Err(e) = self.call_plugin(plugin, Request::RestoreLabels(Box::new(ctx).into())) {
                tracing::error!(domain = %name, "restoring labels failed: {e}");
            }
        }
    }

    /// The live instance of a plugin (for `pre_exec`).
    fn plugin_instance(&self, plugin: &str) -> Option<Arc<qvisor_sdk::PluginBox>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sup = self.supervisor.clone();
        let msg = PluginInstance {
            plugin: plugin.to_string(),
        };
        self.arbiter.spawn(async move {
            let _ = tx.send(sup.send(msg).await.ok().flatten());
        });
        rx.recv().ok().flatten()
    }
}

/// qemu.conf's `security_default_confined = 0` makes confinement layers the
/// domain has no `<seclabel>` for `type='none'`; `security_require_confined
/// = 1` refuses a domain one of those layers would leave unconfined.
fn confinement_policy(
    domain: &str,
    layers: &[Layer],
    settings: &mut Vec<Setting>,
    default_confined: bool,
    require_confined: bool,
) -> Result<()> {
    for layer in layers.iter().filter(|l| l.model != "dac") {
        let key = format!("seclabel.{}.type", layer.model);
        let explicit = settings
            .iter()
            .find(|s| s.key.as_str() == key)
            .map(|s| s.value.to_string());
        let kind = match explicit {
            Some(k) => k,
            None if !default_confined => {
                settings.push(Setting::new(key, "none"));
                "none".to_string()
            }
            None => "dynamic".to_string(),
        };
        if require_confined && kind == "none" {
            return Err(DriverError::ConfigUnsupported(format!(
                "Unconfined guests are not allowed on this host (domain '{domain}', security driver '{}')",
                layer.model
            )));
        }
    }
    Ok(())
}

fn security_error(domain: &str, model: &str, msg: String) -> DriverError {
    DriverError::OperationFailed(format!(
        "domain '{domain}': security driver '{model}': {msg}"
    ))
}

/// Puts the `<seclabel>` a layer reported into the live definition,
/// replacing one of the same model.
fn set_live_seclabel(live: &mut Domain, model: &str, xml: &str) {
    let Ok(el) = parse_document(xml) else {
        tracing::warn!(domain = %live.name, "security driver '{model}' reported an invalid seclabel: {xml}");
        return;
    };
    if !el.is("seclabel") {
        return;
    }
    let model = el.get_attr("model").unwrap_or(model).to_string();
    match live
        .seclabels
        .iter_mut()
        .find(|s| s.get_attr("model") == Some(model.as_str()))
    {
        // A static label the user wrote stays as written.
        Some(existing) if existing.get_attr("type") == Some("static") => {}
        Some(existing) => *existing = el,
        // libvirt lists the confinement model first and DAC last.
        None if model != "dac" => {
            let at = live
                .seclabels
                .iter()
                .position(|s| s.get_attr("model") == Some("dac"))
                .unwrap_or(live.seclabels.len());
            live.seclabels.insert(at, el);
        }
        None => live.seclabels.push(el),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qvisor_domain::ParseOptions;

    fn parse(xml: &str) -> Domain {
        qvisor_domain::parse(xml, ParseOptions { inactive: true }).unwrap()
    }

    fn paths(r: &[Resource]) -> Vec<(String, ResourceKind, Access, bool)> {
        r.iter()
            .map(|r| (r.path.to_string(), r.kind, r.access, r.shared))
            .collect()
    }

    #[test]
    fn resources_cover_images_boot_files_chardevs_and_private_files() {
        let def = parse(
            "<domain type='kvm'><name>a</name><memory>1</memory>\
             <os><type>hvm</type><kernel>/b/vmlinuz</kernel><initrd>/b/initrd</initrd>\
             <loader readonly='yes' type='pflash'>/fw/CODE.fd</loader><nvram>/var/nv/a_VARS.fd</nvram></os>\
             <devices>\
             <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/i/a.img'/><target dev='vda'/></disk>\
             <disk type='file' device='disk'><source file='/i/shared.img'/><target dev='vdb'/><shareable/></disk>\
             <disk type='block' device='disk'><source dev='/dev/loop3'/><target dev='vdc'/><readonly/></disk>\
             <disk type='network' device='disk'><source protocol='nbd' name='x'><host name='h'/></source><target dev='vdd'/></disk>\
             <disk type='file' device='cdrom'><source file='/i/cd.iso'/><target dev='hdc'/></disk>\
             <serial type='file'><source path='/l/serial.log'/></serial>\
             <console type='file'><source path='/l/serial.log'/></console>\
             <channel type='unix'><source mode='bind' path='/run/a.sock'/><target type='virtio' name='x'/></channel>\
             </devices></domain>",
        );
        let r = domain_resources(
            &def,
            Path::new("/p/d-1-a"),
            Path::new("/p/d-1-a/monitor.sock"),
            Path::new("/log/a.log"),
        );
        use Access::*;
        use ResourceKind::*;
        assert_eq!(
            paths(&r),
            vec![
                ("/i/a.img".into(), Disk, ReadWrite, false),
                ("/i/shared.img".into(), Disk, ReadWrite, true),
                ("/dev/loop3".into(), Disk, ReadOnly, false),
                ("/i/cd.iso".into(), Disk, ReadOnly, false),
                ("/b/vmlinuz".into(), Kernel, ReadOnly, false),
                ("/b/initrd".into(), Initrd, ReadOnly, false),
                ("/fw/CODE.fd".into(), Loader, ReadOnly, false),
                ("/var/nv/a_VARS.fd".into(), Nvram, ReadWrite, false),
                ("/l/serial.log".into(), Log, ReadWrite, false),
                ("/run/a.sock".into(), Socket, ReadWrite, false),
                ("/p/d-1-a".into(), Directory, ReadWrite, false),
                ("/p/d-1-a/master-key.aes".into(), Other, ReadOnly, false),
                ("/p/d-1-a/monitor.sock".into(), Socket, ReadWrite, false),
                ("/log/a.log".into(), Log, ReadWrite, false),
                ("/dev/kvm".into(), Device, ReadWrite, false),
            ]
        );
    }

    #[test]
    fn xml_backing_chains_are_listed_read_only_and_shared() {
        let def = parse(
            "<domain type='qemu'><name>a</name><memory>1</memory><os><type>hvm</type></os><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/i/top.qcow2'/>\
             <backingStore type='file'><format type='qcow2'/><source file='/i/mid.qcow2'/>\
             <backingStore type='file'><format type='raw'/><source file='/i/base.raw'/><backingStore/></backingStore>\
             </backingStore><target dev='vda'/></disk></devices></domain>",
        );
        let r = domain_resources(&def, Path::new("/p"), Path::new("/p/m"), Path::new("/l"));
        let disks: Vec<_> = paths(&r)
            .into_iter()
            .filter(|r| r.1 == ResourceKind::Disk)
            .collect();
        assert_eq!(
            disks,
            vec![
                (
                    "/i/top.qcow2".into(),
                    ResourceKind::Disk,
                    Access::ReadWrite,
                    false
                ),
                (
                    "/i/mid.qcow2".into(),
                    ResourceKind::Disk,
                    Access::ReadOnly,
                    true
                ),
                (
                    "/i/base.raw".into(),
                    ResourceKind::Disk,
                    Access::ReadOnly,
                    true
                ),
            ]
        );
    }

    #[test]
    fn qcow2_headers_give_the_backing_chain() {
        let dir = std::env::temp_dir().join(format!("qvisor-sec-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let qemu_img = |args: &[&str]| {
            std::process::Command::new("qemu-img")
                .args(args)
                .current_dir(&dir)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        if !qemu_img(&["create", "-f", "raw", "base.raw", "1M"]) {
            eprintln!("skipping: qemu-img not available");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        assert!(qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            "mid.qcow2"
        ]));
        assert!(qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            "top.qcow2"
        ]));
        let chain = backing_chain(&Element::new("disk"), &dir.join("top.qcow2"), "qcow2");
        let expect: Vec<String> = ["mid.qcow2", "base.raw"]
            .iter()
            .map(|f| dir.join(f).display().to_string())
            .collect();
        // A raw image is never probed for a chain.
        assert!(backing_chain(&Element::new("disk"), &dir.join("top.qcow2"), "raw").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(chain, expect);
    }

    #[test]
    fn device_rules_add_ptys_and_block_devices() {
        let r = vec![Resource {
            path: "/dev/null".into(),
            kind: ResourceKind::Disk,
            access: Access::ReadOnly,
            shared: false,
        }];
        let rules = device_rules(
            &[PathBuf::from("/dev/zero"), PathBuf::from("/dev/nope")],
            &r,
        );
        let lines: Vec<String> = rules.iter().map(|r| r.v1_line()).collect();
        assert_eq!(lines, vec!["c 1:5 rw", "c 136:* rw", "c 1:3 r"]);
    }

    #[test]
    fn unconfined_domains_follow_the_default_and_require_settings() {
        let layers = vec![
            Layer {
                model: "dac".into(),
                plugin: "security-dac".into(),
                phase: 1,
            },
            Layer {
                model: "landlock".into(),
                plugin: "security-landlock".into(),
                phase: 2,
            },
        ];
        let mut s = Vec::new();
        confinement_policy("d", &layers, &mut s, false, false).unwrap();
        assert_eq!(s, vec![Setting::new("seclabel.landlock.type", "none")]);
        let e = confinement_policy("d", &layers, &mut s, true, true).unwrap_err();
        assert!(
            e.to_string()
                .contains("Unconfined guests are not allowed on this host"),
            "{e}"
        );
        let mut s = Vec::new();
        confinement_policy("d", &layers, &mut s, true, true).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn dac_labels_take_ids_or_names() {
        assert_eq!(parse_dac_label("+107:+108"), Some((107, 108)));
        assert_eq!(parse_dac_label("root:root"), Some((0, 0)));
        assert_eq!(parse_dac_label("nobody-such-user-x:0"), None);
    }

    #[test]
    fn a_reported_seclabel_lands_in_the_live_xml_unless_static() {
        let mut def = parse(
            "<domain type='qemu'><name>a</name><memory>1</memory><os><type>hvm</type></os>\
             <seclabel type='static' model='selinux' relabel='yes'><label>system_u:system_r:svirt_t:s0:c1,c2</label></seclabel></domain>",
        );
        set_live_seclabel(
            &mut def,
            "dac",
            "<seclabel type='dynamic' model='dac' relabel='yes'><label>+0:+0</label></seclabel>",
        );
        set_live_seclabel(
            &mut def,
            "selinux",
            "<seclabel type='dynamic' model='selinux'><label>x</label></seclabel>",
        );
        assert_eq!(def.seclabels.len(), 2);
        assert_eq!(def.seclabels[0].get_attr("type"), Some("static"));
        assert_eq!(
            def.seclabels[1]
                .find("label")
                .and_then(|l| l.trimmed_text()),
            Some("+0:+0")
        );
        let s = seclabel_settings(&def);
        assert!(s.contains(&Setting::new("seclabel.selinux.type", "static")));
        let def = parse(
            "<domain type='qemu'><name>a</name><memory>1</memory><os><type>hvm</type></os><devices>\
             <disk type='file' device='disk'><source file='/i/keep.img'><seclabel model='dac' relabel='no'/></source><target dev='vda'/></disk>\
             </devices></domain>",
        );
        assert_eq!(
            seclabel_settings(&def),
            vec![Setting::new("norelabel.dac", "/i/keep.img")]
        );
        assert!(s.contains(&Setting::new("seclabel.dac.label", "+0:+0")));
    }
}
