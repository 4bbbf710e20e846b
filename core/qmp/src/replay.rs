//! Replaying a recorded QMP transcript as if it were a live QEMU.
//!
//! A transcript (libvirt's `*.replies` format) is a series of JSON objects
//! separated by an empty line, alternating request and reply. It is split
//! into phases at each `qmp_capabilities` request; every `qmp_capabilities`
//! the client sends moves to the next phase. Within a phase a request is
//! matched on `execute` plus `arguments` (compared as JSON values; missing
//! arguments equal `{}`), taking the first unused matching entry; its
//! recorded reply (errors too) is sent back with the request's id. A request
//! with no match gets the error QEMU would give (`CommandNotFound` when the
//! command appears nowhere in the transcript, `GenericError` otherwise) and
//! is reported as a divergence, as are entries left unused at the end of a
//! phase. Never is a successful reply made up.
//!
//! [`Replay::connect`] yields the two directions of a byte stream, so the
//! real [`crate::QmpClient`] runs over it unchanged.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde_json::{json, Value};

/// A transcript that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// An object is not valid JSON.
    #[error("transcript entry {index}: invalid JSON: {reason}")]
    Json {
        /// Position of the object (0-based).
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// A request has no `execute`, or the objects do not alternate.
    #[error("transcript entry {index}: {reason}")]
    Shape {
        /// Position of the object (0-based).
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// One recorded exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// Command name.
    pub execute: String,
    /// Arguments (`{}` when the request had none).
    pub arguments: Value,
    /// The recorded reply object.
    pub reply: Value,
}

/// A parsed transcript: phases of exchanges.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The phases; each starts with its `qmp_capabilities` exchange.
    pub phases: Vec<Vec<Exchange>>,
}

impl Transcript {
    /// Parses libvirt's `.replies` format.
    pub fn parse(text: &str) -> Result<Transcript, TranscriptError> {
        let mut objects = Vec::new();
        let mut chunk = String::new();
        let flush = |chunk: &mut String, objects: &mut Vec<Value>| -> Result<(), TranscriptError> {
            if chunk.trim().is_empty() {
                chunk.clear();
                return Ok(());
            }
            let v = serde_json::from_str(chunk).map_err(|e| TranscriptError::Json {
                index: objects.len(),
                reason: e.to_string(),
            })?;
            objects.push(v);
            chunk.clear();
            Ok(())
        };
        for line in text.lines() {
            if line.trim().is_empty() {
                flush(&mut chunk, &mut objects)?;
            } else {
                chunk.push_str(line);
                chunk.push('\n');
            }
        }
        flush(&mut chunk, &mut objects)?;

        let mut phases: Vec<Vec<Exchange>> = Vec::new();
        let mut it = objects.into_iter().enumerate();
        while let Some((index, req)) = it.next() {
            let execute = req
                .get("execute")
                .and_then(Value::as_str)
                .ok_or_else(|| TranscriptError::Shape {
                    index,
                    reason: "request without 'execute'".to_string(),
                })?
                .to_string();
            let (_, reply) = it.next().ok_or_else(|| TranscriptError::Shape {
                index,
                reason: format!("request '{execute}' has no reply"),
            })?;
            if reply.get("return").is_none() && reply.get("error").is_none() {
                return Err(TranscriptError::Shape {
                    index: index + 1,
                    reason: format!("reply to '{execute}' has neither 'return' nor 'error'"),
                });
            }
            let arguments = req.get("arguments").cloned().unwrap_or_else(|| json!({}));
            if execute == "qmp_capabilities" || phases.is_empty() {
                phases.push(Vec::new());
            }
            if let Some(p) = phases.last_mut() {
                p.push(Exchange {
                    execute,
                    arguments,
                    reply,
                });
            }
        }
        Ok(Transcript { phases })
    }

    fn mentions(&self, command: &str) -> bool {
        self.phases.iter().flatten().any(|e| e.execute == command)
    }
}

