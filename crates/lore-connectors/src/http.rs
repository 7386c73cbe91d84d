//! HTTP for connectors: GETs that wait out throttling (429 and 503, honouring `Retry-After`) and
//! retry transient failures with exponential backoff, and conditional GETs (`If-None-Match`,
//! `If-Modified-Since`) so an unchanged page costs a 304.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

/// `scheme://host[:port]` of an absolute http(s) URL: connectors follow a source's next-page
/// links only to its own origin, so credentials never travel elsewhere.
pub fn origin_of(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (host_len > 0).then(|| &url[..url.len() - rest.len() + host_len])
}

/// The `Authorization` value of HTTP basic authentication: `Basic <base64(user:secret)>`.
pub fn basic_auth(user: &str, secret: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: {message}")]
    Failed { url: String, status: Option<u16>, message: String },
}

impl HttpError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Failed { status, .. } => *status,
        }
    }
}

/// A response worth reading: its status (200, or 304 for a conditional GET that found no
/// change), headers and body.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn not_modified(&self) -> bool {
        self.status == 304
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("not JSON: {e}"))
    }
}

#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    /// Attempts per request before giving up (throttled ones included).
    pub max_attempts: u32,
    /// The first wait after a failure without `Retry-After`; doubles each time.
    pub initial_backoff: Duration,
    /// Longest wait `Retry-After` may ask for before the request is given up.
    pub max_wait: Duration,
}

impl Http {
    pub fn new(user_agent: &str) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HttpError::Failed { url: String::new(), status: None, message: e.to_string() })?;
        Ok(Http {
            client,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(300),
        })
    }

    /// GET with `headers` (authorization, conditional headers). 2xx and 304 are returned;
    /// 429/503/5xx and network errors are retried; other statuses fail at once.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Fetched, HttpError> {
        let mut backoff = self.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.get(url);
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(value) {
                    request = request.header(*name, value);
                }
            }
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() || status == StatusCode::NOT_MODIFIED {
                        let headers = response.headers().clone();
                        let body = response.bytes().await.map_err(|e| HttpError::Failed {
                            url: url.to_owned(),
                            status: Some(status.as_u16()),
                            message: format!("reading the body: {e}"),
                        })?;
                        return Ok(Fetched { status: status.as_u16(), headers, body: body.to_vec() });
                    }
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let failure = HttpError::Failed {
                        url: url.to_owned(),
                        status: Some(status.as_u16()),
                        message: format!("answered {status}"),
                    };
                    if !transient {
                        return Err(failure);
                    }
                    (failure, retry_after)
                }
                Err(e) => (HttpError::Failed { url: url.to_owned(), status: None, message: e.to_string() }, None),
            };
            let (error, retry_after) = failure;
            if attempt >= self.max_attempts {
                return Err(error);
            }
            let wait = retry_after.unwrap_or(backoff);
            if wait > self.max_wait {
                return Err(error);
            }
            tracing::debug!(url, attempt, wait_ms = wait.as_millis() as u64, "throttled or failed; waiting");
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
    }
}
