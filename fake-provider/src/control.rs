//! The `/_fake/*` control API: health, recorded messages, provider accounts, fault injection,
//! and what becomes of accepted messages.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::accounts::{parse_accounts, shown};
use crate::faults::parse_faults;
use crate::outcomes::parse_outcomes;
use crate::server::App;
use crate::store::Channel;

pub(crate) async fn health() -> &'static str {
    "ok"
}

#[derive(Deserialize)]
pub(crate) struct MessageFilter {
    channel: Option<Channel>,
    accepted: Option<bool>,
    /// Only the requests made as this account (SendGrid API key or Twilio Account SID).
    account: Option<String>,
}

pub(crate) async fn list_messages(
    State(app): State<Arc<App>>,
    Query(filter): Query<MessageFilter>,
) -> Response {
    let mut messages = app.store.list(filter.channel, filter.accepted);
    if let Some(account) = &filter.account {
        messages.retain(|m| m.account.as_ref() == Some(account));
    }
    Json(messages).into_response()
}

pub(crate) async fn clear_messages(State(app): State<Arc<App>>) -> StatusCode {
    app.store.clear();
    StatusCode::NO_CONTENT
}

/// Adds one account or an array of them (taking back one it knows); answers with all the
/// accounts.
pub(crate) async fn add_accounts(State(app): State<Arc<App>>, body: Bytes) -> Response {
    added(&body, parse_accounts, |accounts| {
        tracing::info!(?accounts, "accounts added");
        app.accounts.push(accounts);
        app.accounts.list()
    })
}

pub(crate) async fn list_accounts(State(app): State<Arc<App>>) -> Response {
    Json(app.accounts.list()).into_response()
}

/// Revokes the account with this SendGrid API key or Twilio Account SID: 204, or 404 when
/// there is none.
pub(crate) async fn revoke_account(
    State(app): State<Arc<App>>,
    Path(key_or_sid): Path<String>,
) -> Response {
    if app.accounts.revoke(&key_or_sid) {
        tracing::info!(account = shown(&key_or_sid), "account revoked");
        StatusCode::NO_CONTENT.into_response()
    } else {
        let body = serde_json::json!({ "error": "no such account" });
        (StatusCode::NOT_FOUND, Json(body)).into_response()
    }
}

/// Appends one fault or an array of them; answers with the whole pending list.
pub(crate) async fn add_faults(State(app): State<Arc<App>>, body: Bytes) -> Response {
    added(&body, parse_faults, |faults| {
        tracing::info!(?faults, "faults queued");
        app.faults.push(faults);
        app.faults.pending()
    })
}

/// Parses the body with `parse` and hands what it lists to `add`, answering with what
/// `add` returns; 400 with why if the body does not parse.
fn added<T, A: Serialize>(
    body: &[u8],
    parse: fn(&str) -> Result<Vec<T>, String>,
    add: impl FnOnce(Vec<T>) -> A,
) -> Response {
    match std::str::from_utf8(body)
        .map_err(|e| e.to_string())
        .and_then(parse)
    {
        Ok(items) => Json(add(items)).into_response(),
        Err(error) => {
            let body = serde_json::json!({ "error": error });
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
    }
}

pub(crate) async fn list_faults(State(app): State<Arc<App>>) -> Response {
    Json(app.faults.pending()).into_response()
}

/// Appends one outcome rule or an array of them; answers with all the rules.
pub(crate) async fn add_outcomes(State(app): State<Arc<App>>, body: Bytes) -> Response {
    added(&body, parse_outcomes, |outcomes| {
        tracing::info!(?outcomes, "outcomes set");
        app.outcomes.push(outcomes);
        app.outcomes.list()
    })
}

pub(crate) async fn list_outcomes(State(app): State<Arc<App>>) -> Response {
    Json(app.outcomes.list()).into_response()
}

pub(crate) async fn clear_outcomes(State(app): State<Arc<App>>) -> StatusCode {
    app.outcomes.clear();
    StatusCode::NO_CONTENT
}

pub(crate) async fn clear_faults(State(app): State<Arc<App>>) -> StatusCode {
    app.faults.clear();
    StatusCode::NO_CONTENT
}
