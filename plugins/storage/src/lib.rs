//! The storage plugin: storage pools and volumes, `<disk type='volume'>`
//! resolution and qcow2 backing chains.
//!
//! This file only exports the root module; the logic is in [`plugin`].

pub mod plugin;

qvisor_sdk::export_plugin!(plugin::StoragePlugin::new);
