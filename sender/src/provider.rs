//! Provider calls: one message, one HTTP request, one [`Delivery`] saying whether the provider
//! took the message, refused it for good, can be asked again, may or may not have it, or
//! refused our credentials.
//!
//! Guarantees:
//! - `Retry` only when the provider certainly did not take the message: an HTTP answer that
//!   says so, or a request that never left (no connection, or it could not be built).
//! - Anything that may have reached the provider without a definite answer (a timeout, a
//!   connection closed before the answer, a gateway or server error) is `InDoubt`: never to
//!   be resent automatically.
//! - Secrets travel only in the `Authorization` header and are never logged.
//! - Error bodies are read up to [`MAX_BODY`] bytes.
//!
//! Every answer is classified in one place, [`answer`]: the table in the README ("Provider
//! answers"), per provider where their APIs differ.

mod sendgrid;
mod twilio;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::config::{
    ENV_PREFIX, ProviderSettings, SendGridSettings, TwilioSettings, env_var_for,
};
use herald_core::model::{Channel, OutgoingMessage, ProviderAccount};
use herald_core::store::{NotifyDb, StoreResult};
use herald_core::telemetry::error_chain;
use p256::ecdsa::VerifyingKey;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode, Url};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::unsubscribe::OneClick;
use crate::webhooks::verifying_key;

use sendgrid::SendGrid;
pub use twilio::ListedSms;
use twilio::Twilio;

/// Connecting is bounded separately, so that a connection never made (certainly not sent) is
/// told apart from a call that timed out later (in doubt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A reset time further away than this is taken as this.
const MAX_NOT_BEFORE: Duration = Duration::from_secs(24 * 60 * 60);
/// Characters of an unrecognised error body kept as the reason.
const MAX_RAW_REASON: usize = 500;
/// Bytes of an answer's body read, at most.
const MAX_BODY: usize = 64 * 1024;
/// Twilio: "Message queue is full" for the sender number.
const TWILIO_QUEUE_FULL: u64 = 21611;
/// Twilio: "Attempt to send to unsubscribed recipient" (it replied STOP).
const TWILIO_UNSUBSCRIBED: u64 = 21610;

/// How one provider call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Taken by the provider, with its id for the message when it gave one.
    Accepted {
        http_status: u16,
        provider_message_id: Option<String>,
    },
    /// Not taken; safe to try again. `not_before` from Retry-After / X-RateLimit-Reset.
    Retry {
        http_status: Option<u16>,
        not_before: Option<Duration>,
        reason: String,
    },
    /// Refused for good, with the provider's own reason.
    Rejected { http_status: u16, reason: String },
    /// Refused for good because the recipient opted out (Twilio 21610: they replied STOP):
    /// nothing more may be sent to the address.
    OptedOut { http_status: u16, reason: String },
    /// The request may or may not have reached the provider: never resend automatically.
    InDoubt { reason: String },
    /// The provider refused our credentials, or they are not set: nothing was sent, and
    /// nothing will be on this provider until they work (see `circuit`).
    Unauthorized {
        http_status: Option<u16>,
        reason: String,
    },
}

/// Which provider answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    SendGrid,
    Twilio,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SendGrid => "SendGrid",
            Self::Twilio => "Twilio",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("providers.{provider}.base_url: `{url}` is not an http(s) URL: {reason}")]
    BaseUrl {
        provider: &'static str,
        url: String,
        reason: String,
    },
    #[error("webhooks.public_url: `{0}` is not an http(s) URL")]
    PublicUrl(String),
    #[error("could not build the HTTP client")]
    Client(#[from] reqwest::Error),
}

/// The provider accounts, sharing one HTTP client: the configured defaults (`email`: SendGrid,
/// `sms`: Twilio) and those admins define in `provider_account`, read again by
/// [`Providers::keep_accounts`].
pub struct Providers {
    client: Client,
    settings: ProviderSettings,
    status_callback: Option<Url>,
    one_click: Option<OneClick>,
    /// The configured defaults, named as their channels.
    email: Arc<Account>,
    sms: Arc<Account>,
    accounts: RwLock<HashMap<String, Defined>>,
}

/// A defined account as read, its client or why it cannot send, and (SendGrid) the key its
/// signed events are checked with.
struct Defined {
    row: ProviderAccount,
    client: Result<Arc<Account>, String>,
    event_key: Option<VerifyingKey>,
}

