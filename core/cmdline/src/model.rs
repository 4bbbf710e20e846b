//! The typed command line: what the builder produces and what is rendered,
//! once, into an argv vector or libvirt's "native" text.
//!
//! A [`CommandLine`] is the environment, the emulator binary, the list of
//! typed options in emission order (see [`crate::build`] for the order), the
//! descriptors the child must inherit, the taint reasons and the guest CPU
//! it asks for.

use crate::props::{ArrayStyle, Keyval, Props};

/// Which QAPI-object options QEMU accepts as JSON; decided from the
/// capability flags (`device.json+hotplug`, `object.qapified`,
/// `netdev.json`) before building.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Syntax {
    /// `-device` takes JSON.
    pub device_json: bool,
    /// `-object` takes JSON.
    pub object_json: bool,
    /// `-netdev` takes JSON.
    pub netdev_json: bool,
}

/// One QEMU option with its typed argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Opt {
    /// An option without argument (`-S`, `-no-user-config`).
    Flag(&'static str),
    /// An option whose argument is keyval text (`-machine pc,usb=off`).
    Keyval(&'static str, Keyval),
    /// An option whose argument is one word, passed verbatim (`-uuid`).
    Word(&'static str, String),
    /// `-object` with a QOM object (`qom-type` + properties).
    Object(Props),
    /// `-device` with a device (`driver` + properties).
    Device(Props),
    /// `-blockdev` (always JSON).
    Blockdev(Props),
    /// `-netdev` (`type` + properties).
    Netdev(Props),
    /// `-audiodev` (always JSON).
    Audiodev(Props),
    /// A verbatim token from `<qemu:commandline><qemu:arg>`.
    Passthrough(String),
}

impl Opt {
    /// Option name and argument tokens.
    pub fn tokens(&self, syntax: Syntax) -> Vec<String> {
        match self {
            Opt::Flag(n) => vec![(*n).to_string()],
            Opt::Keyval(n, kv) => vec![(*n).to_string(), kv.render()],
            Opt::Word(n, w) => vec![(*n).to_string(), w.clone()],
            Opt::Object(p) => vec![
                "-object".into(),
                if syntax.object_json {
                    p.to_json()
                } else {
                    p.to_keyval("qom-type", ArrayStyle::Bitmap)
                },
            ],
            Opt::Device(p) => vec![
                "-device".into(),
                if syntax.device_json {
                    p.to_json()
                } else {
                    p.to_keyval("driver", ArrayStyle::Repeated)
                },
            ],
            Opt::Blockdev(p) => vec!["-blockdev".into(), p.to_json()],
            Opt::Netdev(p) => vec![
                "-netdev".into(),
                if syntax.netdev_json {
                    p.to_json()
                } else {
                    p.to_keyval("type", ArrayStyle::Repeated)
                },
            ],
            Opt::Audiodev(p) => vec!["-audiodev".into(), p.to_json()],
            Opt::Passthrough(t) => vec![t.clone()],
        }
    }
}

/// What a descriptor passed to QEMU is for; the host side of
/// [`crate::env::Host::pass_fd`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdPurpose {
    /// The QMP monitor's listening socket at this path.
    Monitor(String),
    /// A listening UNIX socket for a chardev (`server=on`).
    ListenSocket(String),
    /// A file opened for a chardev source or log (append flag).
    ChardevFile {
        /// File path.
        path: String,
        /// Open in append mode.
        append: bool,
    },
    /// A file opened for a chardev's `<log>` (append flag).
    ChardevLog {
        /// File path.
        path: String,
        /// Open in append mode.
        append: bool,
    },
    /// A TAP device queue.
    Tap(String),
    /// A vhost-net queue for a TAP device.
    VhostNet(String),
    /// `/dev/vhost-vsock`.
    VhostVsock,
    /// `/dev/vhost-scsi` for a wwpn.
    VhostScsi(String),
    /// A vDPA character device.
    Vdpa(String),
    /// A TPM passthrough device node or its cancel file.
    TpmPassthrough(String),
}

/// A descriptor the child process must inherit under this number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedFd {
    /// The descriptor number as written on the command line.
    pub fd: i32,
    /// Why it is passed.
    pub purpose: FdPurpose,
}

