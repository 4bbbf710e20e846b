//! The QEMU driver: domains, their lifecycle and their QEMU processes.
//!
//! One [`Driver`] serves one connection tree (system, session or an embedded
//! root). Its API is synchronous and safe to call from any thread; internally
//! an actix system runs on its own thread with one actor per loaded plugin and
//! one per running domain. The CLI, the RPC server and embedding applications
//! all call this same API; no lifecycle logic lives in a front end.

pub mod actor;
pub mod cgroup;
pub mod error;
pub mod events;
mod guest_cpu;
mod host;
pub mod process;
pub mod registry;
pub mod runtime;
mod security;
mod start;
pub mod state;
pub mod status;
pub mod storage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use qvisor_caps::cache::{CacheConfig, CapsCache};
use qvisor_caps::live::ProbeOptions;
use qvisor_caps::QemuCaps;
use qvisor_conf::{ConnectUri, DriverPaths, QemuConf};
use qvisor_domain::{Domain, FormatOptions, ParseOptions};
use qvisor_sdk::{Reply, Request};

use crate::fsutil::{remove_if_exists, write_atomic, write_atomic_runtime};
use crate::plugins::{
    Call, CallError, ListPlugins, PluginActor, PluginMailboxes, PluginSpec, PluginStatus,
    Supervisor,
};

pub use error::{DriverError, ErrorNumber, Result};
pub use state::{DomainEvent, DomainState, EventKind, Lifecycle};

use registry::{DomainEntry, DomainObj, Registry};
use runtime::StopIntent;
use state::{PausedReason, RunningReason, ShutoffReason, StoppedDetail};
use status::Status;

/// How long `destroy` waits after SIGTERM before SIGKILL.
const DESTROY_GRACE: Duration = Duration::from_secs(10);

/// How a driver is set up.
pub struct DriverOptions {
    /// The connection URI it serves.
    pub uri: ConnectUri,
    /// Its directory tree.
    pub paths: DriverPaths,
    /// Its qemu.conf.
    pub conf: QemuConf,
    /// The plugins to load.
    pub plugins: Vec<PluginSpec>,
}

/// A summary of one domain, as `list` and `dominfo` need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSummary {
    /// Name.
    pub name: String,
    /// UUID.
    pub uuid: [u8; 16],
    /// Runtime id, -1 when inactive.
    pub id: i32,
    /// State.
    pub state: DomainState,
    /// Persistent or transient.
    pub persistent: bool,
    /// Autostart.
    pub autostart: bool,
    /// Maximum memory, KiB.
    pub max_mem_kib: u64,
    /// Current memory, KiB.
    pub mem_kib: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// The OS type (`hvm`).
    pub os_type: String,
    /// CPU time used by QEMU, nanoseconds (0 when inactive).
    pub cpu_time_ns: u64,
    /// Taint flags.
    pub taint: Vec<String>,
}

/// The driver internals shared with actors and helper threads.
pub struct Inner {
    uri: ConnectUri,
    paths: DriverPaths,
    conf: QemuConf,
    registry: Mutex<Registry>,
    next_id: AtomicI32,
    events: events::EventBus,
    caps: CapsCache,
    system: actix::System,
    arbiter: ArbiterHandle,
    supervisor: Addr<Supervisor>,
    /// Each running plugin actor's mailbox, by plugin name.
    mailboxes: HashMap<String, Addr<PluginActor>>,
    plugin_statuses: Vec<PluginStatus>,
}

/// A QEMU driver. Cheap to clone; all clones share one driver.
#[derive(Clone)]
pub struct Driver {
    inner: Arc<Inner>,
}

