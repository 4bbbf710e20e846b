//! The supervisor: loads the plugin set, starts one actor per plugin, asks each
//! who it is and whether it is usable, and routes calls to them. A plugin that
//! fails to load is reported and skipped; the others carry on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use crossbeam_channel::Sender;
use qvisor_sdk::{Description, PluginBox, PluginKind, ProbeResult, Reply, Request};

use super::actor::{call, start_plugin_actor, CallError, GetInstance, PluginActor};
use super::host::TaggedEvent;
use super::load::{load_plugin, LoadError};
use super::set::PluginSpec;

/// The state of one plugin, as `qvisor plugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginState {
    /// Loaded and its probe says it can work here.
    Usable(String),
    /// Loaded, but its probe says it cannot work here.
    Unusable(String),
    /// Not loaded, or it failed to describe or probe itself.
    Failed(String),
}

impl PluginState {
    /// `usable`, `unusable` or `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            PluginState::Usable(_) => "usable",
            PluginState::Unusable(_) => "unusable",
            PluginState::Failed(_) => "failed",
        }
    }

    /// The reason text.
    pub fn reason(&self) -> &str {
        match self {
            PluginState::Usable(r) | PluginState::Unusable(r) | PluginState::Failed(r) => r,
        }
    }
}

/// What the supervisor knows about one plugin.
#[derive(Debug, Clone)]
pub struct PluginStatus {
    /// The library file.
    pub file: PathBuf,
    /// The plugin's description, when it answered.
    pub description: Option<Description>,
    /// The SDK version the plugin was built against, when it loaded.
    pub sdk_version: Option<String>,
    /// Usable, unusable or failed, with the reason.
    pub state: PluginState,
    /// How many times the plugin instance was restarted after a panic.
    pub restarts: u32,
}

impl PluginStatus {
    /// The plugin's name, or its file stem when it never answered.
    pub fn name(&self) -> String {
        match &self.description {
            Some(d) => d.name.to_string(),
            None => self
                .file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// The plugin's kind, when known.
    pub fn kind(&self) -> Option<PluginKind> {
        self.description.as_ref().map(|d| d.kind)
    }

    /// Whether the plugin is usable.
    pub fn usable(&self) -> bool {
        matches!(self.state, PluginState::Usable(_))
    }
}

struct Slot {
    status: PluginStatus,
    addr: Option<Addr<PluginActor>>,
    restarts: Arc<AtomicU32>,
}

/// The supervisor actor.
pub struct Supervisor {
    slots: Vec<Slot>,
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Supervisor {
    /// Loads every plugin of the set (failures are recorded, not fatal), asks
    /// each to describe and probe itself, and starts the supervisor actor.
    /// Must run inside an actix system.
    pub async fn start(
        specs: Vec<PluginSpec>,
        events: Option<Sender<TaggedEvent>>,
    ) -> Addr<Supervisor> {
        let mut slots = Vec::with_capacity(specs.len());
        for spec in specs {
            let file_name: Arc<str> = spec
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| spec.path.display().to_string())
                .into();
            let restarts = Arc::new(AtomicU32::new(0));
            let (addr, sdk_version, state) = match load_plugin(&spec.path) {
                Ok(loaded) => {
                    let sdk = Some(loaded.sdk_version);
                    let addr = start_plugin_actor(
                        file_name.clone(),
                        loaded.module,
                        spec.settings.clone(),
                        events.clone(),
                        restarts.clone(),
                    );
                    (
                        Some(addr),
                        sdk,
                        PluginState::Failed("not probed yet".into()),
                    )
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    (None, None, PluginState::Failed(load_error_reason(&e)))
                }
            };
            slots.push(Slot {
                status: PluginStatus {
                    file: spec.path,
                    description: None,
                    sdk_version,
                    state,
                    restarts: 0,
                },
                addr,
                restarts,
            });
        }
        // Ask all plugins at once: each runs on its own thread.
        let pending: Vec<_> = slots
            .iter()
            .map(|s| {
                s.addr.clone().map(|a| {
                    (
                        a.send(super::actor::Call(Request::Describe)),
                        a.send(super::actor::Call(Request::Probe)),
                    )
                })
            })
            .collect();
        for (slot, p) in slots.iter_mut().zip(pending) {
            let Some((describe, probe)) = p else { continue };
            let name = slot.status.name();
            let describe = describe.await.unwrap_or_else(|_| {
                Err(CallError::Mailbox {
                    plugin: name.clone(),
                })
            });
            let probe = probe
                .await
                .unwrap_or_else(|_| Err(CallError::Mailbox { plugin: name }));
            match (describe, probe) {
                (Ok(Reply::Description(d)), Ok(Reply::Probe(p))) => {
                    slot.status.description = Some(d);
                    slot.status.state = probe_state(&p);
                }
                (Ok(Reply::Description(d)), Err(e)) => {
                    slot.status.description = Some(d);
                    slot.status.state = PluginState::Failed(format!("probe failed: {e}"));
                }
                (Err(e), _) => {
                    slot.status.state = PluginState::Failed(format!("describe failed: {e}"))
                }
                _ => {
                    slot.status.state =
                        PluginState::Failed("answered describe/probe with the wrong reply".into())
                }
            }
        }
        Supervisor { slots }.start()
    }
}

fn probe_state(p: &ProbeResult) -> PluginState {
    if p.usable {
        PluginState::Usable(p.reason.to_string())
    } else {
        PluginState::Unusable(p.reason.to_string())
    }
}

fn load_error_reason(e: &LoadError) -> String {
    // The error names the file already; the table shows the file separately.
    let full = e.to_string();
    match full.split_once("': ") {
        Some((_, rest)) => rest.to_string(),
        None => full,
    }
}

/// Lists the plugins and their state.
#[derive(Message)]
#[rtype(result = "Vec<PluginStatus>")]
pub struct ListPlugins;

impl Handler<ListPlugins> for Supervisor {
    type Result = MessageResult<ListPlugins>;

    fn handle(&mut self, _msg: ListPlugins, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.slots
                .iter()
                .map(|s| {
                    let mut st = s.status.clone();
                    st.restarts = s.restarts.load(Ordering::Relaxed);
                    st
                })
                .collect(),
        )
    }
}

/// The mailbox of every running plugin actor, by plugin name. A mailbox
/// stays valid for the supervisor's life: a plugin that panicked is
/// restarted behind the same address.
#[derive(Message)]
#[rtype(result = "Vec<(String, Addr<PluginActor>)>")]
pub struct PluginMailboxes;

impl Handler<PluginMailboxes> for Supervisor {
    type Result = MessageResult<PluginMailboxes>;

