//! qvisor storage plugin.
