//! Provider accounts: the SendGrid API keys and the Twilio accounts the fake takes, so that
//! each tenant can send through an account of its own. The [`Config`](crate::Config)'s
//! `sendgrid_api_key` and `twilio_account_sid` / `twilio_auth_token` are there from the
//! start; more come with [`Config::accounts`](crate::Config::accounts), `--account` or
//! `POST /_fake/accounts`. `DELETE /_fake/accounts/{key_or_sid}` revokes one (a default one
//! too): its requests get the provider's 401 from then on, as a revoked key's do (the events
//! of emails it sent before still come).
//!
//! Each SendGrid account has its own Event Webhook, as on SendGrid: its `events_url` (else the
//! config's `sendgrid_events_url`) and its own signing key pair, made when the fake first
//! learns the account: the default account's is the fixed development key
//! ([`sendgrid_verification_key`](crate::sendgrid_verification_key)), any other's is derived
//! from its API key (the same key, the same pair, from one run to the next).

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::events::EventKey;
use crate::store::Channel;
use crate::twilio::is_account_sid;

/// An account as posted to `/_fake/accounts` or given with `--account`:
/// `{"sendgrid_api_key":"SG.acme"}` (with `"events_url":"http://…"` for an Event Webhook
/// URL of its own) or
/// `{"twilio_account_sid":"AC<32 hex digits>","twilio_auth_token":"tok"}`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "AccountSpec")]
pub enum Account {
    /// Requests with `Authorization: Bearer <api_key>`.
    SendGrid {
        api_key: String,
        /// Where the Event Webhook posts the events of its emails; `None`: the config's
        /// `sendgrid_events_url`. An http(s) URL (checked when parsed from JSON, not when
        /// built in process).
        events_url: Option<String>,
    },
    /// Requests to `/2010-04-01/Accounts/<account_sid>/…` with Basic auth
    /// `<account_sid>:<auth_token>`.
    Twilio {
        account_sid: String,
        auth_token: String,
    },
}

impl Account {
    /// A SendGrid account whose events go to the config's `sendgrid_events_url`.
    pub fn sendgrid(api_key: impl Into<String>) -> Self {
        Account::SendGrid {
            api_key: api_key.into(),
            events_url: None,
        }
    }

    /// A SendGrid account whose events go to an Event Webhook URL of its own.
    pub fn sendgrid_with_events_url(
        api_key: impl Into<String>,
        events_url: impl Into<String>,
    ) -> Self {
        Account::SendGrid {
            api_key: api_key.into(),
            events_url: Some(events_url.into()),
        }
    }

    pub fn twilio(account_sid: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Account::Twilio {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
        }
    }

    /// What names it: the SendGrid API key or the Twilio Account SID.
    pub fn id(&self) -> &str {
        match self {
            Account::SendGrid { api_key, .. } => api_key,
            Account::Twilio { account_sid, .. } => account_sid,
        }
    }

    pub fn channel(&self) -> Channel {
        match self {
            Account::SendGrid { .. } => Channel::Email,
            Account::Twilio { .. } => Channel::Sms,
        }
    }
}

/// An account's identity as logs and debug output show it: a Twilio Account SID (no secret)
/// as it is, a SendGrid API key (a secret) not at all.
pub(crate) fn shown(key_or_sid: &str) -> &str {
    if is_account_sid(key_or_sid) {
        key_or_sid
    } else {
        "<redacted>"
    }
}

/// Shows the Account SID and the events URL but never the secrets.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::SendGrid { events_url, .. } => f
                .debug_struct("SendGrid")
                .field("api_key", &"<redacted>")
                .field("events_url", events_url)
                .finish(),
            Account::Twilio { account_sid, .. } => f
                .debug_struct("Twilio")
                .field("account_sid", account_sid)
                .field("auth_token", &"<redacted>")
                .finish(),
        }
    }
}

/// The wire shape of an [`Account`], checked into one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountSpec {
    #[serde(default)]
    sendgrid_api_key: Option<String>,
    #[serde(default)]
    twilio_account_sid: Option<String>,
    #[serde(default)]
    twilio_auth_token: Option<String>,
    /// A SendGrid account's own Event Webhook URL.
    #[serde(default)]
    events_url: Option<String>,
}

impl TryFrom<AccountSpec> for Account {
    type Error = String;

