//! libvirt's domain state and event codes, as they travel in replies and event
//! messages (from `libvirt-domain.h`).
//!
//! ```
//! use qvisor_rpc::events::{DomainEventId, DomainEventStartedDetail, DomainEventType};
//! use qvisor_rpc::remote::{DomainEventCallbackLifecycleMsg, DomainEventLifecycleMsg};
//!
//! // What a client registered for `eventID` 0 receives when a domain boots.
//! assert_eq!(DomainEventId::from_i32(0), Some(DomainEventId::Lifecycle));
//! assert_eq!(DomainEventId::Lifecycle.callback_procedure(), 318);
//! let msg = DomainEventCallbackLifecycleMsg {
//!     callback_id: 1,
//!     msg: DomainEventLifecycleMsg {
//!         dom: Default::default(),
//!         event: DomainEventType::Started as i32,
//!         detail: DomainEventStartedDetail::Booted as i32,
//!     },
//! };
//! # let _ = msg;
//! ```

#[path = "generated/domain_events.rs"]
mod codes;

pub use codes::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedures::{procedure, remote_proc};
    use crate::Program;

    #[test]
    fn every_event_id_maps_to_a_callback_message_procedure() {
        for id in 0..27 {
            let event = DomainEventId::from_i32(id).unwrap();
            let p = procedure(Program::Remote, event.callback_procedure()).unwrap();
            assert!(
                p.name.starts_with("REMOTE_PROC_DOMAIN_EVENT_"),
                "{}",
                p.name
            );
        }
        assert!(DomainEventId::from_i32(27).is_none());
        assert_eq!(
            DomainEventId::Reboot.callback_procedure(),
            remote_proc::DOMAIN_EVENT_CALLBACK_REBOOT
        );
        assert_eq!(
            DomainEventId::BlockThreshold.callback_procedure(),
            remote_proc::DOMAIN_EVENT_BLOCK_THRESHOLD
        );
    }

    #[test]
    fn lifecycle_codes_match_libvirt() {
        assert_eq!(DomainEventType::Started as i32, 2);
        assert_eq!(DomainEventType::Stopped as i32, 5);
        assert_eq!(DomainEventStoppedDetail::Destroyed as i32, 1);
        assert_eq!(DomainEventShutdownDetail::Host as i32, 2);
        assert_eq!(DomainEventResumedDetail::Unpaused as i32, 0);
        assert_eq!(DomainState::Running as i32, 1);
        assert_eq!(DomainState::Pmsuspended as i32, 7);
        assert_eq!(DomainRunningReason::Booted as i32, 1);
        assert_eq!(DomainShutoffReason::Destroyed as i32, 2);
    }
}
