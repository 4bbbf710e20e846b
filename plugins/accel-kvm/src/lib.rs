//! The KVM accelerator plugin: domains of `type='kvm'`, run by QEMU with
//! `-accel kvm` on a host whose `/dev/kvm` is usable.
//!
//! This file only exports the root module; the logic is in [`probe`] and [`plugin`].

pub mod plugin;
pub mod probe;

qvisor_sdk::export_plugin!(plugin::KvmPlugin::new);
