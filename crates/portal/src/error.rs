//! Errors of the web layer, and how each becomes an HTTP response: an HTML page for
//! the portal and console, a JSON object `{"error": "..."}` for the API.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use store::{OperatorRole, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// A `portal.listen` address could not be bound.
    #[error("portal.listen: cannot listen on {0}: {1}")]
    Bind(SocketAddr, String),
    /// The configured certificate or key could not be loaded.
    #[error("{key}: {reason}")]
    Tls { key: &'static str, reason: String },
    /// No valid session or API token.
    #[error("log in first (or send `Authorization: Bearer TOKEN` for the API)")]
    Unauthenticated,
    /// Wrong login or password; deliberately does not say which.
    #[error("wrong login or password")]
    BadCredentials,
    /// Too many failed logins from this login or address.
    #[error("too many failed logins; try again in {0} seconds")]
    Throttled(u64),
    /// The operator's role does not cover the action.
    #[error("this needs the {0} role (or higher)")]
    Forbidden(OperatorRole),
    /// A form arrived without the anti-forgery token of the session.
    #[error("the form expired or did not come from this site; reload the page and try again")]
    Csrf,
    #[error("{0} not found")]
    NotFound(String),
    /// Input the user can correct.
    #[error("{0}")]
    BadRequest(String),
    /// Input that is well-formed but cannot be used, e.g. an abuse report the
    /// parser refuses.
    #[error("{0}")]
    Unprocessable(String),
    /// The credential backend (RADIUS) did not answer.
    #[error("the login service is unavailable: {0}")]
    AuthUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PortalError {
    pub fn status(&self) -> StatusCode {
        match self {
            PortalError::Unauthenticated | PortalError::BadCredentials => StatusCode::UNAUTHORIZED,
            PortalError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            PortalError::Forbidden(_) | PortalError::Csrf => StatusCode::FORBIDDEN,
            PortalError::NotFound(_) => StatusCode::NOT_FOUND,
            PortalError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PortalError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PortalError::AuthUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PortalError::Store(e) => match e {
                StoreError::UnknownSubscriber(_) => StatusCode::NOT_FOUND,
                StoreError::Transition { .. }
                | StoreError::Invalid(_)
                | StoreError::AddressTaken(..)
                | StoreError::DuplicateLogin(_) => StatusCode::CONFLICT,
                StoreError::Conflict => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            PortalError::Bind(..) | PortalError::Tls { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text shown to the user; internal failures are logged, not shown.
    pub fn public_message(&self) -> String {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "portal request failed");
            "something went wrong on our side; please try again later".into()
        } else {
            self.to_string()
        }
    }
}

/// HTML rendering for the portal and console.
impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = crate::html::error_page(status, &self.public_message());
        (status, body).into_response()
    }
}

/// The API's rendering of [`PortalError`]: JSON.
#[derive(Debug)]
pub struct ApiError(pub PortalError);

impl<E: Into<PortalError>> From<E> for ApiError {
    fn from(e: E) -> ApiError {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = serde_json::json!({ "error": self.0.public_message() });
        (status, axum::Json(body)).into_response()
    }
}
