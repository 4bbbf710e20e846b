//! Domain commands, with virsh's names, options and output.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use crate::client::Connection;
use crate::driver::DomainState;

use super::Globals;

/// The domain commands the `qvisor` front end runs itself (see
/// [`super::front`]): lifecycle and queries, one connection each.
#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Define (but don't start) a domain from an XML file.
    Define {
        /// Domain XML file.
        file: PathBuf,
    },
    /// Undefine a domain (a running one becomes transient).
    Undefine(DomArg),
    /// Create and start a transient domain from an XML file.
    Create(CreateArgs),
    /// Start a defined domain.
    Start(StartArgs),
    /// Stop a domain at once.
    Destroy(DomArg),
    /// Ask the guest to power off (ACPI).
    Shutdown(DomArg),
    /// Reboot the guest.
    Reboot(DomArg),
    /// Pause a domain's vCPUs.
    Suspend(DomArg),
    /// Resume a paused domain.
    Resume(DomArg),
    /// List domains.
    List(ListArgs),
    /// Domain information.
    Dominfo(DomArg),
    /// Domain state.
    Domstate(DomStateArgs),
    /// Domain id.
    Domid(DomArg),
    /// Domain UUID.
    Domuuid(DomArg),
    /// Domain name.
    Domname(DomArg),
    /// Domain XML (live while running).
    Dumpxml(DumpXmlArgs),
}

/// Runs one of the [`DomainCommand`]s.
pub fn run(g: &Globals, command: &DomainCommand) -> anyhow::Result<()> {
    match command {
        DomainCommand::Define { file } => define(g, file),
        DomainCommand::Undefine(d) => undefine(g, d),
        DomainCommand::Create(a) => create(g, a),
        DomainCommand::Start(a) => start(g, a),
        DomainCommand::Destroy(d) => simple(g, "destroy", d),
        DomainCommand::Shutdown(d) => simple(g, "shutdown", d),
        DomainCommand::Reboot(d) => simple(g, "reboot", d),
        DomainCommand::Suspend(d) => simple(g, "suspend", d),
        DomainCommand::Resume(d) => simple(g, "resume", d),
        DomainCommand::List(a) => list(g, a),
        DomainCommand::Dominfo(d) => dominfo(g, d),
        DomainCommand::Domstate(a) => domstate(g, a),
        DomainCommand::Domid(d) => ident(g, "domid", d),
        DomainCommand::Domuuid(d) => ident(g, "domuuid", d),
        DomainCommand::Domname(d) => ident(g, "domname", d),
        DomainCommand::Dumpxml(a) => dumpxml(g, a),
    }
}

/// A domain name, id or UUID.
#[derive(Debug, Args)]
pub struct DomArg {
    /// Domain name, id or UUID.
    pub domain: String,
}

/// `start` options.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Domain name.
    pub domain: String,
    /// Leave the guest paused.
    #[arg(long)]
    pub paused: bool,
    /// Attach to the serial console after starting.
    #[arg(long)]
    pub console: bool,
}

/// `create` options.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Domain XML file.
    pub file: PathBuf,
    /// Leave the guest paused.
    #[arg(long)]
    pub paused: bool,
    /// Attach to the serial console after starting.
    #[arg(long)]
    pub console: bool,
}

/// `list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// List inactive domains too.
    #[arg(long)]
    pub all: bool,
    /// List only inactive domains.
    #[arg(long)]
    pub inactive: bool,
    /// Only names.
    #[arg(long)]
    pub name: bool,
}

/// `dumpxml` options.
#[derive(Debug, Args)]
pub struct DumpXmlArgs {
    /// Domain name.
    pub domain: String,
    /// The persistent definition, not the live one.
    #[arg(long)]
    pub inactive: bool,
    /// Include security-sensitive information.
    #[arg(long = "security-info")]
    pub security_info: bool,
}

/// `domstate` options.
#[derive(Debug, Args)]
pub struct DomStateArgs {
    /// Domain name.
    pub domain: String,
    /// Also print the reason.
    #[arg(long)]
    pub reason: bool,
}

/// `autostart` options.
#[derive(Debug, Args)]
pub struct AutostartArgs {
    /// Domain name.
    pub domain: String,
    /// Turn autostart off.
    #[arg(long)]
    pub disable: bool,
}

/// `qemu-monitor-command` options.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Domain name.
    pub domain: String,
    /// Send a human monitor (HMP) command.
    #[arg(long)]
    pub hmp: bool,
    /// Pretty-print the JSON reply.
    #[arg(long)]
    pub pretty: bool,
    /// The command (QMP JSON, or HMP text with --hmp); several words are joined.
    #[arg(required = true, num_args = 1..)]
    pub cmd: Vec<String>,
}

