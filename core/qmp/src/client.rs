//! The QMP client: one connection, a reader thread that splits replies from
//! events, `libvirt-N` command ids.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// An asynchronous QMP event (`SHUTDOWN`, `RESET`, `STOP`, `RESUME`,
/// `GUEST_PANICKED`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Event data (`{}` when QEMU sent none).
    pub data: Value,
    /// QEMU's timestamp as (seconds, microseconds), when present.
    pub timestamp: Option<(i64, i64)>,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long to wait for the greeting and for each reply.
    pub timeout: Duration,
    /// Prefix of command ids; ids are `PREFIX-N` counting from 1.
    pub id_prefix: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            id_prefix: "libvirt".to_string(),
        }
    }
}

type Closer = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Pending {
    waiting: HashMap<String, Sender<Value>>,
    closed: bool,
}

/// A connected QMP monitor. Commands may be issued from several threads;
/// events arrive on the receiver from [`QmpClient::take_events`].
pub struct QmpClient {
    writer: Mutex<Box<dyn Write + Send>>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    options: ClientOptions,
    greeting: Value,
    events: Mutex<Option<Receiver<Event>>>,
    closer: Mutex<Option<Closer>>,
    reader: Option<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl QmpClient {
    /// Connects to a QMP Unix socket, waits for the greeting and negotiates
    /// capabilities (`qmp_capabilities`).
    pub fn connect_unix(path: impl AsRef<Path>, options: ClientOptions) -> Result<QmpClient> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        QmpClient::from_unix_stream(stream, options)
    }

    /// Runs the client over an already connected Unix stream.
    pub fn from_unix_stream(stream: UnixStream, options: ClientOptions) -> Result<QmpClient> {
        let io_err = |source| Error::Greeting {
            reason: format!("cannot set up the monitor socket: {source}"),
        };
        stream
            .set_write_timeout(Some(options.timeout))
            .map_err(io_err)?;
        let reader = stream.try_clone().map_err(io_err)?;
        let closer_stream = stream.try_clone().map_err(io_err)?;
        QmpClient::from_stream(
            Box::new(reader),
            Box::new(stream),
            Some(Box::new(move || {
                let _ = closer_stream.shutdown(std::net::Shutdown::Both);
            })),
            options,
        )
    }

    /// Runs the client over any byte stream: `reader` and `writer` are the
    /// two directions, `closer` (if any) is called on drop to unblock the
    /// reader. Waits for the greeting and sends `qmp_capabilities`.
    pub fn from_stream(
        reader: Box<dyn Read + Send>,
        writer: Box<dyn Write + Send>,
        closer: Option<Closer>,
        options: ClientOptions,
    ) -> Result<QmpClient> {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (greet_tx, greet_rx) = mpsc::channel();
        let (event_tx, event_rx) = mpsc::channel();
        let thread_pending = Arc::clone(&pending);
        let reader = std::thread::Builder::new()
            .name("qmp-reader".into())
            .spawn(move || reader_loop(reader, &thread_pending, greet_tx, event_tx))
            .map_err(|e| Error::Greeting {
                reason: format!("cannot start the monitor reader thread: {e}"),
            })?;
        let mut client = QmpClient {
            writer: Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            greeting: Value::Null,
            events: Mutex::new(Some(event_rx)),
            closer: Mutex::new(closer),
            reader: Some(reader),
            options,
        };
        client.greeting = match greet_rx.recv_timeout(client.options.timeout) {
            Ok(g) => g,
            Err(RecvTimeoutError::Timeout) => {
                return Err(Error::Greeting {
                    reason: format!("nothing received within {:?}", client.options.timeout),
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Greeting {
                    reason: "connection closed".to_string(),
                })
            }
        };
        client.execute("qmp_capabilities", None)?;
        Ok(client)
    }

    /// The greeting QEMU sent (`{"QMP": {"version": ..., "capabilities": ...}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Takes the event receiver (once). Events that arrive while nobody holds
    /// it are queued.
    pub fn take_events(&self) -> Option<Receiver<Event>> {
        lock(&self.events).take()
    }

    /// Runs a command and returns its `return` value, or
    /// [`Error::Command`] with QEMU's class and description.
    pub fn execute(&self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.execute_with_timeout(command, arguments, self.options.timeout)
    }

    /// [`QmpClient::execute`] with its own timeout.
    pub fn execute_with_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let mut msg = Map::new();
        msg.insert("execute".into(), Value::String(command.to_string()));
        if let Some(args) = arguments {
            msg.insert("arguments".into(), args);
        }
        let reply = self.round_trip(msg, command, timeout)?;
        reply_result(command, reply)
    }

