//! Pieces shared by the OIDC and embed verifiers: reading the header before any key is chosen, and turning
//! `jsonwebtoken` errors into [`TokenError`]s.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;
use serde_json::Value;

use crate::TokenError;

/// Far above any real token (Entra ID tokens with many groups stay under 8 KiB); refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The header fields Lore looks at. It is parsed here rather than by `jsonwebtoken::decode_header` so that
/// `alg: none` and unknown algorithms are reported as such instead of as a malformed header.
#[derive(Debug, Deserialize)]
pub(crate) struct RawHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub crit: Option<Value>,
}

pub(crate) fn parse_header(token: &str) -> Result<RawHeader, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("token is too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("a jwt has three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: RawHeader =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed("header is not a json object with alg"))?;
    // RFC 7515 §4.1.11: a token that marks extensions as critical must be refused by a verifier that does not
    // implement them, and Lore implements none.
    if header.crit.is_some() {
        return Err(TokenError::Malformed("critical header extensions are not supported"));
    }
    Ok(header)
}

/// A value copied from a token into an error message: short and printable.
pub(crate) fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

pub(crate) fn map_error(error: jsonwebtoken::errors::Error, alg: &str) -> TokenError {
    match error.into_kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
        ErrorKind::InvalidClaimFormat(claim) => TokenError::InvalidClaim { claim, reason: "wrong type" },
        ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm(printable(alg)),
        // Key-format errors at verification time mean the signature could not be checked with this key.
        ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => TokenError::BadSignature,
        // `ErrorKind` is non-exhaustive; everything else (base64, json, utf-8, shape) is a malformed token.
        _ => TokenError::Malformed("token could not be decoded"),
    }
}

pub(crate) fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A JSON number as whole seconds, the way `jsonwebtoken` reads `exp` and `nbf`.
pub(crate) fn numeric_date(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_f64().filter(|v| v.is_finite() && *v >= 0.0).map(|v| v.round() as u64))
}

/// `jsonwebtoken` does not look at `iat`; a token issued in the future (beyond the leeway) is not valid yet.
pub(crate) fn check_issued_at(claims: &serde_json::Map<String, Value>, leeway: u64) -> Result<(), TokenError> {
    match claims.get("iat") {
        None | Some(Value::Null) => Ok(()),
        Some(value) => match numeric_date(value) {
            Some(iat) if iat > now_secs() + leeway => Err(TokenError::NotYetValid),
            Some(_) => Ok(()),
            None => Err(TokenError::InvalidClaim { claim: "iat".into(), reason: "not a number" }),
        },
    }
}
