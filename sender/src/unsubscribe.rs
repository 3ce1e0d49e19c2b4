//! One-click unsubscribe (RFC 8058) in the emails of schedules that offer it (`schedule.
//! unsubscribe`), taken on `[webhooks] listen`.
//!
//! Each such email carries `List-Unsubscribe: <{public_url}/unsubscribe/{token}>` (and a
//! `mailto:` when `unsubscribe.mailto` is set) with `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click`. The token is the message id and 128 bits of HMAC-SHA256 over
//! it under `unsubscribe.secret`: it names one message, so it can only unsubscribe that
//! message's recipient, and nobody without the secret can make one.
//!
//! - `POST /unsubscribe/{token}`, what a mail client sends for one click (body
//!   `List-Unsubscribe=One-Click`, no cookies), unsubscribes at once: the address is
//!   suppressed for the message's schedule, or for all the tenant's emails when the schedule
//!   says `tenant`, and the unsubscribe is recorded as the message's event. Another POST
//!   changes nothing more. Answered 200 with a short page, never a redirect.
//! - `GET /unsubscribe/{token}`, a person following the link, shows a page with a button that
//!   makes that POST. A GET never unsubscribes: link scanners follow links.
//! - A token that does not verify, or names no email: 404, nothing changes (a forged token
//!   and an unknown one look alike).

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_core::config::UnsubscribeSettings;
use herald_core::model::Unsubscription;
use herald_core::store::NotifyDb;
use herald_core::telemetry::error_chain;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;
use tera::Tera;

use crate::metrics::SenderMetrics;

/// The bytes of the MAC a token carries: 128 bits.
const TAG_BYTES: usize = 16;
/// Signed with the message id, so a tag is good for nothing else.
const CONTEXT: &str = "herald one-click unsubscribe, message ";

/// Makes and checks the links.
#[derive(Clone)]
pub struct OneClick {
    secret: SecretString,
    /// `<public_url>/unsubscribe/`.
    base: String,
    mailto: Option<String>,
}

impl OneClick {
    /// `None`, with a warning, when the secret or `webhooks.public_url` is not set: emails
    /// then go without links.
    pub fn new(settings: &UnsubscribeSettings, public_url: &str) -> Option<Self> {
        let public_url = public_url.trim().trim_end_matches('/');
        let secret = settings
            .secret
            .clone()
            .filter(|secret| !secret.expose_secret().trim().is_empty());
        let Some(secret) = secret else {
            tracing::warn!(
                "unsubscribe.secret is not set (HERALD__UNSUBSCRIBE__SECRET): emails go without one-click unsubscribe links"
            );
            return None;
        };
        if public_url.is_empty() {
            tracing::warn!(
                "webhooks.public_url is not set: emails go without one-click unsubscribe links"
            );
            return None;
        }
        if !public_url.starts_with("https://") {
            tracing::warn!(
                public_url,
                "one-click unsubscribe links are not https: mail providers will not offer them"
            );
        }
        let mailto = Some(settings.mailto.trim())
            .filter(|mailbox| !mailbox.is_empty())
            .map(str::to_owned);
        Some(Self {
            secret,
            base: format!("{public_url}/unsubscribe/"),
            mailto,
        })
    }

    fn mac(&self, message_id: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(format!("{CONTEXT}{message_id}").as_bytes());
        mac
    }

    /// `<message id>.<tag>`.
    pub fn token(&self, message_id: i64) -> String {
        let tag = self.mac(message_id).finalize().into_bytes();
        format!("{message_id}.{}", URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES]))
    }

    /// The message a token names, if it was made with our secret.
    pub fn verify(&self, token: &str) -> Option<i64> {
        let (id, tag) = token.split_once('.')?;
        let message_id: i64 = id.parse().ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != TAG_BYTES || message_id.to_string() != id {
            return None;
        }
        self.mac(message_id)
            .verify_truncated_left(&tag)
            .ok()
            .map(|()| message_id)
    }

    /// The headers an email of message `message_id` carries.
    pub fn headers(&self, message_id: i64) -> [(&'static str, String); 2] {
        let token = self.token(message_id);
        let mut targets = format!("<{}{token}>", self.base);
        if let Some(mailbox) = &self.mailto {
            targets.push_str(&format!(
                ", <mailto:{mailbox}?subject=unsubscribe%20{token}>"
            ));
        }
        [
            ("List-Unsubscribe", targets),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into()),
        ]
    }
}

struct Unsubscribe {
    one_click: OneClick,
    store: Arc<dyn NotifyDb>,
    metrics: Arc<SenderMetrics>,
}

/// `GET` and `POST /unsubscribe/{token}`.
pub fn router(
    one_click: OneClick,
    store: Arc<dyn NotifyDb>,
    metrics: Arc<SenderMetrics>,
) -> Router {
    let state = Arc::new(Unsubscribe {
        one_click,
        store,
        metrics,
    });
    Router::new()
        .route("/unsubscribe/{token}", get(confirm).post(unsubscribe))
        .with_state(state)
}

/// The page a person sees: what the button would do, or that it is done.
async fn confirm(State(state): State<Arc<Unsubscribe>>, Path(token): Path<String>) -> Response {
    let Some(message_id) = state.one_click.verify(&token) else {
        return not_a_link(&state);
    };
    match state.store.unsubscription(message_id).await {
        Ok(Some(target)) if target.suppressed => {
            page(StatusCode::OK, Page::about("already", &target))
        }
        Ok(Some(target)) => page(StatusCode::OK, Page::about("confirm", &target)),
        Ok(None) => not_a_link(&state),
        Err(error) => unavailable(&error),
    }
}

