//! `qvisor-conformance`: runs qvisor's real code paths in libvirt's deterministic
//! test environment (see `../shared/conformance/README.md`) so the output can be
//! compared with libvirt 9.0's own expectations.
//!
//! ```text
//! qvisor-conformance xml2xml --caps CAPS --conf QEMU_CONF --aux AUX_DIR DOMAIN_XML
//! qvisor-conformance argv    --caps CAPS --conf QEMU_CONF --aux AUX_DIR DOMAIN_XML
//! qvisor-conformance caps    REPLIES_FILE
//! ```
//!
//! Each mode lives in its own module; this file only dispatches.

mod argv;
mod caps;
mod xml2xml;

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: qvisor-conformance xml2xml|argv --caps CAPS --conf QEMU_CONF --aux AUX_DIR DOMAIN_XML\n       qvisor-conformance caps REPLIES_FILE"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        return usage();
    };
    let result = match mode.as_str() {
        "xml2xml" => xml2xml::run(rest),
        "argv" => argv::run(rest),
        "caps" => caps::run(rest),
        _ => return usage(),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
