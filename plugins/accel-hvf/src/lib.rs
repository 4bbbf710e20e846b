//! qvisor accel-hvf plugin.
