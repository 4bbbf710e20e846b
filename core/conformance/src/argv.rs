//! `qvisor-conformance argv`.
//!
//! Until the command-line builder lands, this parses, expands and validates
//! the domain exactly like `xml2xml` and prints nothing on success, so the
//! errors corpus can be scored.

/// Runs the `argv` mode; returns what to print on stdout, or the error message.
pub fn run(args: &[String]) -> Result<String, String> {
    let inputs = crate::xml2xml::parse_args(args)?;
    crate::xml2xml::load_domain(&inputs)?;
    Ok(String::new())
}
