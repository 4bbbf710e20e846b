//! The SELinux sVirt security plugin. It labels QEMU and each domain's files so
//! that guests cannot touch each other's resources: every running domain gets
//! its own random MCS category pair (`svirt_t:s0:cX,cY` for the process,
//! `svirt_image_t:s0:cX,cY` for its images).
//!
//! This file only exports the root module; the logic is in [`context`]
//! (security contexts), [`mcs`] (category allocation with an injectable
//! random source), [`labeller`] (which label each file gets, applying and
//! restoring them through the `security.selinux` attribute), [`probe`] and
//! [`plugin`].

pub mod context;
pub mod labeller;
pub mod mcs;
pub mod plugin;
pub mod probe;

qvisor_sdk::export_plugin!(plugin::SelinuxPlugin::new);
