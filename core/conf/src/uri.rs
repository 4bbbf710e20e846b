//! Connection URIs of the QEMU driver and the default-URI rule.
//!
//! Accepted forms:
//!
//! | URI                                  | meaning                                   |
//! |--------------------------------------|-------------------------------------------|
//! | `qemu:///system`                     | the system driver                         |
//! | `qemu:///session`                    | the caller's session driver               |
//! | `qemu:///embed?root=/abs/dir`        | an embedded driver rooted at `/abs/dir`   |
//! | `qemu+unix:///system[?socket=PATH]`  | the system daemon over a UNIX socket      |
//! | `qemu+unix:///session[?socket=PATH]` | the session daemon over a UNIX socket     |
//!
//! Query parameters are split on `&` or `;` and percent-decoded as libvirt
//! does (`+` stays a plus); every parameter is kept in
//! [`ConnectUri::params`]. Refusals use libvirt's messages: a relative
//! embed root ("root path must be absolute"), a missing `root` ("Missing
//! URI parameter 'root'"), an unknown path ("unexpected qemu URI path
//! '/x', try qemu:///system"), `qemu://system` ("maybe you want
//! qemu:///system"), a remote host or another driver.
//!
//! The default URI ([`default_uri`]): `-c/--connect`, then
//! `$LIBVIRT_DEFAULT_URI`, then `$QVISOR_DEFAULT_URI`, else an embedded
//! root in the user's state directory, `$XDG_STATE_HOME/qvisor/embed`
//! (`~/.local/state/qvisor/embed`), so a new user needs no daemon.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::env::{self, Environment};
use crate::{ErrorCode, Mode};

/// How the driver is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `qemu://`: no transport named. For `system`/`session` the front end
    /// decides between an in-process driver and the local daemon; an
    /// embedded driver is always in-process.
    Default,
    /// `qemu+unix://`: the daemon's UNIX socket, `socket=` or the default.
    Unix,
}

/// A parsed connection URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectUri {
    /// Which driver (system, session or embedded with its root).
    pub mode: Mode,
    /// How it is reached.
    pub transport: Transport,
    /// The `socket=` parameter, if given.
    pub socket: Option<PathBuf>,
    /// Every query parameter, decoded, in order.
    pub params: Vec<(String, String)>,
}

/// Why a URI was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not a URI of the form `scheme:...`.
    #[error("internal error: Unable to parse URI {uri}")]
    Unparsable {
        /// The URI.
        uri: String,
    },
    /// A URI of another driver, or a transport other than `unix`.
    #[error("no connection driver available for {uri}")]
    NoDriver {
        /// The URI.
        uri: String,
    },
    /// A transport libvirt knows but qvisor does not offer.
    #[error("unsupported configuration: transport '{transport}' of URI {uri} is not supported; use qemu:///... or qemu+unix:///...")]
    UnsupportedTransport {
        /// The URI.
        uri: String,
        /// The transport (`ssh`).
        transport: String,
    },
    /// A transport name libvirt does not know.
    #[error("invalid argument: remote_open: transport in URL not recognised (should be tls|unix|ssh|ext|tcp|libssh2|libssh)")]
    UnknownTransport {
        /// The URI.
        uri: String,
    },
    /// `qemu://system`: the path was written as a host.
    #[error("internal error: invalid URI {uri} (maybe you want qemu:///{host})")]
    MissingSlash {
        /// The URI.
        uri: String,
        /// `system` or `session`.
        host: String,
    },
    /// A remote host: qvisor drives the local machine only.
    #[error("unsupported configuration: remote host '{host}' in URI {uri} is not supported; qvisor drives the local machine")]
    RemoteHost {
        /// The URI.
        uri: String,
        /// The host.
        host: String,
    },
    /// `qemu+unix://host/...`.
    #[error("invalid argument: using unix socket and remote server '{host}' is not supported.")]
    UnixWithServer {
        /// The host.
        host: String,
    },
    /// A path other than `/system`, `/session`, `/embed`.
    #[error("internal error: unexpected qemu URI path '{path}', try qemu:///{suggest}")]
    UnexpectedPath {
        /// The path.
        path: String,
        /// `system` or `session`.
        suggest: &'static str,
    },
    /// `/embed` under a scheme with a transport.
    #[error(
        "no connection driver available for URI scheme '{scheme}' for embedded driver is not valid"
    )]
    EmbedScheme {
        /// The scheme.
        scheme: String,
    },
    /// `/embed` without `root=`.
    #[error("invalid argument: Missing URI parameter 'root'")]
    MissingRoot,
    /// `root=` is not an absolute path.
    #[error("unsupported configuration: root path must be absolute: '{}'", root.display())]
    RelativeRoot {
        /// The root given.
        root: PathBuf,
    },
    /// `root=` or `socket=` holds a NUL byte.
    #[error("invalid argument: URI parameter '{name}' must not contain a NUL byte")]
    NulInParam {
        /// The parameter.
        name: &'static str,
    },
}