/// One click: unsubscribed, no questions asked.
async fn unsubscribe(State(state): State<Arc<Unsubscribe>>, Path(token): Path<String>) -> Response {
    let Some(message_id) = state.one_click.verify(&token) else {
        return not_a_link(&state);
    };
    match state.store.unsubscribe(message_id).await {
        Ok(Some(target)) => {
            state.metrics.webhook_events("herald", 1);
            tracing::info!(
                message_id,
                tenant = %target.tenant,
                schedule = %target.schedule,
                tenant_wide = target.tenant_wide,
                "one-click unsubscribe"
            );
            page(StatusCode::OK, Page::about("done", &target))
        }
        Ok(None) => not_a_link(&state),
        Err(error) => unavailable(&error),
    }
}

/// What `unsubscribe.html` shows: which `page`, and for whom. The template escapes it.
#[derive(Serialize)]
struct Page {
    /// `confirm`, `already`, `done`, `invalid`, or anything else: we failed.
    page: &'static str,
    /// The address, masked.
    address: Option<String>,
    /// `“welcome-email” emails from acme`, or `emails from acme`.
    what: Option<String>,
}

impl Page {
    fn about(page: &'static str, target: &Unsubscription) -> Page {
        let what = if target.tenant_wide {
            format!("emails from {}", target.tenant)
        } else {
            format!("“{}” emails from {}", target.schedule, target.tenant)
        };
        Page {
            page,
            address: Some(masked(&target.address)),
            what: Some(what),
        }
    }

    fn plain(page: &'static str) -> Page {
        Page {
            page,
            address: None,
            what: None,
        }
    }
}

/// `a***@example.com`: enough for its owner to recognise, little for anyone else.
fn masked(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

fn not_a_link(state: &Unsubscribe) -> Response {
    state.metrics.webhook_refused("herald");
    page(StatusCode::NOT_FOUND, Page::plain("invalid"))
}

fn unavailable(error: &herald_core::store::StoreError) -> Response {
    tracing::warn!(error = %error_chain(error), "one-click unsubscribe not served");
    page(StatusCode::SERVICE_UNAVAILABLE, Page::plain("unavailable"))
}

/// The pages, compiled once; `.html`, so every value is HTML-escaped.
static PAGES: LazyLock<Tera> = LazyLock::new(|| {
    let mut tera = Tera::default();
    tera.add_raw_template("unsubscribe.html", include_str!("unsubscribe.html"))
        .expect("the unsubscribe page compiles");
    tera
});

fn page(status: StatusCode, page: Page) -> Response {
    let rendered = tera::Context::from_serialize(&page)
        .and_then(|context| PAGES.render("unsubscribe.html", &context));
    match rendered {
        Ok(html) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "the unsubscribe page did not render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_click(secret: &str) -> OneClick {
        let settings = UnsubscribeSettings {
            secret: Some(secret.to_owned().into()),
            mailto: "unsubscribe@acme.example".into(),
        };
        OneClick::new(&settings, "https://hooks.acme.example/").unwrap()
    }

    #[test]
    fn a_token_names_its_message_and_nothing_else_verifies() {
        let links = one_click("s3cret");
        let token = links.token(42);
        assert_eq!(links.verify(&token), Some(42));
        let (_, tag) = token.split_once('.').unwrap();
        assert_eq!(links.verify(&format!("43.{tag}")), None, "another message");
        assert_eq!(
            links.verify(&format!("042.{tag}")),
            None,
            "another spelling"
        );
        assert_eq!(one_click("other").verify(&token), None, "another secret");
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(links.verify(&String::from_utf8(altered).unwrap()), None);
        for junk in ["", "42", "42.", "x.y", "42.!!!!"] {
            assert_eq!(links.verify(junk), None, "{junk}");
        }
    }

    #[test]
    fn the_headers_offer_https_one_click_and_the_mailbox() {
        let links = one_click("s3cret");
        let token = links.token(7);
        let [(name, targets), post] = links.headers(7);
        assert_eq!(name, "List-Unsubscribe");
        assert_eq!(
            targets,
            format!(
                "<https://hooks.acme.example/unsubscribe/{token}>, \
                 <mailto:unsubscribe@acme.example?subject=unsubscribe%20{token}>"
            )
        );
        assert_eq!(
            post,
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click".into())
        );
    }

    #[test]
    fn without_a_secret_or_public_url_no_links_are_made() {
        let settings = UnsubscribeSettings {
            secret: None,
            mailto: String::new(),
        };
        assert!(OneClick::new(&settings, "https://hooks.acme.example").is_none());
        let settings = UnsubscribeSettings {
            secret: Some("s3cret".to_owned().into()),
            mailto: String::new(),
        };
        assert!(OneClick::new(&settings, " ").is_none());
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let target = Unsubscription {
            tenant: "<acme>".into(),
            schedule: "a&b".into(),
            address: "x@<script>.example".into(),
            tenant_wide: false,
            suppressed: false,
        };
        let context = tera::Context::from_serialize(Page::about("confirm", &target)).unwrap();
        let html = PAGES.render("unsubscribe.html", &context).unwrap();
        assert!(
            html.contains("Stop “a&amp;b” emails from &lt;acme&gt; to <strong>x***@&lt;script&gt;.example</strong>?"),
            "{html}"
        );
        assert!(html.contains(r#"<form method="post">"#), "{html}");
    }

    #[test]
    fn addresses_are_masked_on_the_page() {
        assert_eq!(masked("fine@example.com"), "f***@example.com");
        assert_eq!(masked("@example.com"), "***@example.com");
        assert_eq!(masked("nobody"), "***");
    }
}
