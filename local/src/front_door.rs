//! The local front door: what the load balancer and IAP do in production. It routes paths to
//! the functions, signs people in, and forwards a real IAP assertion signed with the
//! emulator's IAP key, so the functions run exactly the production identity check.
//!
//! A browser signs in at `/_local/signin` (a list of the organization's users; a cookie
//! remembers the choice). A script sends `X-Local-User: EMAIL`. Headers that only IAP may
//! set are dropped from incoming requests, as IAP drops them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use common::http::ApiError;
use common::timestamp::Timestamp;
pub use emulator::loopback::is_local_host;

const COOKIE: &str = "jit_local_user";

/// Where each function listens.
#[derive(Debug, Clone, Copy)]
pub struct Upstreams {
    pub list: SocketAddr,
    pub request: SocketAddr,
    pub approve: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct FrontDoor {
    upstreams: Upstreams,
    emulator: Arc<emulator::State>,
    audience: Arc<str>,
    users: Arc<Vec<String>>,
    http: reqwest::Client,
}

impl FrontDoor {
    pub fn new(
        upstreams: Upstreams,
        emulator: Arc<emulator::State>,
        audience: &str,
        users: Arc<Vec<String>>,
    ) -> FrontDoor {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default();
        FrontDoor { upstreams, emulator, audience: Arc::from(audience), users, http }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/_local/signin", get(sign_in))
            .route("/_local/signout", get(sign_out))
            .fallback(forward)
            .layer(axum::middleware::from_fn(only_local_hosts))
            .layer(axum::middleware::map_response(common::http::log_errors))
            .with_state(self)
    }

    /// The load balancer's URL map: path → function.
    fn upstream(&self, path: &str) -> Option<SocketAddr> {
        // `/api/{projects|folders|organizations}/{id}/roles/{self-activate|request|break-glass}`
        let segments: Vec<&str> = path.split('/').collect();
        let requests = matches!(
            segments.as_slice(),
            [
                "",
                "api",
                "projects" | "folders" | "organizations",
                _,
                "roles",
                "self-activate" | "request" | "break-glass"
            ]
        );
        let withdraws =
            path.starts_with("/api/requests/") && (path.ends_with("/withdraw") || path.ends_with("/extend"));
        if requests || withdraws {
            Some(self.upstreams.request)
        } else if path == "/api/activation-request" || path.starts_with("/api/requests/") {
            Some(self.upstreams.approve)
        } else if path == "/"
            || path.starts_with("/api/")
            || path.starts_with("/static/")
            || path.starts_with("/health/")
        {
            Some(self.upstreams.list)
        } else {
            None
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct SignIn {
    #[serde(rename = "as")]
    user: Option<String>,
    next: Option<String>,
}

async fn sign_in(State(door): State<FrontDoor>, Query(query): Query<SignIn>) -> Response {
    let next = query.next.filter(|n| is_same_site_path(n)).unwrap_or_else(|| "/".into());
    if let Some(user) = query.user.filter(|u| door.users.contains(&u.to_lowercase())) {
        let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax", user.to_lowercase());
        return ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response();
    }
    let next_encoded: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let items: String = door
        .users
        .iter()
        .map(|user| {
            let encoded: String = form_urlencoded::byte_serialize(user.as_bytes()).collect();
            format!("<li><a href=\"/_local/signin?as={encoded}&amp;next={next_encoded}\">{}</a></li>", escape(user))
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sign in · JIT access (local)</title></head>\
<body style=\"font-family:system-ui,Arial,sans-serif;max-width:520px;margin:40px auto;padding:0 16px\">\
<h1 style=\"font-size:20px\">Sign in to the local JIT access</h1>\
<p>In production, Identity-Aware Proxy signs people in. Locally, pick who you are:</p><ul id=\"users\">{items}</ul>\
<p style=\"color:#5f6368;font-size:13px\">Scripts can send the header <code>X-Local-User: EMAIL</code> instead.</p></body></html>"
    ))
    .into_response()
}

async fn sign_out() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/_local/signin")).into_response()
}

async fn forward(State(door): State<FrontDoor>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    let Some(upstream) = door.upstream(path) else {
        return ApiError::not_found("route_not_found", "no such route").into_response();
    };
    let user = headers
        .get("x-local-user")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| cookie(&headers))
        .map(|u| u.trim().to_lowercase())
        .filter(|u| door.users.contains(u));
    let Some(user) = user else {
        if path.starts_with("/api/") {
            return ApiError::unauthenticated("signed_out", "sign in at /_local/signin, or send X-Local-User")
                .into_response();
        }
        let next: String = form_urlencoded::byte_serialize(uri.to_string().as_bytes()).collect();
        return Redirect::to(&format!("/_local/signin?next={next}")).into_response();
    };
    let claims = common::iap::assertion_claims(&user, &format!("local:{user}"), &door.audience, Timestamp::now());
    let assertion = match door.emulator.iap_key.sign_json(&claims) {
        Ok(assertion) => assertion,
        Err(error) => return ApiError::unavailable(error.to_string()).into_response(),
    };
    let target = format!("http://{upstream}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut request = door.http.request(method, target).body(body);
    for (name, value) in &headers {
        let name_text = name.as_str();
        // IAP strips what only it may set; hop-by-hop headers stay here.
        let dropped = name_text.starts_with("x-goog-")
            || matches!(
                name_text,
                "host" | "cookie" | "connection" | "content-length" | "x-local-user" | "transfer-encoding"
            );
        if !dropped {
            request = request.header(name, value);
        }
    }
    request = request.header("x-goog-iap-jwt-assertion", assertion);
    match request.send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut out = Response::builder().status(status);
            for (name, value) in response.headers() {
                if !matches!(name.as_str(), "connection" | "transfer-encoding" | "content-length") {
                    out = out.header(name, value);
                }
            }
            let bytes = response.bytes().await.unwrap_or_default();
            out.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(error) => ApiError::unavailable(format!("forwarding to {upstream}: {error}")).into_response(),
    }
}

/// A path on this site, so the sign-in page cannot bounce anyone elsewhere. Browsers read
/// `/\evil.com` as `//evil.com` and drop tabs and newlines from URLs, so a backslash or a
/// control character anywhere refuses the path, as does a leading `//`.
pub fn is_same_site_path(next: &str) -> bool {
    next.starts_with('/') && !next.starts_with("//") && !next.chars().any(|c| c == '\\' || c.is_control())
}

async fn only_local_hosts(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = emulator::loopback::request_host(&request);
    if !is_local_host(host) {
        return ApiError::forbidden("host_not_allowed", "the local run answers only to 127.0.0.1 and localhost")
            .into_response();
    }
    next.run(request).await
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value: &HeaderValue| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_string))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_same_site_path_only() {
        for good in ["/", "/?activation=abc", "/api/projects", "/a//b"] {
            assert!(is_same_site_path(good), "{good}");
        }
        for bad in
            ["//evil.com", "/\\evil.com", "/\\/evil.com", "\\evil.com", "https://evil.com", "/\t/evil.com", "/\n/x", ""]
        {
            assert!(!is_same_site_path(bad), "{bad:?}");
        }
    }
}