impl Driver {
    /// Opens a driver: creates its directory tree, starts the plugin
    /// supervisor, loads persistent domains, re-attaches to every QEMU still
    /// running from an earlier supervisor, and starts autostart domains.
    pub fn open(opts: DriverOptions) -> Result<Driver> {
        opts.paths
            .create_tree()
            .map_err(|e| DriverError::Internal(e.to_string()))?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let specs = opts.plugins;
        std::thread::Builder::new()
            .name("qvisor-actors".into())
            .spawn(move || {
                let sys = actix::System::new();
                sys.block_on(async move {
                    let sup = Supervisor::start(specs, None).await;
                    let statuses = sup.send(ListPlugins).await.unwrap_or_default();
                    let mailboxes = sup.send(PluginMailboxes).await.unwrap_or_default();
                    let _ = tx.send((
                        actix::System::current(),
                        Arbiter::current(),
                        sup,
                        statuses,
                        mailboxes,
                    ));
                });
                // Runs until System::stop.
                let _ = sys.run();
            })
            .map_err(|e| DriverError::Internal(format!("cannot start the actor thread: {e}")))?;
        let (system, arbiter, supervisor, plugin_statuses, mailboxes) = rx
            .recv()
            .map_err(|_| DriverError::Internal("the actor system failed to start".into()))?;
        let kvm_usable = plugin_statuses.iter().any(|s| {
            s.usable()
                && s.description
                    .as_ref()
                    .is_some_and(|d| d.provided("accel").any(|a| a == "kvm"))
        });
        let probe = ProbeOptions {
            kvm_usable,
            work_dir: opts.paths.cache_dir.clone(),
            ..ProbeOptions::default()
        };
        let caps = CapsCache::new(CacheConfig::new(opts.paths.cache_dir.clone(), probe));
        let inner = Arc::new(Inner {
            uri: opts.uri,
            paths: opts.paths,
            conf: opts.conf,
            registry: Mutex::new(Registry::default()),
            next_id: AtomicI32::new(1),
            events: events::EventBus::default(),
            caps,
            system,
            arbiter,
            supervisor,
            mailboxes: mailboxes.into_iter().collect(),
            plugin_statuses,
        });
        inner.load_persistent()?;
        inner.reconnect_all();
        inner.autostart_all();
        Ok(Driver { inner })
    }

    /// The connection URI.
    pub fn uri(&self) -> &ConnectUri {
        &self.inner.uri
    }

    /// The directory tree.
    pub fn paths(&self) -> &DriverPaths {
        &self.inner.paths
    }

    /// The qemu.conf in effect.
    pub fn conf(&self) -> &QemuConf {
        &self.inner.conf
    }

    /// The plugins and their state.
    pub fn plugins(&self) -> &[PluginStatus] {
        &self.inner.plugin_statuses
    }

    /// Subscribes to domain events.
    pub fn subscribe(&self) -> Receiver<DomainEvent> {
        self.inner.events.subscribe()
    }

    /// Capabilities of an emulator (probed or from the cache).
    pub fn emulator_caps(&self, emulator: &Path) -> Result<Arc<QemuCaps>> {
        self.inner.caps_for(emulator)
    }

    /// Defines (or redefines) a persistent domain from XML.
    pub fn define_xml(&self, xml: &str) -> Result<DomainSummary> {
        self.inner.define_xml(xml)
    }

    /// Removes a domain's persistent definition; a running domain becomes
    /// transient, as in libvirt.
    pub fn undefine(&self, name: &str) -> Result<()> {
        self.inner.undefine(name)
    }

    /// Creates and starts a transient domain.
    pub fn create_xml(&self, xml: &str, paused: bool) -> Result<DomainSummary> {
        let def = self.inner.parse_and_expand(xml)?;
        let entry = {
            let mut reg = self.inner.registry.lock();
            let uuid = uuid_of(&def);
            if reg.check_identity(&def.name, &uuid)?.is_some() {
                return Err(DriverError::OperationInvalid(format!(
                    "domain '{}' already exists",
                    def.name
                )));
            }
            reg.insert(DomainObj::inactive(def, false), uuid)
        };
        match self.inner.start_entry(&entry, paused) {
            Ok(()) => Ok(self.inner.summary(&entry)),
            Err(e) => {
                self.inner.registry.lock().remove(&entry.name);
                Err(e)
            }
        }
    }

    /// Starts a defined domain.
    pub fn start(&self, name: &str, paused: bool) -> Result<DomainSummary> {
        let entry = self.inner.lookup(name)?;
        self.inner.start_entry(&entry, paused)?;
        Ok(self.inner.summary(&entry))
    }

    /// Stops a domain at once (SIGTERM, then SIGKILL after a grace period).
    pub fn destroy(&self, name: &str) -> Result<()> {
        let entry = self.inner.lookup(name)?;
        self.inner.destroy_entry(&entry)
    }

    /// Asks the guest to power off (ACPI).
    pub fn shutdown(&self, name: &str) -> Result<()> {
        let entry = self.inner.lookup(name)?;
        let _job = entry.job.lock();
        let mon = self.inner.monitor_of(&entry)?;
        if let Some(rt) = entry.obj.lock().runtime.as_mut() {
            rt.stopping = Some(StopIntent::Shutdown);
        }
        mon.execute("system_powerdown", None)
            .map_err(|e| DriverError::OperationFailed(format!("system_powerdown: {e}")))?;
        Ok(())
    }