    fn try_from(spec: AccountSpec) -> Result<Self, String> {
        let account = match (
            spec.sendgrid_api_key,
            spec.twilio_account_sid,
            spec.twilio_auth_token,
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(
                "an account is SendGrid's (`sendgrid_api_key`) or Twilio's \
                 (`twilio_account_sid` and `twilio_auth_token`), not both"
                    .into(),
            ),
            (Some(key), None, None) if key.is_empty() => {
                Err("`sendgrid_api_key` must not be empty".into())
            }
            (Some(key), None, None) => Ok(Account::sendgrid(key)),
            (None, Some(sid), _) if !is_account_sid(&sid) => Err(format!(
                "`twilio_account_sid` {sid:?} is not an Account SID: AC followed by 32 hexadecimal digits"
            )),
            (None, Some(_), None) => Err("`twilio_auth_token` is required".into()),
            (None, Some(_), Some(token)) if token.is_empty() => {
                Err("`twilio_auth_token` must not be empty".into())
            }
            (None, Some(sid), Some(token)) => Ok(Account::twilio(sid, token)),
            (None, None, Some(_)) => Err("`twilio_auth_token` needs a `twilio_account_sid`".into()),
            (None, None, None) => Err(
                "an account needs `sendgrid_api_key`, or `twilio_account_sid` and `twilio_auth_token`"
                    .into(),
            ),
        }?;
        match (account, spec.events_url) {
            (account, None) => Ok(account),
            (Account::SendGrid { .. }, Some(url)) if !is_http_url(&url) => {
                Err(format!("`events_url` {url:?} is not an http(s) URL"))
            }
            (Account::SendGrid { api_key, .. }, Some(url)) => {
                Ok(Account::sendgrid_with_events_url(api_key, url))
            }
            (Account::Twilio { .. }, Some(_)) => Err(
                "`events_url` is a SendGrid account's: Twilio's status callbacks go to each \
                 message's `StatusCallback`"
                    .into(),
            ),
        }
    }
}

/// Whether `url` is an absolute `http` or `https` URL with a host.
fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty())
    })
}

/// Parses one account object or an array of them.
pub fn parse_accounts(json: &str) -> Result<Vec<Account>, String> {
    crate::parse_one_or_many::<Account>(json, "account")
}

/// An account as `GET /_fake/accounts` shows it: its key or SID, never its token; a SendGrid
/// account's with its own `events_url` (if it has one) and its `event_verification_key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sendgrid_api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_account_sid: Option<String>,
    /// A SendGrid account's own Event Webhook URL (`None`: the config's, if any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
    /// The public key a SendGrid account's events verify with: base64 DER
    /// (SubjectPublicKeyInfo), as [`sendgrid_verification_key`](crate::sendgrid_verification_key)
    /// gives the default account's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_verification_key: Option<String>,
    /// Revoked with `DELETE /_fake/accounts/{key_or_sid}`: its requests get 401.
    pub revoked: bool,
}

/// The accounts the fake knows, in the order they were added, each with whether it is revoked
/// and, a SendGrid one, its Event Webhook signing key.
#[derive(Debug, Default)]
pub struct Accounts(Mutex<Vec<Known>>);

#[derive(Debug)]
struct Known {
    account: Account,
    revoked: bool,
    /// A SendGrid account's; made when the account is first added, kept when it is added
    /// again.
    event_key: Option<EventKey>,
}

impl Accounts {
    /// The config's default accounts: the SendGrid one (`sendgrid_api_key`) signs its events
    /// with the fixed development key.
    pub(crate) fn with_defaults(sendgrid_api_key: &str, twilio: Account) -> Self {
        let accounts = Self::default();
        {
            let mut known = accounts.lock();
            Self::add(
                &mut known,
                Account::sendgrid(sendgrid_api_key),
                Some(EventKey::default_account()),
            );
            Self::add(&mut known, twilio, None);
        }
        accounts
    }

    /// Adds accounts. One the fake already knows (the same key, or the same Account SID) is
    /// taken back instead: no longer revoked, with the token and events URL given now (and
    /// its signing key of before). A new SendGrid account gets a signing key derived from its
    /// API key.
    pub fn push(&self, accounts: impl IntoIterator<Item = Account>) {
        let mut known = self.lock();
        for account in accounts {
            Self::add(&mut known, account, None);
        }
    }

