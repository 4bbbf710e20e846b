//! qvisor-conf.