/// An account's client.
enum Account {
    Email(SendGrid),
    Sms(Twilio),
}

impl Account {
    async fn send(&self, message: &OutgoingMessage) -> Delivery {
        match self {
            Account::Email(sendgrid) => sendgrid.send(message).await,
            Account::Sms(twilio) => twilio.send(message).await,
        }
    }
}

impl Providers {
    /// Every call, answer included, is bounded by `http_timeout`. A missing secret is logged
    /// here and turns each send through that account into `Unauthorized`, naming the
    /// variable to set (the account is then paused like one whose credentials are refused).
    /// With `public_url` (`webhooks.public_url`), Twilio is asked to post each SMS's status to
    /// `<public_url>/webhooks/twilio`.
    pub fn new(
        settings: &ProviderSettings,
        http_timeout: Duration,
        public_url: &str,
        one_click: Option<OneClick>,
    ) -> Result<Self, SetupError> {
        let client = Client::builder()
            .timeout(http_timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(http_timeout / 2))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald-sender/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let status_callback = status_callback(public_url)?;
        let secret = |secret: &Option<SecretString>, key: &str, channel: Channel| {
            secret.clone().ok_or_else(|| {
                let var = env_var_for(key);
                tracing::warn!(%channel, var, "provider secret not set: messages of the default account wait until it is");
                format!("`{key}` is not set: set {var} and restart")
            })
        };
        let (sendgrid, twilio) = (&settings.sendgrid, &settings.twilio);
        Ok(Self {
            email: Arc::new(Account::Email(SendGrid::new(
                client.clone(),
                sendgrid,
                secret(
                    &sendgrid.api_key,
                    "providers.sendgrid.api_key",
                    Channel::Email,
                ),
                one_click.clone(),
            )?)),
            sms: Arc::new(Account::Sms(Twilio::new(
                client.clone(),
                twilio,
                secret(
                    &twilio.auth_token,
                    "providers.twilio.auth_token",
                    Channel::Sms,
                ),
                status_callback.clone(),
            )?)),
            client,
            settings: settings.clone(),
            status_callback,
            one_click,
            accounts: RwLock::default(),
        })
    }

    pub async fn send(&self, message: &OutgoingMessage) -> Delivery {
        match self.account(&message.account, message.channel) {
            Ok(account) => account.send(message).await,
            Err(reason) => Delivery::Unauthorized {
                http_status: None,
                reason,
            },
        }
    }

    /// The SMS Twilio holds to `to` from the sender of `account` (`sms`: the default),
    /// created at or after `since`, newest first (Twilio's message list).
    pub async fn sms_sent_to(
        &self,
        account: &str,
        to: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListedSms>, String> {
        match &*self.account(account, Channel::Sms)? {
            Account::Sms(twilio) => twilio.sent_to(to, since).await,
            Account::Email(_) => unreachable!("account() checks the channel"),
        }
    }

    /// The auth token of Twilio account `account` (`sms`: the default), which signs the
    /// status callbacks Twilio posts for its messages.
    pub fn twilio_auth_token(&self, account: &str) -> Option<SecretString> {
        match &*self.account(account, Channel::Sms).ok()? {
            Account::Sms(twilio) => twilio.auth_token().cloned(),
            Account::Email(_) => None,
        }
    }

    /// The verification key (public) of defined SendGrid account `name`'s Signed Event
    /// Webhook; none if it has none, or one that is not a key.
    pub fn sendgrid_event_key(&self, name: &str) -> Option<VerifyingKey> {
        let accounts = self.accounts.read().expect("accounts lock poisoned");
        accounts.get(name)?.event_key
    }

    /// Reads the defined accounts. Done once before the first claim: a message of an account
    /// not read yet would pause that account.
    pub async fn read_accounts(&self, store: &dyn NotifyDb) -> StoreResult<()> {
        self.set_accounts(store.provider_accounts().await?);
        Ok(())
    }

    /// Reads the defined accounts again every `every` until `cancel` fires.
    pub async fn keep_accounts(
        &self,
        store: Arc<dyn NotifyDb>,
        every: Duration,
        cancel: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(error) = self.read_accounts(store.as_ref()).await {
                tracing::warn!(
                    error = %error_chain(&error),
                    "could not read the provider accounts; the ones read before are kept"
                );
            }
        }
    }

