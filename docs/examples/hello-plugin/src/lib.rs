//! A minimal qvisor plugin: a device plugin that is always usable and records
//! which domains it prepared. Build with `cargo build`, then list it with
//! `QVISOR_PLUGIN_DIR=... qvisor plugins` or name it in a plugins.ron.

use std::sync::Mutex;

use qvisor_sdk::prelude::*;

struct Hello {
    host: HostHandle,
    greeting: String,
    prepared: Mutex<Vec<String>>,
}

impl QvisorPlugin for Hello {
    fn describe(&self) -> Description {
        Description::new("hello", PluginKind::Device, env!("CARGO_PKG_VERSION"), &["device:hello"])
    }

    fn probe(&self) -> ProbeResult {
        ProbeResult::usable(format!("{}, always usable", self.greeting))
    }

    fn prepare(&self, domain: &DomainContext) -> Result<PrepareResult, PluginError> {
        self.host.info(&format!("preparing domain '{}'", domain.name));
        self.prepared
            .lock()
            .map_err(|_| PluginError::failed("state lock poisoned"))?
            .push(domain.name.to_string());
        Ok(PrepareResult {
            sources: RVec::new(),
            resources: RVec::new(),
        })
    }
}

/// `settings` is this plugin's entry in plugins.ron, as RON text, e.g.
/// `(greeting: "hi")`; a real plugin would parse it with the `ron` crate.
fn new(host: HostHandle, settings: &str) -> Result<Hello, PluginError> {
    let greeting = if settings.contains("greeting") {
        settings.to_string()
    } else {
        "hello".to_string()
    };
    Ok(Hello {
        host,
        greeting,
        prepared: Mutex::new(Vec::new()),
    })
}

qvisor_sdk::export_plugin!(new);
