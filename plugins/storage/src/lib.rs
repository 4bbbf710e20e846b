//! The storage plugin: storage pools (`dir`, `fs`) and their volumes (raw,
//! qcow2 and the other formats `qemu-img` writes), `<disk type='volume'>`
//! resolution at domain start and backing chains read from image headers.
//!
//! This file only exports the root module; the logic lives in the modules
//! below, unit-tested through the rlib.

pub mod chain;
pub mod error;
pub mod image;
pub mod plugin;
pub mod pool;
pub mod pooldef;
pub mod prepare;
pub mod qemu_img;
pub mod units;
pub mod voldef;
pub mod volume;
pub mod xml;

qvisor_sdk::export_plugin!(plugin::StoragePlugin::new);
