//! Loading one plugin library and checking it against our SDK.

use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibraryError};
use qvisor_sdk::{PluginModRef, SDK_VERSION};

/// Why a plugin library could not be loaded. Each message is one line that
/// names the file; abi_stable's full report (which can run to 1,000+ lines for a
/// layout mismatch) is logged at debug level only.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// The file does not exist.
    #[error("plugin '{path}': no such file")]
    MissingFile {
        /// The plugin file.
        path: PathBuf,
    },
    /// The file is not a loadable library, or exports no qvisor root module.
    #[error("plugin '{path}': not a qvisor plugin: {reason}")]
    NotAPlugin {
        /// The plugin file.
        path: PathBuf,
        /// What the dynamic loader or abi_stable said, first line only.
        reason: String,
    },
    /// Built against an SDK version this supervisor cannot talk to.
    #[error("plugin '{path}': built against incompatible qvisor-sdk {found} (this qvisor uses {expected})")]
    IncompatibleSdk {
        /// The plugin file.
        path: PathBuf,
        /// Our SDK version.
        expected: String,
        /// The plugin's SDK version.
        found: String,
    },
    /// Same SDK version number but a different layout of the ABI types.
    #[error("plugin '{path}': built against qvisor-sdk {found} with an incompatible ABI layout (this qvisor uses {expected}; full report at debug level)")]
    AbiMismatch {
        /// The plugin file.
        path: PathBuf,
        /// Our SDK version.
        expected: String,
        /// The plugin's SDK version string.
        found: String,
    },
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// A plugin library that passed the ABI checks.
pub struct LoadedPlugin {
    /// Its root module.
    pub module: PluginModRef,
    /// The qvisor-sdk version it was built against.
    pub sdk_version: String,
}

/// Loads the library at `path` and returns its checked root module.
///
/// Uses `lib_header_from_path` + `init_root_module` (not `load_from_file`,
/// which caches one module per root-module type and would hand back the first
/// plugin for every later load). Libraries are never unloaded.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin, LoadError> {
    if !path.exists() {
        return Err(LoadError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let header = lib_header_from_path(path).map_err(|e| {
        tracing::debug!(plugin = %path.display(), "load failed: {e}");
        LoadError::NotAPlugin {
            path: path.to_path_buf(),
            reason: first_line(&e.to_string()),
        }
    })?;
    let found = header.version_strings().version.to_string();
    if !same_abi_epoch(SDK_VERSION, &found) {
        return Err(LoadError::IncompatibleSdk {
            path: path.to_path_buf(),
            expected: SDK_VERSION.to_string(),
            found,
        });
    }
    let module = header.init_root_module::<PluginModRef>().map_err(|e| {
        tracing::debug!(plugin = %path.display(), "root module rejected: {e}");
        classify(path, &found, e)
    })?;
    Ok(LoadedPlugin {
        module,
        sdk_version: found,
    })
}

/// Whether two SDK versions can talk: same major, and for `0.y.z` the same `y`
/// (abi_stable's rule; `z` only grows by compatible additions). abi_stable
/// itself accepts a plugin built against a *newer* `0.y` and only then fails
/// on layout; checking first gives the clearer error.
fn same_abi_epoch(ours: &str, theirs: &str) -> bool {
    let epoch = |v: &str| {
        let mut it = v.split('.');
        let major = it.next().unwrap_or("").to_string();
        let minor = it.next().unwrap_or("").to_string();
        if major == "0" {
            (major, minor)
        } else {
            (major, String::new())
        }
    };
    epoch(ours) == epoch(theirs)
}

fn classify(path: &Path, found: &str, e: LibraryError) -> LoadError {
    let path = path.to_path_buf();
    let expected = SDK_VERSION.to_string();
    match e {
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadError::IncompatibleSdk {
                path,
                expected,
                found: actual_version.to_string(),
            }
        }
        LibraryError::AbiInstability(_) | LibraryError::InvalidCAbi { .. } => {
            LoadError::AbiMismatch {
                path,
                expected,
                found: found.to_string(),
            }
        }
        other => LoadError::NotAPlugin {
            path,
            reason: first_line(&other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_epoch_follows_semver_with_zero_minor_as_major() {
        assert!(same_abi_epoch("0.1.0", "0.1.7"));
        assert!(!same_abi_epoch("0.1.0", "0.2.0"));
        assert!(!same_abi_epoch("0.2.0", "0.1.0"));
        assert!(same_abi_epoch("1.2.0", "1.0.3"));
        assert!(!same_abi_epoch("1.0.0", "2.0.0"));
    }
}
