//! The Landlock security plugin (beyond libvirt): confines QEMU to exactly
//! its domain's files and devices, read-only where the XML says so, without
//! root or a MAC policy, so it works for session and embedded drivers too.
//!
//! This file only exports the root module; the logic is in [`rules`] (what
//! QEMU may touch) and [`plugin`] (ruleset built in the supervisor,
//! `landlock_restrict_self` in the QEMU child).

pub mod plugin;
pub mod rules;

qvisor_sdk::export_plugin!(plugin::LandlockPlugin::new);
