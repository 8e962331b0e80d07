//! The shared runner: each function is an axum `Router`; this serves it on `$PORT` with
//! Cloud Logging JSON, health routes, a request span, a body limit, a timeout, and graceful
//! shutdown on SIGTERM (Cloud Run's stop signal). The port opens before the SDK clients are
//! built: `/health/alive` answers at once, `/health/ready` once the router exists. Tests and
//! the local run mount the same router through [`app`] and [`serve`].

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Env;
use crate::trace::TraceContext;

pub use crate::http::MAX_BODY_BYTES;

/// Cloud Run's default request timeout is 300 s; ours answers well before the platform cuts.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One function, as the runner starts it: its name, the settings it reads, and how its
/// router is wired from them. Its `main.rs` is `runner::main::<F>()`; tests and the local run
/// read the same settings ([`Function::read`]) and build the same router ([`Function::build`]).
pub trait Function {
    /// The service's name, in its log lines and start-up errors.
    const NAME: &'static str;
    /// The settings it reads.
    type Config: Send + 'static;

    /// Reads its settings from `env`, which collects every problem.
    fn read(env: &mut Env<'_>) -> Self::Config;

    /// Builds its clients (its state) from `config`, and its router on them.
    fn build(config: Self::Config) -> impl Future<Output = Result<Router, String>> + Send + 'static;
}

/// A function crate's [`Function`], from the names every one of them keeps in its `lib.rs`:
/// `Config` (with `Config::read`), `AppState` (with `async AppState::new(Config) -> Result<…>`)
/// and `router(AppState) -> Router`. `common::function!("approve");` is the whole of it;
/// `common::function!("approve", iap = iap);` also lets [`crate::http::IapUser`] find the
/// verifier in `AppState`'s field `iap`.
#[macro_export]
macro_rules! function {
    ($name:literal, iap = $field:ident) => {
        $crate::function!($name);

        impl ::axum::extract::FromRef<AppState> for $crate::http::IapVerifier {
            fn from_ref(state: &AppState) -> $crate::http::IapVerifier {
                state.$field.clone()
            }
        }
    };
    ($name:literal) => {
        impl $crate::runner::Function for AppState {
            const NAME: &'static str = $name;
            type Config = Config;

            fn read(env: &mut $crate::config::Env<'_>) -> Config {
                Config::read(env)
            }

            async fn build(config: Config) -> Result<::axum::Router, String> {
                AppState::new(config).await.map(router).map_err(|e| e.to_string())
            }
        }
    };
}

/// A function's whole `main`: read its configuration (exit 2 with every problem), open
/// `$PORT`, then build its router (its SDK clients) while already answering: liveness at once,
/// readiness and every other request once the router exists (exit 1 if it cannot be built).
pub async fn main<F: Function>() -> std::process::ExitCode {
    let service = F::NAME;
    let config = match crate::config::from_process_env(F::read) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{service}: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    if crate::timestamp::travel::ENABLED && std::env::var_os("K_SERVICE").is_some() {
        eprintln!(
            "{service}: built with the tests' movable clock (feature clock-travel); refusing to run on Cloud Run"
        );
        return std::process::ExitCode::from(2);
    }
    init_logging();
    let listener = match bind_port().await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("{service}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    tracing::info!(service, port, version = env!("CARGO_PKG_VERSION"), "listening");
    let built = spawn_build(service, F::build(config));
    match serve(listener, app_when_built(built)).await {
        Ok(()) => {
            tracing::info!(service, "stopped");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{service}: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Binds `0.0.0.0:$PORT` (default 8080).
async fn bind_port() -> std::io::Result<TcpListener> {
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.trim().parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("PORT must be a port number, not '{text}'"))
        })?,
        Err(_) => 8080,
    };
    TcpListener::bind(("0.0.0.0", port)).await
}

/// Builds the router in the background. Building means building SDK clients, each of which
/// loads the system's TLS roots: most of a cold start. If it fails the process exits 1, as
/// it did before serving, so that Cloud Run reports the failed start.
fn spawn_build<F, G>(service: &'static str, build: F) -> watch::Receiver<Option<Router>>
where
    F: std::future::Future<Output = Result<Router, G>> + Send + 'static,
    G: std::fmt::Display,
{
    let (sender, receiver) = watch::channel(None);
    // The clients' builders are async but mostly synchronous CPU work (parsing certificates):
    // on a thread of its own it cannot hold up the worker that answers the health probes,
    // which matters on a one-CPU instance.
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let began = std::time::Instant::now();
        match runtime.block_on(build) {
            Ok(router) => {
                let _ = sender.send(Some(app(router)));
                tracing::info!(service, elapsed_ms = began.elapsed().as_millis() as u64, "ready");
            }
            Err(error) => {
                tracing::error!(service, %error, "cannot start");
                eprintln!("{service}: {error}");
                std::process::exit(1);
            }
        }
    });
    receiver
}

