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
