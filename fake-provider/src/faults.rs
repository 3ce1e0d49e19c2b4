//! Injected faults: a FIFO of [`Fault`]s consumed by matching provider requests.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::Channel;

/// What a fault does to the request it hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 with the provider's rate-limit headers; the limit resets after `reset_after_secs`.
    RateLimit {
        #[serde(default = "one_sec")]
        reset_after_secs: u64,
    },
    /// A 5xx answer (default 500).
    ServerError {
        #[serde(default = "internal_error")]
        status: u16,
    },
    /// Wait `delay_ms`, then handle the request normally.
    Slow { delay_ms: u64 },
    /// Validate and record the request, then close the connection without answering.
    Drop,
    /// The provider's answer to credentials it does not take (401), as for a revoked key.
    Unauthorized,
}

/// A fault as posted to `/_fake/faults` or given with `--fault`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many matching requests it applies to (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// Only requests to this channel match; `None` matches both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Only requests made as this account match: sent with this SendGrid API key, or to
    /// and as this Twilio Account SID. `None` matches any account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Instead of `times`: every matching request for this long after it is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

fn one() -> u32 {
    1
}
fn one_sec() -> u64 {
    1
}
fn internal_error() -> u16 {
    500
}

impl Fault {
    /// A fault that applies once to either channel.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            times: 1,
            channel: None,
            account: None,
            for_ms: None,
        }
    }

    fn check(self) -> Result<Self, String> {
        if self.times == 0 {
            return Err("times must be at least 1".into());
        }
        if self.account.as_deref() == Some("") {
            return Err("account must name a SendGrid API key or a Twilio Account SID".into());
        }
        if let FaultKind::ServerError { status } = self.kind
            && !(500..=599).contains(&status)
        {
            return Err(format!("server_error status must be 5xx, got {status}"));
        }
        Ok(self)
    }

    /// Whether a request to `channel`, made as `account`, matches.
    fn matches(&self, channel: Channel, account: &str) -> bool {
        self.channel.is_none_or(|c| c == channel)
            && self.account.as_deref().is_none_or(|a| a == account)
    }
}

/// Shows a Twilio Account SID, but not a SendGrid API key (a secret).
impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let account = self.account.as_deref().map(crate::accounts::shown);
        f.debug_struct("Fault")
            .field("kind", &self.kind)
            .field("times", &self.times)
            .field("channel", &self.channel)
            .field("account", &account)
            .field("for_ms", &self.for_ms)
            .finish()
    }
}

/// Parses one fault object or an array of them.
pub fn parse_faults(json: &str) -> Result<Vec<Fault>, String> {
    crate::parse_one_or_many::<Fault>(json, "fault")?
        .into_iter()
        .map(Fault::check)
        .collect()
}

/// Pending faults, applied in FIFO order; a timed one with the instant it ends.
#[derive(Debug, Default)]
pub struct FaultQueue(Mutex<VecDeque<(Fault, Option<Instant>)>>);

impl FaultQueue {
    pub fn push(&self, faults: impl IntoIterator<Item = Fault>) {
        let now = Instant::now();
        let timed = faults.into_iter().map(|f| {
            let ends = f.for_ms.map(|ms| now + Duration::from_millis(ms));
            (f, ends)
        });
        self.lock().extend(timed);
    }