/// `domxml-to-native` options.
#[derive(Debug, Args)]
pub struct ToNativeArgs {
    /// Native format: `qemu-argv`.
    pub format: String,
    /// Domain XML file.
    pub file: PathBuf,
}

/// `domxml-from-native` options.
#[derive(Debug, Args)]
pub struct FromNativeArgs {
    /// Native format.
    pub format: String,
    /// Native config file.
    pub file: PathBuf,
}

/// `domcapabilities` options.
#[derive(Debug, Args)]
pub struct DomCapsArgs {
    /// Emulator binary.
    #[arg(long)]
    pub emulatorbin: Option<String>,
    /// Guest architecture.
    #[arg(long)]
    pub arch: Option<String>,
    /// Machine type.
    #[arg(long)]
    pub machine: Option<String>,
    /// Virtualization type (kvm, qemu, hvf).
    #[arg(long)]
    pub virttype: Option<String>,
}

fn connect(cli: &Globals) -> anyhow::Result<Connection> {
    Connection::open(cli.connect.as_deref())
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("Failed to open file '{}'", path.display()))
}

/// `define FILE`.
pub fn define(cli: &Globals, file: &Path) -> anyhow::Result<()> {
    let xml = read_file(file)?;
    let dom = connect(cli)?.define_xml(&xml)?;
    println!("Domain '{}' defined from {}\n", dom.name, file.display());
    Ok(())
}

/// `undefine NAME`.
pub fn undefine(cli: &Globals, d: &DomArg) -> anyhow::Result<()> {
    let dom = connect(cli)?.undefine(&d.domain)?;
    println!("Domain '{}' has been undefined\n", dom.name);
    Ok(())
}

/// `create FILE`.
pub fn create(cli: &Globals, a: &CreateArgs) -> anyhow::Result<()> {
    let xml = read_file(&a.file)?;
    let conn = connect(cli)?;
    let dom = conn.create_xml(&xml, a.paused)?;
    println!("Domain '{}' created from {}\n", dom.name, a.file.display());
    if a.console {
        console_loop(&conn, &dom.name)?;
    }
    Ok(())
}

/// `start NAME`.
pub fn start(cli: &Globals, a: &StartArgs) -> anyhow::Result<()> {
    let conn = connect(cli)?;
    let dom = conn.start(&a.domain, a.paused)?;
    println!("Domain '{}' started\n", dom.name);
    if a.console {
        console_loop(&conn, &dom.name)?;
    }
    Ok(())
}

/// `destroy`, `shutdown`, `reboot`, `suspend`, `resume`.
pub fn simple(cli: &Globals, verb: &str, d: &DomArg) -> anyhow::Result<()> {
    let conn = connect(cli)?;
    let (dom, msg) = match verb {
        "destroy" => (conn.destroy(&d.domain)?, "destroyed"),
        "shutdown" => (conn.shutdown(&d.domain)?, "is being shutdown"),
        "reboot" => (conn.reboot(&d.domain)?, "is being rebooted"),
        "suspend" => (conn.suspend(&d.domain)?, "suspended"),
        "resume" => (conn.resume(&d.domain)?, "resumed"),
        other => bail!("unknown command {other}"),
    };
    println!("Domain '{}' {msg}\n", dom.name);
    Ok(())
}

/// virsh's words for a state number and a (state, reason) pair.
fn state_name(state: i32) -> &'static str {
    DomainState::from_numbers(state, 0).map_or("no state", DomainState::name)
}

fn reason_name(state: i32, reason: i32) -> &'static str {
    DomainState::from_numbers(state, reason).map_or("unknown", DomainState::reason_name)
}

/// `list [--all]`.
pub fn list(cli: &Globals, a: &ListArgs) -> anyhow::Result<()> {
    let conn = connect(cli)?;
    let flags = if a.inactive {
        2
    } else if a.all {
        0
    } else {
        1
    };
    let mut doms = conn.list_all(flags)?;
    // virsh lists running domains by id, then inactive ones by name.
    doms.sort_by(|x, y| match (x.id, y.id) {
        (-1, -1) => x.name.cmp(&y.name),
        (-1, _) => std::cmp::Ordering::Greater,
        (_, -1) => std::cmp::Ordering::Less,
        (a, b) => a.cmp(&b),
    });
    if a.name {
        for d in &doms {
            println!("{}", d.name);
        }
        println!();
        return Ok(());
    }
    let rows: Vec<[String; 3]> = doms
        .iter()
        .map(|d| {
            let (state, _) = conn.state(d).unwrap_or((0, 0));
            let id = if d.id < 0 {
                "-".to_string()
            } else {
                d.id.to_string()
            };
            [id, d.name.clone(), state_name(state).to_string()]
        })
        .collect();
    if cli.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({ "id": r[0], "name": r[1], "state": r[2] }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_table(&["Id", "Name", "State"], &rows);
    Ok(())
}

/// virsh's table layout: a leading space, columns padded and separated by
/// three spaces, a dashed rule under the header, and a blank line at the end.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(" ");
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   "));
            }
        }
        s
    };
    println!("{}", line(header.to_vec()));
    let total: usize = widths.iter().sum::<usize>() + 3 * (N - 1) + 2;
    println!("{}", "-".repeat(total));
    for r in rows {
        println!(
            "{}",
            line(r.iter().map(String::as_str).collect()).trim_end()
        );
    }
    println!();
}