    /// Reboots the guest as libvirt's default (monitor) reboot does: an ACPI
    /// power-off request, and once the guest has powered off, a reset and
    /// `cont` instead of a stop. With `<on_reboot>` destroy or preserve it
    /// is a plain shutdown request. A guest that ignores ACPI keeps running.
    pub fn reboot(&self, name: &str) -> Result<()> {
        let entry = self.inner.lookup(name)?;
        let _job = entry.job.lock();
        let mon = self.inner.monitor_of(&entry)?;
        {
            let mut obj = entry.obj.lock();
            let keep = matches!(
                obj.def.on_reboot,
                Some(qvisor_domain::LifecycleAction::Destroy)
                    | Some(qvisor_domain::LifecycleAction::Preserve)
            );
            if let Some(rt) = obj.runtime.as_mut() {
                rt.stopping = Some(if keep {
                    StopIntent::Shutdown
                } else {
                    StopIntent::Reboot
                });
            }
        }
        mon.execute("system_powerdown", None)
            .map_err(|e| DriverError::OperationFailed(format!("system_powerdown: {e}")))?;
        Ok(())
    }

    /// Pauses the vCPUs. A paused domain stays paused (no error, as libvirt).
    pub fn suspend(&self, name: &str) -> Result<()> {
        let paused = DomainState::Paused(PausedReason::User);
        let event = Lifecycle::Suspended(state::SuspendedDetail::Paused);
        self.inner.change_cpus(name, "stop", paused, event, |s| {
            Ok(matches!(s, DomainState::Paused(_)))
        })
    }

    /// Resumes the vCPUs of a paused domain.
    pub fn resume(&self, name: &str) -> Result<()> {
        let running = DomainState::Running(RunningReason::Unpaused);
        self.inner
            .change_cpus(name, "cont", running, Lifecycle::Resumed, |s| match s {
                DomainState::Running(_) => Err(DriverError::OperationInvalid(
                    "domain is already running".into(),
                )),
                _ => Ok(false),
            })
    }

    /// All domains (or only running ones), in name order.
    pub fn list(&self, include_inactive: bool) -> Vec<DomainSummary> {
        let entries = self.inner.registry.lock().all();
        entries
            .iter()
            .map(|e| self.inner.summary(e))
            .filter(|s| include_inactive || s.state.is_active())
            .collect()
    }

    /// One domain's summary, by name.
    pub fn lookup(&self, name: &str) -> Result<DomainSummary> {
        let entry = self.inner.lookup(name)?;
        Ok(self.inner.summary(&entry))
    }

    /// One domain's summary, by UUID.
    pub fn lookup_uuid(&self, uuid: &[u8; 16]) -> Result<DomainSummary> {
        let entry = self.inner.lookup_uuid(uuid)?;
        Ok(self.inner.summary(&entry))
    }

    /// One domain's state, by UUID: what `virsh list` asks of every domain,
    /// without building a whole summary.
    pub fn state_by_uuid(&self, uuid: &[u8; 16]) -> Result<DomainState> {
        let entry = self.inner.lookup_uuid(uuid)?;
        let state = entry.obj.lock().state;
        Ok(state)
    }

    /// One running domain's summary, by id.
    pub fn lookup_id(&self, id: i32) -> Result<DomainSummary> {
        let entry = self
            .inner
            .registry
            .lock()
            .by_id(id)
            .ok_or_else(|| DriverError::NoDomain(format!("no domain with matching id {id}")))?;
        Ok(self.inner.summary(&entry))
    }

    /// The domain XML: live while running, unless `inactive`.
    pub fn dump_xml(&self, name: &str, inactive: bool, secure: bool) -> Result<String> {
        let entry = self.inner.lookup(name)?;
        let obj = entry.obj.lock();
        let (def, fmt_inactive) = if inactive || !obj.is_active() {
            (
                obj.next_def
                    .as_ref()
                    .or(obj.persistent.as_ref())
                    .unwrap_or(&obj.def),
                true,
            )
        } else {
            (&obj.def, false)
        };
        let opts = FormatOptions {
            inactive: fmt_inactive,
            secure,
            migratable: false,
        };
        Ok(qvisor_domain::format(def, &opts))
    }

    /// Sets or clears autostart.
    pub fn set_autostart(&self, name: &str, enable: bool) -> Result<()> {
        self.inner.set_autostart(name, enable)
    }

