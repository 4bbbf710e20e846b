//! The HVF accelerator plugin: domains of `type='hvf'` on macOS, run by QEMU
//! with `-accel hvf` on Apple's Hypervisor.framework. On any other OS it builds
//! and reports itself unusable.
//!
//! This file only exports the root module; the logic is in [`probe`] and
//! [`plugin`], the OS access in `sys/`.

pub mod plugin;
pub mod probe;
mod sys;

qvisor_sdk::export_plugin!(plugin::HvfPlugin::new);