impl Error {
    /// The libvirt error code this error maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Unparsable { .. }
            | Error::MissingSlash { .. }
            | Error::UnexpectedPath { .. } => ErrorCode::Internal,
            Error::NoDriver { .. } | Error::EmbedScheme { .. } => ErrorCode::NoConnect,
            Error::UnknownTransport { .. }
            | Error::UnixWithServer { .. }
            | Error::MissingRoot
            | Error::NulInParam { .. } => ErrorCode::InvalidArg,
            Error::UnsupportedTransport { .. }
            | Error::RemoteHost { .. }
            | Error::RelativeRoot { .. } => ErrorCode::ConfigUnsupported,
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Transports libvirt's remote driver knows.
const KNOWN_TRANSPORTS: &[&str] = &["tls", "unix", "ssh", "ext", "tcp", "libssh2", "libssh"];

impl ConnectUri {
    /// Parses `uri`. `privileged` picks the suggestion for an unknown path
    /// (`qemu:///system` for root, `qemu:///session` otherwise), as libvirt.
    pub fn parse(uri: &str, privileged: bool) -> Result<Self> {
        let unparsable = || Error::Unparsable {
            uri: uri.to_owned(),
        };
        let (scheme, rest) = uri.split_once(':').ok_or_else(unparsable)?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        {
            return Err(unparsable());
        }
        // Drop a fragment; split the query off.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (hier, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match hier.strip_prefix("//") {
            Some(after) => match after.find('/') {
                Some(i) => (after.get(..i).unwrap_or(""), after.get(i..).unwrap_or("")),
                None => (after, ""),
            },
            None => ("", hier),
        };
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .to_owned();

        let (driver, transport) = scheme.split_once('+').unwrap_or((scheme, ""));
        if driver != "qemu" {
            return Err(Error::NoDriver {
                uri: uri.to_owned(),
            });
        }
        let transport = transport.to_ascii_lowercase();
        if path == "/embed" && !transport.is_empty() {
            return Err(Error::EmbedScheme {
                scheme: scheme.to_owned(),
            });
        }
        if (host == "system" || host == "session") && transport.is_empty() {
            return Err(Error::MissingSlash {
                uri: uri.to_owned(),
                host,
            });
        }
        let transport = match transport.as_str() {
            "" => Transport::Default,
            "unix" => Transport::Unix,
            t if KNOWN_TRANSPORTS.contains(&t) => {
                return Err(Error::UnsupportedTransport {
                    uri: uri.to_owned(),
                    transport: t.to_owned(),
                })
            }
            _ => {
                return Err(Error::UnknownTransport {
                    uri: uri.to_owned(),
                })
            }
        };
        if !host.is_empty() {
            return Err(match transport {
                Transport::Unix => Error::UnixWithServer { host },
                Transport::Default => Error::RemoteHost {
                    uri: uri.to_owned(),
                    host,
                },
            });
        }

        let raw_params = parse_query(query);
        let params: Vec<(String, String)> = raw_params
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let param_path = |name: &'static str| -> Result<Option<PathBuf>> {
            match raw_params.iter().find(|(n, _)| n == name.as_bytes()) {
                None => Ok(None),
                Some((_, v)) if v.contains(&0) => Err(Error::NulInParam { name }),
                Some((_, v)) => Ok(Some(PathBuf::from(OsString::from_vec(v.clone())))),
            }
        };
        let socket = param_path("socket")?;
        let mode = match path {
            "/system" => Mode::System,
            "/session" => Mode::Session,
            "/embed" => {
                let root = param_path("root")?.ok_or(Error::MissingRoot)?;
                if !root.is_absolute() {
                    return Err(Error::RelativeRoot { root });
                }
                Mode::Embed {
                    root: normalize_root(&root),
                }
            }
            other => {
                return Err(Error::UnexpectedPath {
                    path: other.to_owned(),
                    suggest: if privileged { "system" } else { "session" },
                })
            }
        };
        Ok(ConnectUri {
            mode,
            transport,
            socket,
            params,
        })
    }

    /// The URI for an embedded driver at `root` (which must be absolute).
    pub fn embed(root: &Path) -> Result<Self> {
        if !root.is_absolute() {
            return Err(Error::RelativeRoot {
                root: root.to_owned(),
            });
        }
        if root.as_os_str().as_bytes().contains(&0) {
            return Err(Error::NulInParam { name: "root" });
        }
        let root = normalize_root(root);
        Ok(ConnectUri {
            params: vec![("root".to_owned(), root.to_string_lossy().into_owned())],
            mode: Mode::Embed { root },
            transport: Transport::Default,
            socket: None,
        })
    }
}

