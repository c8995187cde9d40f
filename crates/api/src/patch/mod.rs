//! The PATCH machinery of the API server, working on `serde_json::Value`s.
//!
//! | content type | module | entry point |
//! |---|---|---|
//! | `application/json-patch+json` (RFC 6902) | [`json`] | [`json::json_patch`] |
//! | `application/merge-patch+json` (RFC 7386) | [`merge`] | [`merge::merge_patch`] |
//! | `application/strategic-merge-patch+json` | [`strategic`] | [`strategic::strategic_merge`] |
//! | `application/apply-patch+yaml` (server-side apply) | [`apply`] | [`apply::server_side_apply`] |
//!
//! Every write also records field ownership in `metadata.managedFields`
//! ([`apply::update_managed_fields`]). Strategic merge patch and server-side apply need
//! the patch metadata of the built-in types ([`meta`]) and their schemas, which come
//! from the `k8s-openapi` types ([`schema`]).
//!
//! Upstream behaviour (Kubernetes v1.33 apimachinery, apiserver and
//! structured-merge-diff) is the specification, including the HTTP status each failure
//! maps to ([`PatchError::status_code`]).

pub mod apply;
pub mod fieldpath;
pub mod json;
pub mod merge;
pub mod meta;
pub mod schema;
pub mod strategic;
mod typed;
mod zero;

pub use apply::{
    ApplyError, Conflict, record_managed_fields, server_side_apply,
    server_side_apply_for_subresource, update_managed_fields,
    update_managed_fields_for_subresource,
};
pub use json::json_patch;
pub use merge::merge_patch;
pub use meta::{PatchMeta, patch_meta};
pub use schema::definition_for;
pub use strategic::strategic_merge;

use serde_json::Value;

/// The four PATCH content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value (parameters such as
    /// `; charset=utf-8` are ignored, as upstream does).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let base = content_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// The patch types upstream accepts for custom resources (no strategic merge patch), in
/// the order its 415 message lists them.
pub const CUSTOM_RESOURCE_PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// The status message upstream sends for its generic 422 answers, which drop the
/// underlying error text.
pub const GENERIC_UNPROCESSABLE_MESSAGE: &str =
    "the server rejected our request due to an error in our request";

/// Why a JSON, merge or strategic merge patch could not be applied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not of the form its content type requires (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// A JSON patch with more operations than upstream allows (413).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations { max: usize, got: usize },
    /// A JSON patch operation that does not apply to the document, e.g. a failed `test`
    /// (422; upstream's status message is [`GENERIC_UNPROCESSABLE_MESSAGE`]).
    #[error("{0}")]
    OperationFailed(String),
    /// A strategic merge patch upstream rejects as unprocessable: lists of lists
    /// (422; status message [`GENERIC_UNPROCESSABLE_MESSAGE`]).
    #[error("{0}")]
    Unprocessable(String),
    /// Strategic merge patch of an object whose type has no known schema, e.g. a custom
    /// resource (415 UnsupportedMediaType).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {}",
        CUSTOM_RESOURCE_PATCH_TYPES.join(", ")
    )]
    StrategicMergeUnsupported,
    /// Any other strategic merge failure (missing merge key, unknown `$patch`
    /// directive…). Upstream answers these with status 500 and the message as is.
    #[error("{0}")]
    Merge(String),
}

impl PatchError {
    /// The HTTP status code upstream answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::OperationFailed(_) | PatchError::Unprocessable(_) => 422,
            PatchError::StrategicMergeUnsupported => 415,
            PatchError::Merge(_) => 500,
        }
    }

    /// The `reason` of upstream's `Status` (empty for `StatusReasonUnknown`).
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::TooManyOperations { .. } => "RequestEntityTooLarge",
            PatchError::OperationFailed(_) | PatchError::Unprocessable(_) => "Invalid",
            PatchError::StrategicMergeUnsupported => "UnsupportedMediaType",
            PatchError::Merge(_) => "",
        }
    }

    /// The `message` of upstream's `Status` for this error.
    pub fn status_message(&self) -> String {
        match self {
            PatchError::OperationFailed(_) | PatchError::Unprocessable(_) => {
                GENERIC_UNPROCESSABLE_MESSAGE.to_string()
            }
            PatchError::TooManyOperations { .. } => format!("Request entity too large: {self}"),
            _ => self.to_string(),
        }
    }
}

/// Formats a JSON value the way Go's `%v` prints the decoded `interface{}`, so that error
/// messages read like upstream's (`map[image:nginx name:web]`).
pub(crate) fn go_format(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_format).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_format(&map[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// The JSON type name Go's decoder uses in "cannot unmarshal X into …" messages.
pub(crate) fn go_json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        let cases = [
            ("application/json-patch+json", Some(PatchType::Json)),
            (
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            (
                "application/strategic-merge-patch+json",
                Some(PatchType::StrategicMerge),
            ),
            ("application/apply-patch+yaml", Some(PatchType::Apply)),
            ("application/json", None),
        ];
        for (ct, want) in cases {
            assert_eq!(PatchType::from_content_type(ct), want, "{ct}");
            if let Some(t) = want {
                assert!(ct.starts_with(t.content_type()));
            }
        }
    }

    #[test]
    fn go_style_formatting() {
        let cases = [
            (
                json!({"name": "web", "image": "nginx"}),
                "map[image:nginx name:web]",
            ),
            (json!(["a", 1, null, true]), "[a 1 <nil> true]"),
            (json!({"a": {"b": [1, 2]}}), "map[a:map[b:[1 2]]]"),
        ];
        for (value, want) in cases {
            assert_eq!(go_format(&value), want);
        }
    }

    #[test]
    fn error_statuses() {
        let cases = [
            (PatchError::BadRequest("x".into()), 400, "BadRequest", "x".to_string()),
            (
                PatchError::TooManyOperations { max: 10000, got: 10001 },
                413,
                "RequestEntityTooLarge",
                "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001".to_string(),
            ),
            (
                PatchError::OperationFailed("testing value /a failed: test failed".into()),
                422,
                "Invalid",
                GENERIC_UNPROCESSABLE_MESSAGE.to_string(),
            ),
            (
                PatchError::StrategicMergeUnsupported,
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_string(),
            ),
            (PatchError::Merge("m".into()), 500, "", "m".to_string()),
        ];
        for (err, code, reason, message) in cases {
            assert_eq!(err.status_code(), code);
            assert_eq!(err.reason(), reason);
            assert_eq!(err.status_message(), message);
        }
    }
}
