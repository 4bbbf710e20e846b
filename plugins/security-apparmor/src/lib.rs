//! The AppArmor sVirt security plugin: a profile per domain, `libvirt-<uuid>`,
//! made from an admin-editable `TEMPLATE.qemu` plus `libvirt-<uuid>.files`
//! listing exactly the files that domain needs, validated with the real
//! `apparmor_parser`, loaded, and entered by QEMU at exec
//! (`aa_change_onexec`, through the in-tree `qvisor-apparmor-sys`).
//!
//! On a host whose kernel has no AppArmor the profile is still generated
//! and validated at every start (a broken TEMPLATE is a start error); only
//! loading and the switch are skipped, and the plugin says it is not
//! enforcing.
//!
//! This file only exports the root module; the logic is in [`probe`],
//! [`profile`] (text generation) and [`plugin`].

pub mod plugin;
pub mod probe;
pub mod profile;

qvisor_sdk::export_plugin!(plugin::AppArmorPlugin::new);