/// Removes trailing slashes (`/srv/vm/` and `/srv/vm` are one root).
fn normalize_root(root: &Path) -> PathBuf {
    let bytes = root.as_os_str().as_bytes();
    let trimmed = match bytes.iter().rposition(|&b| b != b'/') {
        Some(last) => bytes.get(..=last).unwrap_or(bytes),
        None => b"/",
    };
    PathBuf::from(OsString::from_vec(trimmed.to_vec()))
}

impl fmt::Display for ConnectUri {
    /// The canonical form: `qemu:///system`, `qemu+unix:///session?socket=…`,
    /// `qemu:///embed?root=/dir` (what `virsh uri` prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.transport {
            Transport::Default => "qemu",
            Transport::Unix => "qemu+unix",
        };
        match &self.mode {
            Mode::System => write!(f, "{scheme}:///system")?,
            Mode::Session => write!(f, "{scheme}:///session")?,
            Mode::Embed { root } => {
                write!(f, "{scheme}:///embed?root=")?;
                escape(f, root.as_os_str().as_bytes())?;
            }
        }
        if let Some(socket) = &self.socket {
            f.write_str(if matches!(self.mode, Mode::Embed { .. }) {
                "&socket="
            } else {
                "?socket="
            })?;
            escape(f, socket.as_os_str().as_bytes())?;
        }
        Ok(())
    }
}

