//! Google's error body, `{"error": {"code", "message", "status", "details"?}}`, with the
//! status names that go with each HTTP code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleError {
    pub code: u16,
    pub message: String,
    /// The status name when it is not the usual one for the code (Firestore answers a failed
    /// precondition with 400 `FAILED_PRECONDITION`, a create over a document with 409
    /// `ALREADY_EXISTS`).
    pub status: Option<&'static str>,
    /// `error.details`: typed messages such as `google.rpc.PreconditionFailure`, each with its
    /// `@type`.
    pub details: Vec<serde_json::Value>,
    /// The answer of a streaming method over REST, whose body is a JSON array: the error is
    /// its one element.
    pub stream: bool,
}

impl GoogleError {
    pub fn new(code: u16, message: &str) -> GoogleError {
        GoogleError { code, message: message.to_string(), status: None, details: Vec::new(), stream: false }
    }

    pub fn with_status(code: u16, status: &'static str, message: &str) -> GoogleError {
        GoogleError { code, message: message.to_string(), status: Some(status), details: Vec::new(), stream: false }
    }

    pub fn with_details(mut self, details: Vec<serde_json::Value>) -> GoogleError {
        self.details = details;
        self
    }

    /// The body Google sends: `{"error": {…}}`.
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({"code": self.code, "message": self.message, "status": self.status_name()});
        if !self.details.is_empty() {
            error["details"] = serde_json::json!(self.details);
        }
        serde_json::json!({"error": error})
    }

    pub fn status_name(&self) -> &'static str {
        if let Some(status) = self.status {
            return status;
        }
        match self.code {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            412 => "FAILED_PRECONDITION",
            429 => "RESOURCE_EXHAUSTED",
            501 => "UNIMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        }
    }

    /// The gRPC status with the same meaning, for the Pub/Sub data plane.
    pub fn grpc_status(&self) -> tonic::Status {
        let code = match self.code {
            400 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            403 => tonic::Code::PermissionDenied,
            404 => tonic::Code::NotFound,
            409 => tonic::Code::Aborted,
            412 => tonic::Code::FailedPrecondition,
            429 => tonic::Code::ResourceExhausted,
            503 => tonic::Code::Unavailable,
            504 => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }
}

impl IntoResponse for GoogleError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.stream {
            return (status, Json(serde_json::json!([self.body()]))).into_response();
        }
        (status, Json(self.body())).into_response()
    }
}
