//! Message framing: a 4-byte length word, a 24-byte header, then the XDR body.
//!
//! The length word counts itself (`src/rpc/virnetprotocol.x`): a frame is at most
//! `4 + MESSAGE_MAX` bytes, and never less than `4 + HEADER_LEN`.

use std::io::{self, Read};

use crate::xdr::{Decoder, Encoder, XdrEncode, XdrError};

/// `VIR_NET_MESSAGE_MAX`: largest header + body, in bytes (32 MiB).
pub const MESSAGE_MAX: usize = 33_554_432;
/// `VIR_NET_MESSAGE_HEADER_MAX`: size of an encoded [`Header`].
pub const HEADER_LEN: usize = 24;
/// `VIR_NET_MESSAGE_LEN_MAX`: size of the length word.
pub const LEN_WORD: usize = 4;
/// `VIR_NET_MESSAGE_PAYLOAD_MAX`: largest body.
pub const PAYLOAD_MAX: usize = MESSAGE_MAX - HEADER_LEN;
/// `VIR_NET_MESSAGE_STRING_MAX`.
pub const STRING_MAX: u32 = 4_194_304;

/// `REMOTE_PROGRAM`.
pub const REMOTE_PROGRAM: u32 = 0x2000_8086;
/// `QEMU_PROGRAM`.
pub const QEMU_PROGRAM: u32 = 0x2000_8087;
/// `KEEPALIVE_PROGRAM` ("keep" in ASCII).
pub const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;
/// The protocol version of all three programs.
pub const PROTOCOL_VERSION: u32 = 1;
/// `KEEPALIVE_PROC_PING`.
pub const KEEPALIVE_PING: i32 = 1;
/// `KEEPALIVE_PROC_PONG`.
pub const KEEPALIVE_PONG: i32 = 2;

/// The RPC programs a libvirt daemon speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// `REMOTE_PROGRAM`: the driver API.
    Remote,
    /// `QEMU_PROGRAM`: libvirt-qemu.so's API (monitor passthrough, ...).
    Qemu,
    /// `KEEPALIVE_PROGRAM`: PING/PONG.
    Keepalive,
}

impl Program {
    /// The program for a wire number.
    pub fn from_number(n: u32) -> Option<Self> {
        match n {
            REMOTE_PROGRAM => Some(Self::Remote),
            QEMU_PROGRAM => Some(Self::Qemu),
            KEEPALIVE_PROGRAM => Some(Self::Keepalive),
            _ => None,
        }
    }

    /// The wire number.
    pub fn number(self) -> u32 {
        match self {
            Self::Remote => REMOTE_PROGRAM,
            Self::Qemu => QEMU_PROGRAM,
            Self::Keepalive => KEEPALIVE_PROGRAM,
        }
    }
}

/// `virNetMessageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum MessageType {
    /// Client → server method call.
    Call = 0,
    /// Server → client reply or error.
    Reply = 1,
    /// Asynchronous message (events, keepalive), either direction.
    Message = 2,
    /// Stream data.
    Stream = 3,
    /// A call with passed file descriptors.
    CallWithFds = 4,
    /// A reply with passed file descriptors.
    ReplyWithFds = 5,
    /// A stream hole.
    StreamHole = 6,
}

impl MessageType {
    fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::Call,
            1 => Self::Reply,
            2 => Self::Message,
            3 => Self::Stream,
            4 => Self::CallWithFds,
            5 => Self::ReplyWithFds,
            6 => Self::StreamHole,
            _ => return None,
        })
    }
}

/// `virNetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum MessageStatus {
    /// Calls, and replies without error.
    Ok = 0,
    /// An error reply: the body is a `remote_error`.
    Error = 1,
    /// Stream data with more to come.
    Continue = 2,
}

impl MessageStatus {
    fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::Error,
            2 => Self::Continue,
            _ => return None,
        })
    }
}

