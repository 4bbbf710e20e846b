//! Pieces shared by qvisor's security plugins (DAC, SELinux, AppArmor,
//! Landlock). A plain library: it imports nothing of qvisor, so each plugin
//! still depends only on `qvisor-sdk` plus this.
//!
//! - [`remember`]: libvirt's "remembered label" protocol: the original owner
//!   or label of a file kept in `trusted.libvirt.security.*` extended
//!   attributes with a reference count, so a file used by several running
//!   domains is restored only when the last one stops, and so the original
//!   survives a supervisor restart.
//! - [`slots`]: per-domain state prepared in the supervisor and read in the
//!   forked QEMU child without locks (`pre_exec` must be async-signal-safe).
//! - [`xattr`]: thin, path-based extended attribute calls.
//! - [`settings`]: reading the key/value settings the supervisor passes.

pub mod remember;
pub mod settings;
pub mod slots;
pub mod xattr;
