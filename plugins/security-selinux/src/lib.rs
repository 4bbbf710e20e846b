//! qvisor security-selinux plugin.