/// `struct virNetMessageHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Program number (see [`Program`]); kept raw so unknown programs can be answered.
    pub program: u32,
    /// Program version.
    pub version: u32,
    /// Procedure number within the program.
    pub procedure: i32,
    /// Message type.
    pub kind: MessageType,
    /// Serial chosen by the caller, echoed in the reply.
    pub serial: u32,
    /// Status.
    pub status: MessageStatus,
}

impl Header {
    /// The header of a successful reply to `call`.
    pub fn reply_to(call: &Header) -> Self {
        Self {
            kind: MessageType::Reply,
            status: MessageStatus::Ok,
            ..*call
        }
    }

    /// The header of an error reply to `call`.
    pub fn error_reply_to(call: &Header) -> Self {
        Self {
            kind: MessageType::Reply,
            status: MessageStatus::Error,
            ..*call
        }
    }

    /// The header of an asynchronous message (event or keepalive).
    pub fn message(program: Program, procedure: i32) -> Self {
        Self {
            program: program.number(),
            version: PROTOCOL_VERSION,
            procedure,
            kind: MessageType::Message,
            serial: 0,
            status: MessageStatus::Ok,
        }
    }

    /// A call header (for clients and tests).
    pub fn call(program: Program, procedure: i32, serial: u32) -> Self {
        Self {
            program: program.number(),
            version: PROTOCOL_VERSION,
            procedure,
            kind: MessageType::Call,
            serial,
            status: MessageStatus::Ok,
        }
    }
}

impl XdrEncode for Header {
    fn encode(&self, e: &mut Encoder) -> crate::xdr::Result<()> {
        e.put_u32(self.program)?;
        e.put_u32(self.version)?;
        e.put_i32(self.procedure)?;
        e.put_i32(self.kind as i32)?;
        e.put_u32(self.serial)?;
        e.put_i32(self.status as i32)
    }
}

/// Why a frame could not be read or built.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length word is below the smallest possible frame.
    #[error("packet {len} bytes received from client too small, want at least {min}")]
    TooSmall {
        /// The length word.
        len: u32,
        /// The smallest valid length word.
        min: usize,
    },
    /// The length word is above libvirt's 32 MiB limit.
    #[error("packet {len} bytes received from client too large, want at most {max}")]
    TooLarge {
        /// The length word.
        len: u32,
        /// The largest valid length word.
        max: usize,
    },
    /// The peer closed the connection inside a frame.
    #[error("connection closed after {got} of {want} bytes of a message")]
    Truncated {
        /// Bytes received of this frame.
        got: usize,
        /// Bytes the length word announced.
        want: usize,
    },
    /// The header holds an unknown message type or status.
    #[error("unable to decode message header: invalid {field} {value}")]
    BadHeader {
        /// `type` or `status`.
        field: &'static str,
        /// The value found.
        value: i32,
    },
    /// A message to send would exceed libvirt's limit.
    #[error("message of {len} bytes exceeds the {max} byte limit")]
    Oversize {
        /// The encoded size.
        len: usize,
        /// `MESSAGE_MAX`.
        max: usize,
    },
    /// Encoding a body failed.
    #[error("unable to encode message payload")]
    Encode(#[source] XdrError),
    /// Reading the socket failed.
    #[error("unable to read message")]
    Io(#[source] io::Error),
}

/// Shorthand for this module's results.
pub type Result<T> = std::result::Result<T, FrameError>;

/// A received message: its header and undecoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub header: Header,
    /// The XDR body (arguments, reply, error or event).
    pub body: Vec<u8>,
}

/// Checks a length word and returns how many bytes follow it.
pub fn body_len(len_word: u32) -> Result<usize> {
    let len = len_word as usize;
    if len < LEN_WORD + HEADER_LEN {
        return Err(FrameError::TooSmall {
            len: len_word,
            min: LEN_WORD + HEADER_LEN,
        });
    }
    if len - LEN_WORD > MESSAGE_MAX {
        return Err(FrameError::TooLarge {
            len: len_word,
            max: MESSAGE_MAX + LEN_WORD,
        });
    }
    Ok(len - LEN_WORD)
}

