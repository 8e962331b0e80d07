//! Answers only requests addressed to this machine's loopback, so that a web page on another
//! name cannot drive the emulator through the developer's browser (DNS rebinding: the page's
//! name resolves to 127.0.0.1, and the browser sends that name as `Host`). The local run's
//! front door applies the same check; it lives here because the front door depends on the
//! emulator, not the other way round.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::google::GoogleError;

/// Whether a `Host` header (or an HTTP/2 `:authority`) names this machine's loopback.
/// Anything else means a page on another name is driving a browser at the local run: refused.
pub fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(name, _)| name),
        None => host.split(':').next(),
    };
    matches!(name.map(str::to_ascii_lowercase).as_deref(), Some("127.0.0.1" | "localhost" | "::1"))
}

/// The host a request is addressed to: HTTP/1.1's `Host` header, or HTTP/2's `:authority`,
/// which the server hands over in the URI (the gRPC Publish call comes that way).
pub fn request_host(request: &Request) -> &str {
    let header = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    header.or_else(|| request.uri().authority().map(|a| a.as_str())).unwrap_or_default()
}

/// Middleware: 403 in Google's error shape for any other host, a missing one included.
pub async fn only_local_hosts(request: Request, next: Next) -> Response {
    if !is_local_host(request_host(&request)) {
        return GoogleError::new(403, "the emulator answers only to 127.0.0.1, localhost and [::1]").into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts() {
        for good in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "127.0.0.1", "[::1]:8080"] {
            assert!(is_local_host(good), "{good}");
        }
        for bad in
            ["evil.com", "evil.com:8080", "127.0.0.1.evil.com", "localhost.evil.com:8080", "", "[::2]:80", "10.0.0.1"]
        {
            assert!(!is_local_host(bad), "{bad}");
        }
    }
}
