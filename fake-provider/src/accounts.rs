//! Provider accounts: the SendGrid API keys and the Twilio accounts the fake takes, so that
//! each tenant can send through an account of its own. The [`Config`](crate::Config)'s
//! `sendgrid_api_key` and `twilio_account_sid` / `twilio_auth_token` are there from the
//! start; more come with [`Config::accounts`](crate::Config::accounts), `--account` or
//! `POST /_fake/accounts`. `DELETE /_fake/accounts/{key_or_sid}` revokes one (a default one
//! too): its requests get the provider's 401 from then on, as a revoked key's do.

use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::store::Channel;
use crate::twilio::is_account_sid;

/// An account as posted to `/_fake/accounts` or given with `--account`:
/// `{"sendgrid_api_key":"SG.acme"}` or
/// `{"twilio_account_sid":"AC<32 hex digits>","twilio_auth_token":"tok"}`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "AccountSpec")]
pub enum Account {
    /// Requests with `Authorization: Bearer <api_key>`.
    SendGrid { api_key: String },
    /// Requests to `/2010-04-01/Accounts/<account_sid>/…` with Basic auth
    /// `<account_sid>:<auth_token>`.
    Twilio {
        account_sid: String,
        auth_token: String,
    },
}

impl Account {
    pub fn sendgrid(api_key: impl Into<String>) -> Self {
        Account::SendGrid {
            api_key: api_key.into(),
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
            Account::SendGrid { api_key } => api_key,
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

/// Shows the Account SID but never the secrets.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Account::SendGrid { .. } => f
                .debug_struct("SendGrid")
                .field("api_key", &"<redacted>")
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
}

impl TryFrom<AccountSpec> for Account {
    type Error = String;

    fn try_from(spec: AccountSpec) -> Result<Self, String> {
        match (
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
        }
    }
}

/// Parses one account object or an array of them.
pub fn parse_accounts(json: &str) -> Result<Vec<Account>, String> {
    crate::parse_one_or_many::<Account>(json, "account")
}

/// An account as `GET /_fake/accounts` shows it: its key or SID, never its token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sendgrid_api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_account_sid: Option<String>,
    /// Revoked with `DELETE /_fake/accounts/{key_or_sid}`: its requests get 401.
    pub revoked: bool,
}

/// The accounts the fake knows, in the order they were added, each with whether it is revoked.
#[derive(Debug, Default)]
pub struct Accounts(Mutex<Vec<(Account, bool)>>);

impl Accounts {
    /// Adds accounts. One the fake already knows (the same key, or the same Account SID) is
    /// taken back instead: no longer revoked, with the token given now.
    pub fn push(&self, accounts: impl IntoIterator<Item = Account>) {
        let mut known = self.lock();
        for account in accounts {
            match known
                .iter_mut()
                .find(|(a, _)| a.channel() == account.channel() && a.id() == account.id())
            {
                Some(entry) => *entry = (account, false),
                None => known.push((account, false)),
            }
        }
    }

    pub fn list(&self) -> Vec<AccountState> {
        self.lock()
            .iter()
            .map(|(account, revoked)| {
                let (sendgrid_api_key, twilio_account_sid) = match account {
                    Account::SendGrid { api_key } => (Some(api_key.clone()), None),
                    Account::Twilio { account_sid, .. } => (None, Some(account_sid.clone())),
                };
                AccountState {
                    channel: account.channel(),
                    sendgrid_api_key,
                    twilio_account_sid,
                    revoked: *revoked,
                }
            })
            .collect()
    }

    /// Revokes the account whose SendGrid API key or Twilio Account SID is `key_or_sid`;
    /// `false` if there is none.
    pub fn revoke(&self, key_or_sid: &str) -> bool {
        let mut found = false;
        for (account, revoked) in self.lock().iter_mut() {
            if account.id() == key_or_sid {
                *revoked = true;
                found = true;
            }
        }
        found
    }

    /// Whether `api_key` is a SendGrid account's key, not revoked.
    pub(crate) fn sendgrid_allows(&self, api_key: &str) -> bool {
        self.lock().iter().any(|(account, revoked)| {
            !revoked && matches!(account, Account::SendGrid { api_key: key } if key == api_key)
        })
    }

    /// Whether `account_sid:auth_token` are a Twilio account's credentials, not revoked.
    pub(crate) fn twilio_allows(&self, account_sid: &str, auth_token: &str) -> bool {
        self.lock().iter().any(|(account, revoked)| {
            !revoked
                && matches!(account, Account::Twilio { account_sid: sid, auth_token: token }
                    if sid == account_sid && token == auth_token)
        })
    }

    /// The auth token of the Twilio account `account_sid` (revoked or not).
    pub(crate) fn twilio_token(&self, account_sid: &str) -> Option<String> {
        self.lock().iter().find_map(|(account, _)| match account {
            Account::Twilio {
                account_sid: sid,
                auth_token,
            } if sid == account_sid => Some(auth_token.clone()),
            _ => None,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Account, bool)>> {
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
        assert_eq!(
            listed,
            serde_json::json!([
                {"channel": "email", "sendgrid_api_key": "SG.a", "revoked": false},
                {"channel": "sms", "twilio_account_sid": SID, "revoked": false}
            ])
        );
        assert!(!format!("{accounts:?}").contains("secret"));
        assert!(!format!("{accounts:?}").contains("SG.a"));
    }
}
