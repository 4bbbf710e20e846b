//! qvisor-caps: what a QEMU binary can do.
//!
//! The central type is [`QemuCaps`], the capabilities of one QEMU binary as
//! libvirt 9.0 records them in its capability cache (`<qemuCaps>` documents,
//! e.g. `caps_8.0.0.x86_64.xml`). It holds the [`Flag`] set (libvirt's flag
//! names), the version, the architecture, and per accelerator ([`Accel`]) the
//! machine types, CPU models and host-CPU expansion, plus SEV/SGX/Hyper-V/GIC
//! platform data.
//!
//! # Loading a cache file (conformance mode)
//!
//! ```no_run
//! use qvisor_caps::{Accel, Flag, QemuCaps};
//!
//! let caps = QemuCaps::load_cache_file("caps_8.0.0.x86_64.xml")?;
//! assert!(caps.has(Flag::BlockdevReopen));
//! let version: u32 = caps.version(); // 7002050 for 7.2.50
//! let machine = caps.default_machine(Accel::Kvm).unwrap(); // pc-i440fx-8.0
//! let q35 = caps.machine(Accel::Kvm, "q35").unwrap(); // alias lookup
//! let ram_id = q35.default_ram_id.as_deref(); // Some("pc.q35.ram")
//! let cpu = caps.cpu_model(Accel::Kvm, "Skylake-Client");
//! # let _ = (version, machine, ram_id, cpu);
//! # Ok::<(), qvisor_caps::Error>(())
//! ```
//!
//! Extra flags (a per-case `caps_add_flags`, or `<qemu:capabilities>`) are
//! names: `Flag::from_name("sev-guest")` then `caps.set(flag)`.
//! `caps.to_cache_xml()` writes the document back in libvirt's exact layout.
//!
//! Accelerators map to domain types with [`Accel::from_virt_type`]
//! (`kvm` → KVM, `qemu` → TCG, `hvf` → HVF);
//! [`QemuCaps::supports_virt_type`] says whether the binary supports one.
//!
//! # Probing
//!
//! - [`probe::probe_main_phase`] / [`probe::probe_tcg_phase`] run libvirt
//!   9.0's QMP query sequence over any [`probe::Monitor`] (a
//!   `qvisor_qmp::QmpClient`); the flag logic is libvirt's tables as data
//!   ([`probe::tables`]).
//! - [`probe::probe_replay`] runs the same probe against a recorded
//!   transcript (`caps_V.ARCH.replies`) and reports divergences.
//! - [`live::probe_binary`] / [`live::probe_binaries`] start real QEMUs
//!   (both phases at once, several binaries in parallel, with deadlines);
//!   KVM usability is an input ([`live::ProbeOptions::kvm_usable`]).
//! - [`cache::CapsCache::lookup`] returns a binary's capabilities from
//!   memory, from `<cache_dir>/capabilities/<sha256>.xml`, or by probing,
//!   and keeps the file valid (ctime/size, prober version, KVM, host CPU).
//!
//! # Documents
//!
//! - [`hostcaps::host_capabilities_xml`] (`virsh capabilities`) from
//!   [`hostcaps::HostFactsDoc`] (read by [`hostcaps::read_host_facts`]) and
//!   one [`hostcaps::GuestEmulator`] per emulator.
//! - [`domcaps::domain_capabilities_xml`] (`virsh domcapabilities`) from
//!   a [`QemuCaps`], [`domcaps::DomCapsHostFacts`] and
//!   [`domcaps::host_model`].
//! - [`cpumap`] holds libvirt's x86 CPU map and model decoder.

pub mod arch;
pub mod cache;
mod cache_xml;
pub mod cpumap;
pub mod domcaps;
mod error;
pub mod flags;
pub mod host;
pub mod hostcaps;
pub mod kvm;
pub mod live;
mod model;
pub mod probe;
mod sha256;
pub mod xmltree;

pub use error::{Error, Result};
pub use flags::{Flag, FlagSet, FLAG_COUNT};
pub use model::*;