    /// Builds a client for each account that is new or changed, and forgets removed ones.
    fn set_accounts(&self, defined: Vec<ProviderAccount>) {
        let mut accounts = self.accounts.write().expect("accounts lock poisoned");
        let before = std::mem::take(&mut *accounts);
        for row in defined {
            let entry = match before.get(&row.name) {
                Some(read) if read.row == row => Defined {
                    row,
                    client: read.client.clone(),
                    event_key: read.event_key,
                },
                _ => {
                    let client = self.account_client(&row).map(Arc::new);
                    match &client {
                        Ok(_) => {
                            tracing::info!(account = row.name, channel = %row.channel, "provider account ready")
                        }
                        Err(reason) => {
                            tracing::error!(account = row.name, %reason, "provider account cannot send: its messages wait")
                        }
                    }
                    let event_key = event_key(&row);
                    Defined {
                        row,
                        client,
                        event_key,
                    }
                }
            };
            accounts.insert(entry.row.name.clone(), entry);
        }
        for name in before.keys().filter(|name| !accounts.contains_key(*name)) {
            tracing::warn!(
                account = name,
                "provider account removed: its messages wait"
            );
        }
    }

    /// A defined account's client, with its secret from the environment variable it names
    /// (one of its own, never one of herald's settings); or why it cannot send.
    fn account_client(&self, row: &ProviderAccount) -> Result<Account, String> {
        let what = format!("provider account `{}`", row.name);
        let var = match row.channel {
            Channel::Email => &row.api_key_env,
            Channel::Sms => &row.auth_token_env,
        };
        let var = var.as_deref().unwrap_or_default();
        if var.to_ascii_uppercase().starts_with(ENV_PREFIX) {
            return Err(format!(
                "{what}: {var} is one of herald's own variables: name a variable of the account's own"
            ));
        }
        let secret = std::env::var(var)
            .ok()
            .filter(|value| !value.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| {
                format!("{what}: the variable {var} is not set on this sender: set it and restart")
            })?;
        let setup = |error: SetupError| format!("{what}: {error}");
        match row.channel {
            Channel::Email => {
                let settings = SendGridSettings {
                    base_url: self.settings.sendgrid.base_url.clone(),
                    api_key: None,
                    from_email: row.from_email.clone().unwrap_or_default(),
                    from_name: row.from_name.clone().unwrap_or_default(),
                };
                let one_click = self.one_click.clone();
                SendGrid::new(self.client.clone(), &settings, Ok(secret), one_click)
                    .map(Account::Email)
                    .map_err(setup)
            }
            Channel::Sms => {
                let settings = TwilioSettings {
                    base_url: self.settings.twilio.base_url.clone(),
                    account_sid: row.account_sid.clone().unwrap_or_default(),
                    auth_token: None,
                    from_number: row.from_number.clone().unwrap_or_default(),
                    messaging_service_sid: row.messaging_service_sid.clone(),
                };
                settings.check(&what).map_err(|error| error.to_string())?;
                // Its callbacks come back to the account's own path, checked with its token.
                let callback = self.status_callback.clone().map(|mut url| {
                    url.path_segments_mut()
                        .expect("an http(s) URL")
                        .push(&row.name);
                    url
                });
                Twilio::new(self.client.clone(), &settings, Ok(secret), callback)
                    .map(Account::Sms)
                    .map_err(setup)
            }
        }
    }

    /// Account `name` on `channel` (the channel's name: its default), or why its messages
    /// cannot be sent.
    fn account(&self, name: &str, channel: Channel) -> Result<Arc<Account>, String> {
        if name == channel.as_str() {
            return Ok(match channel {
                Channel::Email => self.email.clone(),
                Channel::Sms => self.sms.clone(),
            });
        }
        let accounts = self.accounts.read().expect("accounts lock poisoned");
        match accounts.get(name) {
            None => Err(format!(
                "provider account `{name}` is not defined (provider_account)"
            )),
            Some(Defined { row, .. }) if row.channel != channel => Err(format!(
                "provider account `{name}` is a {} account, the message is {channel}",
                row.channel
            )),
            Some(Defined { client, .. }) => client.clone(),
        }
    }
}

