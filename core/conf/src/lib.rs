//! qvisor-conf: the pure configuration parts of the QEMU driver.
//!
//! - [`parser`]: libvirt's configuration-file syntax (`virconf`).
//!
//! Nothing here starts a process, opens a socket or talks to QEMU.

pub mod parser;
