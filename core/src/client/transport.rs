//! One RPC connection. Until somebody subscribes to events, each call reads
//! its own reply on the calling thread (a one-shot `qvisor start` then costs
//! no thread and no hand-off per call); from the first subscription on, a
//! reader thread matches replies to calls by serial and fans event messages
//! out to subscribers. Calls may come from any thread; before the first
//! subscription they run one at a time.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use qvisor_rpc::frame::{
    encode_frame, read_frame, Frame, FrameError, Header, MessageStatus, MessageType, Program,
};
use qvisor_rpc::xdr::{self, XdrDecode, XdrEncode, XdrError};
use qvisor_rpc::RemoteError;

use crate::driver::DomainEvent;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The driver answered with an error (libvirt's message).
    #[error("{}", .0.message.clone().unwrap_or_else(|| "unknown error".to_string()))]
    Remote(RemoteError),
    /// The socket failed.
    #[error("cannot talk to the driver: {0}")]
    Io(#[from] std::io::Error),
    /// A malformed frame.
    #[error("bad frame from the driver: {0}")]
    Frame(#[from] FrameError),
    /// An undecodable reply.
    #[error("cannot decode the driver's reply: {0}")]
    Decode(#[from] XdrError),
    /// The driver closed the connection.
    #[error("the driver closed the connection")]
    Closed,
}

type Pending = Arc<Mutex<HashMap<u32, Sender<Frame>>>>;
type Subscribers = Arc<Mutex<Vec<Sender<DomainEvent>>>>;

/// A connection to a driver's RPC socket.
pub struct RpcConnection {
    writer: Mutex<UnixStream>,
    serial: AtomicU32,
    /// The read half while no reader thread runs.
    inline: Mutex<Option<UnixStream>>,
    pending: Pending,
    subscribers: Subscribers,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl RpcConnection {
    /// Connects to `path`.
    pub fn connect(path: &Path) -> std::io::Result<RpcConnection> {
        let stream = UnixStream::connect(path)?;
        let read_half = stream.try_clone()?;
        Ok(RpcConnection {
            writer: Mutex::new(stream),
            serial: AtomicU32::new(0),
            inline: Mutex::new(Some(read_half)),
            pending: Pending::default(),
            subscribers: Subscribers::default(),
            reader: Mutex::new(None),
        })
    }

    /// Calls a procedure and waits for its reply.
    pub fn call<A: XdrEncode, R: XdrDecode>(
        &self,
        program: Program,
        procedure: i32,
        args: &A,
    ) -> Result<R, ClientError> {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = encode_frame(&Header::call(program, procedure, serial), args)?;
        let reply = {
            let mut inline = self.inline.lock();
            match inline.as_mut() {
                Some(stream) => {
                    self.writer.lock().write_all(&frame)?;
                    read_reply(stream, serial)?
                }
                None => {
                    drop(inline);
                    let (tx, rx) = crossbeam_channel::bounded(1);
                    self.pending.lock().insert(serial, tx);
                    if let Err(e) = self.writer.lock().write_all(&frame) {
                        self.pending.lock().remove(&serial);
                        return Err(e.into());
                    }
                    rx.recv().map_err(|_| ClientError::Closed)?
                }
            }
        };
        match reply.header.status {
            MessageStatus::Error => Err(ClientError::Remote(xdr::from_bytes::<RemoteError>(
                &reply.body,
            )?)),
            _ => Ok(xdr::from_bytes(&reply.body)?),
        }
    }

    /// A new receiver of the events this connection gets.
    pub fn subscribe(&self) -> Result<Receiver<DomainEvent>, ClientError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.subscribers.lock().push(tx);
        // Waits for an inline call in flight, then hands its stream over.
        if let Some(read_half) = self.inline.lock().take() {
            let pending = self.pending.clone();
            let subscribers = self.subscribers.clone();
            let reader = std::thread::Builder::new()
                .name("rpc-reader".into())
                .spawn(move || read_loop(read_half, pending, subscribers))?;
            *self.reader.lock() = Some(reader);
        }
        Ok(rx)
    }
}

/// Reads frames until the reply to `serial`. Events that arrive first have
/// no subscriber yet (subscribing starts the reader thread) and are dropped.
fn read_reply(stream: &mut UnixStream, serial: u32) -> Result<Frame, ClientError> {
    loop {
        match read_frame(stream)? {
            None => return Err(ClientError::Closed),
            Some(f) if f.header.kind == MessageType::Reply && f.header.serial == serial => {
                return Ok(f)
            }
            Some(_) => {}
        }
    }
}

fn read_loop(mut stream: UnixStream, pending: Pending, subscribers: Subscribers) {
    while let Ok(Some(frame)) = read_frame(&mut stream) {
        match frame.header.kind {
            MessageType::Reply => {
                if let Some(tx) = pending.lock().remove(&frame.header.serial) {
                    let _ = tx.send(frame);
                }
            }
            MessageType::Message => {
                if let Some(ev) = super::decode_event(frame.header.procedure, &frame.body) {
                    subscribers.lock().retain(|s| s.send(ev.clone()).is_ok());
                }
            }
            _ => {}
        }
    }
    // Wake every waiting caller: dropping the senders makes recv fail.
    pending.lock().clear();
    subscribers.lock().clear();
}

impl Drop for RpcConnection {
    fn drop(&mut self) {
        let _ = self.writer.lock().shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.get_mut().take() {
            let _ = r.join();
        }
    }
}