/// A defined SendGrid account's event verification key; one that is not a key is said once,
/// here, and its events are refused.
fn event_key(row: &ProviderAccount) -> Option<VerifyingKey> {
    let key = row.event_verification_key.as_deref()?;
    if row.channel != Channel::Email {
        return None;
    }
    verifying_key(key)
        .inspect_err(|reason| {
            tracing::error!(
                account = row.name,
                %reason,
                "provider account's event_verification_key is not a P-256 public key (base64 DER, \
                 as SendGrid shows it): its events are refused"
            )
        })
        .ok()
}

/// Where Twilio posts statuses: `public_url` followed by `/webhooks/twilio`; none if empty.
fn status_callback(public_url: &str) -> Result<Option<Url>, SetupError> {
    let public_url = public_url.trim();
    if public_url.is_empty() {
        return Ok(None);
    }
    endpoint("webhooks", public_url, "/webhooks/twilio")
        .map(Some)
        .map_err(|_| SetupError::PublicUrl(public_url.to_owned()))
}

/// `base_url` (without a trailing slash) followed by `path`.
fn endpoint(provider: &'static str, base_url: &str, path: &str) -> Result<Url, SetupError> {
    let invalid = |reason: String| SetupError::BaseUrl {
        provider,
        url: base_url.to_owned(),
        reason,
    };
    let url = Url::parse(&format!("{}{path}", base_url.trim_end_matches('/')))
        .map_err(|e| invalid(e.to_string()))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(invalid(format!("unsupported scheme `{other}`"))),
    }
}

/// A secret is not set (`unset` says which and what to do): nothing is sent, and the
/// message waits.
fn missing_secret(unset: &str) -> Delivery {
    Delivery::Unauthorized {
        http_status: None,
        reason: unset.to_owned(),
    }
}

/// A call that ended without an HTTP answer. Only a connection that was never made, or a
/// request that was never built, proves that the provider did not get the message.
fn no_answer(error: reqwest::Error) -> Delivery {
    let chain = error_chain(&error);
    if error.is_connect() || error.is_builder() {
        Delivery::Retry {
            http_status: None,
            not_before: None,
            reason: format!("not sent: {chain}"),
        }
    } else {
        Delivery::InDoubt {
            reason: format!("no answer from the provider: {chain}"),
        }
    }
}

/// A refusal as the provider's body states it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ErrorBody {
    /// The provider's own error code (Twilio's), when it gives one.
    code: Option<u64>,
    reason: String,
}

/// A non-success answer, with the provider's reason read from its body by `parse`.
async fn refusal(
    provider: Provider,
    mut response: Response,
    parse: fn(&str) -> Option<ErrorBody>,
) -> Delivery {
    let status = response.status();
    let headers = response.headers().clone();
    let body = match read_bounded(&mut response).await {
        Ok(body) => parse(&body).unwrap_or_else(|| ErrorBody {
            code: None,
            reason: raw_reason(status, &body),
        }),
        Err(error) => ErrorBody {
            code: None,
            reason: format!("{status} (body unreadable: {})", error_chain(&error)),
        },
    };
    answer(provider, status, &headers, body, Utc::now())
}

/// The body, up to [`MAX_BODY`] bytes (lossy UTF-8): a provider's answer never costs more.
async fn read_bounded(response: &mut Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The body as it came, shortened; the status line when there is none.
fn raw_reason(status: StatusCode, body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return status.to_string();
    }
    match body.char_indices().nth(MAX_RAW_REASON) {
        Some((end, _)) => format!("{}…", &body[..end]),
        None => body.to_owned(),
    }
}

