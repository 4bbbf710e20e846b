//! Connection URIs and what they select: the driver's directory tree and its
//! plugin set.

use std::path::PathBuf;

use qvisor_conf::{uri::default_uri, ConnectUri, DriverPaths, Environment};

/// A resolved connection target: the URI (after the default-URI rule) and the
/// directory tree of the driver it names.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URI, canonical.
    pub uri: ConnectUri,
    /// The driver's directories.
    pub paths: DriverPaths,
}

/// Resolves `-c URI` (or the default-URI rule when `None`) for this process.
pub fn resolve(connect: Option<&str>) -> anyhow::Result<Target> {
    let env = Environment::from_process();
    let (uri, _source) = default_uri(connect, &env)?;
    let paths = DriverPaths::new(&uri.mode, &env)?;
    Ok(Target { uri, paths })
}

/// The plugin-set file of a connection (system `/etc/qvisor/plugins.ron`;
/// session `$XDG_CONFIG_HOME/qvisor/plugins.ron`; embedded `$root/etc/plugins.ron`).
pub fn plugin_set_file(connect: Option<&str>) -> anyhow::Result<PathBuf> {
    Ok(resolve(connect)?.paths.plugins_conf)
}
