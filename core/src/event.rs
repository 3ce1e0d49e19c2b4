//! Change events: the small JSON documents on the Kafka topic between detector and renderer.
//! They carry identities and the change version, never row data; the renderer reads what it
//! needs from the replica through the schedule's merge function.
//!
//! The wire format evolves without lockstep upgrades: `format` is its major version (an event
//! without it is format 1); a field added compatibly does not change it, and readers ignore
//! fields they do not know, so a newer detector can roll out before the renderers. A reader
//! refuses a format newer than its own, with that reason.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Channel, MessageKey};

/// The format this build writes, and the newest it reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    #[serde(default = "first_format")]
    pub format: u32,
    pub tenant: String,
    pub schedule_id: i64,
    pub channel: Channel,
    /// The changed row's key, in the source's text form.
    pub source_key: String,
    /// The row's change-column value, in the source's text form.
    pub change_version: String,
    /// When the detector emitted the event: the renderer measures from it how long a row
    /// may stay absent from its replica.
    pub detected_at: DateTime<Utc>,
}

fn first_format() -> u32 {
    1
}

/// Why a payload is not a change event this renderer can act on.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a change event: {0}")]
    Unreadable(#[from] serde_json::Error),
    #[error("change event format {0} is newer than this renderer reads ({FORMAT}); upgrade it")]
    NewerFormat(u32),
    #[error("the event's {0} contains a NUL character, which no database text column holds")]
    Unstorable(&'static str),
}

impl ChangeEvent {
    /// The Kafka key: one source row's changes for one schedule stay in order on one partition.
    pub fn kafka_key(&self) -> String {
        format!("{}/{}/{}", self.tenant, self.schedule_id, self.source_key)
    }

    /// The identity of the notification this event asks for.
    pub fn message_key(&self) -> MessageKey {
        MessageKey {
            tenant: self.tenant.clone(),
            schedule_id: self.schedule_id,
            source_key: self.source_key.clone(),
            change_version: self.change_version.clone(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ChangeEvent always serializes")
    }

    /// Reads an event off the wire: JSON of a format this build knows, with an identity a
    /// database can store.
    pub fn from_json(payload: &[u8]) -> Result<Self, EventError> {
        let event: ChangeEvent = serde_json::from_slice(payload)?;
        if event.format > FORMAT {
            return Err(EventError::NewerFormat(event.format));
        }
        for (field, text) in [
            ("tenant", &event.tenant),
            ("source_key", &event.source_key),
            ("change_version", &event.change_version),
        ] {
            if text.contains('\0') {
                return Err(EventError::Unstorable(field));
            }
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ChangeEvent {
        ChangeEvent {
            format: FORMAT,
            tenant: "acme".into(),
            schedule_id: 7,
            channel: Channel::Sms,
            source_key: "42".into(),
            change_version: "2026-11-22 10:00:00.123456+00".into(),
            detected_at: Utc::now(),
        }
    }

    #[test]
    fn round_trips_through_json() {
        let event = event();
        assert_eq!(ChangeEvent::from_json(&event.to_json()).unwrap(), event);
        assert_eq!(event.kafka_key(), "acme/7/42");
    }

    #[test]
    fn rejects_an_event_missing_its_version() {
        let error = ChangeEvent::from_json(
            br#"{"tenant":"acme","schedule_id":7,"channel":"sms","source_key":"42","detected_at":"2026-11-22T10:00:00Z"}"#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("change_version"), "{error}");
    }

    #[test]
    fn reads_fields_it_does_not_know_and_events_from_before_formats() {
        let mut json: serde_json::Value = serde_json::from_slice(&event().to_json()).unwrap();
        json["added_later"] = serde_json::json!({"any": "thing"});
        json.as_object_mut().unwrap().remove("format");
        let read = ChangeEvent::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(read.format, 1);
        assert_eq!(read.source_key, "42");
    }

    #[test]
    fn refuses_a_newer_format_and_what_no_database_can_store() {
        let newer = ChangeEvent {
            format: FORMAT + 1,
            ..event()
        };
        let error = ChangeEvent::from_json(&newer.to_json()).unwrap_err();
        assert!(error.to_string().contains("format 2 is newer"), "{error}");
        let nul = ChangeEvent {
            source_key: "4\u{0}2".into(),
            ..event()
        };
        let error = ChangeEvent::from_json(&nul.to_json()).unwrap_err();
        assert!(
            error.to_string().contains("source_key contains a NUL"),
            "{error}"
        );
    }
}
