//! A tiny test service and a server on a temporary socket.

#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qvisor_rpc::qemu::DomainMonitorCommandRet;
use qvisor_rpc::remote::{
    AuthListRet, ConnectDomainEventCallbackRegisterAnyRet, ConnectGetCapabilitiesRet,
    ConnectGetHostnameRet, ConnectGetLibVersionRet, ConnectGetTypeRet, ConnectGetUriRet,
    ConnectGetVersionRet, ConnectListAllDomainsRet, ConnectSupportsFeatureRet,
    DomainGetAutostartRet, DomainGetInfoRet, DomainGetMessagesRet, DomainGetOsTypeRet,
    DomainGetSecurityLabelRet, DomainGetStateRet, DomainGetXmlDescRet,
    DomainHasManagedSaveImageRet, DomainIsActiveRet, DomainIsPersistentRet, DomainLookupByNameRet,
    DomainLookupByUuidRet, NodeGetInfoRet, NodeGetSecurityModelRet, NonnullDomain, AUTH_NONE,
};
use qvisor_rpc::xdr::{c_char_array, c_chars};
use qvisor_rpc::{
    Call, ErrorCode, ErrorDomain, EventSender, Handler, Peer, PeerPolicy, RemoteError, Response,
    Server, ServerConfig, ServerHandle, Service, SocketConfig,
};

/// What the test service saw.
#[derive(Default)]
pub struct Seen {
    /// Procedure names, in call order, across all clients.
    pub calls: Vec<&'static str>,
    /// Peers that connected.
    pub peers: Vec<Peer>,
    /// Event registrations: (client, event id, callback id).
    pub registrations: Vec<(u64, i32, i32)>,
    /// Each client's event sender.
    pub senders: Vec<EventSender>,
    /// Clients whose handler saw `disconnected`.
    pub disconnected: Vec<u64>,
}

/// Answers the connection handshake and the `virsh version`/`hostname` calls.
#[derive(Clone, Default)]
pub struct TestService {
    pub seen: Arc<Mutex<Seen>>,
}

pub struct TestHandler {
    peer: Peer,
    seen: Arc<Mutex<Seen>>,
    next_callback: AtomicU32,
    open: bool,
}

impl Service for TestService {
    type Handler = TestHandler;

    fn connect(&self, peer: &Peer, events: EventSender) -> TestHandler {
        let mut seen = self.seen.lock().unwrap();
        seen.peers.push(peer.clone());
        seen.senders.push(events);
        TestHandler {
            peer: peer.clone(),
            seen: Arc::clone(&self.seen),
            next_callback: AtomicU32::new(1),
            open: false,
        }
    }
}

