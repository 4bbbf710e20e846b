//! Decoder fuzzing: random and mutated input through every decoding path (frame
//! parsing, the streaming reader, call dispatch, every generated type). Nothing may
//! panic, and nothing may allocate beyond what the input describes.
//!
//! A normal `cargo test` runs a short pass. The full run (10^6 inputs) is:
//!
//! ```text
//! QVISOR_RPC_FUZZ_ITERS=1000000 cargo test --release -p qvisor-rpc --test fuzz -- --nocapture
//! ```
//!
//! `QVISOR_RPC_FUZZ_SEED` picks another seed; a failure prints the seed and input.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use qvisor_rpc::call::decode_every_type;
use qvisor_rpc::frame::{encode_frame, parse_frame, read_frame, Header, MESSAGE_MAX};
use qvisor_rpc::remote::{
    ConnectDomainEventCallbackRegisterAnyArgs, ConnectListAllDomainsArgs, ConnectOpenArgs,
    DomainDefineXmlFlagsArgs, DomainLookupByNameArgs, DomainSetMemoryFlagsArgs, NonnullDomain,
};
use qvisor_rpc::server::dispatch;
use qvisor_rpc::{qemu_proc, remote_proc, Call, Handler, Peer, Program, Response};

/// splitmix64: small, fast, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// An XDR-ish word: mostly values decoders branch on.
    fn word(&mut self) -> u32 {
        match self.below(8) {
            0 => 0,
            1 => 1,
            2 => self.below(64) as u32,
            3 => u32::MAX,
            4 => self.below(1 << 16) as u32,
            5 => 0x2000_8086,
            _ => self.next() as u32,
        }
    }
}

/// Inputs that parsed as a frame, and calls that decoded and reached the handler.
static FRAMES: AtomicUsize = AtomicUsize::new(0);
static HANDLED: AtomicUsize = AtomicUsize::new(0);

/// Answers every call so that reply encoding is exercised too.
struct Echo;

impl Handler for Echo {
    fn call(&mut self, call: Call) -> Response {
        HANDLED.fetch_add(1, Ordering::Relaxed);
        match call {
            Call::ConnectOpen(r) => r.ok(()),
            Call::DomainLookupByName(r) => {
                let name = r.args.name.clone();
                r.ok(qvisor_rpc::remote::DomainLookupByNameRet {
                    dom: NonnullDomain {
                        name,
                        uuid: [0; 16],
                        id: 1,
                    },
                })
            }
            other => other.unsupported(),
        }
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let dom = NonnullDomain {
        name: "vm1".into(),
        uuid: [9; 16],
        id: 2,
    };
    let call = |p: i32, s: u32| Header::call(Program::Remote, p, s);
    vec![
        encode_frame(
            &call(remote_proc::CONNECT_OPEN, 1),
            &ConnectOpenArgs {
                name: Some("qemu:///system".into()),
                flags: 0,
            },
        )
        .unwrap(),
        encode_frame(
            &call(remote_proc::DOMAIN_LOOKUP_BY_NAME, 2),
            &DomainLookupByNameArgs { name: "vm1".into() },
        )
        .unwrap(),
        encode_frame(
            &call(remote_proc::DOMAIN_DEFINE_XML_FLAGS, 3),
            &DomainDefineXmlFlagsArgs {
                xml: "<domain type='kvm'><name>vm1</name></domain>".into(),
                flags: 0,
            },
        )
        .unwrap(),
        encode_frame(
            &call(remote_proc::CONNECT_LIST_ALL_DOMAINS, 4),
            &ConnectListAllDomainsArgs {
                need_results: 1,
                flags: 0,
            },
        )
        .unwrap(),
        encode_frame(
            &call(remote_proc::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, 5),
            &ConnectDomainEventCallbackRegisterAnyArgs {
                event_id: 0,
                dom: Some(dom.clone()),
            },
        )
        .unwrap(),
        encode_frame(
            &call(remote_proc::DOMAIN_SET_MEMORY_FLAGS, 6),
            &DomainSetMemoryFlagsArgs {
                dom: dom.clone(),
                memory: 1 << 20,
                flags: 1,
            },
        )
        .unwrap(),
        encode_frame(
            &Header::call(Program::Qemu, qemu_proc::DOMAIN_MONITOR_COMMAND, 7),
            &qvisor_rpc::qemu::DomainMonitorCommandArgs {
                dom,
                cmd: "{\"execute\":\"query-status\"}".into(),
                flags: 0,
            },
        )
        .unwrap(),
    ]
}

fn random_body(rng: &mut Rng) -> Vec<u8> {
    let words = rng.below(48);
    let mut b = Vec::with_capacity(words * 4);
    for _ in 0..words {
        if rng.below(6) == 0 {
            b.extend((0..4).map(|_| b'a' + rng.below(26) as u8));
        } else {
            b.extend_from_slice(&rng.word().to_be_bytes());
        }
    }
    b.truncate(
        b.len()
            .saturating_sub(rng.below(4) * usize::from(rng.below(4) == 0)),
    );
    b
}

fn input(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(4) {
        // Pure noise.
        0 => (0..rng.below(96)).map(|_| rng.next() as u8).collect(),
        // A well-formed frame for a random procedure with an XDR-ish body.
        1 => {
            let program = if rng.below(8) == 0 {
                Program::Qemu
            } else {
                Program::Remote
            };
            let procedure = rng.below(460) as i32;
            let mut h = Header::call(program, procedure, rng.next() as u32);
            if rng.below(10) == 0 {
                h.version = rng.word();
            }
            let mut f = encode_frame(&h, &()).unwrap();
            f.extend(random_body(rng));
            let len = f.len() as u32;
            f[..4].copy_from_slice(&len.to_be_bytes());
            f
        }
        // A mutated valid frame.
        _ => {
            let mut f = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                match rng.below(5) {
                    0 if !f.is_empty() => {
                        let i = rng.below(f.len());
                        f[i] ^= 1 << rng.below(8);
                    }
                    1 if f.len() >= 4 => {
                        let i = rng.below(f.len() / 4) * 4;
                        f[i..i + 4].copy_from_slice(&rng.word().to_be_bytes());
                    }
                    2 => f.truncate(rng.below(f.len() + 1)),
                    3 => {
                        let i = rng.below(f.len() + 1);
                        f.splice(i..i, rng.word().to_be_bytes());
                    }
                    _ => {
                        let len = match rng.below(3) {
                            0 => rng.word(),
                            1 => f.len() as u32,
                            _ => (MESSAGE_MAX + 4 + rng.below(8)) as u32,
                        };
                        if f.len() >= 4 {
                            f[..4].copy_from_slice(&len.to_be_bytes());
                        }
                    }
                }
            }
            f
        }
    }
}