    /// Runs a QMP command (JSON text) or, with `hmp`, a human monitor command,
    /// and returns QEMU's reply text. Taints the domain (`custom-monitor`).
    pub fn monitor_command(&self, name: &str, cmd: &str, hmp: bool) -> Result<String> {
        let entry = self.inner.lookup(name)?;
        let _job = entry.job.lock();
        let mon = self.inner.monitor_of(&entry)?;
        self.inner.taint(&entry, "custom-monitor");
        if hmp {
            let ret = mon
                .execute(
                    "human-monitor-command",
                    Some(serde_json::json!({ "command-line": cmd })),
                )
                .map_err(|e| DriverError::OperationFailed(e.to_string()))?;
            return Ok(ret.as_str().unwrap_or_default().to_string());
        }
        // As libvirt: the caller's object goes to QEMU as it is (with our
        // id added) and QEMU's whole reply comes back, id included, whether
        // it is a return or an error.
        let v: serde_json::Value = serde_json::from_str(cmd)
            .map_err(|e| DriverError::Internal(format!("cannot parse json {cmd}: {e}")))?;
        let serde_json::Value::Object(obj) = v else {
            return Err(DriverError::Internal(format!(
                "cannot parse json {cmd}: not a JSON object"
            )));
        };
        let reply = mon
            .execute_raw(obj)
            .map_err(|e| DriverError::OperationFailed(e.to_string()))?;
        Ok(reply.to_string())
    }

    /// Which plugin contributed each step of the running domain's pipeline.
    pub fn pipeline(&self, name: &str) -> Result<Vec<(String, String)>> {
        let entry = self.inner.lookup(name)?;
        let obj = entry.obj.lock();
        Ok(obj
            .runtime
            .as_ref()
            .map(|rt| rt.pipeline.clone())
            .unwrap_or_default())
    }

    /// The QEMU command line the driver would run for this XML (libvirt's
    /// `domxml-to-native qemu-argv`), without starting anything.
    pub fn domxml_to_native(&self, xml: &str) -> Result<String> {
        self.inner.domxml_to_native(xml)
    }

    /// Number of running domains.
    pub fn running_count(&self) -> usize {
        self.list(false).len()
    }

    /// Stops the actor system. Running QEMUs keep running.
    pub fn shutdown_driver(&self) {
        self.inner.system.stop();
    }
}

/// The UUID bytes of an expanded definition.
fn uuid_of(def: &Domain) -> [u8; 16] {
    def.uuid.map(|u| u.0).unwrap_or_default()
}

/// Reads random bytes from the kernel.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: getrandom writes at most rest.len() bytes into rest.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if r <= 0 {
            break;
        }
        filled += r as usize;
    }
}

impl Inner {
    fn lookup_uuid(&self, uuid: &[u8; 16]) -> Result<Arc<DomainEntry>> {
        self.registry.lock().by_uuid(uuid).ok_or_else(|| {
            DriverError::NoDomain(format!(
                "no domain with matching uuid '{}'",
                qvisor_domain::Uuid(*uuid)
            ))
        })
    }

    fn lookup(&self, name: &str) -> Result<Arc<DomainEntry>> {
        self.registry
            .lock()
            .by_name(name)
            .ok_or_else(|| DriverError::no_domain_name(name))
    }

    /// Emits an event for `entry`.
    pub(crate) fn emit(&self, entry: &DomainEntry, id: i32, kind: EventKind) {
        self.events.emit(DomainEvent {
            name: entry.name.clone(),
            uuid: entry.uuid,
            id,
            kind,
        });
    }

    /// Stops or starts the vCPUs with `command` unless `done(state)` says
    /// there is nothing to do (or refuses).
    /// The new state is set before the command so the STOP/RESUME event
    /// QEMU sends meanwhile finds nothing to change: one lifecycle event,
    /// with the API's reason (libvirt sets the reason before the command and
    /// lets its event handler emit; here the API emits).
    fn change_cpus(
        &self,
        name: &str,
        command: &str,
        target: DomainState,
        event: Lifecycle,
        done: impl Fn(DomainState) -> Result<bool>,
    ) -> Result<()> {
        let entry = self.lookup(name)?;
        let _job = entry.job.lock();
        let mon = self.monitor_of(&entry)?;
        let before = {
            let mut obj = entry.obj.lock();
            if done(obj.state)? {
                return Ok(());
            }
            std::mem::replace(&mut obj.state, target)
        };
        if let Err(e) = mon.execute(command, None) {
            let mut obj = entry.obj.lock();
            if obj.state == target {
                obj.state = before;
            }
            return Err(DriverError::OperationFailed(format!("{command}: {e}")));
        }
        self.set_state_and_emit(&entry, target, event);
        Ok(())
    }

    fn set_state_and_emit(&self, entry: &DomainEntry, state: DomainState, ev: Lifecycle) {
        let id = {
            let mut obj = entry.obj.lock();
            obj.state = state;
            obj.id
        };
        self.save_status_logged(entry);
        self.emit(entry, id, EventKind::Lifecycle(ev));
    }

    fn taint(&self, entry: &DomainEntry, flag: &str) {
        let mut obj = entry.obj.lock();
        if let Some(rt) = obj.runtime.as_mut() {
            if !rt.taint.iter().any(|t| t == flag) {
                rt.taint.push(flag.to_string());
                tracing::warn!(domain = %entry.name, "domain is tainted: {flag}");
            }
        }
    }

