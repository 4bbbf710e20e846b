//! `qvisor-conformance argv`.
//!
//! Parses, expands and validates the domain exactly like `xml2xml`, then
//! builds the QEMU command line with `qvisor_cmdline::build` in the
//! harness's fixed environment and prints libvirt's native format.

/// Runs the `argv` mode; returns what to print on stdout, or the error message.
pub fn run(args: &[String]) -> Result<String, String> {
    let inputs = crate::xml2xml::parse_args(args)?;
    let def = crate::xml2xml::load_domain(&inputs)?;
    build_native(&inputs, &def)
}

/// Builds the command line of the expanded `def` in the harness's fixed
/// environment (`qvisor_cmdline::fake`) and returns the native format.
fn build_native(
    inputs: &crate::xml2xml::Inputs,
    def: &qvisor_domain::Domain,
) -> Result<String, String> {
    let caps_path = inputs.caps.as_ref().ok_or("argv mode needs --caps")?;
    let mut caps = qvisor_caps::QemuCaps::load_cache_file(caps_path).map_err(|e| e.to_string())?;
    caps.strip_machine_aliases();
    let emulator = def.devices.emulator.as_deref().unwrap_or(&caps.emulator);
    if emulator != caps.emulator {
        // only the harness's emulator has capabilities
        caps = qvisor_caps::QemuCaps::new(emulator);
    }
    let conf = match &inputs.conf {
        Some(p) => {
            qvisor_conf::QemuConf::load(p, &qvisor_conf::Mode::System, true)
                .map_err(|e| e.to_string())?
                .conf
        }
        None => qvisor_conf::QemuConf::defaults(&qvisor_conf::Mode::System, true),
    };
    let aux = inputs.aux.clone().unwrap_or_default();
    let mut host = qvisor_cmdline::fake::FakeHost::new(&aux);
    let process_env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let mut env = qvisor_cmdline::fake::conformance_env(def, &conf, &aux, &mut host, &process_env);
    let cl = qvisor_cmdline::build(def, &caps, &conf, &mut env).map_err(|e| e.to_string())?;
    Ok(cl.to_native())
}
