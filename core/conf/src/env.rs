//! The process environment the driver's paths and default URI depend on,
//! as a plain value so every computation on it is deterministic.
//!
//! [`Environment::from_process`] is the only place that reads the real
//! environment; tests build an [`Environment`] by hand.

use std::ffi::OsString;
use std::path::PathBuf;

/// What the driver's directories and default URI depend on.
///
/// The XDG variables follow GLib's reading (which libvirt uses): a variable
/// counts when set to a non-empty absolute path; otherwise the XDG default
/// under `home` applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Environment {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// `$HOME`, or the password database's home directory.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `$XDG_DATA_HOME`.
    pub xdg_data_home: Option<PathBuf>,
    /// `$XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `$LIBVIRT_DEFAULT_URI`.
    pub libvirt_default_uri: Option<String>,
    /// `$QVISOR_DEFAULT_URI`.
    pub qvisor_default_uri: Option<String>,
}

/// Errors from resolving per-user directories.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither `$HOME` nor the password database gives a home directory,
    /// and an XDG directory needs it.
    #[error("cannot determine the home directory of uid {uid} to find ${var} (set HOME or {var})")]
    NoHome {
        /// The user.
        uid: u32,
        /// The XDG variable whose default needs the home directory.
        var: &'static str,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

impl Environment {
    /// Reads the real process environment (variables, euid/egid and, when
    /// `$HOME` is unset, the password database).
    pub fn from_process() -> Self {
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let path_var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let string_var = |name: &str| std::env::var(name).ok();
        let home = path_var("HOME")
            .filter(|p| !p.as_os_str().is_empty())
            .or_else(|| sys::home_of(uid));
        Environment {
            uid,
            gid,
            home,
            xdg_config_home: path_var("XDG_CONFIG_HOME"),
            xdg_cache_home: path_var("XDG_CACHE_HOME"),
            xdg_data_home: path_var("XDG_DATA_HOME"),
            xdg_state_home: path_var("XDG_STATE_HOME"),
            xdg_runtime_dir: path_var("XDG_RUNTIME_DIR"),
            libvirt_default_uri: string_var("LIBVIRT_DEFAULT_URI"),
            qvisor_default_uri: string_var("QVISOR_DEFAULT_URI"),
        }
    }

    /// Whether the driver runs as root.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    fn xdg(&self, set: &Option<PathBuf>, var: &'static str, under_home: &str) -> Result<PathBuf> {
        if let Some(dir) = set.as_ref().filter(|d| d.is_absolute()) {
            return Ok(dir.clone());
        }
        self.home
            .as_ref()
            .map(|h| h.join(under_home))
            .ok_or(Error::NoHome { uid: self.uid, var })
    }

    /// `$XDG_CONFIG_HOME`, default `~/.config`.
    pub fn config_home(&self) -> Result<PathBuf> {
        self.xdg(&self.xdg_config_home, "XDG_CONFIG_HOME", ".config")
    }

    /// `$XDG_CACHE_HOME`, default `~/.cache`.
    pub fn cache_home(&self) -> Result<PathBuf> {
        self.xdg(&self.xdg_cache_home, "XDG_CACHE_HOME", ".cache")
    }

    /// `$XDG_DATA_HOME`, default `~/.local/share`.
    pub fn data_home(&self) -> Result<PathBuf> {
        self.xdg(&self.xdg_data_home, "XDG_DATA_HOME", ".local/share")
    }

    /// `$XDG_STATE_HOME`, default `~/.local/state`.
    pub fn state_home(&self) -> Result<PathBuf> {
        self.xdg(&self.xdg_state_home, "XDG_STATE_HOME", ".local/state")
    }

    /// `$XDG_RUNTIME_DIR`; when unset, the cache directory, as GLib's
    /// `g_get_user_runtime_dir` falls back.
    pub fn runtime_dir(&self) -> Result<PathBuf> {
        match self.xdg_runtime_dir.as_ref().filter(|d| d.is_absolute()) {
            Some(dir) => Ok(dir.clone()),
            None => self.cache_home(),
        }
    }
}

mod sys {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    /// The home directory of `uid` from the password database.
    pub(super) fn home_of(uid: u32) -> Option<PathBuf> {
        let mut buf = vec![0u8; 4096];
        loop {
            // SAFETY: passwd is plain old data; all-zero is a valid value.
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: pwd, buf and result are valid for writes for the
            // duration of the call and buf.len() is buf's real length.
            let rc = unsafe {
                libc::getpwuid_r(
                    uid,
                    &mut pwd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut result,
                )
            };
            if rc == libc::ERANGE && buf.len() < 1 << 20 {
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            if rc != 0 || result.is_null() || pwd.pw_dir.is_null() {
                return None;
            }
            // SAFETY: on success pw_dir points to a NUL-terminated string
            // inside buf, which is still alive.
            let dir = unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) };
            let dir = OsString::from_vec(dir.to_bytes().to_vec());
            return (!dir.is_empty()).then(|| PathBuf::from(dir));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Environment {
        Environment {
            uid: 1000,
            gid: 1000,
            home: Some(PathBuf::from("/home/u")),
            ..Environment::default()
        }
    }

    #[test]
    fn xdg_defaults_live_under_home() {
        let env = user();
        assert_eq!(
            env.config_home().ok(),
            Some(PathBuf::from("/home/u/.config"))
        );
        assert_eq!(env.cache_home().ok(), Some(PathBuf::from("/home/u/.cache")));
        assert_eq!(
            env.data_home().ok(),
            Some(PathBuf::from("/home/u/.local/share"))
        );
        assert_eq!(
            env.state_home().ok(),
            Some(PathBuf::from("/home/u/.local/state"))
        );
    }

    #[test]
    fn runtime_dir_falls_back_to_cache_home_as_glib() {
        assert_eq!(
            user().runtime_dir().ok(),
            Some(PathBuf::from("/home/u/.cache"))
        );
        let env = Environment {
            xdg_runtime_dir: Some(PathBuf::from("/run/user/1000")),
            ..user()
        };
        assert_eq!(
            env.runtime_dir().ok(),
            Some(PathBuf::from("/run/user/1000"))
        );
    }

    #[test]
    fn relative_or_empty_xdg_values_are_ignored() {
        let env = Environment {
            xdg_config_home: Some(PathBuf::from("rel/conf")),
            xdg_cache_home: Some(PathBuf::new()),
            ..user()
        };
        assert_eq!(
            env.config_home().ok(),
            Some(PathBuf::from("/home/u/.config"))
        );
        assert_eq!(env.cache_home().ok(), Some(PathBuf::from("/home/u/.cache")));
    }

    #[test]
    fn missing_home_is_an_error_naming_the_variable() {
        let env = Environment {
            home: None,
            ..user()
        };
        let e = env.state_home().err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("cannot determine the home directory of uid 1000 to find $XDG_STATE_HOME (set HOME or XDG_STATE_HOME)")
        );
    }

    #[test]
    fn from_process_reports_a_home_directory() {
        let env = Environment::from_process();
        assert!(env.home.is_some());
    }
}
