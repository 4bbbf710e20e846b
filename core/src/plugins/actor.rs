//! One actor per loaded plugin. Plugin calls may block (FFI, file system,
//! external tools), so each plugin runs on its own `SyncArbiter` thread, never
//! on the async executor. When a call panics, the actor stops and the arbiter
//! builds a fresh plugin instance from the factory: that is the restart.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use abi_stable::std_types::{RResult, RStr};
use actix::prelude::*;
use crossbeam_channel::Sender;
use qvisor_sdk::{PluginBox, PluginError, PluginModRef, Reply, Request, Request_NE};

use super::host::{host_for, TaggedEvent};

/// Why a plugin call failed, with the plugin named.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// The plugin answered with an error.
    #[error("plugin '{plugin}': {source}")]
    Plugin {
        /// The plugin's file name.
        plugin: String,
        /// Its error.
        #[source]
        source: PluginError,
    },
    /// The plugin instance could not be created.
    #[error("plugin '{plugin}' failed to start: {reason}")]
    NotRunning {
        /// The plugin's file name.
        plugin: String,
        /// What its constructor said.
        reason: String,
    },
    /// The plugin answered with a reply variant this qvisor does not know.
    #[error("plugin '{plugin}' answered with a reply this qvisor does not understand")]
    UnknownReply {
        /// The plugin's file name.
        plugin: String,
    },
    /// The actor is gone (supervisor shutting down).
    #[error("plugin '{plugin}' is not reachable")]
    Mailbox {
        /// The plugin's file name.
        plugin: String,
    },
}

/// A call to a plugin.
#[derive(Message)]
#[rtype(result = "Result<Reply, CallError>")]
pub struct Call(pub Request);

/// The actor owning one plugin instance.
pub struct PluginActor {
    name: Arc<str>,
    instance: Result<Arc<PluginBox>, PluginError>,
    restarts: Arc<AtomicU32>,
}

/// Asks for the plugin instance itself, for calling
/// [`qvisor_sdk::Plugin::pre_exec`] in a forked QEMU child (where no actor
/// can be reached). `None` when the instance failed to build.
#[derive(Message)]
#[rtype(result = "Option<Arc<PluginBox>>")]
pub struct GetInstance;

impl Handler<GetInstance> for PluginActor {
    type Result = Option<Arc<PluginBox>>;

    fn handle(&mut self, _msg: GetInstance, _ctx: &mut SyncContext<Self>) -> Self::Result {
        self.instance.as_ref().ok().cloned()
    }
}

impl Actor for PluginActor {
    type Context = SyncContext<Self>;
}

impl Handler<Call> for PluginActor {
    type Result = Result<Reply, CallError>;

    fn handle(&mut self, msg: Call, ctx: &mut SyncContext<Self>) -> Self::Result {
        let plugin = self.name.to_string();
        let instance = match &self.instance {
            Ok(i) => i,
            Err(e) => {
                return Err(CallError::NotRunning {
                    plugin,
                    reason: e.to_string(),
                })
            }
        };
        match instance.call(Request_NE::new(msg.0)) {
            RResult::ROk(reply) => reply
                .into_enum()
                .map_err(|_| CallError::UnknownReply { plugin }),
            RResult::RErr(e) => {
                if matches!(e, PluginError::Panicked(_)) {
                    let n = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(plugin = %self.name, restarts = n, "plugin panicked ({e}); restarting it");
                    ctx.stop();
                }
                Err(CallError::Plugin { plugin, source: e })
            }
        }
    }
}

/// Starts the actor for a loaded module on its own thread. The factory runs
/// again after a panic, so the plugin gets a fresh instance.
pub fn start_plugin_actor(
    name: Arc<str>,
    module: PluginModRef,
    settings: String,
    events: Option<Sender<TaggedEvent>>,
    restarts: Arc<AtomicU32>,
) -> Addr<PluginActor> {
    SyncArbiter::start(1, move || {
        let host = host_for(name.clone(), events.clone());
        let instance = (module.new())(host, RStr::from(settings.as_str()))
            .into_result()
            .map(Arc::new);
        if let Err(e) = &instance {
            tracing::warn!(plugin = %name, "plugin constructor failed: {e}");
        }
        PluginActor {
            name: name.clone(),
            instance,
            restarts: restarts.clone(),
        }
    })
}

/// Maps a mailbox error to a [`CallError`].
pub fn mailbox_error(plugin: &str, _e: MailboxError) -> CallError {
    CallError::Mailbox {
        plugin: plugin.to_string(),
    }
}

/// Convenience: the reply of a call, flattened.
pub async fn call(
    addr: &Addr<PluginActor>,
    plugin: &str,
    request: Request,
) -> Result<Reply, CallError> {
    addr.send(Call(request))
        .await
        .map_err(|e| mailbox_error(plugin, e))?
}
