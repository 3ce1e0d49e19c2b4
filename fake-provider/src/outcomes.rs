//! What becomes of an accepted message, as the provider later reports it: rules matched on the
//! recipient, in the order they were added (the first that matches and fits the channel
//! decides; none, `delivered`). Set at start with `--outcome` or over `/_fake/outcomes`.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Channel;

/// How a message ends at the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// Email: `processed`, `delivered`. SMS: `sent`, `delivered`.
    Delivered,
    /// Email: `processed`, `deferred` (the receiving server said try later), `delivered`.
    Deferred,
    /// Email: `processed`, `bounce` of type `bounce` (a hard bounce: the address is dead).
    Bounce,
    /// Email: `processed`, `bounce` of type `blocked` (a temporary refusal).
    Blocked,
    /// Email: `processed`, `dropped` (SendGrid did not try; default reason `Bounced Address`).
    Dropped,
    /// Email: `processed`, `delivered`, `spamreport` (the recipient marked it as spam).
    Spamreport,
    /// Email: `processed`, `delivered`, `unsubscribe` (SendGrid's subscription tracking).
    Unsubscribe,
    /// SMS: `sent`, `undelivered` with `error_code` (default 30003, handset unreachable;
    /// 21610 means the recipient replied STOP).
    Undelivered,
    /// SMS: `failed` with `error_code` (default 30008, unknown error).
    Failed,
}

impl Report {
    fn channel(self) -> Option<Channel> {
        match self {
            Report::Delivered => None,
            Report::Undelivered | Report::Failed => Some(Channel::Sms),
            _ => Some(Channel::Email),
        }
    }
}

/// A rule as posted to `/_fake/outcomes` or given with `--outcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The recipients it applies to: an address or number, where `*` stands for any run of
    /// characters; any letter case.
    pub to: String,
    pub report: Report,
    /// The reason or SMTP response the report carries, instead of the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Twilio's `ErrorCode` on `undelivered` and `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    /// How long after the first report (`processed`, `sent`) the rest follow (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// Reports follow one another this long apart unless a rule says otherwise.
pub(crate) const REPORT_GAP: Duration = Duration::from_millis(50);

impl Outcome {
    fn check(self) -> Result<Self, String> {
        if self.to.is_empty() {
            return Err("`to` must name a recipient or a pattern".into());
        }
        if self.error_code.is_some() && self.report.channel() != Some(Channel::Sms) {
            return Err("only `undelivered` and `failed` carry an error_code".into());
        }
        Ok(self)
    }

    fn applies(&self, channel: Channel, recipient: &str) -> bool {
        self.report.channel().is_none_or(|c| c == channel)
            && glob_match(&self.to.to_lowercase(), &recipient.to_lowercase())
    }

    /// The gap between the first report and the rest.
    pub(crate) fn delay(&self) -> Duration {
        self.delay_ms.map_or(REPORT_GAP, Duration::from_millis)
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Parses one rule or an array of them.
pub fn parse_outcomes(json: &str) -> Result<Vec<Outcome>, String> {
    crate::parse_one_or_many::<Outcome>(json, "outcome")?
        .into_iter()
        .map(Outcome::check)
        .collect()
}

/// The rules in force, in the order they were added.
#[derive(Debug, Default)]
pub struct Outcomes(Mutex<Vec<Outcome>>);

impl Outcomes {
    pub fn push(&self, outcomes: impl IntoIterator<Item = Outcome>) {
        self.lock().extend(outcomes);
    }

    pub fn list(&self) -> Vec<Outcome> {
        self.lock().clone()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The rule deciding what becomes of a message to `recipient`; `None`: delivered.
    pub(crate) fn for_recipient(&self, channel: Channel, recipient: &str) -> Option<Outcome> {
        self.lock()
            .iter()
            .find(|rule| rule.applies(channel, recipient))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Outcome>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_any_run_of_characters_in_any_case() {
        assert!(glob_match("bounce-*@example.com", "bounce-7@example.com"));
        assert!(glob_match("bounce-*@example.com", "bounce-@example.com"));
        assert!(!glob_match("bounce-*@example.com", "bounce-7@example.org"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("+1555*", "+15550000001"));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(!glob_match("a*b*c", "a-c"));
        assert!(!glob_match("ab*ba", "aba"), "the ends may not overlap");
        assert!(glob_match("exact@example.com", "exact@example.com"));
        assert!(!glob_match("exact@example.com", "exact@example.comx"));
        let outcomes = Outcomes::default();
        outcomes.push(parse_outcomes(r#"{"to":"Bounce@Example.com","report":"bounce"}"#).unwrap());
        assert!(
            outcomes
                .for_recipient(Channel::Email, "bounce@example.COM")
                .is_some()
        );
    }

    #[test]
    fn the_first_rule_that_fits_the_channel_decides() {
        let outcomes = Outcomes::default();
        outcomes.push(
            parse_outcomes(
                r#"[{"to":"*","report":"undelivered","error_code":21610},
                    {"to":"*@example.com","report":"spamreport"},
                    {"to":"*","report":"bounce"}]"#,
            )
            .unwrap(),
        );
        let report = |channel, to| outcomes.for_recipient(channel, to).map(|o| o.report);
        assert_eq!(
            report(Channel::Sms, "+15550000001"),
            Some(Report::Undelivered)
        );
        assert_eq!(
            report(Channel::Email, "a@example.com"),
            Some(Report::Spamreport)
        );
        assert_eq!(
            report(Channel::Email, "a@example.org"),
            Some(Report::Bounce)
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        assert!(parse_outcomes(r#"{"to":"*","report":"exploded"}"#).is_err());
        assert!(parse_outcomes(r#"{"to":"","report":"bounce"}"#).is_err());
        assert!(parse_outcomes(r#"{"to":"*","report":"bounce","error_code":1}"#).is_err());
        assert!(parse_outcomes(r#"{"to":"*","report":"bounce","colour":"red"}"#).is_err());
    }
}
