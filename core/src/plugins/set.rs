//! The plugin set: which plugins load, in which order, with which settings.
//!
//! Read from a RON file per connection (system `/etc/qvisor/plugins.ron`,
//! session `$XDG_CONFIG_HOME/qvisor/plugins.ron`, embedded `$root/etc/plugins.ron`).
//! Without a file, every `libqvisor_*.so` in the plugin directory is loaded in
//! file-name order.
//!
//! ```ron
//! PluginSet(
//!     // optional; relative plugin paths are resolved against it
//!     plugin_dir: Some("/usr/lib/qvisor/plugins"),
//!     plugins: [
//!         (file: "libqvisor_accel_kvm.so"),
//!         (file: "libqvisor_accel_tcg.so"),
//!         (file: "/opt/vendor/libqvisor_accel_foo.so", settings: Some((level: 3))),
//!     ],
//! )
//! ```
//! Unknown keys are errors, reported with their line and column.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One entry of the plugin set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The library file; relative paths are resolved against the plugin directory.
    pub file: PathBuf,
    /// The plugin's own settings, handed to it as RON text.
    #[serde(default)]
    pub settings: Option<ron::Value>,
}

/// The parsed plugin-set file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename = "PluginSet")]
pub struct PluginSetFile {
    /// Overrides the plugin directory.
    #[serde(default)]
    pub plugin_dir: Option<PathBuf>,
    /// The plugins, in load order.
    pub plugins: Vec<PluginEntry>,
}

/// A plugin to load: the resolved path and its settings as RON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Absolute or directory-relative path of the library.
    pub path: PathBuf,
    /// RON text of the settings (`()` when none).
    pub settings: String,
}

/// Errors reading the plugin set.
#[derive(Debug, thiserror::Error)]
pub enum PluginSetError {
    /// The file could not be read.
    #[error("cannot read plugin set '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid plugin set.
    #[error("plugin set '{path}' line {line}, column {col}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        msg: String,
    },
    /// The plugin directory could not be listed.
    #[error("cannot list plugin directory '{path}': {source}")]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Parses plugin-set RON text; `path` is only used in error messages.
pub fn parse_plugin_set(text: &str, path: &Path) -> Result<PluginSetFile, PluginSetError> {
    ron::from_str(text).map_err(|e| PluginSetError::Parse {
        path: path.to_path_buf(),
        line: e.position.line,
        col: e.position.col,
        msg: e.code.to_string(),
    })
}

/// Resolves a parsed plugin set against the default plugin directory.
pub fn specs_from_file(file: &PluginSetFile, default_dir: &Path) -> Vec<PluginSpec> {
    let dir = file.plugin_dir.as_deref().unwrap_or(default_dir);
    file.plugins
        .iter()
        .map(|e| PluginSpec {
            path: dir.join(&e.file),
            settings: e
                .settings
                .as_ref()
                .and_then(|v| ron::to_string(v).ok())
                .unwrap_or_else(|| "()".to_string()),
        })
        .collect()
}

/// The built-in default: every `libqvisor_*.so` in `dir`, sorted by file name.
pub fn default_specs(dir: &Path) -> Result<Vec<PluginSpec>, PluginSetError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PluginSetError::ListDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libqvisor_") && n.ends_with(".so"))
        })
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|path| PluginSpec {
            path,
            settings: "()".to_string(),
        })
        .collect())
}

/// The plugin specs for a connection: from `set_file` when it exists, else the
/// default set from `plugin_dir`.
pub fn load_specs(set_file: &Path, plugin_dir: &Path) -> Result<Vec<PluginSpec>, PluginSetError> {
    match std::fs::read_to_string(set_file) {
        Ok(text) => Ok(specs_from_file(
            &parse_plugin_set(&text, set_file)?,
            plugin_dir,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => default_specs(plugin_dir),
        Err(source) => Err(PluginSetError::Read {
            path: set_file.to_path_buf(),
            source,
        }),
    }
}

/// The plugin directory: `QVISOR_PLUGIN_DIR` if set; else the directory of the
/// running binary when it holds plugins (a build tree); else
/// `<prefix>/lib/qvisor/plugins` for a binary installed in `<prefix>/bin`.
pub fn plugin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("QVISOR_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let Some(exe_dir) = exe_dir else {
        return PathBuf::from("/usr/lib/qvisor/plugins");
    };
    let has_plugins = default_specs(&exe_dir).is_ok_and(|s| !s.is_empty());
    // Test binaries live in target/<profile>/deps; the plugins one level up.
    let parent_has_plugins = exe_dir.ends_with("deps")
        && exe_dir
            .parent()
            .is_some_and(|p| default_specs(p).is_ok_and(|s| !s.is_empty()));
    if has_plugins {
        exe_dir
    } else if parent_has_plugins {
        exe_dir.parent().map(Path::to_path_buf).unwrap_or(exe_dir)
    } else {
        exe_dir
            .parent()
            .map(|prefix| prefix.join("lib/qvisor/plugins"))
            .unwrap_or_else(|| PathBuf::from("/usr/lib/qvisor/plugins"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_minimal_plugin_set() {
        let f = parse_plugin_set(
            "PluginSet(plugins: [(file: \"libqvisor_accel_tcg.so\")])",
            Path::new("p.ron"),
        )
        .unwrap();
        let specs = specs_from_file(&f, Path::new("/plugins"));
        assert_eq!(
            specs,
            vec![PluginSpec {
                path: PathBuf::from("/plugins/libqvisor_accel_tcg.so"),
                settings: "()".to_string()
            }]
        );
    }

    #[test]
    fn settings_are_passed_as_ron_text() {
        let f = parse_plugin_set(
            "PluginSet(plugin_dir: Some(\"/x\"), plugins: [(file: \"a.so\", settings: Some((level: 3)))])",
            Path::new("p.ron"),
        )
        .unwrap();
        let specs = specs_from_file(&f, Path::new("/plugins"));
        assert_eq!(specs[0].path, PathBuf::from("/x/a.so"));
        assert!(specs[0].settings.contains("level"), "{}", specs[0].settings);
        assert!(specs[0].settings.contains('3'), "{}", specs[0].settings);
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let err = parse_plugin_set(
            "PluginSet(\n  plugins: [],\n  plugns: [],\n)",
            Path::new("/etc/qvisor/plugins.ron"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("plugns"), "{msg}");
        assert!(msg.contains("/etc/qvisor/plugins.ron"), "{msg}");
    }

    #[test]
    fn default_set_takes_only_qvisor_libraries_sorted() {
        let dir = std::env::temp_dir().join(format!("qvisor-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "libqvisor_b.so",
            "libqvisor_a.so",
            "libother.so",
            "libqvisor_c.txt",
        ] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let specs = default_specs(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<_> = specs
            .iter()
            .map(|s| s.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["libqvisor_a.so", "libqvisor_b.so"]);
    }

    #[test]
    fn missing_set_file_falls_back_to_directory() {
        let dir = std::env::temp_dir().join(format!("qvisor-set2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libqvisor_x.so"), b"").unwrap();
        let specs = load_specs(&dir.join("nope.ron"), &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(specs.len(), 1);
    }
}
