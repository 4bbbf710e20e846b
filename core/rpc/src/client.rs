//! A minimal blocking client, for tests and diagnostics (the real clients are libvirt's).
//!
//! ```no_run
//! use qvisor_rpc::client::Client;
//! use qvisor_rpc::remote::ConnectGetTypeRet;
//! use qvisor_rpc::{remote_proc, Program};
//!
//! let mut c = Client::connect("/run/libvirt/libvirt-sock")?;
//! let ret: ConnectGetTypeRet = c.call(Program::Remote, remote_proc::CONNECT_GET_TYPE, &())?;
//! println!("{}", ret.r#type);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::RemoteError;
use crate::frame::{
    encode_frame, read_frame, Frame, FrameError, Header, MessageStatus, MessageType, Program,
};
use crate::xdr::{self, XdrDecode, XdrEncode, XdrError};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a libvirt error.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Reading or writing the socket failed.
    #[error("socket I/O failed")]
    Io(#[from] io::Error),
    /// The server sent a malformed frame, or none.
    #[error("bad frame from server")]
    Frame(#[from] FrameError),
    /// The reply body did not decode as expected.
    #[error("cannot decode the reply")]
    Decode(#[from] XdrError),
    /// The connection closed before the reply arrived.
    #[error("connection closed by the server")]
    Closed,
}

/// A connection that sends calls one at a time and keeps events for later.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    serial: u32,
    messages: VecDeque<Frame>,
}

impl Client {
    /// Connects to a daemon socket.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            stream: UnixStream::connect(path)?,
            serial: 0,
            messages: VecDeque::new(),
        })
    }

    /// Limits how long [`Client::call`] and [`Client::next_message`] wait.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// Calls `procedure` of `program` and decodes its reply.
    pub fn call<A: XdrEncode, R: XdrDecode>(
        &mut self,
        program: Program,
        procedure: i32,
        args: &A,
    ) -> Result<R, ClientError> {
        self.serial = self.serial.wrapping_add(1);
        let header = Header::call(program, procedure, self.serial);
        self.send_raw(&encode_frame(&header, args)?)?;
        loop {
            let frame = read_frame(&mut &self.stream)?.ok_or(ClientError::Closed)?;
            let h = frame.header;
            if h.kind == MessageType::Reply && h.serial == self.serial {
                return match h.status {
                    MessageStatus::Error => {
                        Err(xdr::from_bytes::<RemoteError>(&frame.body)?.into())
                    }
                    _ => Ok(xdr::from_bytes(&frame.body)?),
                };
            }
            self.messages.push_back(frame);
        }
    }

    /// Writes raw bytes (for robustness tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        (&self.stream).write_all(bytes)
    }

    /// Reads the next frame, whatever it is (for robustness tests).
    pub fn read_raw(&mut self) -> Result<Option<Frame>, ClientError> {
        if let Some(f) = self.messages.pop_front() {
            return Ok(Some(f));
        }
        Ok(read_frame(&mut &self.stream)?)
    }

    /// The next asynchronous message (event or keepalive) from the server.
    pub fn next_message(&mut self) -> Result<Frame, ClientError> {
        if let Some(f) = self.messages.pop_front() {
            return Ok(f);
        }
        loop {
            let frame = read_frame(&mut &self.stream)?.ok_or(ClientError::Closed)?;
            if frame.header.kind == MessageType::Message {
                return Ok(frame);
            }
        }
    }
}