/// The app while its router may still be building: `/health/alive` answers at once,
/// `/health/ready` says 503 until the router exists (Cloud Run's startup probe), and any
/// other request waits for it, since a platform may route traffic as soon as the port opens.
fn app_when_built(built: watch::Receiver<Option<Router>>) -> Router {
    let ready = built.clone();
    Router::new()
        .route("/health/alive", get(healthy))
        .route("/health/ready", get(move || readiness(ready.clone())))
        .fallback(move |request: Request| forward(built.clone(), request))
        // What the built app answers is logged inside it; this logs `not_started`.
        .layer(middleware::map_response(crate::http::log_errors))
}

async fn readiness(built: watch::Receiver<Option<Router>>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if built.borrow().is_some() {
        healthy().await.into_response()
    } else {
        let body = serde_json::json!({"healthy": false, "details": {"router": "building"}});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

async fn forward(mut built: watch::Receiver<Option<Router>>, request: Request) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use tower::ServiceExt as _;
    // Clone the router out, so that the channel's lock is not held across the request.
    let router = built.wait_for(Option::is_some).await.ok().and_then(|router| router.clone());
    match router {
        Some(router) => router.oneshot(request).await.into_response(),
        None => crate::http::ApiError::not_started().into_response(),
    }
}

/// The function's router with the platform's routes and layers around it: every API error
/// it answers is logged once, in the request's span ([`crate::http::log_errors`]).
pub fn app(router: Router) -> Router {
    router
        .route("/health/alive", get(healthy))
        .route("/health/ready", get(healthy))
        .layer(middleware::map_response(crate::http::log_errors))
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
        let project = std::env::var("GOOGLE_CLOUD_PROJECT").ok().filter(|p| !p.is_empty());
        registry.with(tracing_stackdriver::layer().with_writer(TraceLifting::new(project, std::io::stdout))).try_init()
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
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let context = TraceContext::from_headers(header("traceparent"), header("x-cloud-trace-context"));
    let (trace, span_id, trace_sampled) = context.map(|c| (c.trace_id, c.span_id, c.sampled)).unwrap_or_default();
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        trace,
        span_id,
        trace_sampled,
        user = tracing::field::Empty
    )
}

/// Writes each Cloud Logging JSON line with its request's trace lifted to the top-level keys
/// Cloud Logging reads ([`crate::trace::lift`]), so a request's lines group together and link to
/// Cloud Trace. Without a project ID (`GOOGLE_CLOUD_PROJECT`) lines pass unchanged.
#[derive(Debug, Clone)]
pub struct TraceLifting<M> {
    project: Option<std::sync::Arc<str>>,
    inner: M,
}

impl<M> TraceLifting<M> {
    pub fn new(project: Option<String>, inner: M) -> TraceLifting<M> {
        TraceLifting { project: project.map(std::sync::Arc::from), inner }
    }
}

/// One event's line, rewritten and written out when the formatter drops it.
#[derive(Debug)]
pub struct LiftingWriter<W: std::io::Write> {
    line: Vec<u8>,
    project: Option<std::sync::Arc<str>>,
    inner: W,
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a> for TraceLifting<M> {
    type Writer = LiftingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        LiftingWriter { line: Vec::new(), project: self.project.clone(), inner: self.inner.make_writer() }
    }
}

