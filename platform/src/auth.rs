//! Who is calling: the bearer token of a request, turned into a principal. For now the platform
//! admin (the `AIHUB_ADMIN_TOKEN` bearer) is the only principal; API keys come with tenancy.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use events::{Actor, ActorType};

use crate::metrics;
use crate::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    PlatformAdmin,
}

impl Principal {
    pub fn actor(&self, ip: Option<String>) -> Actor {
        match self {
            Principal::PlatformAdmin => Actor {
                kind: ActorType::PlatformAdmin,
                id: "platform-admin".into(),
                ip,
            },
        }
    }
}

/// Checks bearer tokens. Shared by every route through a request extension.
#[derive(Clone)]
pub struct Authenticator {
    admin_token: Option<Arc<str>>,
}

impl Authenticator {
    pub fn new(admin_token: Option<String>) -> Self {
        Self {
            admin_token: admin_token.map(Into::into),
        }
    }

    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let Some(header) = authorization else {
            return Err(refuse(
                "missing",
                "Missing bearer token: send `Authorization: Bearer <API key>`.",
            ));
        };
        let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        else {
            return Err(refuse(
                "malformed",
                "Malformed Authorization header: expected `Bearer <API key>`.",
            ));
        };
        let token = token.trim();
        match &self.admin_token {
            Some(admin) if constant_time_eq(admin.as_bytes(), token.as_bytes()) => {
                Ok(Principal::PlatformAdmin)
            }
            _ => Err(refuse("unknown", "Incorrect API key provided.")),
        }
    }
}

fn refuse(reason: &'static str, message: &str) -> ApiError {
    metrics::AUTH_FAILURES.with_label_values(&[reason]).inc();
    ApiError::unauthorized(message)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let authenticator = parts
            .extensions
            .get::<Authenticator>()
            .cloned()
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("Authenticator extension missing"))
            })?;
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        authenticator.authenticate(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_admin_token_is_admin() {
        let auth = Authenticator::new(Some("s3cret".into()));
        assert_eq!(
            auth.authenticate(Some("Bearer s3cret")).ok(),
            Some(Principal::PlatformAdmin)
        );
        for header in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
        ] {
            let err = auth.authenticate(header).expect_err("refused");
            assert_eq!(err.status, axum::http::StatusCode::UNAUTHORIZED);
        }
    }

    #[test]
    fn without_an_admin_token_nobody_is_admin() {
        let auth = Authenticator::new(None);
        assert!(auth.authenticate(Some("Bearer ")).is_err());
    }
}
