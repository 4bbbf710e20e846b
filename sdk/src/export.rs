//! The plugin author's side: an ordinary Rust trait, a panic-catching adapter
//! to the ABI trait object, and the [`export_plugin!`](crate::export_plugin) macro.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RBox, RResult, RStr, RString, RVec},
};

use crate::{
    AccelContribution, Description, DomainContext, HostBox, LabelRecord, LogLevel, Plugin,
    PluginBox, PluginError, PluginEvent, Plugin_TO, PrepareResult, ProbeResult, Reply, Reply_NE,
    Request, Request_NE, Setting, StorageReply, StorageReply_NE, StorageRequest,
};

/// `ENOSYS`, returned by the default [`QvisorPlugin::pre_exec`].
const ENOSYS: i32 = 38;

/// The trait a plugin implements. Every method except `describe` and `probe`
/// has a default that says the plugin takes no part in that step.
pub trait QvisorPlugin: Send + Sync + Unpin + 'static {
    /// Who the plugin is and what it provides.
    fn describe(&self) -> Description;

    /// Whether the plugin is usable on this host, and why not.
    fn probe(&self) -> ProbeResult;

    /// Resolves and prepares what a domain needs before it starts.
    fn prepare(&self, _domain: &DomainContext) -> Result<PrepareResult, PluginError> {
        Err(PluginError::unsupported("prepare"))
    }

    /// Contributes the accelerator part of the command line.
    fn command_line(&self, _domain: &DomainContext) -> Result<AccelContribution, PluginError> {
        Err(PluginError::unsupported("command-line"))
    }

    /// Labels the domain's resources; returns what must be remembered to undo it.
    fn set_labels(&self, _domain: &DomainContext) -> Result<Vec<LabelRecord>, PluginError> {
        Err(PluginError::unsupported("set-labels"))
    }

    /// Restores what [`QvisorPlugin::set_labels`] changed (`domain.labels`).
    fn restore_labels(&self, _domain: &DomainContext) -> Result<(), PluginError> {
        Err(PluginError::unsupported("restore-labels"))
    }

    /// Prepares confinement; returns a token for [`QvisorPlugin::pre_exec`].
    fn confine(&self, _domain: &DomainContext) -> Result<Option<u64>, PluginError> {
        Err(PluginError::unsupported("confine"))
    }

    /// Forgets per-domain state.
    fn release(&self, _domain: &DomainContext) -> Result<(), PluginError> {
        Ok(())
    }

    /// Answers a storage pool or volume operation (storage plugins).
    fn storage(&self, _request: &StorageRequest) -> Result<StorageReply, PluginError> {
        Err(PluginError::unsupported("storage"))
    }

    /// Applies confinement in the QEMU child (async-signal-safe code only).
    fn pre_exec(&self, _token: u64) -> i32 {
        ENOSYS
    }
}

/// Answers a request with a plugin's methods. The adapter calls this inside
/// `catch_unwind`; it is public so tests can drive a plugin without loading it.
pub fn dispatch<P: QvisorPlugin + ?Sized>(
    plugin: &P,
    request: &Request_NE,
) -> Result<Reply, PluginError> {
    let Ok(request) = request.as_enum() else {
        return Err(PluginError::unsupported(
            "request unknown to this plugin (built against an older qvisor-sdk)",
        ));
    };
    Ok(match request {
        Request::Describe => Reply::Description(plugin.describe()),
        Request::Probe => Reply::Probe(plugin.probe()),
        Request::Prepare(d) => Reply::Prepared(plugin.prepare(d)?),
        Request::CommandLine(d) => Reply::Accel(plugin.command_line(d)?),
        Request::SetLabels(d) => Reply::Labels(plugin.set_labels(d)?.into_iter().collect()),
        Request::RestoreLabels(d) => {
            plugin.restore_labels(d)?;
            Reply::Done
        }
        Request::Confine(d) => Reply::Confine(plugin.confine(d)?.into()),
        Request::Release(d) => {
            plugin.release(d)?;
            Reply::Done
        }
        Request::Storage(r) => Reply::Storage(RBox::new(StorageReply_NE::new(plugin.storage(r)?))),
    })
}

