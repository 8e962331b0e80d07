//! The shared runner: each function is an axum `Router`; this serves it on `$PORT` with
//! Cloud Logging JSON, health routes, a request span, a body limit, a timeout, and graceful
//! shutdown on SIGTERM (Cloud Run's stop signal). Tests and the local run mount the same
//! router through [`app`] and [`serve`].

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Request bodies are small JSON documents; anything larger is refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Cloud Run's default request timeout is 300 s; ours answers well before the platform cuts.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A function's whole `main`: read its configuration (exit 2 with every problem), build its
/// router (exit 1 if a client cannot be built), then serve it.
pub async fn main<C, E, B, F, G>(service: &'static str, config: Result<C, E>, build: B) -> std::process::ExitCode
where
    E: std::fmt::Display,
    B: FnOnce(C) -> F,
    F: std::future::Future<Output = Result<Router, G>>,
    G: std::fmt::Display,
{
    let config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{service}: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let router = match build(config).await {
        Ok(router) => router,
        Err(error) => {
            eprintln!("{service}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(service, router).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{service}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves `router` on `0.0.0.0:$PORT` (default 8080) until SIGTERM or Ctrl-C.
pub async fn run(service: &'static str, router: Router) -> std::io::Result<()> {
    init_logging();
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("PORT must be a port number, not '{text}'"))
        })?,
        Err(_) => 8080,
    };
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(service, port, version = env!("CARGO_PKG_VERSION"), "listening");
    serve(listener, app(router)).await?;
    tracing::info!(service, "stopped");
    Ok(())
}

/// The function's router with the platform's routes and layers around it.
pub fn app(router: Router) -> Router {
    router
        .route("/health/alive", get(healthy))
        .route("/health/ready", get(healthy))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
}

/// Serves until SIGTERM or Ctrl-C, then lets requests in flight finish.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await
}

/// Binds 127.0.0.1 on a free port and serves `app` in the background: for tests and the
/// local run. Returns the address it got.
pub async fn spawn_local(app: Router) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "local server stopped");
        }
    });
    Ok(address)
}

/// Cloud Logging JSON on Cloud Run (`K_SERVICE` set) or with `LOG_FORMAT=json`; readable text
/// otherwise. `RUST_LOG` sets the level (default `info`). Safe to call twice.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var_os("K_SERVICE").is_some()
        || std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry.with(tracing_stackdriver::layer()).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().compact()).try_init()
    };
}

async fn healthy() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"healthy": true, "details": {}}))
}

fn request_span(request: &Request) -> tracing::Span {
    // The matched route, not the raw URI: tokens in query strings stay out of the logs.
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
    let trace = request
        .headers()
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('/').next())
        .unwrap_or("");
    tracing::info_span!("request", method = %request.method(), route, trace, user = tracing::field::Empty)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_health_and_the_functions_routes_on_a_real_port() {
        let router = Router::new().route("/hello", get(|| async { "hi" }));
        let address = spawn_local(app(router)).await.expect("binds");
        let mut stream = tokio::net::TcpStream::connect(address).await.expect("connects");
        let request = "GET /health/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reads");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("\"healthy\":true"), "{response}");
    }
}
