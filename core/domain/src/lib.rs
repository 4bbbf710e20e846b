//! qvisor-domain.
