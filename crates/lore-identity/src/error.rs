/// A configuration or setup mistake, found when a verifier or signer is built (or when an embed token is minted
/// with bad input). Never caused by a client's token.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("oidc issuer is empty")]
    EmptyIssuer,
    #[error("oidc audience list is empty; set at least one accepted audience")]
    EmptyAudience,
    #[error("oidc audience {0:?} is reserved for lore embed tokens")]
    ReservedAudience(String),
    #[error("oidc algorithm list is empty")]
    EmptyAlgorithms,
    #[error("algorithm {alg:?} is not allowed for identity-provider tokens: {reason}")]
    ForbiddenAlgorithm { alg: String, reason: &'static str },
    #[error("unknown algorithm {0:?}; supported: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA")]
    UnknownAlgorithm(String),
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("insecure url {0:?}: identity-provider urls must use https (plain http only for loopback hosts)")]
    InsecureUrl(String),
    #[error("claim mapping {0} is empty")]
    EmptyClaimPath(&'static str),
    #[error("{field} is {value}, above the maximum of {max}")]
    OutOfRange { field: &'static str, value: u64, max: u64 },
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("could not build the http client: {0}")]
    HttpClient(String),
    #[error("embed secret is {0} bytes; at least 32 are required")]
    SecretTooShort(usize),
    #[error("embed issuer is empty")]
    EmptyEmbedIssuer,
    #[error("embed user id must be a non-empty string without whitespace")]
    InvalidUserId,
    #[error("could not sign the embed token: {0}")]
    Signing(String),
}

/// Why a bearer token was refused. Messages never contain the token; values taken from the token (an
/// algorithm name, a key id) are shortened and quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    #[error("token key id {0:?} is not in the identity provider's key set")]
    UnknownKey(String),
    #[error("token has no key id and the key set does not have exactly one key for {0}")]
    AmbiguousKey(String),
    #[error("token algorithm {alg} does not fit key {kid:?}")]
    KeyMismatch { alg: String, kid: String },
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token type is not accepted")]
    WrongType,
    #[error("token is missing the {0} claim")]
    MissingClaim(String),
    #[error("token claim {claim} is invalid: {reason}")]
    InvalidClaim { claim: String, reason: &'static str },
    #[error("identity provider keys are unavailable: {0}")]
    Jwks(#[from] JwksError),
}

impl TokenError {
    /// False only when the identity provider could not be reached or answered nonsense: the token may be fine,
    /// so the caller should answer 503 rather than 401.
    pub fn is_client_error(&self) -> bool {
        match self {
            TokenError::Jwks(_) => false,
            TokenError::Malformed(_)
            | TokenError::UnsupportedAlgorithm(_)
            | TokenError::UnknownKey(_)
            | TokenError::AmbiguousKey(_)
            | TokenError::KeyMismatch { .. }
            | TokenError::BadSignature
            | TokenError::Expired
            | TokenError::NotYetValid
            | TokenError::WrongIssuer
            | TokenError::WrongAudience
            | TokenError::WrongType
            | TokenError::MissingClaim(_)
            | TokenError::InvalidClaim { .. } => true,
        }
    }

    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "token_malformed",
            TokenError::UnsupportedAlgorithm(_) => "token_algorithm",
            TokenError::UnknownKey(_) | TokenError::AmbiguousKey(_) => "token_unknown_key",
            TokenError::KeyMismatch { .. } => "token_key_mismatch",
            TokenError::BadSignature => "token_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongIssuer => "token_issuer",
            TokenError::WrongAudience => "token_audience",
            TokenError::WrongType => "token_type",
            TokenError::MissingClaim(_) | TokenError::InvalidClaim { .. } => "token_claims",
            TokenError::Jwks(_) => "identity_provider_unavailable",
        }
    }
}

/// The identity provider's discovery document or key set could not be fetched or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("{url} answered http {status}")]
    Status { url: String, status: u16 },
    #[error("{url} returned an invalid document: {reason}")]
    InvalidDocument { url: String, reason: String },
    #[error("discovery document at {url} names issuer {found:?}, expected {expected:?}")]
    IssuerMismatch { url: String, expected: String, found: String },
    #[error("insecure jwks_uri {0:?}: identity-provider urls must use https (plain http only for loopback hosts)")]
    InsecureUrl(String),
    #[error("key set at {0} has no usable signing keys")]
    NoUsableKeys(String),
}