/// A request the transcript could not answer, or an entry never asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// Phase number (1-based; 0 before the first `qmp_capabilities`).
    pub phase: usize,
    /// Command name.
    pub execute: String,
    /// Arguments.
    pub arguments: Value,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "phase {}: {} {}",
            self.phase, self.execute, self.arguments
        )
    }
}

const GREETING: &[u8] = b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 0, \"major\": 0}, \"package\": \"replay\"}, \"capabilities\": []}}\r\n";

struct State {
    transcript: Transcript,
    used: Vec<Vec<bool>>,
    /// Index of the current phase + 1 (0 = before the first
    /// `qmp_capabilities`).
    phase: usize,
    out: VecDeque<u8>,
    inbuf: Vec<u8>,
    closed: bool,
    unanswered: Vec<Divergence>,
    unused_reported: Vec<Divergence>,
    strict: bool,
    /// Connection number: halves of an older connection see end of file.
    generation: u64,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

/// A replaying monitor. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Replay {
    shared: Arc<Shared>,
}

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Replay {
    /// A replay of `transcript`. With `strict`, the first divergence closes
    /// the stream so that the client fails at once.
    pub fn new(transcript: Transcript, strict: bool) -> Replay {
        let used = transcript
            .phases
            .iter()
            .map(|p| vec![false; p.len()])
            .collect();
        Replay {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    transcript,
                    used,
                    phase: 0,
                    out: VecDeque::new(),
                    inbuf: Vec::new(),
                    closed: false,
                    unanswered: Vec::new(),
                    unused_reported: Vec::new(),
                    strict,
                    generation: 0,
                }),
                ready: Condvar::new(),
            }),
        }
    }

    /// Opens a new connection (as a new QEMU process would be): the reader
    /// and writer halves and a closer, as [`crate::QmpClient::from_stream`]
    /// takes them. The connection starts with a dummy greeting (libvirt's
    /// harness does the same; the version comes from `query-version`). The
    /// transcript position carries over, so the next `qmp_capabilities`
    /// enters the next phase. Halves of an earlier connection see end of
    /// file from now on.
    #[allow(clippy::type_complexity)]
    pub fn connect(
        &self,
    ) -> (
        Box<dyn Read + Send>,
        Box<dyn Write + Send>,
        Option<Box<dyn FnOnce() + Send>>,
    ) {
        let generation = {
            let mut st = lock(&self.shared);
            st.generation += 1;
            st.closed = false;
            st.inbuf.clear();
            st.out.clear();
            st.out.extend(GREETING);
            self.shared.ready.notify_all();
            st.generation
        };
        let closer = self.clone();
        (
            Box::new(ReplayReader(self.clone(), generation)),
            Box::new(ReplayWriter(self.clone(), generation)),
            Some(Box::new(move || closer.close(generation))),
        )
    }

    /// Ends connection `generation`: its reader sees end of file.
    fn close(&self, generation: u64) {
        let mut st = lock(&self.shared);
        if st.generation == generation {
            st.closed = true;
        }
        self.shared.ready.notify_all();
    }

    /// Requests the transcript could not answer so far.
    pub fn unanswered(&self) -> Vec<Divergence> {
        lock(&self.shared).unanswered.clone()
    }

    /// Entries of every phase the client has entered that were never used.
    /// Phases the client never reached are not included; see
    /// [`Replay::phases_entered`].
    pub fn unused(&self) -> Vec<Divergence> {
        let st = lock(&self.shared);
        unused_of(&st, st.phase)
    }

    /// Number of phases the client has entered.
    pub fn phases_entered(&self) -> usize {
        lock(&self.shared).phase
    }

    /// Number of phases in the transcript.
    pub fn phase_count(&self) -> usize {
        lock(&self.shared).transcript.phases.len()
    }

    fn handle_request(st: &mut State, req: &Value) {
        let id = req.get("id").cloned();
        let Some(execute) = req.get("execute").and_then(Value::as_str) else {
            push_reply(
                st,
                json!({"error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}),
                id,
            );
            return;
        };
        let arguments = req.get("arguments").cloned().unwrap_or_else(|| json!({}));
        if execute == "qmp_capabilities" {
            // Report what the finished phase left unused, then move on.
            let finished = unused_of(st, st.phase);
            for d in finished {
                if !st.unused_reported.contains(&d) {
                    eprintln!("qmp replay: transcript entry never requested: {d}");
                    st.unused_reported.push(d);
                }
            }
            if st.phase < st.transcript.phases.len() {
                st.phase += 1;
                let p = st.phase - 1;
                if let Some(i) = find(st, p, execute, &arguments) {
                    st.used[p][i] = true;
                    let reply = st.transcript.phases[p][i].reply.clone();
                    push_reply(st, reply, id);
                    return;
                }
            }
        } else if st.phase > 0 {
            let p = st.phase - 1;
            if let Some(i) = find(st, p, execute, &arguments) {
                st.used[p][i] = true;
                let reply = st.transcript.phases[p][i].reply.clone();
                push_reply(st, reply, id);
                return;
            }
        }
        let d = Divergence {
            phase: st.phase,
            execute: execute.to_string(),
            arguments,
        };
        eprintln!("qmp replay: request not in the transcript: {d}");
        st.unanswered.push(d);
        let reply = if st.transcript.mentions(execute) {
            json!({"error": {"class": "GenericError", "desc": format!("replay: no recorded reply left for '{execute}' with these arguments")}})
        } else {
            json!({"error": {"class": "CommandNotFound", "desc": format!("The command {execute} has not been found")}})
        };
        push_reply(st, reply, id);
        if st.strict {
            st.closed = true;
        }
    }
}

fn unused_of(st: &State, upto_phase: usize) -> Vec<Divergence> {
    let mut v = Vec::new();
    for p in 0..upto_phase.min(st.transcript.phases.len()) {
        for (i, e) in st.transcript.phases[p].iter().enumerate() {
            if !st.used[p][i] {
                v.push(Divergence {
                    phase: p + 1,
                    execute: e.execute.clone(),
                    arguments: e.arguments.clone(),
                });
            }
        }
    }
    v
}

fn find(st: &State, phase: usize, execute: &str, arguments: &Value) -> Option<usize> {
    st.transcript.phases[phase]
        .iter()
        .enumerate()
        .find(|(i, e)| !st.used[phase][*i] && e.execute == execute && &e.arguments == arguments)
        .map(|(i, _)| i)
}

fn push_reply(st: &mut State, mut reply: Value, id: Option<Value>) {
    if let Some(obj) = reply.as_object_mut() {
        obj.remove("id");
        if let Some(id) = id {
            obj.insert("id".into(), id);
        }
    }
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.extend_from_slice(b"\r\n");
    st.out.extend(bytes);
}

struct ReplayReader(Replay, u64);

impl Read for ReplayReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let shared = &self.0.shared;
        let mut st = lock(shared);
        loop {
            if st.generation != self.1 {
                return Ok(0);
            }
            if !st.out.is_empty() {
                let n = buf.len().min(st.out.len());
                for (dst, src) in buf.iter_mut().zip(st.out.drain(..n)) {
                    *dst = src;
                }
                return Ok(n);
            }
            if st.closed {
                return Ok(0);
            }
            st = shared.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

struct ReplayWriter(Replay, u64);

impl Write for ReplayWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shared = &self.0.shared;
        let mut st = lock(shared);
        if st.closed || st.generation != self.1 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "replay closed"));
        }
        st.inbuf.extend_from_slice(buf);
        while let Some(pos) = st.inbuf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = st.inbuf.drain(..=pos).collect();
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_slice::<Value>(text) {
                Ok(req) => Replay::handle_request(&mut st, &req),
                Err(e) => push_reply(
                    &mut st,
                    json!({"error": {"class": "GenericError", "desc": format!("JSON parse error, {e}")}}),
                    None,
                ),
            }
        }
        shared.ready.notify_all();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientOptions, QmpClient};

    const TEXT: &str = r#"{
  "execute": "qmp_capabilities",
  "id": "libvirt-1"
}

