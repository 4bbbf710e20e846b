//! The client side: a [`Connection`] to a driver, for the `qvisor` CLI and for
//! applications that embed qvisor.
//!
//! Every connection speaks libvirt's RPC protocol to a driver process:
//! `qemu:///system` and `qemu:///session` to `qvisord`, and
//! `qemu:///embed?root=DIR` to that root's supervisor, which is started on
//! demand (the first call spawns `qvisord --root DIR --timeout 30`) and keeps
//! supervising its QEMUs after the client exits. A background reader thread
//! matches replies to calls by serial and delivers events, so a `Connection`
//! may be used from any thread and needs no event loop from the application.
//!
//! ```no_run
//! let conn = qvisor_core::client::Connection::open(Some("qemu:///embed?root=/var/tmp/vms"))?;
//! let events = conn.events()?;
//! conn.define_xml(&std::fs::read_to_string("guest.xml")?)?;
//! conn.start("guest", false)?;
//! for ev in events.iter().take(1) {
//!     println!("{ev:?}");
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```

mod spawn;
mod transport;

pub(crate) use spawn::beside_this_program;

use std::path::PathBuf;

use crossbeam_channel::Receiver;
use qvisor_conf::{ConnectUri, Mode};
use qvisor_rpc::frame::Program;
use qvisor_rpc::procedures::{qemu_proc, remote_proc};
use qvisor_rpc::qemu::{DomainMonitorCommandArgs, DomainMonitorCommandRet};
use qvisor_rpc::remote::*;

use crate::connection::{resolve, Target};
use crate::driver::state::{EventKind, Lifecycle, ShutdownDetail, StoppedDetail, SuspendedDetail};
use crate::driver::DomainEvent;

pub use transport::ClientError;
use transport::RpcConnection;

/// A domain as the server names it.
pub type DomainRef = NonnullDomain;

/// `virDomainGetInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// libvirt state number.
    pub state: u8,
    /// Max memory, KiB.
    pub max_mem_kib: u64,
    /// Memory, KiB.
    pub mem_kib: u64,
    /// vCPUs.
    pub vcpus: u16,
    /// CPU time, ns.
    pub cpu_time_ns: u64,
}

/// A connection to a driver.
pub struct Connection {
    rpc: RpcConnection,
    uri: String,
}

type Result<T> = std::result::Result<T, ClientError>;

