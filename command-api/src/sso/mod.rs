//! Single sign-on: an Enterprise organization's OpenID Connect provider (`sso:<org>` stream),
//! and provisioning the people who sign in with it (`provision.rs`, called by authentication).

pub mod aggregate;
pub mod provision;
pub mod routes;

/// One organization per issuer and client id: a token names both, and must name one tenant.
pub const CLIENT_SCOPE: &str = "sso.client_id";

/// The claim's value for `issuer` and `client_id`.
pub fn client_claim(issuer: &str, client_id: &str) -> String {
    format!("{client_id} at {issuer}")
}
