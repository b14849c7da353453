//! The one HTTP error type: renders Nacos's naming error shape (HTTP status = the
//! NacosException code, plain-text body with the message) and logs the cause in the
//! request's span.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::naming::NamingError;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status (Nacos's error code: 400, 403, 404, 500, …).
    pub status: StatusCode,
    /// The plain-text body; names the offending field for bad input.
    pub message: String,
}

impl ApiError {
    /// 400 with `message` (Nacos's `IllegalArgumentException` / `INVALID_PARAM`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 413 with `message`: a body or parameter over its limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: message.into(),
        }
    }

    /// 403 with `message` (Nacos's `NO_RIGHT`).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
        }
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl ApiError {
    /// The config API's shape: status and body `caused: <message>;` (Nacos
    /// `config/.../GlobalExceptionHandler`).
    pub fn caused(status: StatusCode, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            message: format!("caused: {message};"),
        }
    }

    /// 400 in the config API's shape.
    pub fn config_bad_request(message: impl std::fmt::Display) -> Self {
        Self::caused(StatusCode::BAD_REQUEST, message)
    }
}

impl From<crate::config::ConfigError> for ApiError {
    fn from(e: crate::config::ConfigError) -> Self {
        use crate::config::ConfigError;
        match e {
            // Nacos answers 500, which clients take for a server failure and retry
            // elsewhere; a stale `casMd5` is a conflict, so 409 with Nacos's message.
            ConfigError::CasConflict => Self::caused(StatusCode::CONFLICT, e),
            ConfigError::Store(_) => {
                tracing::error!(error = %e, "config store failed");
                Self::caused(StatusCode::INTERNAL_SERVER_ERROR, e)
            }
        }
    }
}

impl From<crate::auth::AuthError> for ApiError {
    fn from(e: crate::auth::AuthError) -> Self {
        use crate::auth::AuthError;
        let status = match &e {
            AuthError::UserNotFound
            | AuthError::TokenInvalid
            | AuthError::TokenExpired
            | AuthError::Forbidden => StatusCode::FORBIDDEN,
            AuthError::Invalid(_) => StatusCode::BAD_REQUEST,
            AuthError::Store(err) => {
                tracing::error!(error = %err, "auth store failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

/// The HTTP status of a naming error.
pub fn naming_status(e: &NamingError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY)
}

impl From<NamingError> for ApiError {
    fn from(e: NamingError) -> Self {
        Self {
            status: naming_status(&e),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, message = %self.message, "request refused");
        (
            self.status,
            [("content-type", "text/plain;charset=UTF-8")],
            self.message,
        )
            .into_response()
    }
}
