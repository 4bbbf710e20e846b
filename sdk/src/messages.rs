//! Typed requests and replies exchanged between the supervisor and a plugin.
//!
//! [`Request`] and [`Reply`] are non-exhaustive across the ABI: they travel as
//! [`Request_NE`] / [`Reply_NE`], so a newer supervisor may send a request an
//! older plugin does not know (the plugin answers [`crate::PluginError::Unsupported`])
//! and a newer plugin may answer with a reply variant an older supervisor treats
//! as unsupported. The structs carried inside the variants are *not* extensible:
//! changing one is an incompatible change and bumps the SDK's minor version
//! (see `docs/plugin-abi.md`).

use abi_stable::{
    std_types::{RBox, ROption, RString, RVec},
    StableAbi,
};

use crate::storage::{StorageReply_NE, StorageRequest};

/// What a plugin does in the per-domain pipeline.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// Runs guests: KVM, TCG, HVF... chosen by the domain's `type`.
    Accelerator,
    /// Labels and confines QEMU: DAC, SELinux, AppArmor, Landlock...
    Security,
    /// Resolves and prepares storage: pools, volumes, backing chains.
    Storage,
    /// Anything else that contributes devices or set-up.
    Device,
}

impl PluginKind {
    /// The lower-case name used in tables, RON files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Accelerator => "accelerator",
            PluginKind::Security => "security",
            PluginKind::Storage => "storage",
            PluginKind::Device => "device",
        }
    }
}

/// A key/value pair: settings, details, extra facts.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The key.
    pub key: RString,
    /// The value, as text.
    pub value: RString,
}

impl Setting {
    /// A new pair.
    pub fn new(key: impl Into<RString>, value: impl Into<RString>) -> Self {
        Setting {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The answer to [`Request::Describe`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Short unique name, e.g. `accel-kvm`.
    pub name: RString,
    /// What role the plugin plays.
    pub kind: PluginKind,
    /// The plugin's own version.
    pub version: RString,
    /// What it provides, as `facet:value` strings, e.g. `domain-type:kvm`,
    /// `security-model:selinux`, `disk-source:volume`.
    pub provides: RVec<RString>,
}

impl Description {
    /// Builds a description from plain strings.
    pub fn new(name: &str, kind: PluginKind, version: &str, provides: &[&str]) -> Self {
        Description {
            name: name.into(),
            kind,
            version: version.into(),
            provides: provides.iter().map(|p| RString::from(*p)).collect(),
        }
    }

    /// The values this plugin provides for `facet` (e.g. `domain-type`).
    pub fn provided<'a>(&'a self, facet: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.provides.iter().filter_map(move |p| {
            p.as_str()
                .strip_prefix(facet)
                .and_then(|rest| rest.strip_prefix(':'))
        })
    }
}

/// The answer to [`Request::Probe`]: can this plugin work on this host?
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// Whether the plugin can do its job here.
    pub usable: bool,
    /// Why (or why not), one line, e.g. `/dev/kvm: permission denied`.
    pub reason: RString,
    /// Facts found while probing (e.g. `kvm-api-version` = `12`).
    pub details: RVec<Setting>,
}

impl ProbeResult {
    /// A usable result with a reason.
    pub fn usable(reason: impl Into<RString>) -> Self {
        ProbeResult {
            usable: true,
            reason: reason.into(),
            details: RVec::new(),
        }
    }

    /// An unusable result with the reason.
    pub fn unusable(reason: impl Into<RString>) -> Self {
        ProbeResult {
            usable: false,
            reason: reason.into(),
            details: RVec::new(),
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, key: &str, value: impl Into<RString>) -> Self {
        self.details.push(Setting::new(key, value));
        self
    }
}

/// What kind of host resource QEMU will open.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A disk image or block device (each layer of a backing chain is one).
    Disk,
    /// A direct-boot kernel.
    Kernel,
    /// A direct-boot initrd.
    Initrd,
    /// Firmware (loader) image.
    Loader,
    /// NVRAM variable store.
    Nvram,
    /// A file QEMU writes a character device or log to.
    Log,
    /// A UNIX socket QEMU listens on or connects to.
    Socket,
    /// A device node (`/dev/kvm`, `/dev/net/tun`...).
    Device,
    /// A directory QEMU needs (shared folders, memory backing).
    Directory,
    /// Anything else.
    Other,
}

/// How QEMU opens a resource.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read-only.
    ReadOnly,
    /// Read and write.
    ReadWrite,
}

/// A host file or device QEMU needs for a domain.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Absolute path on the host.
    pub path: RString,
    /// What it is.
    pub kind: ResourceKind,
    /// How QEMU opens it.
    pub access: Access,
    /// `<shareable/>`: other running domains may use it at the same time.
    pub shared: bool,
}

