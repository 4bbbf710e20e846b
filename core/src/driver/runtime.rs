//! What exists only while a domain runs: its QEMU process, monitor, actor.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use parking_lot::{Condvar, Mutex};
use qvisor_qmp::QmpClient;
use qvisor_sdk::LabelRecord;

use super::actor::DomainActor;
use super::process::Exit;

/// Why we are stopping a domain (decides the reason and event at exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopIntent {
    /// `destroy`.
    Destroy,
    /// `shutdown`: asked the guest (ACPI) to power off.
    Shutdown,
    /// `reboot`: asked the guest (ACPI) to power off; when it does, the
    /// machine is reset and continued instead (libvirt's fake reboot).
    Reboot,
}

/// Becomes set once the QEMU process has exited; waiters block on it.
#[derive(Default)]
pub struct ExitSignal {
    exit: Mutex<Option<Exit>>,
    cond: Condvar,
}

impl ExitSignal {
    /// Records the exit and wakes waiters.
    pub fn set(&self, exit: Exit) {
        *self.exit.lock() = Some(exit);
        self.cond.notify_all();
    }

    /// Waits up to `timeout`; `Some` once exited.
    pub fn wait(&self, timeout: Duration) -> Option<Exit> {
        let mut guard = self.exit.lock();
        if guard.is_none() {
            self.cond.wait_for(&mut guard, timeout);
        }
        *guard
    }

    /// Whether the process has exited.
    pub fn get(&self) -> Option<Exit> {
        *self.exit.lock()
    }
}

/// A label a security plugin applied, with the plugin that applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedLabel {
    /// The plugin's name.
    pub plugin: String,
    /// What it recorded.
    pub record: LabelRecord,
}

/// The running side of a domain.
pub struct Runtime {
    /// QEMU's pid.
    pub pid: i32,
    /// A pidfd for signalling without pid-reuse races.
    pub pidfd: Arc<OwnedFd>,
    /// The QMP monitor.
    pub monitor: Arc<QmpClient>,
    /// The monitor socket path.
    pub monitor_path: PathBuf,
    /// The per-domain private directory.
    pub private_dir: PathBuf,
    /// The domain's actor (QMP events and the exit arrive there).
    pub actor: Addr<DomainActor>,
    /// Set when QEMU exits.
    pub exited: Arc<ExitSignal>,
    /// Set by destroy/shutdown before acting.
    pub stopping: Option<StopIntent>,
    /// While the start job runs, STOP/RESUME events are the start's own.
    pub starting: bool,
    /// Whether the guest reported a SHUTDOWN.
    pub shutdown_seen: bool,
    /// libvirt taint flags (`custom-argv`, `custom-monitor`, ...).
    pub taint: Vec<String>,
    /// Labels applied by security plugins, restored at stop.
    pub labels: Vec<AppliedLabel>,
    /// Which plugin contributed each pipeline step (`step`, `plugin`).
    pub pipeline: Vec<(String, String)>,
}