    /// Adds `account` or takes it back; a new SendGrid one signs with `event_key`, or else
    /// with a key derived from its API key.
    fn add(known: &mut Vec<Known>, account: Account, event_key: Option<EventKey>) {
        match known
            .iter_mut()
            .find(|k| k.account.channel() == account.channel() && k.account.id() == account.id())
        {
            Some(entry) => {
                entry.account = account;
                entry.revoked = false;
            }
            None => {
                let event_key = match &account {
                    Account::SendGrid { api_key, .. } => {
                        Some(event_key.unwrap_or_else(|| EventKey::derived(api_key)))
                    }
                    Account::Twilio { .. } => None,
                };
                known.push(Known {
                    account,
                    revoked: false,
                    event_key,
                });
            }
        }
    }

    pub fn list(&self) -> Vec<AccountState> {
        self.lock()
            .iter()
            .map(|known| {
                let (sendgrid_api_key, twilio_account_sid, events_url) = match &known.account {
                    Account::SendGrid {
                        api_key,
                        events_url,
                    } => (Some(api_key.clone()), None, events_url.clone()),
                    Account::Twilio { account_sid, .. } => (None, Some(account_sid.clone()), None),
                };
                AccountState {
                    channel: known.account.channel(),
                    sendgrid_api_key,
                    twilio_account_sid,
                    events_url,
                    event_verification_key: known
                        .event_key
                        .as_ref()
                        .map(EventKey::verification_key),
                    revoked: known.revoked,
                }
            })
            .collect()
    }

    /// Revokes the account whose SendGrid API key or Twilio Account SID is `key_or_sid`;
    /// `false` if there is none. The events of the emails it sent before still come.
    pub fn revoke(&self, key_or_sid: &str) -> bool {
        let mut found = false;
        for known in self.lock().iter_mut() {
            if known.account.id() == key_or_sid {
                known.revoked = true;
                found = true;
            }
        }
        found
    }

    /// The public key that the events of the SendGrid account `api_key` (revoked or not)
    /// verify with: base64 DER (SubjectPublicKeyInfo), as `event_verification_key` in
    /// `GET /_fake/accounts`; `None` if the fake does not know the account.
    pub fn sendgrid_verification_key(&self, api_key: &str) -> Option<String> {
        self.sendgrid_event_key(api_key)
            .map(|key| key.verification_key())
    }

    /// The Event Webhook signature header's value for `body` sent with `timestamp` by the
    /// SendGrid account `api_key` (revoked or not), as the fake signs its events; `None` if
    /// the fake does not know the account. For forging an account's events in tests.
    pub fn sign_sendgrid_events(
        &self,
        api_key: &str,
        timestamp: &str,
        body: &[u8],
    ) -> Option<String> {
        self.sendgrid_event_key(api_key)
            .map(|key| key.sign(timestamp, body))
    }

    /// The Event Webhook of the SendGrid account `api_key` (revoked or not): its own events
    /// URL, if any, and its signing key.
    pub(crate) fn sendgrid_event_webhook(
        &self,
        api_key: &str,
    ) -> Option<(Option<String>, EventKey)> {
        self.lock()
            .iter()
            .find_map(|known| match (&known.account, &known.event_key) {
                (
                    Account::SendGrid {
                        api_key: key,
                        events_url,
                    },
                    Some(event_key),
                ) if key == api_key => Some((events_url.clone(), event_key.clone())),
                _ => None,
            })
    }

    fn sendgrid_event_key(&self, api_key: &str) -> Option<EventKey> {
        self.sendgrid_event_webhook(api_key).map(|(_, key)| key)
    }

    /// Whether `api_key` is a SendGrid account's key, not revoked.
    pub(crate) fn sendgrid_allows(&self, api_key: &str) -> bool {
        self.lock().iter().any(|known| {
            !known.revoked
                && matches!(&known.account, Account::SendGrid { api_key: key, .. } if key == api_key)
        })
    }

    /// Whether `account_sid:auth_token` are a Twilio account's credentials, not revoked.
    pub(crate) fn twilio_allows(&self, account_sid: &str, auth_token: &str) -> bool {
        self.lock().iter().any(|known| {
            !known.revoked
                && matches!(&known.account, Account::Twilio { account_sid: sid, auth_token: token }
                    if sid == account_sid && token == auth_token)
        })
    }

