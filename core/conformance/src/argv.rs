//! `qvisor-conformance argv`.

/// Runs the `argv` mode; returns what to print on stdout, or the error message.
pub fn run(_args: &[String]) -> Result<String, String> {
    Err("argv mode is not implemented yet".to_string())
}