    fn monitor_of(&self, entry: &DomainEntry) -> Result<Arc<qvisor_qmp::QmpClient>> {
        let obj = entry.obj.lock();
        match (&obj.runtime, obj.state.is_active()) {
            (Some(rt), true) => Ok(rt.monitor.clone()),
            _ => Err(DriverError::OperationInvalid(
                "domain is not running".into(),
            )),
        }
    }

    fn summary(&self, entry: &DomainEntry) -> DomainSummary {
        let obj = entry.obj.lock();
        let cpu_time_ns = obj
            .runtime
            .as_ref()
            .map(|rt| process_cpu_time_ns(rt.pid))
            .unwrap_or(0);
        DomainSummary {
            name: entry.name.clone(),
            uuid: entry.uuid,
            id: obj.id,
            state: obj.state,
            persistent: obj.persistent.is_some(),
            autostart: obj.autostart,
            max_mem_kib: obj.def.memory.total_kib,
            mem_kib: obj
                .def
                .memory
                .current_kib
                .unwrap_or(obj.def.memory.total_kib),
            vcpus: obj.def.vcpu.current.unwrap_or(obj.def.vcpu.max),
            os_type: obj.def.os.os_type.clone(),
            cpu_time_ns,
            taint: obj
                .runtime
                .as_ref()
                .map(|r| r.taint.clone())
                .unwrap_or_default(),
        }
    }

    /// Capabilities of `emulator`, probing it when the cache has nothing valid.
    fn caps_for(&self, emulator: &Path) -> Result<Arc<QemuCaps>> {
        self.caps.lookup(emulator).map_err(|e| {
            DriverError::Internal(format!(
                "cannot get capabilities of '{}': {e}",
                emulator.display()
            ))
        })
    }

