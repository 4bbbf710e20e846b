//! qvisor accel-kvm plugin.