fn exercise(bytes: &[u8], peer: &Peer, ro_peer: &Peer) {
    // Streaming reader over the whole input, frame after frame.
    let mut stream = bytes;
    while let Ok(Some(_)) = read_frame(&mut stream) {}
    if let Ok(Some((frame, _))) = parse_frame(bytes) {
        FRAMES.fetch_add(1, Ordering::Relaxed);
        let _ = dispatch(&frame, peer, &mut Echo);
        let _ = dispatch(&frame, ro_peer, &mut Echo);
        check_round_trip(&frame.body);
    }
    check_round_trip(bytes);
}

/// Whatever decodes as a generated type must re-encode canonically.
fn check_round_trip(body: &[u8]) {
    if let Err(name) = decode_every_type(body) {
        panic!("{name} does not round-trip {body:02x?}");
    }
}

#[test]
fn decoders_never_panic_on_random_and_mutated_input() {
    let iters: u64 = std::env::var("QVISOR_RPC_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("QVISOR_RPC_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234);
    let peer = Peer {
        id: 1,
        pid: 1,
        uid: 0,
        gid: 0,
        read_only: false,
        socket: PathBuf::from("/fuzz"),
    };
    let ro_peer = Peer {
        read_only: true,
        ..peer.clone()
    };
    let seeds = seeds();
    let mut rng = Rng(seed);
    let start = std::time::Instant::now();
    for i in 0..iters {
        let bytes = input(&mut rng, &seeds);
        let result = std::panic::catch_unwind(|| exercise(&bytes, &peer, &ro_peer));
        assert!(
            result.is_ok(),
            "panic at iteration {i} (seed {seed}) on input {bytes:02x?}"
        );
    }
    println!(
        "fuzz: {iters} inputs, seed {seed}, {:.1} s; {} parsed as frames, {} calls decoded \
         and reached the handler",
        start.elapsed().as_secs_f64(),
        FRAMES.load(Ordering::Relaxed),
        HANDLED.load(Ordering::Relaxed),
    );
}
