//! [`HttpError`]: a status and a short reason, the common currency of request validation
//! helpers (path parsing, header parsing, device checks, constraints). Each server maps
//! its own layer errors to a response in one place; these helpers already carry theirs.

use http::{Response, StatusCode};

use super::body::{text, Body};
use crate::constraints::ConstraintError;

/// A request refused with `status` and a plain-text `message` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The `text/plain` response for this error.
    pub fn into_response(self) -> Response<Body> {
        text(self.status, self.message)
    }
}

impl From<ConstraintError> for HttpError {
    fn from(e: ConstraintError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        HttpError::new(status, e.message)
    }
}

impl From<HttpError> for Response<Body> {
    fn from(e: HttpError) -> Self {
        e.into_response()
    }
}