/// Decodes the header at the start of `msg` (header + body, without length word).
pub fn decode_header(msg: &[u8]) -> Result<Header> {
    let mut d = Decoder::new(msg);
    let short = |_| FrameError::Truncated {
        got: msg.len(),
        want: HEADER_LEN,
    };
    let program = d.u32().map_err(short)?;
    let version = d.u32().map_err(short)?;
    let procedure = d.i32().map_err(short)?;
    let kind = d.i32().map_err(short)?;
    let serial = d.u32().map_err(short)?;
    let status = d.i32().map_err(short)?;
    Ok(Header {
        program,
        version,
        procedure,
        kind: MessageType::from_i32(kind).ok_or(FrameError::BadHeader {
            field: "type",
            value: kind,
        })?,
        serial,
        status: MessageStatus::from_i32(status).ok_or(FrameError::BadHeader {
            field: "status",
            value: status,
        })?,
    })
}

/// Parses one frame from the start of `buf`: `Ok(None)` if more bytes are needed,
/// otherwise the frame and the number of bytes it used.
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>> {
    let Some(word) = buf.get(..LEN_WORD) else {
        return Ok(None);
    };
    let mut len = [0u8; LEN_WORD];
    len.copy_from_slice(word);
    let body_len = body_len(u32::from_be_bytes(len))?;
    let Some(msg) = buf.get(LEN_WORD..LEN_WORD + body_len) else {
        return Ok(None);
    };
    let header = decode_header(msg)?;
    let body = msg.get(HEADER_LEN..).unwrap_or_default().to_vec();
    Ok(Some((Frame { header, body }, LEN_WORD + body_len)))
}

