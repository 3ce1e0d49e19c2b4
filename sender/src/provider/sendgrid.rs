//! SendGrid v3 Mail Send: one email per request, tagged in `custom_args` with herald's ids so
//! that the provider's events and a support search lead back to the message.

use std::borrow::Cow;
use std::collections::BTreeMap;

use herald_core::config::SendGridSettings;
use herald_core::model::OutgoingMessage;
use reqwest::{Client, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::unsubscribe::OneClick;

use super::{
    Delivery, ErrorBody, Provider, SetupError, endpoint, missing_secret, no_answer, refusal,
};

pub(super) struct SendGrid {
    client: Client,
    endpoint: Url,
    /// The key, or why there is none.
    api_key: Result<SecretString, String>,
    from_email: String,
    from_name: String,
    /// Puts one-click unsubscribe links in the emails of schedules that offer them.
    one_click: Option<OneClick>,
}

impl SendGrid {
    /// `api_key`: the key (`settings`' own is not read), or why there is none.
    pub(super) fn new(
        client: Client,
        settings: &SendGridSettings,
        api_key: Result<SecretString, String>,
        one_click: Option<OneClick>,
    ) -> Result<Self, SetupError> {
        Ok(Self {
            client,
            endpoint: endpoint("sendgrid", &settings.base_url, "/v3/mail/send")?,
            api_key,
            from_email: settings.from_email.clone(),
            from_name: settings.from_name.clone(),
            one_click,
        })
    }

    pub(super) async fn send(&self, message: &OutgoingMessage) -> Delivery {
        let api_key = match &self.api_key {
            Ok(key) => key,
            Err(unset) => return missing_secret(unset),
        };
        let request = self
            .client
            .post(self.endpoint.clone())
            .bearer_auth(api_key.expose_secret())
            .json(&self.mail(message));
        match request.send().await {
            Err(error) => no_answer(error),
            Ok(response) if response.status().is_success() => Delivery::Accepted {
                http_status: response.status().as_u16(),
                provider_message_id: response
                    .headers()
                    .get("x-message-id")
                    .and_then(|id| id.to_str().ok())
                    .map(str::to_owned),
            },
            Ok(response) => refusal(Provider::SendGrid, response, error_reason).await,
        }
    }

    fn mail<'a>(&'a self, message: &'a OutgoingMessage) -> Mail<'a> {
        let mut content = vec![Content {
            kind: "text/plain",
            value: &message.body_text,
        }];
        if let Some(html) = &message.body_html {
            content.push(Content {
                kind: "text/html",
                value: html,
            });
        }
        Mail {
            personalizations: [Personalization {
                to: [Address {
                    email: &message.recipient,
                    name: message.recipient_name.as_deref().and_then(display_name),
                }],
                custom_args: CustomArgs {
                    herald_message_id: message.message_id.to_string(),
                    tenant: &message.tenant,
                    schedule_id: message.schedule_id.to_string(),
                },
                headers: self
                    .one_click
                    .as_ref()
                    .filter(|_| message.one_click)
                    .map(|links| links.headers(message.message_id).into_iter().collect()),
            }],
            from: Address {
                email: &self.from_email,
                name: display_name(&self.from_name),
            },
            subject: message.subject.as_deref(),
            content,
        }
    }
}

#[derive(Serialize)]
struct Mail<'a> {
    personalizations: [Personalization<'a>; 1],
    from: Address<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    content: Vec<Content<'a>>,
}

#[derive(Serialize)]
struct Personalization<'a> {
    to: [Address<'a>; 1],
    custom_args: CustomArgs<'a>,
    /// Name to value, as SendGrid takes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<&'static str, String>>,
}

#[derive(Serialize)]
struct Address<'a> {
    email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
}

/// A name SendGrid takes. It refuses `,` and `;` in names (a send with one used to be
/// accepted, then dropped with the name read as the address), so each becomes a space and
/// spaces collapse: `Sammy Davis, Jr.` is sent as `Sammy Davis Jr.`, which keeps every word.
/// (Quoting the name keeps the comma but is not documented to work.) Nothing left, no name.
fn display_name(name: &str) -> Option<Cow<'_, str>> {
    if !name.contains([',', ';']) {
        return Some(Cow::Borrowed(name));
    }
    let words: Vec<&str> = name
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect();
    (!words.is_empty()).then(|| Cow::Owned(words.join(" ")))
}

/// SendGrid wants every custom arg as a string.
#[derive(Serialize)]
struct CustomArgs<'a> {
    herald_message_id: String,
    tenant: &'a str,
    schedule_id: String,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

