//! The TCG accelerator plugin: domains of `type='qemu'`, run by QEMU's own
//! binary translator (`-accel tcg`). Usable wherever a QEMU emulator exists.
//!
//! This file only exports the root module; the logic is in [`plugin`].

pub mod plugin;

qvisor_sdk::export_plugin!(plugin::TcgPlugin::new);