impl Handler for TestHandler {
    fn call(&mut self, call: Call) -> Response {
        self.seen.lock().unwrap().calls.push(call.procedure().name);
        let not_open = || RemoteError::internal(ErrorDomain::Rpc, "connection not open");
        match call {
            Call::AuthList(r) => r.ok(AuthListRet {
                types: vec![AUTH_NONE],
            }),
            Call::ConnectSupportsFeature(r) => {
                let supported = i32::from(matches!(r.args.feature, 14 | 15));
                r.ok(ConnectSupportsFeatureRet { supported })
            }
            Call::ConnectOpen(r) => {
                self.open = true;
                r.ok(())
            }
            _ if !self.open => Response::error(not_open()),
            Call::ConnectClose(r) => r.ok(()),
            Call::ConnectRegisterCloseCallback(r) => r.ok(()),
            Call::ConnectUnregisterCloseCallback(r) => r.ok(()),
            Call::ConnectGetType(r) => r.ok(ConnectGetTypeRet {
                r#type: "QEMU".into(),
            }),
            Call::ConnectGetVersion(r) => r.ok(ConnectGetVersionRet { hv_ver: 7_002_000 }),
            Call::ConnectGetLibVersion(r) => r.ok(ConnectGetLibVersionRet { lib_ver: 9_000_000 }),
            Call::ConnectGetHostname(r) => r.ok(ConnectGetHostnameRet {
                hostname: "qvisor-test-host".into(),
            }),
            Call::ConnectGetUri(r) => r.ok(ConnectGetUriRet {
                uri: "qemu:///system".into(),
            }),
            Call::ConnectDomainEventCallbackRegisterAny(r) => {
                let id = self.next_callback.fetch_add(1, Ordering::SeqCst) as i32;
                self.seen
                    .lock()
                    .unwrap()
                    .registrations
                    .push((self.peer.id, r.args.event_id, id));
                r.ok(ConnectDomainEventCallbackRegisterAnyRet { callback_id: id })
            }
            Call::ConnectDomainEventCallbackDeregisterAny(r) => r.ok(()),
            // One fake running domain, so that virsh's domain commands exercise the
            // reply layouts.
            Call::DomainLookupByName(r) => {
                let name = r.args.name.clone();
                r.respond(|_| {
                    if name == "vm1" {
                        Ok(DomainLookupByNameRet { dom: vm1() })
                    } else if name == "vm2" {
                        Ok(DomainLookupByNameRet { dom: vm2() })
                    } else {
                        Err(RemoteError::new(
                            ErrorCode::NoDomain,
                            ErrorDomain::Qemu,
                            format!("no domain with matching name '{name}'"),
                        ))
                    }
                })
            }
            Call::DomainLookupByUuid(r) => r.ok(DomainLookupByUuidRet { dom: vm1() }),
            Call::ConnectListAllDomains(r) => r.ok(ConnectListAllDomainsRet {
                domains: vec![vm1()],
                ret: 1,
            }),
            Call::DomainGetState(r) => r.ok(DomainGetStateRet {
                state: 1,
                reason: 1,
            }),
            Call::DomainGetInfo(r) => r.ok(DomainGetInfoRet {
                state: 1,
                max_mem: 1_048_576,
                memory: 524_288,
                nr_virt_cpu: 2,
                cpu_time: 1_500_000_000,
            }),
            Call::DomainGetOsType(r) => r.ok(DomainGetOsTypeRet {
                r#type: "hvm".into(),
            }),
            Call::DomainIsActive(r) => {
                let active = i32::from(r.args.dom.id > 0);
                r.ok(DomainIsActiveRet { active })
            }
            Call::DomainIsPersistent(r) => r.ok(DomainIsPersistentRet { persistent: 1 }),
            Call::DomainGetAutostart(r) => r.ok(DomainGetAutostartRet { autostart: 0 }),
            Call::DomainSetAutostart(r) => r.ok(()),
            Call::DomainHasManagedSaveImage(r) => r.ok(DomainHasManagedSaveImageRet { result: 0 }),
            Call::NodeGetSecurityModel(r) => r.ok(NodeGetSecurityModelRet {
                model: c_chars("apparmor"),
                doi: c_chars("0"),
            }),
            Call::DomainGetSecurityLabel(r) => r.ok(DomainGetSecurityLabelRet {
                label: c_chars("libvirt-11111111-2222-3333-4444-555555555555"),
                enforcing: 1,
            }),
            Call::DomainGetMessages(r) => r.ok(DomainGetMessagesRet {
                msgs: vec!["tainted: custom monitor control commands issued".into()],
            }),
            Call::DomainGetXmlDesc(r) => r.ok(DomainGetXmlDescRet {
                xml: "<domain type='kvm' id='3'>\n  <name>vm1</name>\n</domain>\n".into(),
            }),
            Call::NodeGetInfo(r) => r.ok(NodeGetInfoRet {
                model: c_char_array("x86_64"),
                memory: 16_384_000,
                cpus: 4,
                mhz: 2000,
                nodes: 1,
                sockets: 1,
                cores: 2,
                threads: 2,
            }),
            Call::QemuDomainMonitorCommand(r) => {
                let cmd = r.args.cmd.clone();
                r.respond(|_| {
                    if cmd.contains("query-status") {
                        Ok(DomainMonitorCommandRet {
                            result: "{\"return\":{\"status\":\"running\",\"singlestep\":false,\"running\":true},\"id\":\"libvirt-7\"}".into(),
                        })
                    } else {
                        Err(RemoteError::internal(ErrorDomain::Qemu, "unexpected command"))
                    }
                })
            }
            // A slow call, to show that keepalive and other clients do not wait for it.
            Call::DomainSuspend(r) => {
                std::thread::sleep(Duration::from_millis(1500));
                r.ok(())
            }
            // A handler bug.
            Call::DomainReset(_) => panic!("test handler bug"),
            // A reply near the 4 MiB string limit, to exercise partial writes.
            Call::ConnectGetCapabilities(r) => r.ok(ConnectGetCapabilitiesRet {
                capabilities: "x".repeat(BIG_REPLY),
            }),
            other => other.unsupported(),
        }
    }

    fn disconnected(&mut self) {
        self.seen.lock().unwrap().disconnected.push(self.peer.id);
    }
}

/// Size of the `CONNECT_GET_CAPABILITIES` reply string.
pub const BIG_REPLY: usize = 4_000_000;

/// The fake domain.
pub fn vm1() -> NonnullDomain {
    NonnullDomain {
        name: "vm1".into(),
        uuid: [
            0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0x55, 0x55, 0x55, 0x55,
            0x55, 0x55,
        ],
        id: 3,
    }
}

/// A fake defined, inactive domain.
pub fn vm2() -> NonnullDomain {
    NonnullDomain {
        name: "vm2".into(),
        uuid: [0x22; 16],
        id: -1,
    }
}

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A server on temporary rw and ro sockets; stopped and cleaned up on drop.
pub struct TestServer {
    pub dir: PathBuf,
    pub rw: PathBuf,
    pub ro: PathBuf,
    pub service: TestService,
    pub handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(PeerPolicy::AnyUser)
    }

    pub fn start_with(policy: PeerPolicy) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "qvisor-rpc-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let rw = dir.join("libvirt-sock");
        let ro = dir.join("libvirt-sock-ro");
        let service = TestService::default();
        let config = ServerConfig {
            sockets: vec![SocketConfig::read_write(&rw), SocketConfig::read_only(&ro)],
            peer_policy: policy,
            ..ServerConfig::default()
        };
        let server = Server::bind(config, service.clone()).unwrap();
        let handle = server.handle();
        let thread = std::thread::spawn(move || server.run().unwrap());
        Self {
            dir,
            rw,
            ro,
            service,
            handle,
            thread: Some(thread),
        }
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.service.seen.lock().unwrap()
    }

    /// Waits until `f` holds (or panics after 10 s).
    pub fn wait_for(&self, what: &str, f: impl Fn(&Seen) -> bool) {
        let start = Instant::now();
        while !f(&self.seen()) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn connect(&self, path: &Path) -> UnixStream {
        UnixStream::connect(path).unwrap()
    }
}

impl TestServer {
    /// Shuts the server down and waits for it, leaving its directory.
    pub fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