    /// Sends a caller-built command object as it is (plus our `id`) and
    /// returns QEMU's whole reply object, `id` included, whether it carries
    /// `return` or `error` (libvirt's arbitrary monitor command).
    pub fn execute_raw(&self, command: Map<String, Value>) -> Result<Value> {
        let name = command
            .get("execute")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.round_trip(command, &name, self.options.timeout)
    }

    /// Sends `msg` with a fresh id and waits for the reply carrying it.
    fn round_trip(
        &self,
        mut msg: Map<String, Value>,
        command: &str,
        timeout: Duration,
    ) -> Result<Value> {
        let id = format!(
            "{}-{}",
            self.options.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        msg.insert("id".into(), Value::String(id.clone()));
        let mut line = serde_json::to_vec(&Value::Object(msg)).unwrap_or_default();
        line.extend_from_slice(b"\r\n");

        let (tx, rx) = mpsc::channel();
        {
            let mut p = lock(&self.pending);
            if p.closed {
                return Err(Error::Closed {
                    command: command.to_string(),
                });
            }
            p.waiting.insert(id.clone(), tx);
        }
        let sent = {
            let mut w = lock(&self.writer);
            w.write_all(&line).and_then(|_| w.flush())
        };
        if let Err(source) = sent {
            lock(&self.pending).waiting.remove(&id);
            return Err(Error::Send {
                command: command.to_string(),
                source,
            });
        }
        match rx.recv_timeout(timeout) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => {
                lock(&self.pending).waiting.remove(&id);
                Err(Error::Timeout {
                    command: command.to_string(),
                    after: timeout,
                })
            }
            Err(RecvTimeoutError::Disconnected) => Err(Error::Closed {
                command: command.to_string(),
            }),
        }
    }
}

/// Turns a reply object into the command's result.
fn reply_result(command: &str, mut reply: Value) -> Result<Value> {
    if let Some(ret) = reply.get_mut("return") {
        return Ok(ret.take());
    }
    if let Some(err) = reply.get("error") {
        let text = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        return Err(Error::Command {
            command: command.to_string(),
            class: text("class"),
            desc: text("desc"),
        });
    }
    Err(Error::Protocol {
        command: command.to_string(),
        reply: reply.to_string(),
    })
}

