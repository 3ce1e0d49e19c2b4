//! The in-memory record of every request made to the provider endpoints.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// Which provider a request was made to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SendGrid v3 Mail Send.
    Email,
    /// Twilio Messages.
    Sms,
}

/// One request to a provider endpoint, as shown by `GET /_fake/messages`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// 1-based arrival order; never reused, not even after the records are cleared.
    pub seq: u64,
    /// When the request arrived (serialized as RFC 3339 with milliseconds).
    #[serde(serialize_with = "rfc3339_millis")]
    pub received_at: DateTime<Utc>,
    /// When the answer was ready: after the configured latency and any `slow` fault.
    #[serde(serialize_with = "rfc3339_millis")]
    pub answered_at: DateTime<Utc>,
    pub channel: Channel,
    /// The provider account the request was made as: the SendGrid API key of its
    /// `Authorization: Bearer` header, or the Account SID in the Twilio URL (whether or not
    /// the provider took the credentials); `None` for a SendGrid request without a bearer
    /// token.
    #[serde(default)]
    pub account: Option<String>,
    /// HTTP status sent back, or `None` when the connection was dropped.
    pub status: Option<u16>,
    /// The provider took the message (202/201, or a valid message hit by a `drop` fault).
    pub accepted: bool,
    /// The connection was closed without any response (`drop` fault).
    pub dropped: bool,
    /// `X-Message-Id` (SendGrid) or `sid` (Twilio) when accepted.
    pub provider_message_id: Option<String>,
    /// Recipient addresses (every personalization's `to`) or the SMS `To` number.
    pub to: Vec<String>,
    /// The sender: the email's `from.email`, or the SMS `From` (`None` when an SMS named only
    /// a `MessagingServiceSid`).
    pub from: Option<String>,
    /// The SMS's `MessagingServiceSid` (`MG…`), when it was sent through a messaging service.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    pub subject: Option<String>,
    /// `text/plain` content, or the SMS `Body`.
    pub text: Option<String>,
    pub html: Option<String>,
    /// Top-level `custom_args` merged with every personalization's.
    pub custom_args: BTreeMap<String, String>,
    /// Email headers asked for: the request's `headers` merged with every personalization's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// First error message when the request was rejected.
    pub error: Option<String>,
    /// The request body: JSON as sent, form fields as a JSON object, or the text of an unparsable body.
    pub raw: Value,
}

impl Received {
    fn matches(&self, channel: Option<Channel>, accepted: Option<bool>) -> bool {
        channel.is_none_or(|c| self.channel == c) && accepted.is_none_or(|a| self.accepted == a)
    }
}

fn rfc3339_millis<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Thread-safe list of [`Received`] records, ordered by `seq`.
#[derive(Debug, Default)]
pub struct Store {
    next_seq: AtomicU64,
    records: Mutex<Vec<Received>>,
}

impl Store {
    /// Allocates the sequence number and timestamp of a request that just arrived.
    pub(crate) fn arrive(&self) -> (u64, DateTime<Utc>) {
        (
            self.next_seq.fetch_add(1, Ordering::Relaxed) + 1,
            Utc::now(),
        )
    }

    /// Adds a finished record, keeping the list in arrival order.
    pub(crate) fn insert(&self, record: Received) {
        let mut records = self.records.lock().expect("store lock poisoned");
        let at = records.partition_point(|r| r.seq < record.seq);
        records.insert(at, record);
    }

    /// Records matching the optional channel / accepted filters, in arrival order.
    pub fn list(&self, channel: Option<Channel>, accepted: Option<bool>) -> Vec<Received> {
        let records = self.records.lock().expect("store lock poisoned");
        records
            .iter()
            .filter(|r| r.matches(channel, accepted))
            .cloned()
            .collect()
    }

    /// How many records [`list`](Self::list) would return, without copying them.
    pub fn count(&self, channel: Option<Channel>, accepted: Option<bool>) -> usize {
        let records = self.records.lock().expect("store lock poisoned");
        records
            .iter()
            .filter(|r| r.matches(channel, accepted))
            .count()
    }

    pub fn clear(&self) {
        self.records.lock().expect("store lock poisoned").clear();
    }
}
