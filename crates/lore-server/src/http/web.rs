//! The browser side: the widget script (content-hashed, cacheable), the full-page chat at `/`,
//! an optional demo page, and CORS for the origins that embed the widget.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::AppState;

const WIDGET: &str = include_str!("../../web/widget.js");
const APP_HTML: &str = include_str!("../../web/app.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const CONSOLE_JS: &str = include_str!("../../web/console.js");
const CONSOLE_CSS: &str = include_str!("../../web/console.css");
/// uPlot, vendored from its npm package (see `web/vendor/uplot/VENDORED`).
const UPLOT_JS: &str = include_str!("../../web/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../web/vendor/uplot/uPlot.min.css");

/// The first 12 hex digits of the widget's sha256: its versioned URL is
/// `/assets/widget.<hash>.js`, cacheable for a year.
pub fn widget_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| lore_core::types::sha256_hex(WIDGET.as_bytes())[..12].to_owned())
}

fn javascript(body: &'static str, cache: &'static str, etag: Option<&str>, headers: &HeaderMap) -> Response {
    if let Some(etag) = etag
        && headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(etag))
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.to_owned())]).into_response();
    }
    let mut response =
        ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, cache)], body)
            .into_response();
    if let Some(etag) = etag {
        response.headers_mut().insert(header::ETAG, HeaderValue::from_str(etag).expect("hex etag"));
    }
    response
}

/// `/widget.js`: the stable URL pages embed; revalidated on every load (cheap: 304 by ETag).
pub async fn widget(headers: HeaderMap) -> Response {
    javascript(WIDGET, "no-cache", Some(&format!("\"{}\"", widget_hash())), &headers)
}

/// `/assets/widget.<hash>.js` and the full page's assets: immutable under their hash.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    if name == format!("widget.{}.js", widget_hash()) {
        return Ok(javascript(WIDGET, "public, max-age=31536000, immutable", None, &headers));
    }
    let css = |body: &'static str| {
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
    };
    match name.as_str() {
        "app.js" => Ok(javascript(APP_JS, "no-cache", None, &headers)),
        "console.js" => Ok(javascript(CONSOLE_JS, "no-cache", None, &headers)),
        "uplot.js" => Ok(javascript(UPLOT_JS, "no-cache", None, &headers)),
        "app.css" => Ok(css(APP_CSS)),
        "console.css" => Ok(css(CONSOLE_CSS)),
        "uplot.css" => Ok(css(UPLOT_CSS)),
        _ => Err(ApiError::NotFound),
    }
}

/// `/`: the full-page chat, under a strict Content-Security-Policy.
pub async fn app(State(state): State<Arc<AppState>>) -> Response {
    let idp = state.config.auth.oidc.as_ref().map(|o| origin_of(&o.issuer)).unwrap_or_default();
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' {idp}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    );
    html(APP_HTML.to_owned(), &csp)
}

fn html(body: String, csp: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CACHE_CONTROL, "no-cache".to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp.to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        body,
    )
        .into_response()
}

fn origin_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(scheme, rest)| (scheme, rest.split('/').next().unwrap_or("")));
    rest.map(|(scheme, host)| format!("{scheme}://{host}")).unwrap_or_default()
}

/// What the full page needs to sign in, and to refuse a file the server would refuse before
/// uploading it.
pub async fn app_config(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let oidc = match (&state.config.auth.oidc, &state.config.server.web_client_id) {
        (Some(oidc), Some(client_id)) => serde_json::json!({
            "issuer": oidc.issuer, "client_id": client_id, "scopes": state.config.server.web_scopes,
        }),
        _ => serde_json::Value::Null,
    };
    axum::Json(serde_json::json!({
        "oidc": oidc,
        "max_file_bytes": state.config.ingest.max_file_bytes,
        "extensions": crate::upload::SUPPORTED,
        "formats": lore_ingest::loaders::Format::ALL.map(lore_ingest::loaders::Format::name),
    }))
}

/// `/demo`: a page embedding the widget with a public key (only with `lore serve --demo`).
pub async fn demo(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let Some(key) = state.demo_key.get() else { return Err(ApiError::NotFound) };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Acme intranet (Lore demo)</title>\
         <link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body><header class=\"top\"><h1>Acme Robotics intranet</h1></header>\
         <main><p>This stands for any intranet page. The chat button in the corner is the Lore widget, added by one \
         script tag; it answers from the documents shared with everyone.</p>\
         <pre>&lt;script src=\"/widget.js\" data-api-key=\"…\" data-title=\"Ask Acme\"&gt;&lt;/script&gt;</pre></main>\
         <script src=\"/widget.js\" data-api-key=\"{key}\" data-title=\"Ask Acme\"></script></body></html>"
    );
    Ok(html(
        body,
        "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
         base-uri 'none'; object-src 'none'",
    ))
}

/// `X-Content-Type-Options: nosniff` on every response (scripts, JSON, errors), so a browser
/// never runs or renders a response as a type it guessed.
pub async fn nosniff(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// CORS for the configured embedding origins only. A preflight from another origin is refused;
/// other requests from it get no CORS headers, so the browser keeps the response from the page.
pub async fn cors(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
    let allowed = origin.as_ref().filter(|o| state.config.server.cors_origins.iter().any(|a| a == *o)).cloned();
    if request.method() == Method::OPTIONS && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let Some(origin) = allowed else {
            return ApiError::Forbidden("cross-origin requests from this origin are not allowed".into())
                .into_response();
        };
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, PUT, PATCH, DELETE".into()),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization, content-type".into()),
                (header::ACCESS_CONTROL_MAX_AGE, "600".into()),
                (header::VARY, "Origin".into()),
            ],
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(origin) = allowed {
        let headers = response.headers_mut();
        headers
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_str(&origin).expect("origin from a header"));
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}
