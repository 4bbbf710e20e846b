//! qvisor-qmp.