/// `{"errors":[{"field","message","help"}…]}` as `field: message; field2: message2`.
fn error_reason(body: &str) -> Option<ErrorBody> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ApiError>,
    }
    #[derive(Deserialize)]
    struct ApiError {
        field: Option<String>,
        message: String,
    }
    let Errors { errors } = serde_json::from_str(body).ok()?;
    let reasons: Vec<String> = errors
        .into_iter()
        .map(|e| match e.field {
            Some(field) => format!("{field}: {}", e.message),
            None => e.message,
        })
        .collect();
    (!reasons.is_empty()).then(|| ErrorBody {
        code: None,
        reason: reasons.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reasons_name_each_field() {
        let body = r#"{"errors":[
            {"field":"personalizations.0.to.0.email","message":"Does not contain a valid address.","help":"http://x"},
            {"field":null,"message":"Bad Request","help":null}
        ]}"#;
        assert_eq!(
            error_reason(body).map(|e| e.reason).as_deref(),
            Some("personalizations.0.to.0.email: Does not contain a valid address.; Bad Request")
        );
        assert_eq!(error_reason(r#"{"errors":[]}"#), None);
        assert_eq!(error_reason("<html>Bad Gateway</html>"), None);
    }

    fn sendgrid_settings() -> SendGridSettings {
        SendGridSettings {
            base_url: "http://127.0.0.1:1".into(),
            api_key: None,
            from_email: "from@example.com".into(),
            from_name: "Herald".into(),
        }
    }

    #[test]
    fn names_lose_commas_and_semicolons_and_keep_their_words() {
        let name = |n| display_name(n).map(Cow::into_owned);
        assert_eq!(name("Ada Lovelace").as_deref(), Some("Ada Lovelace"));
        assert_eq!(name("Sammy Davis, Jr.").as_deref(), Some("Sammy Davis Jr."));
        assert_eq!(name("Lovelace,Ada").as_deref(), Some("Lovelace Ada"));
        assert_eq!(name(" A ;; B , ").as_deref(), Some("A B"));
        assert_eq!(name(", ;"), None);
        assert!(matches!(display_name("Ada"), Some(Cow::Borrowed("Ada"))));
    }

    #[test]
    fn mail_has_plain_text_first_and_omits_what_is_absent() {
        let sendgrid = SendGrid::new(
            Client::new(),
            &sendgrid_settings(),
            Err(String::new()),
            None,
        )
        .unwrap();
        let mut message = OutgoingMessage {
            message_id: 42,
            tenant: "acme".into(),
            schedule_id: 7,
            channel: herald_core::model::Channel::Email,
            account: "email".into(),
            recipient: "to@example.com".into(),
            recipient_name: Some("Ada".into()),
            subject: Some("Hi".into()),
            body_html: Some("<p>hi</p>".into()),
            body_text: "hi".into(),
            counted_attempts: 0,
            one_click: false,
        };
        let full = serde_json::to_value(sendgrid.mail(&message)).unwrap();
        assert_eq!(
            full,
            serde_json::json!({
                "personalizations": [{
                    "to": [{"email": "to@example.com", "name": "Ada"}],
                    "custom_args": {"herald_message_id": "42", "tenant": "acme", "schedule_id": "7"}
                }],
                "from": {"email": "from@example.com", "name": "Herald"},
                "subject": "Hi",
                "content": [
                    {"type": "text/plain", "value": "hi"},
                    {"type": "text/html", "value": "<p>hi</p>"}
                ]
            })
        );
        message.recipient_name = Some("Sammy Davis, Jr.".into());
        let comma_from = SendGrid::new(
            Client::new(),
            &SendGridSettings {
                from_name: "Acme; Inc.".into(),
                ..sendgrid_settings()
            },
            Err(String::new()),
            None,
        )
        .unwrap();
        let named = serde_json::to_value(comma_from.mail(&message)).unwrap();
        assert_eq!(
            named["personalizations"][0]["to"][0]["name"],
            "Sammy Davis Jr."
        );
        assert_eq!(named["from"]["name"], "Acme Inc.");

        // A schedule that offers one-click unsubscribe: its emails carry the headers.
        let settings = herald_core::config::UnsubscribeSettings {
            secret: Some("s3cret".to_owned().into()),
            mailto: String::new(),
        };
        let one_click = OneClick::new(&settings, "https://hooks.example.com").unwrap();
        let token = one_click.token(42);
        let links = SendGrid::new(
            Client::new(),
            &sendgrid_settings(),
            Err(String::new()),
            Some(one_click),
        )
        .unwrap();
        let plain = serde_json::to_value(links.mail(&message)).unwrap();
        assert!(plain["personalizations"][0].get("headers").is_none());
        message.one_click = true;
        let offered = serde_json::to_value(links.mail(&message)).unwrap();
        assert_eq!(
            offered["personalizations"][0]["headers"],
            serde_json::json!({
                "List-Unsubscribe": format!("<https://hooks.example.com/unsubscribe/{token}>"),
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
            })
        );

        message.recipient_name = None;
        message.body_html = None;
        let bare = serde_json::to_value(sendgrid.mail(&message)).unwrap();
        assert_eq!(
            bare["personalizations"][0]["to"],
            serde_json::json!([{"email": "to@example.com"}])
        );
        assert_eq!(
            bare["content"],
            serde_json::json!([{"type": "text/plain", "value": "hi"}])
        );
    }
}
