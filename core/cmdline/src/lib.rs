//! qvisor-cmdline.
