//! The DAC security plugin: QEMU runs as the configured user and group with
//! no capabilities, and the files it needs are handed to that user for the
//! time it runs (libvirt's `dac` driver, always first in the stack).
//!
//! This file only exports the root module; the logic is in [`identity`]
//! (the uid/gid/capability switch done in the QEMU child), [`ownership`]
//! (chown, remembered owners, the search-bit check) and [`plugin`].

pub mod identity;
pub mod ownership;
pub mod plugin;

qvisor_sdk::export_plugin!(plugin::DacPlugin::new);