    /// The emulator a definition runs with: `<emulator>`, else
    /// `qemu-system-<arch>` from /usr/bin, /usr/local/bin or PATH.
    fn emulator_for(&self, def: &Domain) -> PathBuf {
        if let Some(e) = &def.devices.emulator {
            return PathBuf::from(e);
        }
        let arch = def
            .os
            .arch
            .clone()
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        let name = format!("qemu-system-{arch}");
        let mut dirs = vec![PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")];
        if let Some(p) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&p));
        }
        dirs.iter()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("/usr/bin").join(name))
    }

    /// Parses, expands and validates a definition with its emulator's caps.
    fn parse_and_expand(&self, xml: &str) -> Result<Domain> {
        let mut def = qvisor_domain::parse(xml, ParseOptions { inactive: true })
            .map_err(DriverError::from)?;
        let emulator = self.emulator_for(&def);
        if !emulator.is_file() {
            return Err(DriverError::ConfigUnsupported(format!(
                "Cannot find QEMU binary {}: No such file or directory",
                emulator.display()
            )));
        }
        let caps = self.caps_for(&emulator)?;
        let mut random = random_bytes;
        let env = |k: &str| std::env::var(k).ok();
        let mut ctx = qvisor_domain::ExpandContext {
            caps: Some(&caps),
            default_emulator: emulator.display().to_string(),
            nvram_dir: self.paths.nvram_dir.display().to_string(),
            vnc_allow_host_audio: self.conf.vnc_allow_host_audio,
            nographics_allow_host_audio: self.conf.nographics_allow_host_audio,
            audio_env: env("QEMU_AUDIO_DRV"),
            sdl_audio_env: env("SDL_AUDIODRIVER"),
            random: &mut random,
        };
        qvisor_domain::expand(&mut def, &mut ctx)?;
        // The daemon stores the machine an alias stands for (`pc` becomes
        // `pc-i440fx-7.2`), so the guest ABI stays put when QEMU is updated
        // (libvirt's qemuCanonicalizeMachine).
        if let Some(m) = def.os.machine.as_deref() {
            let virt_type = def
                .kind
                .map_or("qemu", |k| qvisor_domain::StrEnum::as_str(k));
            let accel = qvisor_caps::Accel::from_virt_type(virt_type);
            let canonical = caps.canonical_machine(accel, m).to_string();
            def.os.machine = Some(canonical);
        }
        Ok(def)
    }

    fn config_xml(def: &Domain) -> String {
        qvisor_domain::format(
            def,
            &FormatOptions {
                inactive: true,
                secure: true,
                migratable: false,
            },
        )
    }

    fn define_xml(&self, xml: &str) -> Result<DomainSummary> {
        let def = self.parse_and_expand(xml)?;
        let uuid = uuid_of(&def);
        let path = self.paths.domain_config(&def.name);
        let text = Self::config_xml(&def);
        let mut reg = self.registry.lock();
        let existing = reg.check_identity(&def.name, &uuid)?;
        write_atomic(&path, text.as_bytes(), 0o600)
            .map_err(|e| DriverError::io("write domain config", &path, e))?;
        let (entry, updated) = match existing {
            Some(entry) => {
                {
                    let mut obj = entry.obj.lock();
                    if obj.is_active() {
                        obj.next_def = Some(def.clone());
                        obj.persistent = Some(def);
                    } else {
                        obj.def = def.clone();
                        obj.persistent = Some(def);
                    }
                }
                (entry, true)
            }
            None => (reg.insert(DomainObj::inactive(def, true), uuid), false),
        };
        drop(reg);
        let id = entry.obj.lock().id;
        self.emit(
            &entry,
            id,
            EventKind::Lifecycle(Lifecycle::Defined { updated }),
        );
        Ok(self.summary(&entry))
    }

    fn undefine(&self, name: &str) -> Result<()> {
        let entry = self.lookup(name)?;
        let active = {
            let mut obj = entry.obj.lock();
            if obj.persistent.is_none() {
                return Err(DriverError::OperationInvalid(
                    "cannot undefine transient domain".into(),
                ));
            }
            obj.persistent = None;
            obj.next_def = None;
            obj.autostart = false;
            obj.is_active()
        };
        let cfg = self.paths.domain_config(name);
        remove_if_exists(&cfg).map_err(|e| DriverError::io("remove domain config", &cfg, e))?;
        let link = self.paths.domain_autostart_link(name);
        remove_if_exists(&link).map_err(|e| DriverError::io("remove autostart link", &link, e))?;
        if active {
            self.save_status_logged(&entry);
        } else {
            self.registry.lock().remove(name);
            self.security_undefined(name, &entry.uuid);
        }
        let id = entry.obj.lock().id;
        self.emit(&entry, id, EventKind::Lifecycle(Lifecycle::Undefined));
        Ok(())
    }

    fn set_autostart(&self, name: &str, enable: bool) -> Result<()> {
        let entry = self.lookup(name)?;
        if entry.obj.lock().persistent.is_none() {
            return Err(DriverError::OperationInvalid(
                "cannot set autostart for transient domain".into(),
            ));
        }
        let link = self.paths.domain_autostart_link(name);
        if enable {
            if let Some(dir) = link.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| DriverError::io("create directory", dir, e))?;
            }
            let target = self.paths.domain_config(name);
            remove_if_exists(&link)
                .map_err(|e| DriverError::io("replace autostart link", &link, e))?;
            std::os::unix::fs::symlink(&target, &link)
                .map_err(|e| DriverError::io("create autostart link", &link, e))?;
        } else {
            remove_if_exists(&link)
                .map_err(|e| DriverError::io("remove autostart link", &link, e))?;
        }
        entry.obj.lock().autostart = enable;
        Ok(())
    }

    /// Loads `etc/qemu/*.xml` at driver start.
    fn load_persistent(&self) -> Result<()> {
        let dir = &self.paths.config_dir;
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect();
        paths.sort();
        for path in paths {
            let loaded = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    qvisor_domain::parse_existing(&text, ParseOptions { inactive: true })
                        .map_err(|e| e.to_string())
                });
            match loaded {
                Ok(def) => {
                    let uuid = uuid_of(&def);
                    let name = def.name.clone();
                    let mut reg = self.registry.lock();
                    if reg.check_identity(&name, &uuid).ok().flatten().is_some()
                        || reg.by_name(&name).is_some()
                    {
                        tracing::warn!(domain = %name, "duplicate definition in {} ignored", path.display());
                        continue;
                    }
                    let mut obj = DomainObj::inactive(def, true);
                    obj.autostart = self.paths.domain_autostart_link(&name).exists();
                    reg.insert(obj, uuid);
                }
                Err(e) => tracing::error!("cannot load domain config {}: {e}", path.display()),
            }
        }
        Ok(())
    }

    fn autostart_all(self: &Arc<Self>) {
        let entries = self.registry.lock().all();
        for entry in entries {
            let go = {
                let obj = entry.obj.lock();
                obj.autostart && !obj.is_active()
            };
            if go {
                if let Err(e) = self.start_entry(&entry, false) {
                    tracing::error!(domain = %entry.name, "autostart failed: {e}");
                }
            }
        }
    }

    /// Writes the status file of a running domain.
    fn save_status(&self, entry: &DomainEntry) -> Result<()> {
        let _serialized = entry.status_write.lock();
        let obj = entry.obj.lock();
        let Some(rt) = obj.runtime.as_ref() else {
            return Ok(());
        };
        let st = Status {
            state: obj.state,
            pid: rt.pid,
            id: obj.id,
            monitor_path: rt.monitor_path.clone(),
            private_dir: rt.private_dir.clone(),
            taint: rt.taint.clone(),
            labels: rt.labels.clone(),
            persistent: obj.persistent.is_some(),
            shutdown_seen: rt.shutdown_seen,
            def: obj.def.clone(),
        };
        drop(obj);
        let path = self.paths.domain_status(&entry.name);
        write_atomic_runtime(&path, st.to_xml().as_bytes(), 0o600)
            .map_err(|e| DriverError::io("write status file", &path, e))
    }

    pub(crate) fn save_status_logged(&self, entry: &DomainEntry) {
        if let Err(e) = self.save_status(entry) {
            tracing::error!(domain = %entry.name, "{e}");
        }
    }

    /// Stops a running domain: SIGTERM, SIGKILL after the grace period, then
    /// waits until the exit has been fully processed.
    pub(crate) fn destroy_entry(&self, entry: &Arc<DomainEntry>) -> Result<()> {
        let _job = entry.job.lock();
        let (pidfd, exited) = {
            let mut obj = entry.obj.lock();
            let active = obj.is_active();
            match obj.runtime.as_mut() {
                Some(rt) if active => {
                    rt.stopping = Some(StopIntent::Destroy);
                    (rt.pidfd.clone(), rt.exited.clone())
                }
                _ => {
                    return Err(DriverError::OperationInvalid(
                        "domain is not running".into(),
                    ))
                }
            }
        };
        terminate(&entry.name, &pidfd, &exited)
    }

    /// After a guest powered off with `<on_poweroff>destroy`: stop QEMU (the
    /// exit counts as a shutdown, not a destroy).
    pub(crate) fn stop_after_guest_shutdown(&self, entry: &Arc<DomainEntry>) -> Result<()> {
        let _job = entry.job.lock();
        let (pidfd, exited) = {
            let obj = entry.obj.lock();
            match obj.runtime.as_ref() {
                Some(rt) => (rt.pidfd.clone(), rt.exited.clone()),
                None => return Ok(()),
            }
        };
        terminate(&entry.name, &pidfd, &exited)
    }

    /// `<on_poweroff>restart`/`<on_reboot>restart` with `-no-shutdown`: reset
    /// the machine and let it run again.
    pub(crate) fn reset_and_continue(&self, entry: &Arc<DomainEntry>) -> Result<()> {
        let _job = entry.job.lock();
        let mon = self.monitor_of(entry)?;
        mon.execute("system_reset", None)
            .and_then(|_| mon.execute("cont", None))
            .map_err(|e| DriverError::OperationFailed(format!("restarting the guest: {e}")))?;
        if let Some(rt) = entry.obj.lock().runtime.as_mut() {
            rt.shutdown_seen = false;
        }
        Ok(())
    }

    /// Everything after QEMU exited: state, events, files, labels. Runs once
    /// per run, on a blocking thread; wakes `destroy` waiters at the end.
    pub(crate) fn process_exited(&self, entry: &Arc<DomainEntry>, exit: process::Exit) {
        let (rt, id) = {
            let mut obj = entry.obj.lock();
            let Some(rt) = obj.runtime.take() else {
                return;
            };
            (rt, obj.id)
        };
        let (reason, detail) = match rt.stopping {
            Some(StopIntent::Destroy) => (ShutoffReason::Destroyed, StoppedDetail::Destroyed),
            _ if rt.shutdown_seen || rt.stopping == Some(StopIntent::Shutdown) => {
                (ShutoffReason::Shutdown, StoppedDetail::Shutdown)
            }
            _ => (ShutoffReason::Crashed, StoppedDetail::Failed),
        };
        if reason == ShutoffReason::Crashed {
            let tail = log_tail(&self.paths.domain_log(&entry.name), 5);
            tracing::error!(domain = %entry.name, "QEMU {exit} unexpectedly: {tail}");
        } else {
            tracing::info!(domain = %entry.name, "QEMU {exit}");
        }
        self.restore_labels(entry, &rt);
        let layers: Vec<String> = rt
            .pipeline
            .iter()
            .filter(|(step, _)| step.starts_with("security:"))
            .map(|(_, p)| p.clone())
            .chain(rt.labels.iter().map(|l| l.plugin.clone()))
            .collect();
        self.teardown_security(&entry.name, &entry.uuid, id, &layers);
        let status = self.paths.domain_status(&entry.name);
        if let Err(e) = remove_if_exists(&status) {
            tracing::error!(domain = %entry.name, "cannot remove {}: {e}", status.display());
        }
        let _ = std::fs::remove_dir_all(&rt.private_dir);
        let transient = {
            let mut obj = entry.obj.lock();
            obj.state = DomainState::Shutoff(reason);
            obj.id = -1;
            if let Some(next) = obj.next_def.take() {
                obj.persistent = Some(next);
            }
            match obj.persistent.clone() {
                Some(p) => {
                    obj.def = p;
                    false
                }
                None => true,
            }
        };
        if transient {
            self.registry.lock().remove(&entry.name);
        }
        self.emit(entry, id, EventKind::Lifecycle(Lifecycle::Stopped(detail)));
        rt.exited.set(exit);
    }

    /// Asks each security plugin to restore what it labelled.
    fn restore_labels(&self, entry: &DomainEntry, rt: &runtime::Runtime) {
        let mut plugins: Vec<&str> = rt.labels.iter().map(|l| l.plugin.as_str()).collect();
        plugins.dedup();
        for plugin in plugins {
            let labels = rt
                .labels
                .iter()
                .filter(|l| l.plugin == plugin)
                .map(|l| l.record.clone())
                .collect();
            let ctx = qvisor_sdk::DomainContext {
                name: entry.name.clone().into(),
                uuid: qvisor_domain::Uuid(entry.uuid).to_string().into(),
                virt_type: Default::default(),
                emulator: Default::default(),
                xml: Default::default(),
                private_dir: rt.private_dir.display().to_string().into(),
                uid: 0,
                gid: 0,
                resources: Default::default(),
                settings: Default::default(),
                labels,
            };
            if let Err(e) = self.call_plugin(plugin, Request::RestoreLabels(Box::new(ctx).into())) {
                tracing::error!(domain = %entry.name, "restoring labels failed: {e}");
            }
        }
    }

    /// Sends `request` to the plugin's actor from any (non-actor) thread and
    /// waits for its answer. The message goes straight to the actor's mailbox and the answer wakes
    /// this thread: no hop through the supervisor actor or an arbiter task
    /// (each hop a context switch, dear under nested virtualisation).
    pub(crate) fn call_plugin(&self, plugin: &str, request: Request) -> Result<Reply, CallError> {
        let Some(addr) = self.mailboxes.get(plugin) else {
            return Err(CallError::NotRunning {
                plugin: plugin.to_string(),
                reason: "no such plugin loaded".into(),
            });
        };
        block_on(addr.send(Call(request))).unwrap_or_else(|_| {
            Err(CallError::Mailbox {
                plugin: plugin.to_string(),
            })
        })
    }

    /// Re-attaches to every QEMU recorded in `run/qemu/*.xml`.
    fn reconnect_all(self: &Arc<Self>) {
        let Ok(entries) = std::fs::read_dir(&self.paths.state_dir) else {
            return;
        };
        let mut max_id = 0;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "xml") {
                continue;
            }
            match Status::read(&path) {
                Ok(st) => {
                    max_id = max_id.max(st.id);
                    self.reconnect_one(&path, st);
                }
                Err(err) => {
                    tracing::error!("{err}; removing it");
                    let _ = remove_if_exists(&path);
                }
            }
        }
        let next = self.next_id.load(Ordering::Relaxed).max(max_id + 1);
        self.next_id.store(next, Ordering::Relaxed);
    }
}