    fn handle(&mut self, _msg: PluginMailboxes, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.slots
                .iter()
                .filter_map(|s| s.addr.clone().map(|a| (s.status.name(), a)))
                .collect(),
        )
    }
}

/// Sends a request to the plugin named `plugin` (its description name).
#[derive(Message)]
#[rtype(result = "Result<Reply, CallError>")]
pub struct CallPlugin {
    /// The plugin's name.
    pub plugin: String,
    /// The request.
    pub request: Request,
}

impl Handler<CallPlugin> for Supervisor {
    type Result = ResponseFuture<Result<Reply, CallError>>;

    fn handle(&mut self, msg: CallPlugin, _ctx: &mut Context<Self>) -> Self::Result {
        let addr = self
            .slots
            .iter()
            .find(|s| s.status.name() == msg.plugin)
            .and_then(|s| s.addr.clone());
        Box::pin(async move {
            match addr {
                Some(addr) => call(&addr, &msg.plugin, msg.request).await,
                None => Err(CallError::NotRunning {
                    reason: "no such plugin loaded".into(),
                    plugin: msg.plugin,
                }),
            }
        })
    }
}

/// The instance of the plugin named `plugin`, for `pre_exec` hooks (the
/// instance that answered `Confine`; a restart after a panic replaces it).
#[derive(Message)]
#[rtype(result = "Option<Arc<PluginBox>>")]
pub struct PluginInstance {
    /// The plugin's name.
    pub plugin: String,
}

impl Handler<PluginInstance> for Supervisor {
    type Result = ResponseFuture<Option<Arc<PluginBox>>>;

    fn handle(&mut self, msg: PluginInstance, _ctx: &mut Context<Self>) -> Self::Result {
        let addr = self
            .slots
            .iter()
            .find(|s| s.status.name() == msg.plugin)
            .and_then(|s| s.addr.clone());
        Box::pin(async move {
            match addr {
                Some(addr) => addr.send(GetInstance).await.ok().flatten(),
                None => None,
            }
        })
    }
}
