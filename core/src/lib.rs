//! qvisor core: the supervisor, the driver and the front ends of qvisor.
//!
//! Data flows one way: front ends (the `qvisor` CLI, the `qvisord` RPC server,
//! the embedding API) → the driver (connections, domain actors, the per-domain
//! plugin pipeline) → the pure libraries it uses (`qvisor-domain`,
//! `qvisor-caps`, `qvisor-cmdline`, `qvisor-conf`) and the QMP monitor.

pub mod cli;
pub mod client;
pub mod connection;
pub mod daemon;
pub mod driver;
pub mod fsutil;
pub mod lockfile;
pub mod plugins;