/// Reads one frame from a blocking stream: `Ok(None)` on a clean end of stream between
/// frames. The buffer grows with the bytes actually received, so a large length word
/// alone does not reserve memory.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>> {
    let mut word = [0u8; LEN_WORD];
    let mut got = 0;
    while got < LEN_WORD {
        match r.read(&mut word[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    got,
                    want: LEN_WORD,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let want = body_len(u32::from_be_bytes(word))?;
    let mut msg = Vec::with_capacity(want.min(64 * 1024));
    let n = r
        .take(want as u64)
        .read_to_end(&mut msg)
        .map_err(FrameError::Io)?;
    if n < want {
        return Err(FrameError::Truncated {
            got: LEN_WORD + n,
            want: LEN_WORD + want,
        });
    }
    let header = decode_header(&msg)?;
    msg.drain(..HEADER_LEN);
    Ok(Some(Frame { header, body: msg }))
}

/// Encodes a whole frame (length word, header, body).
pub fn encode_frame(header: &Header, body: &(impl XdrEncode + ?Sized)) -> Result<Vec<u8>> {
    let mut e = Encoder::from_vec(vec![0u8; LEN_WORD]);
    header.encode(&mut e).map_err(FrameError::Encode)?;
    body.encode(&mut e).map_err(FrameError::Encode)?;
    finish_frame(e.into_bytes())
}

/// A buffer with room for the length word and header, to encode a body into.
pub(crate) fn body_buffer() -> Encoder {
    Encoder::from_vec(vec![0u8; LEN_WORD + HEADER_LEN])
}

/// Fills in the length word and header of a buffer from [`body_buffer`].
pub(crate) fn seal_frame(mut buf: Vec<u8>, header: &Header) -> Result<Vec<u8>> {
    let mut e = Encoder::new();
    header.encode(&mut e).map_err(FrameError::Encode)?;
    if let Some(slot) = buf.get_mut(LEN_WORD..LEN_WORD + HEADER_LEN) {
        slot.copy_from_slice(&e.into_bytes());
    }
    finish_frame(buf)
}

fn finish_frame(mut buf: Vec<u8>) -> Result<Vec<u8>> {
    let len = buf.len();
    if len > MESSAGE_MAX + LEN_WORD {
        return Err(FrameError::Oversize {
            len: len - LEN_WORD,
            max: MESSAGE_MAX,
        });
    }
    // Bounded by MESSAGE_MAX above, so it fits in a u32.
    let word = (len as u32).to_be_bytes();
    if let Some(slot) = buf.get_mut(..LEN_WORD) {
        slot.copy_from_slice(&word);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> Header {
        Header::call(Program::Remote, 66, 7)
    }

    #[test]
    fn frame_round_trips_through_parse_and_read() {
        let bytes = encode_frame(&sample_header(), &42u32).unwrap();
        assert_eq!(bytes.len(), 4 + 24 + 4);
        assert_eq!(&bytes[..4], &[0, 0, 0, 32]);
        let (frame, used) = parse_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(frame.header, sample_header());
        assert_eq!(frame.body, [0, 0, 0, 42]);
        let read = read_frame(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(read, frame);
    }

    #[test]
    fn header_encodes_libvirts_layout() {
        let mut e = Encoder::new();
        Header::message(Program::Keepalive, KEEPALIVE_PONG)
            .encode(&mut e)
            .unwrap();
        assert_eq!(
            e.into_bytes(),
            [0x6b, 0x65, 0x65, 0x70, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn length_below_header_size_is_too_small() {
        assert!(matches!(
            body_len(27),
            Err(FrameError::TooSmall { len: 27, .. })
        ));
        assert_eq!(body_len(28).unwrap(), 24);
    }

    #[test]
    fn length_above_32_mib_is_too_large() {
        assert_eq!(body_len((MESSAGE_MAX + 4) as u32).unwrap(), MESSAGE_MAX);
        assert!(matches!(
            body_len((MESSAGE_MAX + 5) as u32),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            body_len(u32::MAX),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn truncated_body_is_reported_not_waited_for() {
        let bytes = encode_frame(&sample_header(), &42u32).unwrap();
        let cut = &bytes[..bytes.len() - 1];
        assert!(parse_frame(cut).unwrap().is_none());
        assert!(matches!(
            read_frame(&mut &cut[..]),
            Err(FrameError::Truncated { got: 31, want: 32 })
        ));
    }

    #[test]
    fn clean_eof_between_frames_is_none() {
        assert!(read_frame(&mut &[][..]).unwrap().is_none());
        assert!(matches!(
            read_frame(&mut &[0u8, 0][..]),
            Err(FrameError::Truncated { got: 2, want: 4 })
        ));
    }

    #[test]
    fn unknown_message_type_is_a_bad_header() {
        let mut bytes = encode_frame(&sample_header(), &()).unwrap();
        bytes[4 + 15] = 9;
        assert!(matches!(
            parse_frame(&bytes),
            Err(FrameError::BadHeader {
                field: "type",
                value: 9
            })
        ));
    }

    #[test]
    fn large_length_word_does_not_preallocate() {
        // Announces 32 MiB but sends only the header: fails as truncated.
        let mut bytes = vec![];
        bytes.extend_from_slice(&((MESSAGE_MAX + 4) as u32).to_be_bytes());
        bytes.extend_from_slice(&[0u8; 24]);
        assert!(matches!(
            read_frame(&mut &bytes[..]),
            Err(FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn oversize_body_is_refused_when_encoding() {
        let big = vec![0u8; MESSAGE_MAX];
        struct Raw<'a>(&'a [u8]);
        impl XdrEncode for Raw<'_> {
            fn encode(&self, e: &mut Encoder) -> crate::xdr::Result<()> {
                e.put_fixed_opaque(self.0)
            }
        }
        assert!(matches!(
            encode_frame(&sample_header(), &Raw(&big)),
            Err(FrameError::Oversize { .. })
        ));
    }
}