    pub fn pending(&self) -> Vec<Fault> {
        let mut queue = self.lock();
        expire(&mut queue);
        queue.iter().map(|(f, _)| f.clone()).collect()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Consumes one application of the first fault matching a request to `channel` made as
    /// `account` (its SendGrid API key or Twilio Account SID).
    pub(crate) fn take(&self, channel: Channel, account: &str) -> Option<FaultKind> {
        let mut queue = self.lock();
        expire(&mut queue);
        let at = queue
            .iter()
            .position(|(f, _)| f.matches(channel, account))?;
        let (fault, ends) = &mut queue[at];
        let kind = fault.kind.clone();
        if ends.is_none() {
            fault.times -= 1;
            if fault.times == 0 {
                queue.remove(at);
            }
        }
        Some(kind)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Fault, Option<Instant>)>> {
        self.0.lock().expect("fault lock poisoned")
    }
}

/// Drops the timed faults whose time is up.
fn expire(queue: &mut VecDeque<(Fault, Option<Instant>)>) {
    let now = Instant::now();
    queue.retain(|(_, ends)| ends.is_none_or(|ends| now < ends));
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "SG.fake-key";
    const SID: &str = "ACf4ce0000000000000000000000000000";

    #[test]
    fn parses_single_and_array_with_defaults() {
        let one = parse_faults(r#"{"kind":"server_error"}"#).unwrap();
        assert_eq!(
            one,
            vec![Fault::new(FaultKind::ServerError { status: 500 })]
        );
        let many = parse_faults(
            r#"[{"kind":"drop","channel":"sms","times":2},{"kind":"slow","delay_ms":5}]"#,
        )
        .unwrap();
        assert_eq!(many[0].kind, FaultKind::Drop);
        assert_eq!((many[0].times, many[0].channel), (2, Some(Channel::Sms)));
        assert_eq!(many[1].kind, FaultKind::Slow { delay_ms: 5 });
    }

    #[test]
    fn rejects_bad_faults() {
        assert!(parse_faults(r#"{"kind":"explode"}"#).is_err());
        assert!(parse_faults(r#"{"kind":"server_error","status":404}"#).is_err());
        assert!(parse_faults(r#"{"kind":"drop","times":0}"#).is_err());
        assert!(parse_faults(r#"{"kind":"slow"}"#).is_err());
    }

    #[test]
    fn take_is_fifo_per_channel_and_counts_times() {
        let q = FaultQueue::default();
        q.push(
            parse_faults(
                r#"[{"kind":"drop","channel":"sms"},{"kind":"slow","delay_ms":1,"times":2}]"#,
            )
            .unwrap(),
        );
        assert_eq!(
            q.take(Channel::Email, KEY),
            Some(FaultKind::Slow { delay_ms: 1 })
        );
        assert_eq!(q.take(Channel::Sms, SID), Some(FaultKind::Drop));
        assert_eq!(
            q.take(Channel::Sms, SID),
            Some(FaultKind::Slow { delay_ms: 1 })
        );
        assert_eq!(q.take(Channel::Email, KEY), None);
        assert!(q.pending().is_empty());
    }

    #[test]
    fn a_timed_fault_applies_to_every_request_until_it_ends() {
        let q = FaultQueue::default();
        q.push(parse_faults(r#"{"kind":"unauthorized","channel":"email","for_ms":1000}"#).unwrap());
        for _ in 0..3 {
            assert_eq!(q.take(Channel::Email, KEY), Some(FaultKind::Unauthorized));
        }
        assert_eq!(q.take(Channel::Sms, SID), None);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(q.take(Channel::Email, KEY), None);
        assert!(q.pending().is_empty());
    }

    #[test]
    fn an_account_fault_matches_only_that_accounts_requests() {
        let q = FaultQueue::default();
        q.push(
            parse_faults(
                r#"[{"kind":"unauthorized","account":"SG.acme","for_ms":60000},
                    {"kind":"rate_limit","account":"ACacce0000000000000000000000000001","channel":"sms"}]"#,
            )
            .unwrap(),
        );
        assert_eq!(q.take(Channel::Email, KEY), None);
        assert_eq!(q.take(Channel::Sms, SID), None);
        assert_eq!(
            q.take(Channel::Email, "SG.acme"),
            Some(FaultKind::Unauthorized)
        );
        assert_eq!(
            q.take(Channel::Sms, "ACacce0000000000000000000000000001"),
            Some(FaultKind::RateLimit {
                reset_after_secs: 1
            })
        );
        assert_eq!(q.pending().len(), 1);
        assert_eq!(
            serde_json::to_value(q.pending()).unwrap()[0]["account"],
            "SG.acme"
        );
        assert!(!format!("{:?}", q.pending()).contains("SG.acme"));
        assert!(parse_faults(r#"{"kind":"drop","account":""}"#).is_err());
    }
}