/// `dominfo`.
pub fn dominfo(cli: &Globals, d: &DomArg) -> anyhow::Result<()> {
    let conn = connect(cli)?;
    let dom = conn.lookup(&d.domain)?;
    let info = conn.info(&dom)?;
    let (os, persistent, autostart, msgs) = conn.details(&dom)?;
    let (model, doi) = conn.security_model()?;
    let yn = |b: bool| if b { "yes" } else { "no" };
    let id = if dom.id < 0 {
        "-".to_string()
    } else {
        dom.id.to_string()
    };
    println!("{:<16}{}", "Id:", id);
    println!("{:<16}{}", "Name:", dom.name);
    println!("{:<16}{}", "UUID:", qvisor_domain::Uuid(dom.uuid));
    println!("{:<16}{}", "OS Type:", os);
    println!("{:<16}{}", "State:", state_name(i32::from(info.state)));
    println!("{:<16}{}", "CPU(s):", info.vcpus);
    if info.cpu_time_ns > 0 {
        println!("{:<16}{:.1}s", "CPU time:", info.cpu_time_ns as f64 / 1e9);
    }
    println!("{:<16}{} KiB", "Max memory:", info.max_mem_kib);
    println!("{:<16}{} KiB", "Used memory:", info.mem_kib);
    println!("{:<16}{}", "Persistent:", yn(persistent));
    println!(
        "{:<16}{}",
        "Autostart:",
        if autostart { "enable" } else { "disable" }
    );
    println!("{:<16}no", "Managed save:");
    println!("{:<16}{}", "Security model:", model);
    println!("{:<16}{}", "Security DOI:", doi);
    for (i, m) in msgs.iter().enumerate() {
        println!("{:<16}{}", if i == 0 { "Messages:" } else { "" }, m);
    }
    println!();
    Ok(())
}

/// `domstate [--reason]`.
pub fn domstate(cli: &Globals, a: &DomStateArgs) -> anyhow::Result<()> {
    let conn = connect(cli)?;
    let dom = conn.lookup(&a.domain)?;
    let (state, reason) = conn.state(&dom)?;
    if a.reason {
        println!("{} ({})\n", state_name(state), reason_name(state, reason));
    } else {
        println!("{}\n", state_name(state));
    }
    Ok(())
}

/// `domid`, `domuuid`, `domname`.
pub fn ident(cli: &Globals, what: &str, d: &DomArg) -> anyhow::Result<()> {
    let dom = connect(cli)?.lookup(&d.domain)?;
    match what {
        "domid" if dom.id < 0 => println!("-\n"),
        "domid" => println!("{}\n", dom.id),
        "domuuid" => println!("{}\n", qvisor_domain::Uuid(dom.uuid)),
        _ => println!("{}\n", dom.name),
    }
    Ok(())
}

