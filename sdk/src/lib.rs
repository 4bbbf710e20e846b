//! qvisor plugin SDK.
