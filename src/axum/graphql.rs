//! `POST /api/graphql`: reads a GraphQL-over-HTTP JSON body, runs it as the
//! authenticated caller, and answers with DataHub's JSON.

use ::axum::body::Bytes;
use ::axum::extract::rejection::BytesRejection;
use ::axum::extract::State;
use ::axum::http::header::CONTENT_TYPE;
use ::axum::http::{HeaderMap, StatusCode};
use ::axum::response::Response;
use async_graphql::Variables;
use serde::Deserialize;

use super::auth::Authenticated;
use super::response::{error_response, json_response};
use crate::graphql::{AccessTokenSchema, Caller};

/// What the handler needs: the schema and the body limit (for messages).
#[derive(Clone)]
pub(crate) struct GraphQlState {
    pub(crate) schema: AccessTokenSchema,
    pub(crate) body_limit: usize,
}

/// The JSON body of a GraphQL request. Unknown keys are refused so a typo
/// (`"querry"`) is reported instead of ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GraphQlBody {
    query: String,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<serde_json::Value>,
    #[serde(default)]
    extensions: Option<serde_json::Map<String, serde_json::Value>>,
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", message, None)
}

/// Runs a request. Answers `200` with `{data, errors}` once the body holds
/// a GraphQL request (DataHub's behaviour: errors such as 403, or 400 for a
/// document that cannot run, are in `errors[].extensions.code`); `400` with
/// `errors` when the body is not a GraphQL request (invalid JSON, no
/// `query`, unknown keys, `variables` not an object); `413` over the body
/// limit; `415` when the body is not JSON. Anything after the body's JSON
/// object is ignored, as DataHub ignores it.
pub(crate) async fn post_graphql(
    State(state): State<GraphQlState>,
    Authenticated { actor, .. }: Authenticated,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(response) = content_type_rejection(&headers) {
        return response;
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!(
                "The request body is larger than the limit of {} bytes.",
                state.body_limit
            );
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", &message, None);
        }
        Err(rejection) => {
            let message = format!("Could not read the request body: {rejection}");
            return error_response(rejection.status(), "BAD_REQUEST", &message, None);
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return bad_request(
            "The request body is empty; send a JSON object such as {\"query\": \"{ ... }\", \"variables\": {}}.",
        );
    }
    // serde would also read the struct from an array (`["{ x }"]`); DataHub
    // finds no `query` in one.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return bad_request(
            "The request body is a JSON array: batched requests are not supported; send one JSON object.",
        );
    }
    // The first JSON value only, what follows it unread: DataHub's Jackson
    // `readTree` reads so, and the seed page's revoke example ends with one
    // `}` too many.
    let body = match GraphQlBody::deserialize(&mut serde_json::Deserializer::from_slice(&body)) {
        Ok(body) => body,
        Err(e) => return bad_request(&format!("The request body is not a valid GraphQL request: {e}.")),
    };
    let variables = match body.variables {
        None | Some(serde_json::Value::Null) => Variables::default(),
        Some(value @ serde_json::Value::Object(_)) => Variables::from_json(value),
        Some(_) => return bad_request("\"variables\" must be a JSON object (or null)."),
    };
    let mut request = async_graphql::Request::new(body.query)
        .variables(variables)
        .data(Caller(actor));
    if let Some(name) = body.operation_name {
        request = request.operation_name(name);
    }
    for (key, value) in body.extensions.unwrap_or_default() {
        // GraphQL-over-HTTP allows client extensions; the schema uses none.
        match async_graphql::Value::from_json(value) {
            Ok(value) => {
                request.extensions.insert(key, value);
            }
            Err(_) => return bad_request("\"extensions\" holds a value that is not valid JSON."),
        }
    }
    // 200 once the document reaches the GraphQL engine, even if it cannot
    // run (syntax, validation, variables): DataHub answers so, and its
    // clients read the `errors` of a 200 but not the body of a 400.
    let response = state.schema.execute(request).await;
    match serde_json::to_string(&response) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize a GraphQL response");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SERVER_ERROR",
                crate::graphql::SERVER_ERROR_MESSAGE,
                None,
            )
        }
    }
}

/// The `415` for anything but `application/json` bodies (parameters such as
/// `charset` are fine).
fn content_type_rejection(headers: &HeaderMap) -> Option<Response> {
    let unsupported = |got: &str| {
        let message = format!("Content-Type must be application/json, got {got}.");
        Some(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            &message,
            None,
        ))
    };
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return unsupported("no Content-Type header");
    };
    let Ok(text) = value.to_str() else {
        return unsupported("a header that is not ASCII text");
    };
    let essence = text.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        None
    } else {
        unsupported(&format!("{text:?}"))
    }
}