fn panic_message(payload: &(dyn Any + Send)) -> RString {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    };
    RString::from(text)
}

/// Wraps a [`QvisorPlugin`] as the ABI [`Plugin`] object, catching panics.
struct Adapter<P>(P);

impl<P: QvisorPlugin> Plugin for Adapter<P> {
    fn call(&self, request: Request_NE) -> RResult<Reply_NE, PluginError> {
        match catch_unwind(AssertUnwindSafe(|| dispatch(&self.0, &request))) {
            Ok(Ok(reply)) => RResult::ROk(Reply_NE::new(reply)),
            Ok(Err(e)) => RResult::RErr(e),
            Err(payload) => RResult::RErr(PluginError::Panicked(panic_message(&*payload))),
        }
    }

    fn pre_exec(&self, token: u64) -> i32 {
        // No unwinding out of the child: a panic here is reported as EIO.
        catch_unwind(AssertUnwindSafe(|| self.0.pre_exec(token))).unwrap_or(5)
    }
}

/// A plugin's handle on the host callbacks.
pub struct HostHandle {
    host: HostBox,
}

impl HostHandle {
    /// Wraps the host object the supervisor passed in.
    pub fn new(host: HostBox) -> Self {
        HostHandle { host }
    }

    /// Logs `message` at `level`.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, RStr::from(""), RStr::from(message));
    }

    /// Logs at debug level.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }

    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// Logs at warn level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// Reports an event.
    pub fn event(&self, name: &str, domain: &str, data: Vec<Setting>) {
        self.host.event(PluginEvent {
            name: name.into(),
            domain: domain.into(),
            data: RVec::from(data),
        });
    }
}

/// Used by [`crate::export_plugin!`]: builds the plugin with `ctor`, catching panics.
#[doc(hidden)]
pub fn instantiate<P, F>(
    host: HostBox,
    settings: RStr<'_>,
    ctor: F,
) -> RResult<PluginBox, PluginError>
where
    P: QvisorPlugin,
    F: FnOnce(HostHandle, &str) -> Result<P, PluginError>,
{
    let handle = HostHandle::new(host);
    let built = catch_unwind(AssertUnwindSafe(|| ctor(handle, settings.as_str())));
    match built {
        Ok(Ok(plugin)) => RResult::ROk(Plugin_TO::from_value(Adapter(plugin), TD_Opaque)),
        Ok(Err(e)) => RResult::RErr(e),
        Err(payload) => RResult::RErr(PluginError::Panicked(panic_message(&*payload))),
    }
}

/// Exports a plugin's root module.
///
/// The argument is a constructor `fn(HostHandle, &str) -> Result<P, PluginError>`
/// where `P: QvisorPlugin` and the `&str` is the plugin's RON settings; the
/// plugin keeps the [`HostHandle`] if it wants to log later.
/// The crate must depend on `abi_stable` directly (the generated code names it).
#[macro_export]
macro_rules! export_plugin {
    ($ctor:path) => {
        /// The plugin's root module, read by the qvisor supervisor.
        #[::abi_stable::export_root_module]
        pub fn qvisor_plugin_root_module() -> $crate::PluginModRef {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::PluginMod {
                new: qvisor_plugin_new,
            }
            .leak_into_prefix()
        }

        #[::abi_stable::sabi_extern_fn]
        fn qvisor_plugin_new(
            host: $crate::HostBox,
            settings: ::abi_stable::std_types::RStr<'_>,
        ) -> ::abi_stable::std_types::RResult<$crate::PluginBox, $crate::PluginError> {
            $crate::__private::instantiate(host, settings, $ctor)
        }
    };
}
