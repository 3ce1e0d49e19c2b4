//! The `/_fake/*` control API: health, recorded messages, fault injection, and what becomes of
//! accepted messages.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

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
}

pub(crate) async fn list_messages(
    State(app): State<Arc<App>>,
    Query(filter): Query<MessageFilter>,
) -> Response {
    Json(app.store.list(filter.channel, filter.accepted)).into_response()
}

pub(crate) async fn clear_messages(State(app): State<Arc<App>>) -> StatusCode {
    app.store.clear();
    StatusCode::NO_CONTENT
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