    /// The auth token of the Twilio account `account_sid` (revoked or not).
    pub(crate) fn twilio_token(&self, account_sid: &str) -> Option<String> {
        self.lock().iter().find_map(|known| match &known.account {
            Account::Twilio {
                account_sid: sid,
                auth_token,
            } if sid == account_sid => Some(auth_token.clone()),
            _ => None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Known>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "ACacce0000000000000000000000000001";

    #[test]
    fn parses_single_and_array() {
        assert_eq!(
            parse_accounts(r#"{"sendgrid_api_key":"SG.acme"}"#).unwrap(),
            [Account::sendgrid("SG.acme")]
        );
        let many = parse_accounts(&format!(
            r#"[{{"sendgrid_api_key":"SG.globex"}},
                {{"twilio_account_sid":"{SID}","twilio_auth_token":"tok"}}]"#
        ))
        .unwrap();
        assert_eq!(
            many,
            [Account::sendgrid("SG.globex"), Account::twilio(SID, "tok")]
        );
        assert_eq!(many[1].id(), SID);
        assert_eq!(many[1].channel(), Channel::Sms);
    }

    #[test]
    fn rejects_bad_accounts_with_reasons() {
        let error = |json: &str| parse_accounts(json).unwrap_err();
        assert!(error("{}").contains("an account needs"), "{}", error("{}"));
        assert!(error(r#"{"sendgrid_api_key":""}"#).contains("must not be empty"));
        let bad_sid = error(r#"{"twilio_account_sid":"ACnope","twilio_auth_token":"t"}"#);
        assert!(bad_sid.contains("32 hexadecimal digits"), "{bad_sid}");
        assert!(error(&format!(r#"{{"twilio_account_sid":"{SID}"}}"#)).contains("is required"));
        assert!(
            error(&format!(
                r#"{{"twilio_account_sid":"{SID}","twilio_auth_token":""}}"#
            ))
            .contains("must not be empty")
        );
        assert!(error(r#"{"twilio_auth_token":"t"}"#).contains("needs a `twilio_account_sid`"));
        assert!(
            error(&format!(
                r#"{{"sendgrid_api_key":"SG.x","twilio_account_sid":"{SID}","twilio_auth_token":"t"}}"#
            ))
            .contains("not both")
        );
        assert!(error(r#"{"sendgrid_api_key":"SG.x","colour":"red"}"#).contains("unknown field"));
        assert!(error(r#"[{"sendgrid_api_key":"SG.x"},{}]"#).starts_with("invalid account"));
    }

    #[test]
    fn revoked_accounts_are_refused_until_added_again() {
        let accounts = Accounts::default();
        accounts.push([Account::sendgrid("SG.a"), Account::twilio(SID, "tok")]);
        assert!(accounts.sendgrid_allows("SG.a"));
        assert!(!accounts.sendgrid_allows("SG.b"));
        assert!(!accounts.sendgrid_allows(SID), "a SID is no API key");
        assert!(accounts.twilio_allows(SID, "tok"));
        assert!(!accounts.twilio_allows(SID, "other"));

        assert!(accounts.revoke(SID));
        assert!(!accounts.revoke("SG.unknown"));
        assert!(!accounts.twilio_allows(SID, "tok"));
        assert_eq!(accounts.twilio_token(SID).as_deref(), Some("tok"));
        assert!(accounts.sendgrid_allows("SG.a"), "the others keep working");
        let revoked: Vec<_> = accounts.list().iter().map(|a| a.revoked).collect();
        assert_eq!(revoked, [false, true]);

        accounts.push([Account::twilio(SID, "new")]);
        assert!(accounts.twilio_allows(SID, "new"));
        assert!(!accounts.twilio_allows(SID, "tok"));
        assert_eq!(accounts.list().len(), 2);
    }

    #[test]
    fn the_listing_shows_keys_and_sids_but_no_tokens() {
        let accounts = Accounts::default();
        accounts.push([Account::sendgrid("SG.a"), Account::twilio(SID, "secret")]);
        let listed = serde_json::to_value(accounts.list()).unwrap();
        let key = EventKey::derived("SG.a").verification_key();
        assert_eq!(
            listed,
            serde_json::json!([
                {"channel": "email", "sendgrid_api_key": "SG.a", "event_verification_key": key, "revoked": false},
                {"channel": "sms", "twilio_account_sid": SID, "revoked": false}
            ])
        );
        assert!(!format!("{accounts:?}").contains("secret"));
        assert!(!format!("{accounts:?}").contains("SG.a"));
    }

    #[test]
    fn a_sendgrid_account_may_name_its_own_events_url() {
        assert_eq!(
            parse_accounts(
                r#"{"sendgrid_api_key":"SG.acme","events_url":"https://acme.test/events"}"#
            )
            .unwrap(),
            [Account::sendgrid_with_events_url(
                "SG.acme",
                "https://acme.test/events"
            )]
        );
        let error = |json: &str| parse_accounts(json).unwrap_err();
        for bad in [
            "",
            "acme.test/events",
            "ftp://acme.test/events",
            "http://",
            "mailto:a@b.c",
        ] {
            let json = serde_json::json!({"sendgrid_api_key": "SG.acme", "events_url": bad});
            let error = error(&json.to_string());
            assert!(error.contains("is not an http(s) URL"), "{bad}: {error}");
        }
        let twilio = error(&format!(
            r#"{{"twilio_account_sid":"{SID}","twilio_auth_token":"t","events_url":"http://a.test"}}"#
        ));
        assert!(twilio.contains("StatusCallback"), "{twilio}");
        assert!(error(r#"{"events_url":"http://a.test"}"#).contains("an account needs"));
    }

    #[test]
    fn each_sendgrid_account_has_its_own_event_key_and_events_url() {
        let accounts = Accounts::with_defaults("SG.default", Account::twilio(SID, "tok"));
        accounts.push([
            Account::sendgrid_with_events_url("SG.acme", "http://acme.test/events"),
            Account::sendgrid("SG.globex"),
        ]);
        let default = accounts.sendgrid_verification_key("SG.default").unwrap();
        let acme = accounts.sendgrid_verification_key("SG.acme").unwrap();
        let globex = accounts.sendgrid_verification_key("SG.globex").unwrap();
        assert_eq!(default, crate::sendgrid_verification_key());
        assert_eq!(acme, EventKey::derived("SG.acme").verification_key());
        assert!(default != acme && acme != globex && globex != default);
        assert_eq!(
            accounts.sendgrid_verification_key(SID),
            None,
            "no SendGrid account"
        );
        assert_eq!(accounts.sendgrid_verification_key("SG.unknown"), None);
        assert_eq!(
            accounts.sign_sendgrid_events("SG.default", "1700000000", b"[]"),
            Some(crate::sign_sendgrid_events("1700000000", b"[]"))
        );
        assert_eq!(
            accounts.sign_sendgrid_events("SG.acme", "1700000000", b"[]"),
            Some(EventKey::derived("SG.acme").sign("1700000000", b"[]"))
        );

        let (url, _) = accounts.sendgrid_event_webhook("SG.acme").unwrap();
        assert_eq!(url.as_deref(), Some("http://acme.test/events"));
        assert_eq!(
            accounts.sendgrid_event_webhook("SG.globex").unwrap().0,
            None
        );
        let listed = accounts.list();
        let shown: Vec<_> = listed
            .iter()
            .map(|a| (a.events_url.as_deref(), a.event_verification_key.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                (None, Some(default.as_str())),
                (None, None),
                (Some("http://acme.test/events"), Some(acme.as_str())),
                (None, Some(globex.as_str())),
            ]
        );

        // Revoked, its key and URL stay; added again, it keeps its key and takes the new URL.
        assert!(accounts.revoke("SG.acme"));
        assert!(accounts.sendgrid_event_webhook("SG.acme").is_some());
        accounts.push([
            Account::sendgrid("SG.acme"),
            Account::sendgrid_with_events_url("SG.default", "http://d.test"),
        ]);
        let (url, key) = accounts.sendgrid_event_webhook("SG.acme").unwrap();
        assert_eq!((url, key.verification_key()), (None, acme));
        let (url, key) = accounts.sendgrid_event_webhook("SG.default").unwrap();
        assert_eq!(url.as_deref(), Some("http://d.test"));
        assert_eq!(
            key.verification_key(),
            default,
            "the default keeps the fixed key"
        );
    }
}
