//! Twilio Messages: one SMS per request, form-encoded, with HTTP basic auth
//! (`account_sid:auth_token`).

use chrono::{DateTime, Utc};
use herald_core::config::TwilioSettings;
use herald_core::model::OutgoingMessage;
use herald_core::telemetry::error_chain;
use reqwest::{Client, Response, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{
    Delivery, ErrorBody, Provider, SetupError, endpoint, missing_secret, no_answer, read_bounded,
    refusal,
};

pub(super) struct Twilio {
    client: Client,
    endpoint: Url,
    account_sid: String,
    /// The token, or why there is none.
    auth_token: Result<SecretString, String>,
    sender: Sender,
    /// Where Twilio posts each message's status (`…/webhooks/twilio`), if anywhere.
    status_callback: Option<Url>,
}

/// Who sends the account's SMS.
enum Sender {
    /// A number of the account (`From`).
    Number(String),
    /// A messaging service, which picks a number of its pool (`MessagingServiceSid`).
    Service(String),
}

impl Sender {
    /// The form parameter that names the sender, and its value.
    fn param(&self) -> (&'static str, &str) {
        match self {
            Sender::Number(number) => ("From", number),
            Sender::Service(sid) => ("MessagingServiceSid", sid),
        }
    }
}

impl Twilio {
    /// `auth_token`: the token (`settings`' own is not read), or why there is none.
    pub(super) fn new(
        client: Client,
        settings: &TwilioSettings,
        auth_token: Result<SecretString, String>,
        status_callback: Option<Url>,
    ) -> Result<Self, SetupError> {
        let path = format!(
            "/2010-04-01/Accounts/{}/Messages.json",
            settings.account_sid
        );
        Ok(Self {
            client,
            endpoint: endpoint("twilio", &settings.base_url, &path)?,
            account_sid: settings.account_sid.clone(),
            auth_token,
            sender: match &settings.messaging_service_sid {
                Some(service) => Sender::Service(service.clone()),
                None => Sender::Number(settings.from_number.clone()),
            },
            status_callback,
        })
    }

    pub(super) async fn send(&self, message: &OutgoingMessage) -> Delivery {
        let auth_token = match &self.auth_token {
            Ok(token) => token,
            Err(unset) => return missing_secret(unset),
        };
        let (sender, from) = self.sender.param();
        let mut form = vec![
            ("To", message.recipient.clone()),
            (sender, from.to_owned()),
            ("Body", message.body_text.clone()),
        ];
        if let Some(callback) = &self.status_callback {
            let mut callback = callback.clone();
            callback
                .query_pairs_mut()
                .append_pair("message_id", &message.message_id.to_string());
            form.push(("StatusCallback", callback.into()));
        }
        let request = self
            .client
            .post(self.endpoint.clone())
            .basic_auth(&self.account_sid, Some(auth_token.expose_secret()))
            .form(&form);
        match request.send().await {
            Err(error) => no_answer(error),
            Ok(mut response) if response.status().is_success() => {
                let http_status = response.status().as_u16();
                // The status line already says the message was taken; only its sid is at stake.
                let created = match read_bounded(&mut response).await {
                    Ok(body) => serde_json::from_str::<Created>(&body).map_err(|e| e.to_string()),
                    Err(error) => Err(error_chain(&error)),
                };
                let provider_message_id = match created {
                    Ok(created) => Some(created.sid),
                    Err(error) => {
                        tracing::warn!(
                            http_status,
                            %error,
                            "accepted, but the message sid could not be read"
                        );
                        None
                    }
                };
                Delivery::Accepted {
                    http_status,
                    provider_message_id,
                }
            }
            Ok(response) => refusal(Provider::Twilio, response, error_reason).await,
        }
    }
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

/// Pages of Twilio's message list read at most when settling one message.
const LIST_PAGES_MAX: usize = 5;
const LIST_PAGE_SIZE: &str = "100";

/// An SMS as Twilio's message list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedSms {
    pub sid: String,
    pub body: String,
    pub created: DateTime<Utc>,
}

/// One page of Twilio's message list (`GET …/Messages.json`).
#[derive(Deserialize)]
struct MessagePage {
    messages: Vec<Listed>,
    next_page_uri: Option<String>,
}

#[derive(Deserialize)]
struct Listed {
    sid: String,
    body: String,
    #[serde(default)]
    messaging_service_sid: Option<String>,
    /// RFC 2822.
    date_created: String,
}

impl Twilio {
    /// The auth token, which keys the signatures of the status callbacks Twilio posts.
    pub(super) fn auth_token(&self) -> Option<&SecretString> {
        self.auth_token.as_ref().ok()
    }

    /// The SMS Twilio holds from our number to `to` created at or after `since` (on
    /// Twilio's clock), newest first, from its message list.
    pub(super) async fn sent_to(
        &self,
        to: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ListedSms>, String> {
        let auth_token = self.auth_token.as_ref().map_err(String::clone)?;
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("To", to);
        // A messaging service's messages come from any number of its pool: they are told
        // apart by the service instead.
        let service = match &self.sender {
            Sender::Service(sid) => Some(sid),
            Sender::Number(number) => {
                url.query_pairs_mut().append_pair("From", number);
                None
            }
        };
        url.query_pairs_mut()
            .append_pair("PageSize", LIST_PAGE_SIZE);
        let mut found = Vec::new();
        for _ in 0..LIST_PAGES_MAX {
            let response = self
                .client
                .get(url.clone())
                .basic_auth(&self.account_sid, Some(auth_token.expose_secret()))
                .send()
                .await
                .and_then(Response::error_for_status)
                .map_err(|error| error_chain(&error))?;
            let page: MessagePage = response.json().await.map_err(|error| error_chain(&error))?;
            let mut older = false;
            for listed in page.messages {
                let created = DateTime::parse_from_rfc2822(&listed.date_created)
                    .map_err(|e| format!("date_created {:?}: {e}", listed.date_created))?;
                if created < since {
                    older = true;
                    continue;
                }
                if service.is_some_and(|ours| listed.messaging_service_sid.as_ref() != Some(ours)) {
                    continue;
                }
                found.push(ListedSms {
                    sid: listed.sid,
                    body: listed.body,
                    created: created.to_utc(),
                });
            }
            // Newest first: a page reaching back before `since` is the last one needed.
            let Some(next) = page.next_page_uri.filter(|_| !older) else {
                return Ok(found);
            };
            url = self
                .endpoint
                .join(&next)
                .map_err(|e| format!("next_page_uri {next:?}: {e}"))?;
        }
        Ok(found)
    }
}

/// `{"code":21211,"message":"…","more_info":…,"status":400}` as `21211: message`.
fn error_reason(body: &str) -> Option<ErrorBody> {
    #[derive(Deserialize)]
    struct ApiError {
        code: Option<u64>,
        message: String,
    }
    let ApiError { code, message } = serde_json::from_str(body).ok()?;
    let reason = match code {
        Some(code) => format!("{code}: {message}"),
        None => message,
    };
    Some(ErrorBody { code, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reasons_carry_the_code() {
        let body = r#"{"code":21211,"message":"The 'To' number 555 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#;
        assert_eq!(
            error_reason(body),
            Some(ErrorBody {
                code: Some(21211),
                reason: "21211: The 'To' number 555 is not a valid phone number.".into()
            })
        );
        assert_eq!(
            error_reason(r#"{"message":"Authenticate"}"#)
                .map(|e| e.reason)
                .as_deref(),
            Some("Authenticate")
        );
        assert_eq!(error_reason("upstream connect error"), None);
    }
}
