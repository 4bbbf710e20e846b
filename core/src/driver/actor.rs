//! One actor per running domain. QMP events (from the monitor's reader) and
//! QEMU's exit (from the waiter) arrive here as messages; the actor turns
//! them into state changes and domain events, and acts on `<on_poweroff>`,
//! `<on_reboot>` and `<on_crash>`. Anything that blocks (stopping QEMU,
//! restoring labels) runs on a blocking thread, never on the executor.

use std::sync::Arc;

use actix::prelude::*;
use qvisor_domain::LifecycleAction;

use super::process::Exit;
use super::registry::DomainEntry;
use super::runtime::StopIntent;
use super::state::{
    DomainState, EventKind, Lifecycle, PausedReason, RunningReason, ShutdownDetail, SuspendedDetail,
};
use super::Inner;

/// A QMP event for this domain.
#[derive(Message)]
#[rtype(result = "()")]
pub struct QmpEvent(pub qvisor_qmp::Event);

/// QEMU has exited.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Exited(pub Exit);

/// The actor.
pub struct DomainActor {
    /// The driver.
    pub inner: Arc<Inner>,
    /// The domain.
    pub entry: Arc<DomainEntry>,
}

impl Actor for DomainActor {
    type Context = Context<Self>;
}

impl Handler<QmpEvent> for DomainActor {
    type Result = ();

    fn handle(&mut self, msg: QmpEvent, ctx: &mut Context<Self>) {
        let ev = msg.0;
        tracing::debug!(domain = %self.entry.name, event = %ev.name, data = %ev.data, "QMP event");
        match ev.name.as_str() {
            "STOP" => self.on_stop(),
            "RESUME" => self.on_resume(),
            "SHUTDOWN" => self.on_shutdown(&ev.data),
            "RESET" => self.on_reset(),
            "GUEST_PANICKED" => self.on_panic(ctx),
            _ => {}
        }
    }
}

impl Handler<Exited> for DomainActor {
    type Result = ();

    fn handle(&mut self, msg: Exited, ctx: &mut Context<Self>) {
        let inner = self.inner.clone();
        let entry = self.entry.clone();
        // Finishing a stop removes files and asks plugins to restore labels:
        // blocking work, off the executor.
        std::thread::spawn(move || inner.process_exited(&entry, msg.0));
        ctx.stop();
    }
}

impl DomainActor {
    fn emit(&self, kind: EventKind) {
        let id = self.entry.obj.lock().id;
        self.inner.emit(&self.entry, id, kind);
    }

    fn on_stop(&self) {
        let mut obj = self.entry.obj.lock();
        if obj.runtime.as_ref().is_some_and(|rt| rt.starting) {
            return;
        }
        if let DomainState::Running(_) = obj.state {
            obj.state = DomainState::Paused(PausedReason::Unknown);
            drop(obj);
            self.inner.save_status_logged(&self.entry);
            self.emit(EventKind::Lifecycle(Lifecycle::Suspended(
                SuspendedDetail::Paused,
            )));
        }
    }

    fn on_resume(&self) {
        let mut obj = self.entry.obj.lock();
        if obj.runtime.as_ref().is_some_and(|rt| rt.starting) {
            return;
        }
        if let DomainState::Paused(_) = obj.state {
            obj.state = DomainState::Running(RunningReason::Unpaused);
            drop(obj);
            self.inner.save_status_logged(&self.entry);
            self.emit(EventKind::Lifecycle(Lifecycle::Resumed));
        }
    }

    fn on_shutdown(&self, data: &serde_json::Value) {
        let guest = data.get("guest").and_then(|g| g.as_bool()).unwrap_or(false);
        let detail = if guest {
            ShutdownDetail::Guest
        } else {
            ShutdownDetail::Host
        };
        let action = {
            let mut obj = self.entry.obj.lock();
            let mut fake_reboot = false;
            if let Some(rt) = obj.runtime.as_mut() {
                rt.shutdown_seen = true;
                if rt.stopping == Some(StopIntent::Reboot) {
                    rt.stopping = None;
                    fake_reboot = true;
                }
            }
            if fake_reboot {
                LifecycleAction::Restart
            } else {
                obj.def.on_poweroff.unwrap_or(LifecycleAction::Destroy)
            }
        };
        self.emit(EventKind::Lifecycle(Lifecycle::Shutdown(detail)));
        // QEMU runs with -no-shutdown: after the guest powers off it waits
        // for us to act on <on_poweroff>, as libvirt does.
        let inner = self.inner.clone();
        let entry = self.entry.clone();
        std::thread::spawn(move || {
            let result = match action {
                LifecycleAction::Restart
                | LifecycleAction::CoredumpRestart
                | LifecycleAction::Rename => inner.reset_and_continue(&entry),
                LifecycleAction::Preserve => Ok(()),
                LifecycleAction::Destroy | LifecycleAction::CoredumpDestroy => {
                    inner.stop_after_guest_shutdown(&entry)
                }
            };
            if let Err(e) = result {
                tracing::error!(domain = %entry.name, "acting on guest shutdown failed: {e}");
            }
        });
    }

    fn on_reset(&self) {
        self.emit(EventKind::Reboot);
        let action = self
            .entry
            .obj
            .lock()
            .def
            .on_reboot
            .unwrap_or(LifecycleAction::Restart);
        if action == LifecycleAction::Destroy {
            self.destroy_in_background();
        }
    }

    fn on_panic(&self, _ctx: &mut Context<Self>) {
        self.emit(EventKind::Lifecycle(Lifecycle::Crashed));
        let action = self
            .entry
            .obj
            .lock()
            .def
            .on_crash
            .unwrap_or(LifecycleAction::Destroy);
        if matches!(
            action,
            LifecycleAction::Destroy | LifecycleAction::CoredumpDestroy
        ) {
            self.destroy_in_background();
        }
    }

    fn destroy_in_background(&self) {
        let inner = self.inner.clone();
        let entry = self.entry.clone();
        std::thread::spawn(move || {
            if let Err(e) = inner.destroy_entry(&entry) {
                tracing::error!(domain = %entry.name, "destroy after guest event failed: {e}");
            }
        });
    }
}
