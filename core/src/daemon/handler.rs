//! One handler per client connection: decodes nothing itself (qvisor-rpc did),
//! calls the driver API and encodes the reply. No lifecycle logic lives here.

use std::collections::BTreeMap;
use std::sync::Arc;

use crossbeam_channel::{select, Receiver, Sender};
use parking_lot::Mutex;
use qvisor_rpc::qemu::DomainMonitorCommandRet;
use qvisor_rpc::remote::*;
use qvisor_rpc::{Call, ErrorCode, ErrorDomain, EventSender, Peer, RemoteError, Response};

use crate::driver::{DomainEvent, DomainSummary, Driver, DriverError, EventKind};

/// `VIR_DOMAIN_EVENT_ID_LIFECYCLE`.
const EVENT_ID_LIFECYCLE: i32 = 0;
/// `VIR_DOMAIN_EVENT_ID_REBOOT`.
const EVENT_ID_REBOOT: i32 = 1;
/// Number of domain event ids libvirt 9.0 defines.
const EVENT_ID_LAST: i32 = 27;

/// `VIR_DOMAIN_XML_SECURE`.
const XML_SECURE: u32 = 1;
/// `VIR_DOMAIN_XML_INACTIVE`.
const XML_INACTIVE: u32 = 2;
/// `VIR_DOMAIN_START_PAUSED`.
const START_PAUSED: u32 = 1;
/// `VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP`.
const MONITOR_HMP: u32 = 1;

/// A registered event callback of this connection.
#[derive(Debug, Clone)]
struct Callback {
    event_id: i32,
    domain: Option<[u8; 16]>,
}

/// State shared between a connection's handler and its event forwarder.
#[derive(Default)]
struct Callbacks {
    next_id: i32,
    by_id: BTreeMap<i32, Callback>,
}

/// The per-connection handler.
pub struct ConnHandler {
    driver: Driver,
    events: EventSender,
    peer: Peer,
    callbacks: Arc<Mutex<Callbacks>>,
    forwarder: Option<Sender<()>>,
}

impl ConnHandler {
    /// A handler for a new connection.
    pub fn new(driver: Driver, peer: &Peer, events: EventSender) -> Self {
        tracing::debug!(
            client = peer.id,
            pid = peer.pid,
            uid = peer.uid,
            "client connected"
        );
        ConnHandler {
            driver,
            events,
            peer: peer.clone(),
            callbacks: Arc::new(Mutex::new(Callbacks::default())),
            forwarder: None,
        }
    }

    /// Starts the thread that forwards driver events to this client, once.
    fn ensure_forwarder(&mut self) {
        if self.forwarder.is_some() {
            return;
        }
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let rx = self.driver.subscribe();
        let callbacks = self.callbacks.clone();
        let sender = self.events.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("events-{}", self.peer.id))
            .stack_size(128 * 1024)
            .spawn(move || forward_events(rx, stop_rx, callbacks, sender));
        if spawned.is_ok() {
            self.forwarder = Some(stop_tx);
        }
    }
}

