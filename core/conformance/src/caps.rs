//! `qvisor-conformance caps`.

/// Runs the `caps` mode; returns what to print on stdout, or the error message.
pub fn run(_args: &[String]) -> Result<String, String> {
    Err("caps mode is not implemented yet".to_string())
}
