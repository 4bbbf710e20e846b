//! Embedding qvisor in an application: open an embedded root, define and
//! start a domain, watch its events, stop it. No daemon, no event loop to run:
//! the connection has its own reader thread and may be used from any thread.
//!
//! ```sh
//! cargo run --example embed -- /var/tmp/qvisor-embed-example
//! ```

use std::time::Duration;

use qvisor_core::client::Connection;

const XML: &str = "<domain type='qemu'>
  <name>embed-example</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>";

fn main() -> anyhow::Result<()> {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/var/tmp/qvisor-embed-example".into());
    let conn = Connection::open(Some(&format!("qemu:///embed?root={root}")))?;
    let events = conn.events()?;

    conn.define_xml(XML)?;
    // Calls are safe from any thread: start the domain from another one.
    std::thread::scope(|s| s.spawn(|| conn.start("embed-example", false)).join())
        .expect("start thread")?;
    let dom = conn.lookup("embed-example")?;
    println!("started embed-example, id {}", dom.id);

    conn.destroy("embed-example")?;
    conn.undefine("embed-example")?;

    // Started, Stopped and Undefined (plus Defined and Resumed) arrive here.
    while let Ok(ev) = events.recv_timeout(Duration::from_secs(2)) {
        println!("event: {} {:?}", ev.name, ev.kind);
        if matches!(
            ev.kind,
            qvisor_core::driver::EventKind::Lifecycle(qvisor_core::driver::Lifecycle::Undefined)
        ) {
            break;
        }
    }
    Ok(())
}