/// `dumpxml`.
pub fn dumpxml(cli: &Globals, a: &DumpXmlArgs) -> anyhow::Result<()> {
    let xml = connect(cli)?.dump_xml(&a.domain, a.inactive, a.security_info)?;
    print!("{xml}");
    if !xml.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// `autostart [--disable]`.
pub fn autostart(cli: &Globals, a: &AutostartArgs) -> anyhow::Result<()> {
    let dom = connect(cli)?.set_autostart(&a.domain, !a.disable)?;
    if a.disable {
        println!("Domain '{}' unmarked as autostarted\n", dom.name);
    } else {
        println!("Domain '{}' marked as autostarted\n", dom.name);
    }
    Ok(())
}

/// `qemu-monitor-command`.
pub fn monitor(cli: &Globals, a: &MonitorArgs) -> anyhow::Result<()> {
    let cmd = a.cmd.join(" ");
    let out = connect(cli)?.monitor_command(&a.domain, &cmd, a.hmp)?;
    if a.pretty && !a.hmp {
        let v: serde_json::Value = serde_json::from_str(&out)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{out}");
    }
    println!();
    Ok(())
}

/// `domxml-to-native FORMAT FILE`.
pub fn to_native(cli: &Globals, a: &ToNativeArgs) -> anyhow::Result<()> {
    let xml = read_file(&a.file)?;
    let out = connect(cli)?.domxml_to_native(&a.format, &xml)?;
    print!("{out}");
    println!();
    Ok(())
}

/// `domxml-from-native`: not supported, as in libvirt since 5.5.0.
pub fn from_native(_cli: &Globals, a: &FromNativeArgs) -> anyhow::Result<()> {
    bail!(
        "this function is not supported by the connection driver: converting {} arguments to domain XML is not supported (libvirt removed it in 5.5.0)",
        a.format
    )
}

/// `qemu-attach PID`: not supported, as in libvirt since 5.5.0.
pub fn qemu_attach(_cli: &Globals, pid: u32) -> anyhow::Result<()> {
    bail!("this function is not supported by the connection driver: attaching to a QEMU started elsewhere (pid {pid}) is not supported (libvirt removed it in 5.5.0)")
}

/// `capabilities`.
pub fn capabilities(cli: &Globals) -> anyhow::Result<()> {
    print!("{}", connect(cli)?.capabilities()?);
    println!();
    Ok(())
}

/// `domcapabilities`.
pub fn domcapabilities(cli: &Globals, a: &DomCapsArgs) -> anyhow::Result<()> {
    let xml = connect(cli)?.domain_capabilities(
        a.emulatorbin.clone(),
        a.arch.clone(),
        a.machine.clone(),
        a.virttype.clone(),
    )?;
    print!("{xml}");
    println!();
    Ok(())
}

/// `version`'s driver part.
pub fn hypervisor_version(cli: &Globals) -> anyhow::Result<(String, u64)> {
    Ok(connect(cli)?.version()?)
}

/// `console NAME`.
pub fn console(cli: &Globals, d: &DomArg) -> anyhow::Result<()> {
    let conn = connect(cli)?;
    let dom = conn.lookup(&d.domain)?;
    console_loop(&conn, &dom.name)
}

/// The serial console of a running domain: its pty (read and write), or the
/// file its serial port writes to (read only), until the domain stops.
fn console_loop(conn: &Connection, name: &str) -> anyhow::Result<()> {
    let xml = conn.dump_xml(name, false, false)?;
    let def = qvisor_domain::parse(&xml, qvisor_domain::ParseOptions { inactive: false })?;
    let serial = def
        .devices
        .serials
        .first()
        .ok_or_else(|| anyhow::anyhow!("cannot find a character device for domain '{name}'"))?;
    let path =
        serial.source.path.clone().ok_or_else(|| {
            anyhow::anyhow!("domain '{name}': the serial console has no host path")
        })?;
    eprintln!("Connected to domain '{name}'\nEscape character is ^] (Ctrl + ])");
    if serial.source.kind == qvisor_domain::ChrType::Pty {
        return pty_console(&path);
    }
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("cannot open console '{path}'"))?;
    let events = conn.events().ok();
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        let n = file.read(&mut buf).unwrap_or(0);
        if n > 0 {
            out.write_all(&buf[..n])?;
            out.flush()?;
            continue;
        }
        let dom = conn.lookup(name);
        let running = match &dom {
            Ok(d) => conn
                .state(d)
                .map(|(s, _)| s == 1 || s == 3)
                .unwrap_or(false),
            Err(_) => false,
        };
        if !running {
            // Drain what the guest wrote last.
            while let Ok(n) = file.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
            }
            out.flush()?;
            return Ok(());
        }
        match &events {
            Some(rx) => {
                let _ = rx.recv_timeout(Duration::from_millis(50));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `^]`, the escape that ends an interactive console.
const ESCAPE: u8 = 0x1d;

/// Relays a pty console both ways until `^]` or until the guest side closes.
fn pty_console(path: &str) -> anyhow::Result<()> {
    let pty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open console '{path}'"))?;
    let stdin = std::io::stdin();
    let saved = nix::sys::termios::tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
    }
    let mut writer = pty.try_clone()?;
    let restore = saved.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut input = std::io::stdin();
        while let Ok(n) = input.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|&b| b == ESCAPE) {
                let _ = writer.write_all(&buf[..i]);
                // Leave as virsh does: restore the terminal and end the process
                // (the main thread is blocked reading the guest side).
                if let Some(t) = &restore {
                    let _ = nix::sys::termios::tcsetattr(
                        std::io::stdin(),
                        nix::sys::termios::SetArg::TCSANOW,
                        t,
                    );
                }
                eprintln!();
                std::process::exit(0);
            }
            if writer.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut reader = pty;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.write_all(&buf[..n])?;
                out.flush()?;
            }
        }
    }
    if let Some(t) = saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &t);
    }
    Ok(())
}