/// Stops a QEMU: SIGTERM, SIGKILL after [`DESTROY_GRACE`], then waits until
/// its exit has been fully processed (state, files, labels, events).
fn terminate(name: &str, pidfd: &std::os::fd::OwnedFd, exited: &runtime::ExitSignal) -> Result<()> {
    process::pidfd_signal(pidfd, libc::SIGTERM)
        .map_err(|e| DriverError::OperationFailed(format!("failed to terminate process: {e}")))?;
    if exited.wait(DESTROY_GRACE).is_some() {
        return Ok(());
    }
    tracing::warn!(domain = %name, "QEMU ignored SIGTERM for {DESTROY_GRACE:?}; sending SIGKILL");
    process::pidfd_signal(pidfd, libc::SIGKILL)
        .map_err(|e| DriverError::OperationFailed(format!("failed to kill process: {e}")))?;
    if exited.wait(Duration::from_secs(30)).is_none() {
        return Err(DriverError::OperationFailed(
            "QEMU did not exit after SIGKILL".into(),
        ));
    }
    Ok(())
}

/// The last `n` lines of a log file, joined with "; ".
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}

/// CPU time (user + system) of a process, from `/proc/PID/stat`.
fn process_cpu_time_ns(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command (which may contain spaces) start after ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1_000_000_000 / hz
}

/// Runs `future` to completion on this (non-actor) thread, parking between
/// polls; whatever completes it (an actor's answer) unparks the thread.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
