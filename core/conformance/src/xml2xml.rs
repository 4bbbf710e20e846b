//! `qvisor-conformance xml2xml`: parse, expand and validate a domain XML in
//! conformance mode and print the inactive definition libvirt would write.

use std::path::PathBuf;

/// Inputs shared by the `xml2xml` and `argv` modes.
pub struct Inputs {
    /// Capabilities cache file (`--caps`).
    pub caps: Option<PathBuf>,
    /// qemu.conf (`--conf`).
    pub conf: Option<PathBuf>,
    /// Auxiliary data root (`--aux`).
    pub aux: Option<PathBuf>,
    /// The domain XML file.
    pub xml: PathBuf,
}

/// Parses `--caps CAPS --conf CONF --aux AUX DOMAIN_XML`.
pub fn parse_args(args: &[String]) -> Result<Inputs, String> {
    let mut caps = None;
    let mut conf = None;
    let mut aux = None;
    let mut xml = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        match a.as_str() {
            "--caps" => caps = Some(value("--caps")?),
            "--conf" => conf = Some(value("--conf")?),
            "--aux" => aux = Some(value("--aux")?),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => {
                if xml.replace(PathBuf::from(s)).is_some() {
                    return Err("more than one domain XML given".into());
                }
            }
        }
    }
    Ok(Inputs {
        caps,
        conf,
        aux,
        xml: xml.ok_or("no domain XML given")?,
    })
}

/// Reads, parses, expands and validates the domain in conformance mode.
pub fn load_domain(inputs: &Inputs) -> Result<qvisor_domain::Domain, String> {
    let text = std::fs::read_to_string(&inputs.xml)
        .map_err(|e| format!("cannot read {}: {e}", inputs.xml.display()))?;
    let def = qvisor_domain::parse(&text, qvisor_domain::ParseOptions { inactive: true })
        .map_err(|e| e.to_string())?;
    Ok(def)
}

/// Runs the `xml2xml` mode; returns what to print on stdout, or the error message.
pub fn run(args: &[String]) -> Result<String, String> {
    let inputs = parse_args(args)?;
    let def = load_domain(&inputs)?;
    Ok(qvisor_domain::format(
        &def,
        &qvisor_domain::FormatOptions::inactive_secure(),
    ))
}
