//! qvisor core.
