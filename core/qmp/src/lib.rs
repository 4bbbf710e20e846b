//! qvisor-qmp: a QEMU Machine Protocol client.
//!
//! [`QmpClient`] speaks QMP over any byte stream (a Unix socket in practice):
//! it waits for the greeting, negotiates with `qmp_capabilities`, and runs
//! commands with [`QmpClient::execute`], which returns the `return` value or
//! an [`Error::Command`] carrying QEMU's error class and description.
//! Commands get libvirt-style ids (`libvirt-1`, `libvirt-2`, ...). A reader
//! thread splits replies from asynchronous events; events (`SHUTDOWN`,
//! `RESET`, `STOP`, `RESUME`, `GUEST_PANICKED`, ...) arrive on the channel
//! from [`QmpClient::take_events`], so one client can serve as a domain's
//! monitor for its whole life. Every wait has a timeout.
//!
//! [`replay::Replay`] plays a recorded transcript back as a byte stream, so
//! the same client (and everything built on it) runs without QEMU.
//!
//! ```no_run
//! use qvisor_qmp::{ClientOptions, QmpClient};
//! let mon = QmpClient::connect_unix("/run/qmp.sock", ClientOptions::default())?;
//! let status = mon.execute("query-status", None)?;
//! # let _ = status;
//! # Ok::<(), qvisor_qmp::Error>(())
//! ```

mod client;
mod error;
pub mod replay;

pub use client::{ClientOptions, Event, QmpClient};
pub use error::{Error, Result};
