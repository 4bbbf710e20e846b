//! qvisor security-apparmor plugin.
