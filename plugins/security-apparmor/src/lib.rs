//! The AppArmor sVirt security plugin: a profile per domain allowing exactly
//! that domain's files.
//!
//! This file only exports the root module; the logic is in [`probe`] and [`plugin`].

pub mod plugin;
pub mod probe;

qvisor_sdk::export_plugin!(plugin::AppArmorPlugin::new);