impl<W: std::io::Write> std::io::Write for LiftingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: std::io::Write> Drop for LiftingWriter<W> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let lifted = self.project.as_deref().and_then(|project| crate::trace::lift(text.trim_end(), project));
        let _ = match lifted {
            Some(line) => self.inner.write_all(format!("{line}\n").as_bytes()),
            None => self.inner.write_all(&self.line),
        };
    }
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

    async fn status_and_body(app: &Router, path: &str) -> (StatusCode, String) {
        use tower::ServiceExt as _;
        let request = Request::builder().uri(path).body(axum::body::Body::empty()).expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn alive_at_once_ready_and_routed_only_once_the_router_is_built() {
        let (sender, built) = watch::channel(None);
        let app = app_when_built(built);
        assert_eq!(status_and_body(&app, "/health/alive").await.0, StatusCode::OK);
        let (status, body) = status_and_body(&app, "/health/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"healthy\":false"), "{body}");

        // A request that arrives while building waits for the router instead of failing.
        let waiting = tokio::spawn({
            let app = app.clone();
            async move { status_and_body(&app, "/hello").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "answered before the router existed");
        let router = Router::new().route("/hello", get(|| async { "hi" }));
        sender.send(Some(super::app(router))).expect("receivers alive");
        assert_eq!(waiting.await.expect("joins"), (StatusCode::OK, "hi".to_string()));
        assert_eq!(status_and_body(&app, "/health/ready").await.0, StatusCode::OK);
        assert_eq!(status_and_body(&app, "/no/such").await.0, StatusCode::NOT_FOUND);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_router_is_built_on_its_own_thread_while_health_answers() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let built = spawn_build("test", async move {
            // Blocks its thread as certificate parsing does, until the test lets it go.
            let _ = wait.recv();
            Ok::<_, String>(Router::new().route("/hello", get(|| async { "hi" })))
        });
        let app = app_when_built(built.clone());
        // On the runtime's only worker, as a real probe is served; waited for with a plain
        // thread timeout, since tokio's timers stall too when that worker is blocked.
        let (answered, answer) = std::sync::mpsc::channel();
        tokio::spawn({
            let app = app.clone();
            async move { answered.send(status_and_body(&app, "/health/alive").await.0) }
        });
        let alive = answer.recv_timeout(Duration::from_secs(5));
        assert_eq!(alive, Ok(StatusCode::OK), "the probe must answer while the builder blocks");
        assert_eq!(status_and_body(&app, "/health/ready").await.0, StatusCode::SERVICE_UNAVAILABLE);
        release.send(()).expect("builder waits");
        assert_eq!(status_and_body(&app, "/hello").await, (StatusCode::OK, "hi".to_string()));
        assert_eq!(status_and_body(&app, "/health/ready").await.0, StatusCode::OK);
    }

    /// Collects what the logging layer writes.
    #[derive(Debug, Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_carry_the_requests_trace_for_cloud_logging() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let captured = Captured::default();
        let sink = captured.clone();
        let layer = tracing_stackdriver::layer()
            .with_writer(TraceLifting::new(Some("jit-project".into()), move || sink.clone()));
        let subscriber = tracing_subscriber::registry().with(layer);
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        tracing::subscriber::with_default(subscriber, || {
            for (name, value) in [
                ("traceparent", format!("00-{trace}-00f067aa0ba902b7-01")),
                ("x-cloud-trace-context", format!("{trace}/1;o=1")),
            ] {
                let request =
                    Request::builder().uri("/x").header(name, value).body(axum::body::Body::empty()).expect("request");
                let span = request_span(&request);
                let _entered = span.enter();
                tracing::info!("inside the request");
            }
            tracing::info!("outside any request");
        });
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, span) in lines.iter().zip(["00f067aa0ba902b7", "0000000000000001"]) {
            assert_eq!(line["logging.googleapis.com/trace"], format!("projects/jit-project/traces/{trace}"), "{line}");
            assert_eq!(line["logging.googleapis.com/spanId"], span);
            assert_eq!(line["logging.googleapis.com/trace_sampled"], true);
        }
        assert!(lines[2].get("logging.googleapis.com/trace").is_none());
    }

    #[tokio::test]
    async fn an_api_error_is_logged_once_inside_its_requests_span() {
        use tracing_subscriber::layer::SubscriberExt as _;
        let captured = Captured::default();
        let sink = captured.clone();
        let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || sink.clone());
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        let router = Router::new().route("/fails", get(|| async { crate::http::ApiError::backend("the cause") }));
        // Logged inside the app; a second layer outside it finds nothing left to log.
        let app = app(router).layer(middleware::map_response(crate::http::log_errors));
        let (status, body) = status_and_body(&app, "/fails").await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(!body.contains("the cause"), "{body}");
        let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().filter(|line| line.contains("request failed")).collect();
        assert_eq!(lines.len(), 1, "{text}");
        for part in ["request{", "method=GET", "/fails", "code=\"backend_failed\"", "the cause"] {
            assert!(lines[0].contains(part), "{part} in {}", lines[0]);
        }
    }

    #[tokio::test]
    async fn a_failed_build_answers_503_not_a_hang() {
        let (sender, built) = watch::channel(None);
        let app = app_when_built(built);
        drop(sender);
        let (status, body) = status_and_body(&app, "/hello").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("could not start"), "{body}");
    }
}
