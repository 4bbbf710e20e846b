//! Shared helpers for qvisor integration tests.