/// Percent-encodes what would change a query value's meaning.
fn escape(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        let plain = b.is_ascii_alphanumeric() || b"/-._~:@!$'()*+,=".contains(&b);
        if plain {
            write!(f, "{}", char::from(b))?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// Splits a query like libvirt's `virURIParseParams`: sections separated by
/// `&` or `;`, `name=value`, `name` alone meaning an empty value, `=value`
/// ignored; names and values percent-decoded.
fn parse_query(query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split(['&', ';'])
        .filter(|s| !s.is_empty())
        .filter_map(|section| match section.split_once('=') {
            Some(("", _)) => None,
            Some((n, v)) => Some((unescape(n), unescape(v))),
            None => Some((unescape(section), Vec::new())),
        })
        .collect()
}

/// Decodes `%XX`; a `%` not followed by two hex digits stays as it is.
fn unescape(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Where the URI in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriSource {
    /// `-c/--connect`.
    Flag,
    /// `$LIBVIRT_DEFAULT_URI`.
    LibvirtDefaultUri,
    /// `$QVISOR_DEFAULT_URI`.
    QvisorDefaultUri,
    /// The embedded root in the user's state directory.
    StateDir,
}

/// Errors from choosing the default URI.
#[derive(Debug, thiserror::Error)]
pub enum DefaultUriError {
    /// The chosen URI is invalid; names where it came from.
    #[error("{source} (from {origin})")]
    Invalid {
        /// `--connect`, `LIBVIRT_DEFAULT_URI`, ….
        origin: &'static str,
        /// Why.
        #[source]
        source: Error,
    },
    /// No state directory to put the default embedded root in.
    #[error(transparent)]
    NoStateDir(#[from] env::Error),
}

/// The state-directory embedded root used when no URI is given:
/// `$XDG_STATE_HOME/qvisor/embed`, default `~/.local/state/qvisor/embed`.
pub fn default_embed_root(env: &Environment) -> env::Result<PathBuf> {
    Ok(env.state_home()?.join("qvisor").join("embed"))
}

/// The URI to use: `connect` (`-c/--connect`), else `$LIBVIRT_DEFAULT_URI`,
/// else `$QVISOR_DEFAULT_URI` (empty values count as unset), else
/// [`default_embed_root`].
pub fn default_uri(
    connect: Option<&str>,
    env: &Environment,
) -> std::result::Result<(ConnectUri, UriSource), DefaultUriError> {
    let privileged = env.is_root();
    let candidates = [
        (connect, UriSource::Flag, "--connect"),
        (
            env.libvirt_default_uri.as_deref(),
            UriSource::LibvirtDefaultUri,
            "LIBVIRT_DEFAULT_URI",
        ),
        (
            env.qvisor_default_uri.as_deref(),
            UriSource::QvisorDefaultUri,
            "QVISOR_DEFAULT_URI",
        ),
    ];
    for (value, source, origin) in candidates {
        if let Some(uri) = value.filter(|u| !u.is_empty()) {
            let parsed = ConnectUri::parse(uri, privileged)
                .map_err(|source| DefaultUriError::Invalid { origin, source })?;
            return Ok((parsed, source));
        }
    }
    let root = default_embed_root(env)?;
    let uri = ConnectUri::embed(&root).map_err(|source| DefaultUriError::Invalid {
        origin: "the state directory",
        source,
    })?;
    Ok((uri, UriSource::StateDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(uri: &str) -> ConnectUri {
        match ConnectUri::parse(uri, false) {
            Ok(u) => u,
            Err(e) => panic!("{uri}: {e}"),
        }
    }

    fn err(uri: &str) -> Error {
        match ConnectUri::parse(uri, false) {
            Ok(u) => panic!("{uri} accepted as {u:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn system_and_session_parse() {
        assert_eq!(ok("qemu:///system").mode, Mode::System);
        assert_eq!(ok("qemu:///session").mode, Mode::Session);
        assert_eq!(ok("qemu:///system").transport, Transport::Default);
    }

    #[test]
    fn embed_root_is_taken_from_the_query() {
        let u = ok("qemu:///embed?root=/srv/vms/a");
        assert_eq!(
            u.mode,
            Mode::Embed {
                root: PathBuf::from("/srv/vms/a")
            }
        );
        assert_eq!(u.params, vec![("root".to_owned(), "/srv/vms/a".to_owned())]);
    }

    #[test]
    fn embed_root_is_percent_decoded_and_trailing_slash_dropped() {
        let u = ok("qemu:///embed?root=%2Fsrv%2Fmy%20vms%2F&other=1");
        assert_eq!(
            u.mode,
            Mode::Embed {
                root: PathBuf::from("/srv/my vms")
            }
        );
        let u = ok("qemu:///embed?root=/");
        assert_eq!(
            u.mode,
            Mode::Embed {
                root: PathBuf::from("/")
            }
        );
    }

    #[test]
    fn relative_embed_root_is_refused_saying_it_must_be_absolute() {
        let e = err("qemu:///embed?root=var/vms");
        assert_eq!(
            e.to_string(),
            "unsupported configuration: root path must be absolute: 'var/vms'"
        );
        assert_eq!(e.code(), ErrorCode::ConfigUnsupported);
        assert!(matches!(
            err("qemu:///embed?root="),
            Error::RelativeRoot { .. }
        ));
    }

    #[test]
    fn embed_without_root_is_refused() {
        assert_eq!(
            err("qemu:///embed").to_string(),
            "invalid argument: Missing URI parameter 'root'"
        );
        assert_eq!(err("qemu:///embed?rot=/x"), Error::MissingRoot);
    }

    #[test]
    fn embed_root_with_nul_is_refused() {
        assert_eq!(
            err("qemu:///embed?root=/a%00b"),
            Error::NulInParam { name: "root" }
        );
    }

    #[test]
    fn unix_transport_with_and_without_socket() {
        let u = ok("qemu+unix:///system?socket=/run/x.sock");
        assert_eq!(
            (u.mode.clone(), u.transport.clone()),
            (Mode::System, Transport::Unix)
        );
        assert_eq!(u.socket, Some(PathBuf::from("/run/x.sock")));
        let u = ok("qemu+unix:///session");
        assert_eq!((u.mode, u.socket), (Mode::Session, None));
        assert_eq!(ok("qemu+UNIX:///system").transport, Transport::Unix);
    }

    #[test]
    fn unknown_path_suggests_system_or_session_by_privilege() {
        assert_eq!(
            err("qemu:///foo").to_string(),
            "internal error: unexpected qemu URI path '/foo', try qemu:///session"
        );
        let e = ConnectUri::parse("qemu:///", true)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("internal error: unexpected qemu URI path '/', try qemu:///system")
        );
        assert!(matches!(
            err("qemu:///system/"),
            Error::UnexpectedPath { .. }
        ));
        assert!(matches!(err("qemu:"), Error::UnexpectedPath { .. }));
    }

    #[test]
    fn missing_slash_is_explained() {
        assert_eq!(
            err("qemu://system").to_string(),
            "internal error: invalid URI qemu://system (maybe you want qemu:///system)"
        );
    }

    #[test]
    fn other_drivers_and_remote_hosts_are_refused() {
        assert_eq!(
            err("lxc:///system").to_string(),
            "no connection driver available for lxc:///system"
        );
        assert!(matches!(
            err("qemu://host.example/system"),
            Error::RemoteHost { .. }
        ));
        assert!(matches!(
            err("qemu+ssh://root@host/system"),
            Error::UnsupportedTransport { .. }
        ));
        assert!(matches!(
            err("qemu+carrier:///system"),
            Error::UnknownTransport { .. }
        ));
        assert_eq!(
            err("qemu+unix://host/system").to_string(),
            "invalid argument: using unix socket and remote server 'host' is not supported."
        );
        assert!(matches!(
            err("qemu+unix:///embed?root=/x"),
            Error::EmbedScheme { .. }
        ));
        assert!(matches!(err("no-colon"), Error::Unparsable { .. }));
        assert!(matches!(err(""), Error::Unparsable { .. }));
    }

    #[test]
    fn query_parsing_follows_libvirt() {
        let u = ok("qemu:///system?a=1;b&=ignored&&c=%41%zz+");
        assert_eq!(
            u.params,
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), String::new()),
                ("c".to_owned(), "A%zz+".to_owned()),
            ]
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system?socket=/run/libvirt/virtqemud-sock",
            "qemu:///embed?root=/srv/my%20vms%26more",
        ] {
            let u = ok(s);
            assert_eq!(u.to_string(), s);
            assert_eq!(
                ConnectUri::parse(&u.to_string(), false)
                    .ok()
                    .map(|x| x.mode),
                Some(u.mode)
            );
        }
    }

    #[test]
    fn random_uris_never_panic() {
        let parts = [
            "qemu",
            "qemu+unix",
            "+",
            ":",
            "//",
            "/",
            "system",
            "embed",
            "?",
            "root=",
            "%",
            "%2F",
            "&",
            ";",
            "#",
            "=",
            "é",
            "host",
            "@",
            "\0",
        ];
        let mut x: u64 = 7;
        for _ in 0..5_000 {
            let mut s = String::new();
            for _ in 0..(x % 8) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s.push_str(
                    parts
                        .get((x >> 33) as usize % parts.len())
                        .copied()
                        .unwrap_or(""),
                );
            }
            let _ = ConnectUri::parse(&s, x % 2 == 0);
        }
    }

    fn env() -> Environment {
        Environment {
            uid: 1000,
            gid: 1000,
            home: Some(PathBuf::from("/home/u")),
            ..Environment::default()
        }
    }

    #[test]
    fn connect_flag_wins_over_environment() {
        let e = Environment {
            libvirt_default_uri: Some("qemu:///system".into()),
            ..env()
        };
        let (u, src) = match default_uri(Some("qemu:///session"), &e) {
            Ok(x) => x,
            Err(e) => panic!("{e}"),
        };
        assert_eq!((u.mode, src), (Mode::Session, UriSource::Flag));
    }

    #[test]
    fn libvirt_default_uri_wins_over_qvisor_default_uri() {
        let e = Environment {
            libvirt_default_uri: Some("qemu:///system".into()),
            qvisor_default_uri: Some("qemu:///session".into()),
            ..env()
        };
        let r = default_uri(None, &e).ok().map(|(u, s)| (u.mode, s));
        assert_eq!(r, Some((Mode::System, UriSource::LibvirtDefaultUri)));
        let e = Environment {
            libvirt_default_uri: Some(String::new()),
            qvisor_default_uri: Some("qemu:///session".into()),
            ..env()
        };
        let r = default_uri(None, &e).ok().map(|(u, s)| (u.mode, s));
        assert_eq!(r, Some((Mode::Session, UriSource::QvisorDefaultUri)));
    }

    #[test]
    fn no_uri_means_embedded_root_in_state_dir() {
        let r = default_uri(None, &env())
            .ok()
            .map(|(u, s)| (u.to_string(), s));
        assert_eq!(
            r,
            Some((
                "qemu:///embed?root=/home/u/.local/state/qvisor/embed".to_owned(),
                UriSource::StateDir
            ))
        );
        let e = Environment {
            xdg_state_home: Some(PathBuf::from("/xdg/state")),
            ..env()
        };
        let r = default_uri(None, &e).ok().map(|(u, _)| u.mode);
        assert_eq!(
            r,
            Some(Mode::Embed {
                root: PathBuf::from("/xdg/state/qvisor/embed")
            })
        );
    }

    #[test]
    fn invalid_default_uri_names_its_origin() {
        let e = Environment {
            libvirt_default_uri: Some("qemu:///embed?root=rel".into()),
            ..env()
        };
        let msg = default_uri(None, &e).err().map(|e| e.to_string());
        assert_eq!(
            msg.as_deref(),
            Some("unsupported configuration: root path must be absolute: 'rel' (from LIBVIRT_DEFAULT_URI)")
        );
    }
}
