//! Change events: the small JSON documents on the Kafka topic between detector and renderer.
//! They carry identities and the change version, never row data; the renderer reads what it
//! needs from the replica through the schedule's merge function.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Channel, MessageKey};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEvent {
    pub tenant: String,
    pub schedule_id: i64,
    pub channel: Channel,
    /// The changed row's key, in the source's text form.
    pub source_key: String,
    /// The row's change-column value, in the source's text form.
    pub change_version: String,
    pub detected_at: DateTime<Utc>,
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

    pub fn from_json(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let event = ChangeEvent {
            tenant: "acme".into(),
            schedule_id: 7,
            channel: Channel::Sms,
            source_key: "42".into(),
            change_version: "2026-11-22 10:00:00.123456+00".into(),
            detected_at: Utc::now(),
        };
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
}
