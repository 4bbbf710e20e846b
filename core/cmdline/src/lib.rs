//! qvisor-cmdline: the QEMU command line libvirt 9.0 would build, as a
//! typed model.
//!
//! The entry point is [`build`]: an *expanded* domain definition
//! (`qvisor_domain::expand`), the emulator's [`qvisor_caps::QemuCaps`], the
//! driver's [`qvisor_conf::QemuConf`] and a [`BuildEnv`] carrying every
//! host-dependent input give a [`CommandLine`]:
//!
//! - [`CommandLine::args`] is the argv after the binary, ready to spawn;
//! - [`CommandLine::to_native`] is libvirt's "native" text
//!   (`virsh domxml-to-native qemu-argv`);
//! - [`CommandLine::fds`] lists the descriptors the child inherits (the
//!   numbers [`env::Host::pass_fd`] returned);
//! - [`CommandLine::taints`] are the reasons to mark the domain tainted.
//!
//! The model ([`model::Opt`], [`props::Props`], [`props::Keyval`]) holds
//! typed values; `-device`/`-object`/`-netdev` become JSON or keyval text
//! only when rendered, according to the capability flags
//! (`device.json+hotplug`, `object.qapified`, `netdev.json`).
//!
//! The conformance harness and the real start-up path share all of this;
//! [`fake`] provides libvirt's test-harness environment.
//!
//! # Starting a real guest
//!
//! The lifecycle code implements [`Host`] for the real machine and fills a
//! [`BuildEnv`] with the driver's directories (from `qvisor_conf::DriverPaths`
//! and qemu.conf), the domain id, the master key it wrote to
//! `<private dir>/master-key.aes`, the hugetlbfs mounts, "now" and the
//! accelerator plugin's [`AccelContribution`]. Then:
//!
//! ```text
//! let cl = qvisor_cmdline::build(&expanded_def, &caps, &conf, &mut env)?;
//! // cl.env: set exactly these variables (clear the rest)
//! // cl.binary + cl.args(): the argv
//! // cl.fds: every PassedFd.fd is a descriptor number the Host handed out
//! //   from pass_fd(); keep those open (no CLOEXEC) in the child, close the
//! //   parent's copies after spawn
//! // cl.taints: record in the status XML / domain log
//! ```
//!
//! [`Host::pass_fd`] is where descriptors are created (listening sockets,
//! opened files, TAP/vhost devices); it must return the number the child
//! will see, so an implementation either dups to a reserved range or
//! returns the parent's number and keeps it inheritable.

pub mod aliases;
mod build;
pub mod env;
pub mod error;
pub mod fake;
pub mod machine;
pub mod model;
pub mod props;
pub mod secret;
pub mod usb;

pub use build::build;
pub use env::{AccelContribution, BuildEnv, Host, HugetlbfsMount};
pub use error::{Error, Result};
pub use model::{CommandLine, FdPurpose, Opt, PassedFd, Taint};