fn forward_events(
    rx: Receiver<DomainEvent>,
    stop: Receiver<()>,
    callbacks: Arc<Mutex<Callbacks>>,
    sender: EventSender,
) {
    loop {
        let ev = select! {
            recv(rx) -> ev => match ev { Ok(ev) => ev, Err(_) => return },
            recv(stop) -> _ => return,
        };
        let dom = NonnullDomain {
            name: ev.name.clone(),
            uuid: ev.uuid,
            id: ev.id,
        };
        let matching: Vec<(i32, i32)> = callbacks
            .lock()
            .by_id
            .iter()
            .filter(|(_, cb)| cb.domain.is_none_or(|u| u == ev.uuid))
            .map(|(id, cb)| (*id, cb.event_id))
            .collect();
        for (callback_id, event_id) in matching {
            let sent = match (&ev.kind, event_id) {
                (EventKind::Lifecycle(l), EVENT_ID_LIFECYCLE) => {
                    let (event, detail) = l.numbers();
                    sender.send(&DomainEventCallbackLifecycleMsg {
                        callback_id,
                        msg: DomainEventLifecycleMsg {
                            dom: dom.clone(),
                            event,
                            detail,
                        },
                    })
                }
                (EventKind::Reboot, EVENT_ID_REBOOT) => {
                    sender.send(&DomainEventCallbackRebootMsg {
                        callback_id,
                        msg: DomainEventRebootMsg { dom: dom.clone() },
                    })
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    }
}

/// A driver error as libvirt's wire error.
fn remote_error(e: DriverError) -> RemoteError {
    let code = ErrorCode::from_i32(e.number() as i32).unwrap_or(ErrorCode::InternalError);
    let domain = match e {
        DriverError::NoDomain(_) | DriverError::Xml(_) => ErrorDomain::Domain,
        _ => ErrorDomain::Qemu,
    };
    RemoteError::new(code, domain, e.detail())
}

fn nonnull(s: &DomainSummary) -> NonnullDomain {
    NonnullDomain {
        name: s.name.clone(),
        uuid: s.uuid,
        id: s.id,
    }
}

type R<T> = Result<T, RemoteError>;

impl ConnHandler {
    fn domain(&self, d: &NonnullDomain) -> R<DomainSummary> {
        self.driver.lookup_uuid(&d.uuid).map_err(remote_error)
    }

    fn list_all(&self, flags: u32) -> Vec<DomainSummary> {
        use crate::driver::DomainState as S;
        let keep = |s: &DomainSummary| {
            let active = s.state.is_active();
            let pass = |on: u32, off: u32, cond: bool| {
                let (a, b) = (flags & on != 0, flags & off != 0);
                !(a ^ b) || (a && cond) || (b && !cond)
            };
            let running = matches!(s.state, S::Running(_));
            let paused = matches!(s.state, S::Paused(_));
            let shutoff = !active;
            let state_flags = flags & (16 | 32 | 64 | 128);
            let state_ok = state_flags == 0
                || (flags & 16 != 0 && running)
                || (flags & 32 != 0 && paused)
                || (flags & 64 != 0 && shutoff)
                || (flags & 128 != 0 && !(running || paused || shutoff));
            pass(1, 2, active)
                && pass(4, 8, s.persistent)
                && pass(1024, 2048, s.autostart)
                && state_ok
                // No managed save images and no snapshots exist.
                && flags & 256 == 0
                && flags & 4096 == 0
                && flags & 16384 == 0
        };
        self.driver.list(true).into_iter().filter(keep).collect()
    }

    /// The primary security model, as `virNodeGetSecurityModel` reports it:
    /// libvirt stacks DAC under the configured driver (SELinux, AppArmor) or
    /// under "none" when there is none, and reports the top of the stack.
    fn security_model(&self) -> (String, String) {
        let primary = self
            .driver
            .security_models()
            .into_iter()
            .find(|m| m.model != "dac");
        primary.map_or(("none".into(), "0".into()), |m| (m.model, m.doi))
    }
}

impl qvisor_rpc::Handler for ConnHandler {
    fn call(&mut self, call: Call) -> Response {
        let response = self.handle(call);
        // Memory the call used (heap and the code it faulted in) goes back
        // once no call came for a moment, on long-lived connections too.
        super::heap::release_idle_memory_soon();
        response
    }

    fn disconnected(&mut self) {
        tracing::debug!(client = self.peer.id, "client disconnected");
        if let Some(stop) = self.forwarder.take() {
            let _ = stop.send(());
        }
        // Whatever the client's connection held goes back to the kernel
        // once the burst of clients is over.
        super::heap::release_idle_memory_soon();
    }
}

impl ConnHandler {
    fn handle(&mut self, call: Call) -> Response {
        tracing::debug!(
            client = self.peer.id,
            pid = self.peer.pid,
            uid = self.peer.uid,
            procedure = call.procedure().name,
            "call"
        );
        let d = self.driver.clone();
        if super::storage::serves(&call) {
            return super::storage::handle(&d, call);
        }
        match call {
            Call::AuthList(r) => r.ok(AuthListRet { types: vec![0] }),
            Call::ConnectSupportsFeature(r) => {
                let supported = matches!(r.args.feature, 8 | 9 | 10 | 14 | 15);
                r.ok(ConnectSupportsFeatureRet {
                    supported: i32::from(supported),
                })
            }
            Call::ConnectOpen(r) => r.respond(|a| {
                let name = a.name.unwrap_or_default();
                if name.is_empty() || name.starts_with("qemu") {
                    Ok(())
                } else {
                    Err(RemoteError::new(
                        ErrorCode::NoConnect,
                        ErrorDomain::Remote,
                        format!("no connection driver available for {name}"),
                    ))
                }
            }),
            Call::ConnectClose(r) => r.ok(()),
            Call::ConnectRegisterCloseCallback(r) => r.ok(()),
            Call::ConnectUnregisterCloseCallback(r) => r.ok(()),
            Call::ConnectGetType(r) => r.ok(ConnectGetTypeRet {
                r#type: "QEMU".into(),
            }),
            Call::ConnectGetVersion(r) => r.ok(ConnectGetVersionRet {
                hv_ver: d.hypervisor_version(),
            }),
            Call::ConnectGetLibVersion(r) => r.ok(ConnectGetLibVersionRet {
                lib_ver: super::LIBVIRT_PROTOCOL_VERSION,
            }),
            Call::ConnectGetHostname(r) => r.ok(ConnectGetHostnameRet {
                hostname: hostname(),
            }),
            Call::ConnectGetUri(r) => r.ok(ConnectGetUriRet {
                uri: d.uri().to_string(),
            }),
            Call::ConnectIsSecure(r) => r.ok(ConnectIsSecureRet { secure: 1 }),
            Call::ConnectGetCapabilities(r) => r.respond(|_| {
                Ok(ConnectGetCapabilitiesRet {
                    capabilities: d.capabilities_xml().map_err(remote_error)?,
                })
            }),
            Call::ConnectGetDomainCapabilities(r) => r.respond(|a| {
                Ok(ConnectGetDomainCapabilitiesRet {
                    capabilities: d
                        .domain_capabilities_xml(
                            a.emulatorbin.as_deref(),
                            a.arch.as_deref(),
                            a.machine.as_deref(),
                            a.virttype.as_deref(),
                        )
                        .map_err(remote_error)?,
                })
            }),
            Call::ConnectListAllDomains(r) => {
                let doms = self.list_all(r.args.flags);
                let n = doms.len() as u32;
                let domains = if r.args.need_results != 0 {
                    doms.iter().map(nonnull).collect()
                } else {
                    Vec::new()
                };
                r.ok(ConnectListAllDomainsRet { domains, ret: n })
            }
            Call::ConnectListDomains(r) => {
                let max = r.args.maxids.max(0) as usize;
                let ids = d.list(false).iter().map(|s| s.id).take(max).collect();
                r.ok(ConnectListDomainsRet { ids })
            }
            Call::ConnectNumOfDomains(r) => r.ok(ConnectNumOfDomainsRet {
                num: d.list(false).len() as i32,
            }),
            Call::ConnectListDefinedDomains(r) => {
                let max = r.args.maxnames.max(0) as usize;
                let names = d
                    .list(true)
                    .into_iter()
                    .filter(|s| !s.state.is_active())
                    .map(|s| s.name)
                    .take(max)
                    .collect();
                r.ok(ConnectListDefinedDomainsRet { names })
            }
            Call::ConnectNumOfDefinedDomains(r) => r.ok(ConnectNumOfDefinedDomainsRet {
                num: d.list(true).iter().filter(|s| !s.state.is_active()).count() as i32,
            }),
            Call::ConnectDomainXmlToNative(r) => r.respond(|a| {
                if a.native_format != "qemu-argv" {
                    return Err(RemoteError::new(
                        ErrorCode::InvalidArg,
                        ErrorDomain::Qemu,
                        format!("unsupported config type {}", a.native_format),
                    ));
                }
                Ok(ConnectDomainXmlToNativeRet {
                    native_config: d.domxml_to_native(&a.domain_xml).map_err(remote_error)?,
                })
            }),
            // libvirt's QEMU driver dropped qemu-argv parsing in 5.5.0: the
            // API is unsupported whatever the format.
            Call::ConnectDomainXmlFromNative(r) => r.unsupported(),
            Call::NodeGetInfo(r) => {
                let n = d.node_info();
                r.ok(NodeGetInfoRet {
                    model: qvisor_rpc::xdr::c_char_array(&n.model),
                    memory: n.memory_kib,
                    cpus: n.cpus,
                    mhz: n.mhz,
                    nodes: n.nodes,
                    sockets: n.sockets,
                    cores: n.cores,
                    threads: n.threads,
                })
            }
            Call::NodeGetSecurityModel(r) => {
                let (model, doi) = self.security_model();
                r.ok(NodeGetSecurityModelRet {
                    model: qvisor_rpc::xdr::c_chars(&model),
                    doi: qvisor_rpc::xdr::c_chars(&doi),
                })
            }
            Call::DomainLookupByName(r) => r.respond(|a| {
                Ok(DomainLookupByNameRet {
                    dom: nonnull(&d.lookup(&a.name).map_err(remote_error)?),
                })
            }),
            Call::DomainLookupByUuid(r) => r.respond(|a| {
                Ok(DomainLookupByUuidRet {
                    dom: nonnull(&d.lookup_uuid(&a.uuid).map_err(remote_error)?),
                })
            }),
            Call::DomainLookupById(r) => r.respond(|a| {
                Ok(DomainLookupByIdRet {
                    dom: nonnull(&d.lookup_id(a.id).map_err(remote_error)?),
                })
            }),
            Call::DomainDefineXml(r) => r.respond(|a| {
                Ok(DomainDefineXmlRet {
                    dom: nonnull(&d.define_xml(&a.xml).map_err(remote_error)?),
                })
            }),
            Call::DomainDefineXmlFlags(r) => r.respond(|a| {
                Ok(DomainDefineXmlFlagsRet {
                    dom: nonnull(&d.define_xml(&a.xml).map_err(remote_error)?),
                })
            }),
            Call::DomainCreateXml(r) => r.respond(|a| {
                Ok(DomainCreateXmlRet {
                    dom: nonnull(
                        &d.create_xml(&a.xml_desc, a.flags & START_PAUSED != 0)
                            .map_err(remote_error)?,
                    ),
                })
            }),
            Call::DomainCreate(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.start(&s.name, false).map_err(remote_error)?;
                Ok(())
            }),
            Call::DomainCreateWithFlags(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                let s = d
                    .start(&s.name, a.flags & START_PAUSED != 0)
                    .map_err(remote_error)?;
                Ok(DomainCreateWithFlagsRet { dom: nonnull(&s) })
            }),
            Call::DomainDestroy(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.destroy(&s.name).map_err(remote_error)
            }),
            Call::DomainDestroyFlags(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.destroy(&s.name).map_err(remote_error)
            }),
            Call::DomainShutdown(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.shutdown(&s.name).map_err(remote_error)
            }),
            Call::DomainShutdownFlags(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.shutdown(&s.name).map_err(remote_error)
            }),
            Call::DomainReboot(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.reboot(&s.name).map_err(remote_error)
            }),
            Call::DomainSuspend(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.suspend(&s.name).map_err(remote_error)
            }),
            Call::DomainResume(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.resume(&s.name).map_err(remote_error)
            }),
            Call::DomainUndefine(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.undefine(&s.name).map_err(remote_error)
            }),
            Call::DomainUndefineFlags(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.undefine(&s.name).map_err(remote_error)
            }),
            Call::DomainGetInfo(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                Ok(DomainGetInfoRet {
                    state: s.state.number() as u8,
                    max_mem: s.max_mem_kib,
                    memory: s.mem_kib,
                    nr_virt_cpu: s.vcpus as u16,
                    cpu_time: s.cpu_time_ns,
                })
            }),
            Call::DomainGetState(r) => r.respond(|a| {
                let state = d.state_by_uuid(&a.dom.uuid).map_err(remote_error)?;
                Ok(DomainGetStateRet {
                    state: state.number(),
                    reason: state.reason_number(),
                })
            }),
            Call::DomainGetXmlDesc(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                Ok(DomainGetXmlDescRet {
                    xml: d
                        .dump_xml(
                            &s.name,
                            a.flags & XML_INACTIVE != 0,
                            a.flags & XML_SECURE != 0,
                        )
                        .map_err(remote_error)?,
                })
            }),
            Call::DomainGetOsType(r) => r.respond(|a| {
                Ok(DomainGetOsTypeRet {
                    r#type: self.domain(&a.dom)?.os_type,
                })
            }),
            Call::DomainIsActive(r) => r.respond(|a| {
                Ok(DomainIsActiveRet {
                    active: i32::from(self.domain(&a.dom)?.state.is_active()),
                })
            }),
            Call::DomainIsPersistent(r) => r.respond(|a| {
                Ok(DomainIsPersistentRet {
                    persistent: i32::from(self.domain(&a.dom)?.persistent),
                })
            }),
            Call::DomainIsUpdated(r) => r.respond(|a| {
                self.domain(&a.dom)?;
                Ok(DomainIsUpdatedRet { updated: 0 })
            }),
            Call::DomainGetAutostart(r) => r.respond(|a| {
                Ok(DomainGetAutostartRet {
                    autostart: i32::from(self.domain(&a.dom)?.autostart),
                })
            }),
            Call::DomainSetAutostart(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                d.set_autostart(&s.name, a.autostart != 0)
                    .map_err(remote_error)
            }),
            Call::DomainHasManagedSaveImage(r) => r.respond(|a| {
                self.domain(&a.dom)?;
                Ok(DomainHasManagedSaveImageRet { result: 0 })
            }),
            Call::DomainSnapshotNum(r) => r.respond(|a| {
                self.domain(&a.dom)?;
                Ok(DomainSnapshotNumRet { num: 0 })
            }),
            Call::DomainGetSecurityLabel(r) => r.respond(|a| {
                self.domain(&a.dom)?;
                Ok(DomainGetSecurityLabelRet {
                    label: Vec::new(),
                    enforcing: 0,
                })
            }),
            Call::DomainGetMessages(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                Ok(DomainGetMessagesRet {
                    msgs: s
                        .taint
                        .iter()
                        .map(|t| format!("tainted: {}", taint_message(t)))
                        .collect(),
                })
            }),
            Call::DomainGetMaxMemory(r) => r.respond(|a| {
                Ok(DomainGetMaxMemoryRet {
                    memory: self.domain(&a.dom)?.max_mem_kib,
                })
            }),
            Call::ConnectDomainEventCallbackRegisterAny(r) => r.respond(|a| {
                if !(0..EVENT_ID_LAST).contains(&a.event_id) {
                    return Err(RemoteError::new(
                        ErrorCode::InvalidArg,
                        ErrorDomain::Rpc,
                        format!("unsupported event ID {}", a.event_id),
                    ));
                }
                let domain = a.dom.map(|dom| dom.uuid);
                let id = {
                    let mut cbs = self.callbacks.lock();
                    cbs.next_id += 1;
                    let id = cbs.next_id;
                    cbs.by_id.insert(
                        id,
                        Callback {
                            event_id: a.event_id,
                            domain,
                        },
                    );
                    id
                };
                self.ensure_forwarder();
                Ok(ConnectDomainEventCallbackRegisterAnyRet { callback_id: id })
            }),
            Call::ConnectDomainEventCallbackDeregisterAny(r) => {
                r.respond(
                    |a| match self.callbacks.lock().by_id.remove(&a.callback_id) {
                        Some(_) => Ok(()),
                        None => Err(RemoteError::new(
                            ErrorCode::InvalidArg,
                            ErrorDomain::Rpc,
                            format!("callback ID {} not found", a.callback_id),
                        )),
                    },
                )
            }
            Call::QemuDomainMonitorCommand(r) => r.respond(|a| {
                let s = self.domain(&a.dom)?;
                Ok(DomainMonitorCommandRet {
                    result: d
                        .monitor_command(&s.name, &a.cmd, a.flags & MONITOR_HMP != 0)
                        .map_err(remote_error)?,
                })
            }),
            other => other.unsupported(),
        }
    }
}

/// The host name.
fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// libvirt's text for a taint flag (`virDomainTaintMessage`).
fn taint_message(flag: &str) -> &str {
    match flag {
        "custom-monitor" => "custom monitor control commands issued",
        "custom-argv" => "custom configuration parameters specified",
        "high-privileges" => "running with undesirable elevated privileges",
        "shell-scripts" => "network configuration using opaque shell scripts",
        "cdrom-passthrough" => "potentially unsafe use of host CDROM passthrough",
        "custom-device" => "custom device configuration",
        "custom-hypervisor-feature" => "hypervisor feature autodetection override",
        "deprecated-config" => "use of deprecated configuration settings",
        other => other,
    }
}