/// The classification table for a non-success answer (README, "Provider answers").
fn answer(
    provider: Provider,
    status: StatusCode,
    headers: &HeaderMap,
    body: ErrorBody,
    now: DateTime<Utc>,
) -> Delivery {
    let http_status = status.as_u16();
    let ErrorBody { code, reason } = body;
    let retry = |not_before, reason| Delivery::Retry {
        http_status: Some(http_status),
        not_before,
        reason,
    };
    match (http_status, provider, code) {
        (401 | 403, _, _) => Delivery::Unauthorized {
            http_status: Some(http_status),
            reason: format!("{provider} refused the credentials: {reason}"),
        },
        // Twilio's 20429 comes as a 429 too.
        (429, _, _) => retry(
            retry_after(headers, now).or_else(|| rate_limit_reset(headers, now)),
            format!("rate limited: {reason}"),
        ),
        // The sender number's queue is full: nothing was queued.
        (400, Provider::Twilio, Some(TWILIO_QUEUE_FULL)) => {
            retry(None, format!("queue full: {reason}"))
        }
        (408, _, _) => retry(
            retry_after(headers, now),
            format!("provider timed out reading the request: {reason}"),
        ),
        // Service unavailable: refused at the door, before the message was looked at.
        (503, _, _) => retry(
            retry_after(headers, now),
            format!("provider unavailable: {reason}"),
        ),
        // Gateway errors and internal errors can follow a message the provider took.
        (500..=599, _, _) => Delivery::InDoubt {
            reason: format!(
                "{provider} answered {status} and may have taken the message: {reason}"
            ),
        },
        (400, Provider::Twilio, Some(TWILIO_UNSUBSCRIBED)) => Delivery::OptedOut {
            http_status,
            reason,
        },
        (400..=499, _, _) => Delivery::Rejected {
            http_status,
            reason,
        },
        // Redirects are not followed: the request never reached the API.
        _ => retry(None, format!("unexpected answer {status}: {reason}")),
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => until(DateTime::parse_from_rfc2822(value).ok()?.to_utc(), now),
    };
    Some(wait.min(MAX_NOT_BEFORE))
}

