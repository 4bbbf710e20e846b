//! qvisor-rpc.
