//! Short-lived tokens that Lore mints for its chat widget: a host page that already knows the user (behind its
//! own SSO) exchanges that identity for an embed token, and the widget sends it back as a bearer token.
//!
//! Why HMAC (HS256) is right here while the OIDC verifier refuses it: the danger of HMAC is a verifier that
//! takes its key from somewhere public. With an identity provider the keys are a public JWKS, so accepting
//! HS256 there would let anyone sign with a public key. Embed tokens are minted and verified by the same
//! party, Lore, with one secret that never leaves it; nothing is published, so a symmetric signature is as
//! strong as an asymmetric one and smaller and faster. The two paths never overlap: embed tokens carry
//! `typ: lore-embed+jwt` and `aud: lore-embed` (an audience the OIDC configuration may not use), are accepted
//! only as HS256, and the OIDC verifier accepts no HMAC algorithm at all.
//!
//! A *visitor token* is the embed token a page with a public key gets for one anonymous visitor: its `sub` is
//! a fresh random [`VISITOR_PREFIX`] id (so the visitor's conversations are theirs alone), and its `key` claim
//! names the public key, which must still be valid and public on every request.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::jwt::{self, printable};
use crate::{IdentityError, TokenError};

pub const EMBED_AUDIENCE: &str = "lore-embed";
pub const EMBED_TOKEN_TYPE: &str = "lore-embed+jwt";
pub const MAX_EMBED_TTL_SECS: u64 = 3600;
pub const MIN_SECRET_LEN: usize = 32;
/// The user id prefix of a visitor of a page with a public key: `visitor:<128 random bits>`.
pub const VISITOR_PREFIX: &str = "visitor:";
/// Embed tokens live minutes, and Lore is the only clock involved in minting and checking them.
const EMBED_LEEWAY_SECS: u64 = 5;

/// What the host page vouches for when it asks for an embed token.
#[derive(Debug, Clone)]
pub struct EmbedClaimsInput {
    pub user_id: String,
    pub principals: Vec<String>,
    pub role: String,
    /// The page origin the widget runs on, when the caller wants it pinned.
    pub origin: Option<String>,
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub principals: Vec<String>,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// A visitor token's public key (its id): the token is good only while that key is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

pub struct EmbedSigner {
    issuer: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for EmbedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedSigner").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// A fresh random secret for [`EmbedSigner::new`].
pub fn generate_secret() -> [u8; 32] {
    rand::random()
}

/// A new visitor's user id: [`VISITOR_PREFIX`] and 128 random bits, URL-safe.
pub fn new_visitor_id() -> String {
    format!("{VISITOR_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()))
}

impl EmbedSigner {
    pub fn new(secret: &[u8], issuer: impl Into<String>) -> Result<Self, IdentityError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(IdentityError::SecretTooShort(secret.len()));
        }
        let issuer = issuer.into();
        if issuer.trim().is_empty() {
            return Err(IdentityError::EmptyEmbedIssuer);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = EMBED_LEEWAY_SECS;
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[EMBED_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(EmbedSigner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn mint(&self, input: EmbedClaimsInput) -> Result<(String, EmbedClaims), IdentityError> {
        self.mint_bound(input, None)
    }

    /// A visitor token: bound to the public key `key_id`, which the verifier of each request
    /// must find still valid.
    pub fn mint_for_key(&self, input: EmbedClaimsInput, key_id: &str) -> Result<(String, EmbedClaims), IdentityError> {
        self.mint_bound(input, Some(key_id.to_owned()))
    }

    fn mint_bound(&self, input: EmbedClaimsInput, key: Option<String>) -> Result<(String, EmbedClaims), IdentityError> {
        if input.ttl_secs == 0 {
            return Err(IdentityError::Zero("embed token ttl"));
        }
        if input.ttl_secs > MAX_EMBED_TTL_SECS {
            return Err(IdentityError::OutOfRange {
                field: "embed token ttl",
                value: input.ttl_secs,
                max: MAX_EMBED_TTL_SECS,
            });
        }
        if input.user_id.is_empty() || input.user_id.chars().any(char::is_whitespace) {
            return Err(IdentityError::InvalidUserId);
        }
        let now = jwt::now_secs();
        let claims = EmbedClaims {
            iss: self.issuer.clone(),
            aud: EMBED_AUDIENCE.to_owned(),
            sub: input.user_id,
            principals: input.principals,
            role: input.role,
            origin: input.origin,
            key,
            jti: URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            iat: now,
            exp: now + input.ttl_secs,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(EMBED_TOKEN_TYPE.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|error| IdentityError::Signing(error.to_string()))?;
        Ok((token, claims))
    }

    pub fn verify(&self, token: &str) -> Result<EmbedClaims, TokenError> {
        let header = jwt::parse_header(token)?;
        if header.alg != "HS256" {
            return Err(TokenError::UnsupportedAlgorithm(printable(&header.alg)));
        }
        if header.typ.as_deref() != Some(EMBED_TOKEN_TYPE) {
            return Err(TokenError::WrongType);
        }
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &self.decoding, &self.validation)
                .map_err(|error| jwt::map_error(error, &header.alg))?;
        jwt::check_issued_at(&data.claims, EMBED_LEEWAY_SECS)?;
        let claims: EmbedClaims = serde_json::from_value(serde_json::Value::Object(data.claims))
            .map_err(|_| TokenError::Malformed("embed claims do not have the expected shape"))?;
        if claims.sub.is_empty() || claims.sub.chars().any(char::is_whitespace) {
            return Err(TokenError::InvalidClaim { claim: "sub".into(), reason: "not a valid user id" });
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_and_empty_issuers_are_refused() {
        assert!(matches!(EmbedSigner::new(&[7; 31], "lore"), Err(IdentityError::SecretTooShort(31))));
        assert!(matches!(EmbedSigner::new(&[7; 32], " "), Err(IdentityError::EmptyEmbedIssuer)));
        assert!(EmbedSigner::new(&generate_secret(), "lore").is_ok());
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(generate_secret(), generate_secret());
    }

    #[test]
    fn visitor_ids_are_random_and_url_safe() {
        let (a, b) = (new_visitor_id(), new_visitor_id());
        assert_ne!(a, b);
        let random = a.strip_prefix(VISITOR_PREFIX).unwrap();
        assert_eq!(random.len(), 22, "{a}");
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{a}");
    }

    #[test]
    fn the_key_claim_is_optional_and_kept() {
        let signer = EmbedSigner::new(&generate_secret(), "lore").unwrap();
        let input = || EmbedClaimsInput {
            user_id: new_visitor_id(),
            principals: vec!["everyone".into()],
            role: "employee".into(),
            origin: None,
            ttl_secs: 60,
        };
        let (token, claims) = signer.mint_for_key(input(), "key_1").unwrap();
        assert_eq!(signer.verify(&token).unwrap().key.as_deref(), Some("key_1"));
        assert_eq!(claims.key.as_deref(), Some("key_1"));
        let (token, _) = signer.mint(input()).unwrap();
        assert_eq!(signer.verify(&token).unwrap().key, None);
        let payload = token.split('.').nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(json.get("key").is_none(), "an unbound token has no key claim: {json}");
    }
}
