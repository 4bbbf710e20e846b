//! qvisor accel-tcg plugin.