/// A label a security plugin applied, so it can be restored later (recorded in
/// the domain's status XML and handed back on [`Request::RestoreLabels`], even
/// after a supervisor restart).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct LabelRecord {
    /// The path that was relabelled (or empty for a process label).
    pub path: RString,
    /// Plugin-defined data describing the label and what it replaced.
    pub data: RString,
}

/// Everything a plugin may need to know about a domain in a pipeline step.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct DomainContext {
    /// Domain name.
    pub name: RString,
    /// Domain UUID, canonical text form.
    pub uuid: RString,
    /// The domain's `type` attribute: `kvm`, `qemu`, `hvf`...
    pub virt_type: RString,
    /// The emulator binary.
    pub emulator: RString,
    /// The domain XML as the supervisor sees it at this step.
    pub xml: RString,
    /// The per-domain private directory (monitor socket, master key).
    pub private_dir: RString,
    /// The uid QEMU runs as.
    pub uid: u32,
    /// The gid QEMU runs as.
    pub gid: u32,
    /// Host files and devices QEMU will open.
    pub resources: RVec<Resource>,
    /// Connection settings relevant to plugins (qemu.conf keys and the plugin's
    /// own settings), as text.
    pub settings: RVec<Setting>,
    /// Labels this plugin recorded earlier (for [`Request::RestoreLabels`]).
    pub labels: RVec<LabelRecord>,
}

impl DomainContext {
    /// The value of a setting, if present.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|s| s.key.as_str() == key)
            .map(|s| s.value.as_str())
    }
}

/// What an accelerator plugin contributes to a domain's command line.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct AccelContribution {
    /// The QEMU accelerator name for `-accel NAME` (`kvm`, `tcg`, `hvf`).
    pub accel: RString,
    /// Extra `-accel` properties, in order.
    pub accel_props: RVec<Setting>,
    /// CPU modes this accelerator allows (`custom`, `host-model`,
    /// `host-passthrough`, `maximum`).
    pub cpu_modes: RVec<RString>,
    /// CPU model used when the domain names none (`qemu64` for TCG...), if the
    /// accelerator wants a specific one.
    pub default_cpu_model: ROption<RString>,
}

/// A disk source resolved by a storage plugin.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    /// The disk's target (`vda`).
    pub target: RString,
    /// `file` or `block`.
    pub source_type: RString,
    /// Path of the image or device.
    pub path: RString,
    /// Detected image format (`raw`, `qcow2`...).
    pub format: RString,
    /// Backing chain below the top image, nearest first, as (path, format).
    pub backing_chain: RVec<Setting>,
}

/// The answer to [`Request::Prepare`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PrepareResult {
    /// Disk sources the plugin resolved.
    pub sources: RVec<ResolvedSource>,
    /// Extra resources QEMU will need because of this plugin.
    pub resources: RVec<Resource>,
}

/// A request from the supervisor to a plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 32], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum Request {
    /// Who are you? Answered with [`Reply::Description`].
    Describe,
    /// Are you usable on this host? Answered with [`Reply::Probe`].
    Probe,
    /// Before start: resolve and prepare what the domain needs (storage).
    /// Answered with [`Reply::Prepared`].
    Prepare(RBox<DomainContext>),
    /// Contribute command-line parts (accelerators). Answered with
    /// [`Reply::Accel`].
    CommandLine(RBox<DomainContext>),
    /// Before start: label the domain's resources. Answered with
    /// [`Reply::Labels`] (what to record for the restore).
    SetLabels(RBox<DomainContext>),
    /// After stop: undo [`Request::SetLabels`] using the recorded labels.
    /// Answered with [`Reply::Done`].
    RestoreLabels(RBox<DomainContext>),
    /// Before exec: prepare confinement that [`crate::Plugin::pre_exec`] applies
    /// in the child. Answered with [`Reply::Confine`].
    Confine(RBox<DomainContext>),
    /// The domain is gone: drop any per-domain state. Answered with
    /// [`Reply::Done`].
    Release(RBox<DomainContext>),
    /// A storage pool or volume operation (SDK 0.1.1). Answered with
    /// [`Reply::Storage`].
    Storage(RBox<StorageRequest>),
}

/// A reply from a plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 32], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum Reply {
    /// Nothing to report.
    Done,
    /// Answer to [`Request::Describe`].
    Description(Description),
    /// Answer to [`Request::Probe`].
    Probe(ProbeResult),
    /// Answer to [`Request::Prepare`].
    Prepared(PrepareResult),
    /// Answer to [`Request::CommandLine`].
    Accel(AccelContribution),
    /// Answer to [`Request::SetLabels`]: what to remember for the restore.
    Labels(RVec<LabelRecord>),
    /// Answer to [`Request::Confine`]: `Some(token)` when the supervisor must
    /// call [`crate::Plugin::pre_exec`] with that token in the QEMU child.
    Confine(ROption<u64>),
    /// Answer to [`Request::Storage`] (SDK 0.1.1).
    Storage(RBox<StorageReply_NE>),
}
