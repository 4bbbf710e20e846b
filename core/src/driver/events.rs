//! The driver's event bus: every domain event goes to every subscriber
//! (RPC connections with registered callbacks, embedding applications).

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::state::DomainEvent;

/// Fan-out of domain events to subscribers.
#[derive(Default)]
pub struct EventBus {
    subscribers: Mutex<Vec<Sender<DomainEvent>>>,
}

impl EventBus {
    /// A new subscription; dropping the receiver unsubscribes (lazily).
    pub fn subscribe(&self) -> Receiver<DomainEvent> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.subscribers.lock().push(tx);
        rx
    }

    /// Sends `event` to every live subscriber.
    pub fn emit(&self, event: DomainEvent) {
        tracing::debug!(domain = %event.name, kind = ?event.kind, "event");
        self.subscribers
            .lock()
            .retain(|tx| tx.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::state::{EventKind, Lifecycle};

    fn ev() -> DomainEvent {
        DomainEvent {
            name: "d".into(),
            uuid: [0; 16],
            id: 1,
            kind: EventKind::Lifecycle(Lifecycle::Started),
        }
    }

    #[test]
    fn every_subscriber_gets_each_event_and_dropped_ones_are_pruned() {
        let bus = EventBus::default();
        let a = bus.subscribe();
        let b = bus.subscribe();
        bus.emit(ev());
        assert_eq!(a.try_recv().unwrap(), ev());
        assert_eq!(b.try_recv().unwrap(), ev());
        drop(b);
        bus.emit(ev());
        assert_eq!(bus.subscribers.lock().len(), 1);
    }
}