/// Why libvirt would mark a domain tainted (`virDomainTaint` names); the
/// lifecycle records them in the live XML and the domain log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Taint {
    /// `<qemu:commandline>` arguments or environment (`custom-argv`).
    CustomArgv,
    /// `<qemu:capabilities>` overrides or qemu.conf `capability_filters`
    /// (`custom-hypervisor-feature`).
    CustomHypervisorFeature,
    /// `<qemu:override>` device properties (`custom-device`).
    CustomDevice,
    /// A deprecated machine type or CPU model (`deprecated-config`), with
    /// libvirt's detail text.
    DeprecatedConfig(String),
    /// A host CD-ROM given to the guest (`cdrom-passthrough`).
    CdromPassthrough,
    /// `<os><dtb>` (`custom-dtb`).
    CustomDtb,
    /// An interface `<script>` (`shell-scripts`).
    ShellScripts,
    /// Raw I/O on a disk or SCSI hostdev, or QEMU run as root
    /// (`high-privileges`).
    HighPrivileges,
}

impl Taint {
    /// libvirt's name (`virDomainTaint` string).
    pub fn as_str(&self) -> &'static str {
        match self {
            Taint::CustomArgv => "custom-argv",
            Taint::CustomHypervisorFeature => "custom-hypervisor-feature",
            Taint::CustomDevice => "custom-device",
            Taint::DeprecatedConfig(_) => "deprecated-config",
            Taint::CdromPassthrough => "cdrom-passthrough",
            Taint::CustomDtb => "custom-dtb",
            Taint::ShellScripts => "shell-scripts",
            Taint::HighPrivileges => "high-privileges",
        }
    }
}

/// A complete QEMU invocation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CommandLine {
    /// Environment assignments, in order.
    pub env: Vec<(String, String)>,
    /// The emulator binary.
    pub binary: String,
    /// The options, in emission order.
    pub opts: Vec<Opt>,
    /// How QAPI objects are spelled.
    pub syntax: Syntax,
    /// Descriptors the child inherits.
    pub fds: Vec<PassedFd>,
    /// Taint reasons to record on the domain.
    pub taints: Vec<Taint>,
    /// The guest CPU the command line asks QEMU for, after libvirt's
    /// start-time updates (host-model expanded, removed model features
    /// disabled, features QEMU does not know dropped): what the live
    /// definition starts from.
    pub guest_cpu: Option<qvisor_domain::Cpu>,
}

impl CommandLine {
    /// The argument vector after the binary.
    pub fn args(&self) -> Vec<String> {
        self.opts
            .iter()
            .flat_map(|o| o.tokens(self.syntax))
            .collect()
    }

    /// libvirt's native format (`virsh domxml-to-native qemu-argv`): one
    /// environment assignment, the binary, then one option with its argument
    /// per line, joined by ` \` continuations, quoted for a POSIX shell.
    pub fn to_native(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        for (k, v) in &self.env {
            lines.push(format!("{k}={}", shell_quote(v)));
        }
        lines.push(shell_quote(&self.binary));
        for o in &self.opts {
            let toks = o.tokens(self.syntax);
            lines.push(
                toks.iter()
                    .map(|t| shell_quote(t))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        let mut out = lines.join(" \\\n");
        out.push('\n');
        out
    }
}

/// Quotes `s` for a POSIX shell when it contains anything but safe
/// characters (single quotes; `'` becomes `'\''`).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | ',' | '=' | '+' | '@' | '%')
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_json() {
        assert_eq!(shell_quote("pc,usb=off"), "pc,usb=off");
        assert_eq!(shell_quote("{\"a\":1}"), "'{\"a\":1}'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn native_format_puts_one_option_per_line() {
        let cl = CommandLine {
            env: vec![("LC_ALL".into(), "C".into())],
            binary: "/usr/bin/qemu-system-x86_64".into(),
            opts: vec![Opt::Flag("-S"), Opt::Word("-uuid", "u".into())],
            ..Default::default()
        };
        assert_eq!(
            cl.to_native(),
            "LC_ALL=C \\\n/usr/bin/qemu-system-x86_64 \\\n-S \\\n-uuid u\n"
        );
    }
}
