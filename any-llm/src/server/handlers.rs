//! The route handlers and the key check.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use any_core::{ChatServiceExt, EmbedRequest};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tower::ServiceExt;

use super::error::ApiError;
use super::{AppState, clone_service, json_bytes, sse};
use crate::wire::openai::{
    ChatCompletion, ChatCompletionRequest, Completion, EmbeddingRequest, EmbeddingResponse, Model,
    ModelList,
};

fn json_response<T: serde::Serialize>(value: &T) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json_bytes(value),
    )
        .into_response()
}

/// Checks `Authorization: Bearer <key>` when the server has a key.
pub(super) async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = &state.0.api_key else {
        return next.run(req).await;
    };
    // The scheme is case-insensitive (RFC 9110); a key without it is not a bearer token.
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let given = header.and_then(|v| {
        let (scheme, rest) = v.split_at_checked(7)?;
        scheme.eq_ignore_ascii_case(b"bearer ").then_some(rest)
    });
    match given {
        None if header.is_some() => ApiError::unauthorized(
            "the Authorization header is not `Bearer <key>`: send the key as a bearer token",
        )
        .into_response(),
        None => ApiError::unauthorized(
            "no API key: send it as the header `Authorization: Bearer <key>`",
        )
        .into_response(),
        Some(given) if !same_bytes(given, key.as_bytes()) => {
            ApiError::unauthorized("the API key is not valid for this server").into_response()
        }
        Some(_) => next.run(req).await,
    }
}

/// Compares in time that depends on the lengths only, so a key cannot be guessed byte by
/// byte from response times.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AppState {
    /// Takes a request slot, or refuses with 503.
    fn slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.0
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::overloaded(self.0.max_concurrency))
    }

    /// The id to answer with and the model to hand the service (`None` for the services'
    /// own, the first id).
    fn resolve_model(&self, asked: Option<String>) -> Result<(String, Option<String>), ApiError> {
        let models = &self.0.models;
        match asked {
            None => Ok((models[0].clone(), None)),
            Some(m) if m.is_empty() || m == models[0] => Ok((models[0].clone(), None)),
            Some(m) if models.contains(&m) => Ok((m.clone(), Some(m))),
            Some(m) => Err(ApiError::not_found(
                format!(
                    "the model `{m}` does not exist on this server; it serves {}",
                    models
                        .iter()
                        .map(|id| format!("`{id}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "model_not_found",
            )
            .param("model")),
        }
    }

    fn body<T: serde::de::DeserializeOwned>(
        &self,
        body: Result<Bytes, BytesRejection>,
        what: &str,
    ) -> Result<T, ApiError> {
        let body = body.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(self.0.max_body_bytes)
            } else {
                ApiError::invalid(format!("the request body could not be read: {rejection}"))
            }
        })?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("the body is not a valid {what} request: {e}")))
    }
}

impl ApiError {
    fn param(mut self, param: &str) -> Self {
        self.object.param = Some(param.to_owned());
        self
    }
}

/// `chatcmpl-` and 24 hex digits, different for every answer.
fn completion_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // The std hasher is randomly keyed per process: unpredictable ids without a RNG crate.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    h.write_u64(n);
    format!("chatcmpl-{:016x}{:08x}", h.finish(), n as u32)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let permit = state.slot()?;
    let Some(chat) = &state.0.chat else {
        return Err(ApiError::not_found(
            "this server serves no chat model",
            "model_not_found",
        ));
    };
    let wire: ChatCompletionRequest = state.body(body, "chat completion")?;
    let (id, model) = state.resolve_model(wire.model.clone())?;
    let stream = wire.is_stream();
    let include_usage = wire.include_usage();
    let mut request = wire.into_chat_request()?;
    request.model = model;
    let completion = Completion {
        id: completion_id(),
        created: now_secs(),
        model: id,
    };
    let service = clone_service(chat);
    if stream {
        let mut chunks = service.oneshot(request).await?;
        // Wait for the first chunk so that an immediate failure still gets its status.
        let first = match chunks.next().await {
            Some(Ok(chunk)) => Some(chunk),
            Some(Err(e)) => return Err(e.into()),
            None => None,
        };
        let ending = state.0.ending.subscribe();
        let body = sse::body(first, chunks, completion, include_usage, permit, ending);
        Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response())
    } else {
        let response = service.chat(request).await?;
        drop(permit);
        Ok(json_response(&ChatCompletion::from_response(
            &response,
            &completion,
        )))
    }
}

/// `POST /v1/embeddings`.
pub(super) async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let _permit = state.slot()?;
    let Some(embed) = &state.0.embed else {
        return Err(ApiError::not_found(
            "this server serves no embedding model",
            "model_not_found",
        ));
    };
    let wire: EmbeddingRequest = state.body(body, "embeddings")?;
    let format = wire.encoding_format.unwrap_or_default();
    let (id, model) = state.resolve_model(wire.model.clone())?;
    let mut request: EmbedRequest = wire.into_embed_request()?;
    request.model = model;
    let response = clone_service(embed).oneshot(request).await?;
    Ok(json_response(&EmbeddingResponse::from_embed_response(
        &response, &id, format,
    )))
}

fn model_entry(state: &AppState, id: &str) -> Model {
    Model::new(id, state.0.created, "any-suite")
}

/// `GET /v1/models`.
pub(super) async fn list_models(State(state): State<AppState>) -> Response {
    let list = ModelList::new(
        state
            .0
            .models
            .iter()
            .map(|id| model_entry(&state, id))
            .collect(),
    );
    json_response(&list)
}

/// `GET /v1/models/{id}`.
pub(super) async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (id, _) = state.resolve_model(Some(id))?;
    Ok(json_response(&model_entry(&state, &id)))
}

/// `GET /health`.
pub(super) async fn health() -> Response {
    json_response(&serde_json::json!({"status": "ok"}))
}

/// Any other path.
pub(super) async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(
        format!("no route for {method} {}", uri.path()),
        "unknown_url",
    )
}

/// A known path with the wrong method.
pub(super) async fn method_not_allowed(method: Method, uri: Uri, _headers: HeaderMap) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::wire::openai::ErrorObject::new(
            "invalid_request_error",
            format!("{} does not accept {method}", uri.path()),
        )
        .with_code("method_not_allowed"),
    )
}
