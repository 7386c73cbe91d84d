//! Bearer tokens to verified identities. Two separate paths that never accept each other's tokens:
//! [`oidc`] checks JWTs from the company's OpenID Connect identity provider against its published keys, and
//! [`embed`] mints and checks the short-lived tokens Lore issues to its chat widget.
//! With the `test-idp` feature, [`testing`] provides a loopback identity provider for tests.

pub mod embed;
mod error;
mod jwt;
pub mod oidc;
#[cfg(feature = "test-idp")]
pub mod testing;

pub use embed::{EmbedClaims, EmbedClaimsInput, EmbedSigner, generate_secret};
pub use error::{IdentityError, JwksError, TokenError};
pub use oidc::{ClaimsMap, OidcConfig, OidcVerifier, VerifiedIdentity};