fn reader_loop(
    reader: Box<dyn Read + Send>,
    pending: &Mutex<Pending>,
    greeting: Sender<Value>,
    events: Sender<Event>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::new();
    let mut greeted = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let Ok(msg) = serde_json::from_slice::<Value>(text) else {
            continue;
        };
        if msg.get("QMP").is_some() && !greeted {
            greeted = true;
            let _ = greeting.send(msg);
        } else if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let timestamp = msg.get("timestamp").and_then(|t| {
                Some((
                    t.get("seconds")?.as_i64()?,
                    t.get("microseconds")?.as_i64()?,
                ))
            });
            let _ = events.send(Event {
                name: name.to_string(),
                data: msg.get("data").cloned().unwrap_or_else(|| json!({})),
                timestamp,
            });
        } else if msg.get("return").is_some() || msg.get("error").is_some() {
            let mut p = lock(pending);
            let target = match msg.get("id").and_then(Value::as_str) {
                Some(id) => p.waiting.remove(id),
                // QEMU omits the id when it could not parse the command:
                // with a single command outstanding the reply is its.
                None if p.waiting.len() == 1 => {
                    let k = p.waiting.keys().next().cloned().unwrap_or_default();
                    p.waiting.remove(&k)
                }
                None => None,
            };
            if let Some(tx) = target {
                let _ = tx.send(msg);
            }
        }
    }
    let mut p = lock(pending);
    p.closed = true;
    p.waiting.clear();
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        if let Some(close) = lock(&self.closer).take() {
            close();
        }
        {
            let mut p = lock(&self.pending);
            p.waiting.clear();
        }
        if let Some(h) = self.reader.take() {
            // Without a closer the reader ends when the peer closes; do not
            // block the dropping thread on it.
            if h.is_finished() || lock(&self.pending).closed {
                let _ = h.join();
            }
        }
    }
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("greeting", &self.greeting)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QEMU on the other end of a socket pair, driven by a script.
    fn fake_qemu(
        script: impl FnOnce(BufReader<UnixStream>, UnixStream) + Send + 'static,
    ) -> UnixStream {
        let (ours, theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let r = BufReader::new(theirs.try_clone().unwrap());
            script(r, theirs)
        });
        ours
    }

    fn read_cmd(r: &mut BufReader<UnixStream>) -> Value {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap()
    }

    fn greet(w: &mut UnixStream) {
        w.write_all(b"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}}, \"capabilities\": [\"oob\"]}}\r\n").unwrap();
    }

    #[test]
    fn handshake_then_commands_use_libvirt_ids() {
        let s = fake_qemu(|mut r, mut w| {
            greet(&mut w);
            let c = read_cmd(&mut r);
            assert_eq!(c, json!({"execute": "qmp_capabilities", "id": "libvirt-1"}));
            w.write_all(b"{\"return\": {}, \"id\": \"libvirt-1\"}\r\n")
                .unwrap();
            let c = read_cmd(&mut r);
            assert_eq!(c["id"], "libvirt-2");
            assert_eq!(c["arguments"], json!({"typename": "x"}));
            w.write_all(b"{\"return\": [1, 2], \"id\": \"libvirt-2\"}\r\n")
                .unwrap();
            let c = read_cmd(&mut r);
            assert_eq!(c["execute"], "bogus");
            w.write_all(b"{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command bogus has not been found\"}, \"id\": \"libvirt-3\"}\r\n").unwrap();
        });
        let c = QmpClient::from_unix_stream(s, ClientOptions::default()).unwrap();
        assert_eq!(c.greeting()["QMP"]["version"]["qemu"]["minor"], 2);
        let v = c
            .execute("qom-list-properties", Some(json!({"typename": "x"})))
            .unwrap();
        assert_eq!(v, json!([1, 2]));
        let e = c.execute("bogus", None).unwrap_err();
        assert_eq!(e.qmp_class(), Some("CommandNotFound"));
        assert!(e.to_string().contains("has not been found"), "{e}");
    }

    #[test]
    fn events_are_split_from_replies() {
        let s = fake_qemu(|mut r, mut w| {
            greet(&mut w);
            read_cmd(&mut r);
            w.write_all(b"{\"return\": {}, \"id\": \"libvirt-1\"}\r\n")
                .unwrap();
            read_cmd(&mut r);
            w.write_all(
                b"{\"timestamp\": {\"seconds\": 5, \"microseconds\": 7}, \"event\": \"STOP\"}\r\n",
            )
            .unwrap();
            w.write_all(b"{\"return\": {\"running\": false}, \"id\": \"libvirt-2\"}\r\n")
                .unwrap();
            w.write_all(b"{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, \"reason\": \"guest-shutdown\"}}\r\n").unwrap();
        });
        let c = QmpClient::from_unix_stream(s, ClientOptions::default()).unwrap();
        let events = c.take_events().unwrap();
        assert!(c.take_events().is_none());
        assert_eq!(c.execute("stop", None).unwrap(), json!({"running": false}));
        let e1 = events.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((e1.name.as_str(), e1.timestamp), ("STOP", Some((5, 7))));
        let e2 = events.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(e2.name, "SHUTDOWN");
        assert_eq!(e2.data["reason"], "guest-shutdown");
    }

    #[test]
    fn raw_command_returns_the_whole_reply_with_its_id() {
        let s = fake_qemu(|mut r, mut w| {
            greet(&mut w);
            read_cmd(&mut r);
            w.write_all(b"{\"return\": {}, \"id\": \"libvirt-1\"}\r\n")
                .unwrap();
            let c = read_cmd(&mut r);
            assert_eq!(c, json!({"execute": "query-status", "id": "libvirt-2"}));
            w.write_all(b"{\"return\": {\"running\": true}, \"id\": \"libvirt-2\"}\r\n")
                .unwrap();
            read_cmd(&mut r);
            w.write_all(b"{\"id\": \"libvirt-3\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}\r\n").unwrap();
        });
        let c = QmpClient::from_unix_stream(s, ClientOptions::default()).unwrap();
        let cmd = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let ok = c
            .execute_raw(cmd(json!({"execute": "query-status"})))
            .unwrap();
        assert_eq!(
            ok.to_string(),
            r#"{"return":{"running":true},"id":"libvirt-2"}"#
        );
        let err = c.execute_raw(cmd(json!({"execute": "bogus"}))).unwrap();
        assert_eq!(err["error"]["class"], "CommandNotFound");
        assert_eq!(err["id"], "libvirt-3");
    }

    #[test]
    fn silent_peer_times_out() {
        let s = fake_qemu(|mut r, mut w| {
            greet(&mut w);
            read_cmd(&mut r);
            w.write_all(b"{\"return\": {}, \"id\": \"libvirt-1\"}\r\n")
                .unwrap();
            read_cmd(&mut r);
            std::thread::sleep(Duration::from_millis(500));
        });
        let c = QmpClient::from_unix_stream(s, ClientOptions::default()).unwrap();
        let e = c
            .execute_with_timeout("query-status", None, Duration::from_millis(50))
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
    }

    #[test]
    fn peer_exit_reports_closed() {
        let s = fake_qemu(|mut r, mut w| {
            greet(&mut w);
            read_cmd(&mut r);
            w.write_all(b"{\"return\": {}, \"id\": \"libvirt-1\"}\r\n")
                .unwrap();
            read_cmd(&mut r);
        });
        let c = QmpClient::from_unix_stream(s, ClientOptions::default()).unwrap();
        let e = c.execute("quit", None).unwrap_err();
        assert!(matches!(e, Error::Closed { .. }), "{e}");
        let e = c.execute("query-status", None).unwrap_err();
        assert!(
            matches!(e, Error::Closed { .. } | Error::Send { .. }),
            "{e}"
        );
    }

    #[test]
    fn missing_greeting_is_an_error() {
        let s = fake_qemu(|_r, mut w| {
            w.write_all(b"not json\r\n").unwrap();
        });
        let opts = ClientOptions {
            timeout: Duration::from_millis(200),
            ..Default::default()
        };
        let e = QmpClient::from_unix_stream(s, opts).unwrap_err();
        assert!(matches!(e, Error::Greeting { .. }), "{e}");
    }

    #[test]
    fn connect_to_missing_socket_names_the_path() {
        let e =
            QmpClient::connect_unix("/nonexistent/qmp.sock", ClientOptions::default()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/qmp.sock"), "{e}");
    }

    #[test]
    fn connect_unix_talks_to_a_listening_socket() {
        let dir = std::env::temp_dir().join(format!("qvisor-qmp-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            greet(&mut w);
            read_cmd(&mut r);
            w.write_all(b"{\"return\": {}, \"id\": \"libvirt-1\"}\r\n")
                .unwrap();
        });
        let c = QmpClient::connect_unix(&path, ClientOptions::default()).unwrap();
        assert!(c.greeting().get("QMP").is_some());
        server.join().unwrap();
        drop(c);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
