//! The SELinux sVirt security plugin. It labels QEMU and each domain's files so
//! that guests cannot touch each other's resources.
//!
//! This file only exports the root module; the logic is in [`probe`] and [`plugin`].

pub mod plugin;
pub mod probe;

qvisor_sdk::export_plugin!(plugin::SelinuxPlugin::new);