{
  "return": {},
  "id": "libvirt-1"
}

{
  "execute": "device-list-properties",
  "arguments": {"typename": "a"},
  "id": "libvirt-2"
}

{
  "return": [{"name": "x"}],
  "id": "libvirt-2"
}

{
  "execute": "device-list-properties",
  "arguments": {"typename": "b"},
  "id": "libvirt-3"
}

{
  "error": {"class": "DeviceNotFound", "desc": "Device 'b' not found"},
  "id": "libvirt-3"
}

{
  "execute": "query-kvm",
  "id": "libvirt-4"
}

{
  "return": {"enabled": true, "present": true},
  "id": "libvirt-4"
}

{
  "execute": "qmp_capabilities",
  "id": "libvirt-1"
}

{
  "return": {},
  "id": "libvirt-1"
}

{
  "execute": "query-machines",
  "id": "libvirt-2"
}

{
  "return": [],
  "id": "libvirt-2"
}
"#;

    fn client(r: &Replay) -> QmpClient {
        let (rd, wr, close) = r.connect();
        QmpClient::from_stream(rd, wr, close, ClientOptions::default()).unwrap()
    }

    #[test]
    fn transcript_splits_into_phases() {
        let t = Transcript::parse(TEXT).unwrap();
        assert_eq!(t.phases.len(), 2);
        assert_eq!(t.phases[0].len(), 4);
        assert_eq!(t.phases[1][1].execute, "query-machines");
        assert_eq!(t.phases[0][3].arguments, json!({}));
    }

    #[test]
    fn requests_match_on_arguments_not_order() {
        let r = Replay::new(Transcript::parse(TEXT).unwrap(), false);
        let c = client(&r);
        let e = c
            .execute("device-list-properties", Some(json!({"typename": "b"})))
            .unwrap_err();
        assert_eq!(e.qmp_class(), Some("DeviceNotFound"));
        let v = c
            .execute("device-list-properties", Some(json!({"typename": "a"})))
            .unwrap();
        assert_eq!(v, json!([{"name": "x"}]));
        // Not left in this phase: answered with an error, never made up.
        let e = c.execute("query-machines", None).unwrap_err();
        assert_eq!(e.qmp_class(), Some("GenericError"));
        let e = c.execute("no-such-command", None).unwrap_err();
        assert_eq!(e.qmp_class(), Some("CommandNotFound"));
        assert_eq!(r.unanswered().len(), 2);
        assert_eq!(r.unused().len(), 1); // query-kvm
    }

    #[test]
    fn a_new_connection_enters_the_next_phase() {
        let r = Replay::new(Transcript::parse(TEXT).unwrap(), false);
        let c1 = client(&r);
        c1.execute("query-kvm", None).unwrap();
        drop(c1);
        let c2 = client(&r);
        assert_eq!(c2.execute("query-machines", None).unwrap(), json!([]));
        assert_eq!(r.phases_entered(), 2);
        assert_eq!(r.unused().len(), 2);
        assert!(r.unanswered().is_empty());
    }

    #[test]
    fn second_handshake_on_one_stream_enters_the_next_phase() {
        let r = Replay::new(Transcript::parse(TEXT).unwrap(), false);
        let c = client(&r);
        c.execute("qmp_capabilities", None).unwrap();
        assert_eq!(c.execute("query-machines", None).unwrap(), json!([]));
        assert_eq!(r.phases_entered(), 2);
        assert_eq!(r.unused().len(), 3);
    }

    #[test]
    fn strict_mode_closes_on_divergence() {
        let r = Replay::new(Transcript::parse(TEXT).unwrap(), true);
        let c = client(&r);
        assert!(c.execute("nope", None).is_err());
        assert!(c.execute("query-kvm", None).is_err());
    }

    #[test]
    fn malformed_transcripts_are_rejected() {
        assert!(Transcript::parse("{\"execute\": \"a\"}\n\n{nope}").is_err());
        assert!(Transcript::parse("{\"execute\": \"a\"}").is_err());
        assert!(Transcript::parse("{\"return\": {}}\n\n{\"return\": {}}").is_err());
    }
}
