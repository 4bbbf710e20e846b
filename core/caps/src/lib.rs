//! qvisor-caps.