/// `X-RateLimit-Reset`: the unix time, in seconds, at which the limit resets.
fn rate_limit_reset(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let epoch = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim();
    let reset = DateTime::from_timestamp(epoch.parse().ok()?, 0)?;
    Some(until(reset, now).min(MAX_NOT_BEFORE))
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2015-10-21T07:28:00.250Z")
            .unwrap()
            .to_utc()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (name.parse().unwrap(), HeaderValue::from_str(value).unwrap()))
            .collect()
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let check = |value: &str, expected: Option<Duration>| {
            let got = retry_after(&headers(&[("retry-after", value)]), now());
            assert_eq!(got, expected, "Retry-After: {value}");
        };
        check("120", Some(Duration::from_secs(120)));
        check(" 0 ", Some(Duration::ZERO));
        check(
            "Wed, 21 Oct 2015 07:28:30 GMT",
            Some(Duration::from_millis(29_750)),
        );
        check("Wed, 21 Oct 2015 07:27:00 GMT", Some(Duration::ZERO));
        check("99999999999", Some(MAX_NOT_BEFORE));
        check("soon", None);
        check("-5", None);
    }

    #[test]
    fn rate_limit_reset_is_a_unix_time() {
        let check = |value: &str, expected: Option<Duration>| {
            let got = rate_limit_reset(&headers(&[("x-ratelimit-reset", value)]), now());
            assert_eq!(got, expected, "X-RateLimit-Reset: {value}");
        };
        let epoch = now().timestamp();
        check(&(epoch + 7).to_string(), Some(Duration::from_millis(6_750)));
        check(&(epoch - 60).to_string(), Some(Duration::ZERO));
        check(&(epoch + 10 * 86_400).to_string(), Some(MAX_NOT_BEFORE));
        check("tomorrow", None);
    }

    #[test]
    fn a_sendgrid_accounts_event_key_is_read_with_the_account_and_a_bad_one_is_none() {
        let account = |channel, key: Option<&str>| ProviderAccount {
            name: "acme".into(),
            channel,
            api_key_env: None,
            from_email: None,
            from_name: None,
            event_verification_key: key.map(str::to_owned),
            account_sid: None,
            auth_token_env: None,
            from_number: None,
            messaging_service_sid: None,
        };
        let published = fake_provider::sendgrid_verification_key();
        assert_eq!(
            event_key(&account(Channel::Email, Some(&published))),
            Some(verifying_key(&published).unwrap())
        );
        assert_eq!(event_key(&account(Channel::Email, Some("not a key"))), None);
        assert_eq!(event_key(&account(Channel::Email, None)), None);
        assert_eq!(event_key(&account(Channel::Sms, Some(&published))), None);
    }

    #[test]
    fn absent_headers_give_no_reset_time() {
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
        assert_eq!(rate_limit_reset(&HeaderMap::new(), now()), None);
    }

    #[test]
    fn classification_table() {
        let reset = (now().timestamp() + 3).to_string();
        let check = |provider: Provider,
                     (status, code): (u16, Option<u64>),
                     pairs: &[(&'static str, &str)],
                     expected: Delivery| {
            let status = StatusCode::from_u16(status).unwrap();
            let body = ErrorBody {
                code,
                reason: "why".into(),
            };
            let got = answer(provider, status, &headers(pairs), body, now());
            assert_eq!(got, expected, "{provider} {status} {code:?}");
        };
        let retry = |status, not_before, reason: &str| Delivery::Retry {
            http_status: Some(status),
            not_before,
            reason: reason.into(),
        };
        let in_doubt = |provider: Provider, status: &str| Delivery::InDoubt {
            reason: format!("{provider} answered {status} and may have taken the message: why"),
        };
        for p in [Provider::SendGrid, Provider::Twilio] {
            check(
                p,
                (429, None),
                &[("x-ratelimit-reset", &reset)],
                retry(429, Some(Duration::from_millis(2_750)), "rate limited: why"),
            );
            check(
                p,
                (429, Some(20429)),
                &[("retry-after", "5"), ("x-ratelimit-reset", &reset)],
                retry(429, Some(Duration::from_secs(5)), "rate limited: why"),
            );
            check(p, (429, None), &[], retry(429, None, "rate limited: why"));
            check(
                p,
                (503, None),
                &[("retry-after", "30")],
                retry(
                    503,
                    Some(Duration::from_secs(30)),
                    "provider unavailable: why",
                ),
            );
            // A 503's rate-limit header describes the window, not a request to wait.
            check(
                p,
                (503, None),
                &[("x-ratelimit-reset", &reset)],
                retry(503, None, "provider unavailable: why"),
            );
            check(
                p,
                (500, None),
                &[],
                in_doubt(p, "500 Internal Server Error"),
            );
            check(p, (502, None), &[], in_doubt(p, "502 Bad Gateway"));
            check(p, (504, None), &[], in_doubt(p, "504 Gateway Timeout"));
            for status in [401, 403] {
                check(
                    p,
                    (status, Some(20003)),
                    &[],
                    Delivery::Unauthorized {
                        http_status: Some(status),
                        reason: format!("{p} refused the credentials: why"),
                    },
                );
            }
            check(
                p,
                (408, None),
                &[],
                retry(408, None, "provider timed out reading the request: why"),
            );
            for status in [400, 404, 413, 422] {
                check(
                    p,
                    (status, None),
                    &[],
                    Delivery::Rejected {
                        http_status: status,
                        reason: "why".into(),
                    },
                );
            }
            check(
                p,
                (302, None),
                &[],
                retry(302, None, "unexpected answer 302 Found: why"),
            );
        }
        // Per provider: Twilio's full sender queue took nothing; the same code means nothing
        // to SendGrid.
        check(
            Provider::Twilio,
            (400, Some(21611)),
            &[],
            retry(400, None, "queue full: why"),
        );
        check(
            Provider::SendGrid,
            (400, Some(21611)),
            &[],
            Delivery::Rejected {
                http_status: 400,
                reason: "why".into(),
            },
        );
        // Twilio: the recipient replied STOP.
        check(
            Provider::Twilio,
            (400, Some(21610)),
            &[],
            Delivery::OptedOut {
                http_status: 400,
                reason: "why".into(),
            },
        );
    }

    #[test]
    fn raw_reasons_are_trimmed_and_shortened() {
        assert_eq!(
            raw_reason(StatusCode::BAD_GATEWAY, " \n"),
            "502 Bad Gateway"
        );
        assert_eq!(raw_reason(StatusCode::BAD_REQUEST, " nope\n"), "nope");
        let long = "é".repeat(MAX_RAW_REASON + 10);
        let reason = raw_reason(StatusCode::BAD_REQUEST, &long);
        assert_eq!(reason.chars().count(), MAX_RAW_REASON + 1);
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn base_urls_must_be_http() {
        let url = endpoint("sendgrid", "http://127.0.0.1:8025/", "/v3/mail/send").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8025/v3/mail/send");
        for bad in ["api.sendgrid.com", "ftp://api.sendgrid.com", ""] {
            assert!(endpoint("sendgrid", bad, "/v3/mail/send").is_err(), "{bad}");
        }
    }
}
