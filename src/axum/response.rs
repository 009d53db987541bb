//! JSON error responses in the GraphQL `errors` shape, for failures that
//! happen before (or instead of) running a GraphQL request.

use ::axum::http::{header, HeaderValue, StatusCode};
use ::axum::response::{IntoResponse, Response};
use serde_json::json;

/// `{"errors":[{"message":..,"extensions":{"code":<status>,"type":<kind>}}]}`
/// with that HTTP status.
pub(crate) fn error_response(
    status: StatusCode,
    kind: &str,
    message: &str,
    reason: Option<&str>,
) -> Response {
    let mut extensions = json!({ "code": status.as_u16(), "type": kind });
    if let Some(reason) = reason {
        extensions["reason"] = reason.into();
    }
    let body = json!({ "errors": [{ "message": message, "extensions": extensions }] });
    json_response(status, body.to_string())
}

/// A JSON body with DataHub's content type.
pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
