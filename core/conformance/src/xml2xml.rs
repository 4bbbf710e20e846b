//! `qvisor-conformance xml2xml`.

/// Runs the `xml2xml` mode; returns what to print on stdout, or the error message.
pub fn run(_args: &[String]) -> Result<String, String> {
    Err("xml2xml mode is not implemented yet".to_string())
}