impl Connection {
    /// Opens a connection: `uri`, or the default-URI rule when `None`.
    pub fn open(uri: Option<&str>) -> anyhow::Result<Connection> {
        let target = resolve(uri)?;
        let socket = socket_for(&target)?;
        let rpc = match RpcConnection::connect(&socket) {
            Ok(c) => c,
            Err(e) if target.uri.socket.is_none() => {
                // No driver process yet: start one for embedded roots and
                // sessions, as libvirt auto-starts its session daemon.
                match &target.uri.mode {
                    Mode::Embed { root } => spawn::start_supervisor(
                        &["--root".into(), root.clone().into_os_string()],
                        &socket,
                        &target.paths.log_dir,
                    )?,
                    Mode::Session => spawn::start_supervisor(
                        &["--session".into(), "--timeout".into(), "120".into()],
                        &socket,
                        &target.paths.log_dir,
                    )?,
                    Mode::System => {
                        return Err(anyhow::anyhow!(
                            "Failed to connect socket to '{}': {e}",
                            socket.display()
                        ))
                    }
                }
                RpcConnection::connect(&socket).map_err(|e| {
                    anyhow::anyhow!("Failed to connect socket to '{}': {e}", socket.display())
                })?
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "Failed to connect socket to '{}': {e}",
                    socket.display()
                ))
            }
        };
        let conn = Connection {
            rpc,
            uri: target.uri.to_string(),
        };
        conn.handshake(&target.uri)?;
        Ok(conn)
    }

    fn handshake(&self, uri: &ConnectUri) -> Result<()> {
        let _: AuthListRet = self
            .rpc
            .call(Program::Remote, remote_proc::AUTH_LIST, &())?;
        let name = match uri.mode {
            Mode::System => "qemu:///system".to_string(),
            Mode::Session => "qemu:///session".to_string(),
            Mode::Embed { .. } => uri.to_string(),
        };
        self.rpc.call::<_, ()>(
            Program::Remote,
            remote_proc::CONNECT_OPEN,
            &ConnectOpenArgs {
                name: Some(name),
                flags: 0,
            },
        )
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    fn call<A: qvisor_rpc::xdr::XdrEncode, R: qvisor_rpc::xdr::XdrDecode>(
        &self,
        proc_: i32,
        args: &A,
    ) -> Result<R> {
        self.rpc.call(Program::Remote, proc_, args)
    }

    /// Hypervisor type and version (`QEMU`, `7002022`).
    pub fn version(&self) -> Result<(String, u64)> {
        let t: ConnectGetTypeRet = self.call(remote_proc::CONNECT_GET_TYPE, &())?;
        let v: ConnectGetVersionRet = self.call(remote_proc::CONNECT_GET_VERSION, &())?;
        Ok((t.r#type, v.hv_ver))
    }

    /// Host capabilities XML.
    pub fn capabilities(&self) -> Result<String> {
        let r: ConnectGetCapabilitiesRet = self.call(remote_proc::CONNECT_GET_CAPABILITIES, &())?;
        Ok(r.capabilities)
    }

    /// Domain capabilities XML.
    pub fn domain_capabilities(
        &self,
        emulator: Option<String>,
        arch: Option<String>,
        machine: Option<String>,
        virttype: Option<String>,
    ) -> Result<String> {
        let r: ConnectGetDomainCapabilitiesRet = self.call(
            remote_proc::CONNECT_GET_DOMAIN_CAPABILITIES,
            &ConnectGetDomainCapabilitiesArgs {
                emulatorbin: emulator,
                arch,
                machine,
                virttype,
                flags: 0,
            },
        )?;
        Ok(r.capabilities)
    }

    /// Domains matching libvirt's `VIR_CONNECT_LIST_DOMAINS_*` flags.
    pub fn list_all(&self, flags: u32) -> Result<Vec<DomainRef>> {
        let r: ConnectListAllDomainsRet = self.call(
            remote_proc::CONNECT_LIST_ALL_DOMAINS,
            &ConnectListAllDomainsArgs {
                need_results: 1,
                flags,
            },
        )?;
        Ok(r.domains)
    }

    /// Looks a domain up by name, UUID (text) or id, as virsh does.
    pub fn lookup(&self, name_or_id: &str) -> Result<DomainRef> {
        if let Ok(id) = name_or_id.parse::<i32>() {
            if let Ok(r) = self.call::<_, DomainLookupByIdRet>(
                remote_proc::DOMAIN_LOOKUP_BY_ID,
                &DomainLookupByIdArgs { id },
            ) {
                return Ok(r.dom);
            }
        }
        if let Some(uuid) = qvisor_domain::Uuid::parse(name_or_id) {
            if let Ok(r) = self.call::<_, DomainLookupByUuidRet>(
                remote_proc::DOMAIN_LOOKUP_BY_UUID,
                &DomainLookupByUuidArgs { uuid: uuid.0 },
            ) {
                return Ok(r.dom);
            }
        }
        let r: DomainLookupByNameRet = self.call(
            remote_proc::DOMAIN_LOOKUP_BY_NAME,
            &DomainLookupByNameArgs {
                name: name_or_id.to_string(),
            },
        )?;
        Ok(r.dom)
    }

    /// Defines a persistent domain.
    pub fn define_xml(&self, xml: &str) -> Result<DomainRef> {
        let r: DomainDefineXmlFlagsRet = self.call(
            remote_proc::DOMAIN_DEFINE_XML_FLAGS,
            &DomainDefineXmlFlagsArgs {
                xml: xml.to_string(),
                flags: 0,
            },
        )?;
        Ok(r.dom)
    }

    /// Creates and starts a transient domain.
    pub fn create_xml(&self, xml: &str, paused: bool) -> Result<DomainRef> {
        let r: DomainCreateXmlRet = self.call(
            remote_proc::DOMAIN_CREATE_XML,
            &DomainCreateXmlArgs {
                xml_desc: xml.to_string(),
                flags: u32::from(paused),
            },
        )?;
        Ok(r.dom)
    }

    /// Starts a defined domain.
    pub fn start(&self, name: &str, paused: bool) -> Result<DomainRef> {
        let dom = self.lookup(name)?;
        let r: DomainCreateWithFlagsRet = self.call(
            remote_proc::DOMAIN_CREATE_WITH_FLAGS,
            &DomainCreateWithFlagsArgs {
                dom,
                flags: u32::from(paused),
            },
        )?;
        Ok(r.dom)
    }

    fn dom_call(&self, proc_: i32, name: &str) -> Result<DomainRef> {
        let dom = self.lookup(name)?;
        match proc_ {
            remote_proc::DOMAIN_DESTROY_FLAGS
            | remote_proc::DOMAIN_SHUTDOWN_FLAGS
            | remote_proc::DOMAIN_UNDEFINE_FLAGS
            | remote_proc::DOMAIN_REBOOT => self.call::<_, ()>(
                proc_,
                &DomainDestroyFlagsArgs {
                    dom: dom.clone(),
                    flags: 0,
                },
            )?,
            _ => self.call::<_, ()>(proc_, &DomainDestroyArgs { dom: dom.clone() })?,
        }
        Ok(dom)
    }

    /// Destroys a running domain.
    pub fn destroy(&self, name: &str) -> Result<DomainRef> {
        self.dom_call(remote_proc::DOMAIN_DESTROY_FLAGS, name)
    }

    /// ACPI shutdown.
    pub fn shutdown(&self, name: &str) -> Result<DomainRef> {
        self.dom_call(remote_proc::DOMAIN_SHUTDOWN_FLAGS, name)
    }

    /// Reboot.
    pub fn reboot(&self, name: &str) -> Result<DomainRef> {
        self.dom_call(remote_proc::DOMAIN_REBOOT, name)
    }

    /// Suspend.
    pub fn suspend(&self, name: &str) -> Result<DomainRef> {
        self.dom_call(remote_proc::DOMAIN_SUSPEND, name)
    }

    /// Resume.
    pub fn resume(&self, name: &str) -> Result<DomainRef> {
        self.dom_call(remote_proc::DOMAIN_RESUME, name)
    }

    /// Undefine.
    pub fn undefine(&self, name: &str) -> Result<DomainRef> {
        self.dom_call(remote_proc::DOMAIN_UNDEFINE_FLAGS, name)
    }

    /// `virDomainGetState`: (state, reason).
    pub fn state(&self, dom: &DomainRef) -> Result<(i32, i32)> {
        let r: DomainGetStateRet = self.call(
            remote_proc::DOMAIN_GET_STATE,
            &DomainGetStateArgs {
                dom: dom.clone(),
                flags: 0,
            },
        )?;
        Ok((r.state, r.reason))
    }

    /// `virDomainGetInfo`.
    pub fn info(&self, dom: &DomainRef) -> Result<DomainInfo> {
        let r: DomainGetInfoRet = self.call(
            remote_proc::DOMAIN_GET_INFO,
            &DomainGetInfoArgs { dom: dom.clone() },
        )?;
        Ok(DomainInfo {
            state: r.state,
            max_mem_kib: r.max_mem,
            mem_kib: r.memory,
            vcpus: r.nr_virt_cpu,
            cpu_time_ns: r.cpu_time,
        })
    }

    /// OS type, persistence, autostart, messages.
    pub fn details(&self, dom: &DomainRef) -> Result<(String, bool, bool, Vec<String>)> {
        let os: DomainGetOsTypeRet = self.call(
            remote_proc::DOMAIN_GET_OS_TYPE,
            &DomainGetOsTypeArgs { dom: dom.clone() },
        )?;
        let p: DomainIsPersistentRet = self.call(
            remote_proc::DOMAIN_IS_PERSISTENT,
            &DomainIsPersistentArgs { dom: dom.clone() },
        )?;
        let a: DomainGetAutostartRet = self.call(
            remote_proc::DOMAIN_GET_AUTOSTART,
            &DomainGetAutostartArgs { dom: dom.clone() },
        )?;
        let m: DomainGetMessagesRet = self.call(
            remote_proc::DOMAIN_GET_MESSAGES,
            &DomainGetMessagesArgs {
                dom: dom.clone(),
                flags: 0,
            },
        )?;
        Ok((os.r#type, p.persistent != 0, a.autostart != 0, m.msgs))
    }

    /// The security model (model, doi).
    pub fn security_model(&self) -> Result<(String, String)> {
        let r: NodeGetSecurityModelRet = self.call(remote_proc::NODE_GET_SECURITY_MODEL, &())?;
        Ok((
            qvisor_rpc::xdr::c_chars_to_string(&r.model),
            qvisor_rpc::xdr::c_chars_to_string(&r.doi),
        ))
    }

    /// Domain XML.
    pub fn dump_xml(&self, name: &str, inactive: bool, secure: bool) -> Result<String> {
        let dom = self.lookup(name)?;
        let flags = u32::from(secure) | if inactive { 2 } else { 0 };
        let r: DomainGetXmlDescRet = self.call(
            remote_proc::DOMAIN_GET_XML_DESC,
            &DomainGetXmlDescArgs { dom, flags },
        )?;
        Ok(r.xml)
    }

    /// Sets autostart.
    pub fn set_autostart(&self, name: &str, enable: bool) -> Result<DomainRef> {
        let dom = self.lookup(name)?;
        self.call::<_, ()>(
            remote_proc::DOMAIN_SET_AUTOSTART,
            &DomainSetAutostartArgs {
                dom: dom.clone(),
                autostart: i32::from(enable),
            },
        )?;
        Ok(dom)
    }

    /// QMP (or HMP) passthrough.
    pub fn monitor_command(&self, name: &str, cmd: &str, hmp: bool) -> Result<String> {
        let dom = self.lookup(name)?;
        let r: DomainMonitorCommandRet = self.rpc.call(
            Program::Qemu,
            qemu_proc::DOMAIN_MONITOR_COMMAND,
            &DomainMonitorCommandArgs {
                dom,
                cmd: cmd.to_string(),
                flags: u32::from(hmp),
            },
        )?;
        Ok(r.result)
    }

    /// `domxml-to-native qemu-argv`.
    pub fn domxml_to_native(&self, format: &str, xml: &str) -> Result<String> {
        let r: ConnectDomainXmlToNativeRet = self.call(
            remote_proc::CONNECT_DOMAIN_XML_TO_NATIVE,
            &ConnectDomainXmlToNativeArgs {
                native_format: format.to_string(),
                domain_xml: xml.to_string(),
                flags: 0,
            },
        )?;
        Ok(r.native_config)
    }

    /// Subscribes to lifecycle and reboot events of all domains.
    pub fn events(&self) -> Result<Receiver<DomainEvent>> {
        let rx = self.rpc.subscribe()?;
        for event_id in [0, 1] {
            let _: ConnectDomainEventCallbackRegisterAnyRet = self.call(
                remote_proc::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
                &ConnectDomainEventCallbackRegisterAnyArgs {
                    event_id,
                    dom: None,
                },
            )?;
        }
        Ok(rx)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.call::<_, ()>(remote_proc::CONNECT_CLOSE, &());
    }
}

/// The socket of the driver process a target names.
fn socket_for(target: &Target) -> anyhow::Result<PathBuf> {
    if let Some(s) = &target.uri.socket {
        return Ok(s.clone());
    }
    Ok(match &target.uri.mode {
        Mode::Embed { .. } => target.paths.supervisor_socket(),
        Mode::System => PathBuf::from("/run/libvirt/libvirt-sock"),
        Mode::Session => qvisor_conf::Environment::from_process()
            .runtime_dir()?
            .join("libvirt/libvirt-sock"),
    })
}

/// Decodes an event frame body into a [`DomainEvent`].
pub(crate) fn decode_event(procedure: i32, body: &[u8]) -> Option<DomainEvent> {
    let make = |dom: NonnullDomain, kind| DomainEvent {
        name: dom.name,
        uuid: dom.uuid,
        id: dom.id,
        kind,
    };
    match procedure {
        remote_proc::DOMAIN_EVENT_CALLBACK_LIFECYCLE => {
            let m: DomainEventCallbackLifecycleMsg = qvisor_rpc::xdr::from_bytes(body).ok()?;
            let l = lifecycle_from_numbers(m.msg.event, m.msg.detail)?;
            Some(make(m.msg.dom, EventKind::Lifecycle(l)))
        }
        remote_proc::DOMAIN_EVENT_CALLBACK_REBOOT => {
            let m: DomainEventCallbackRebootMsg = qvisor_rpc::xdr::from_bytes(body).ok()?;
            Some(make(m.msg.dom, EventKind::Reboot))
        }
        _ => None,
    }
}

fn lifecycle_from_numbers(event: i32, detail: i32) -> Option<Lifecycle> {
    Some(match event {
        0 => Lifecycle::Defined {
            updated: detail == 1,
        },
        1 => Lifecycle::Undefined,
        2 => Lifecycle::Started,
        3 => Lifecycle::Suspended(match detail {
            2 => SuspendedDetail::IoError,
            3 => SuspendedDetail::Watchdog,
            _ => SuspendedDetail::Paused,
        }),
        4 => Lifecycle::Resumed,
        5 => Lifecycle::Stopped(match detail {
            1 => StoppedDetail::Destroyed,
            2 => StoppedDetail::Crashed,
            5 => StoppedDetail::Failed,
            _ => StoppedDetail::Shutdown,
        }),
        6 => Lifecycle::Shutdown(match detail {
            1 => ShutdownDetail::Guest,
            2 => ShutdownDetail::Host,
            _ => ShutdownDetail::Finished,
        }),
        8 => Lifecycle::Crashed,
        _ => return None,
    })
}
