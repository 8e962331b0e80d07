//! Serves the `request-approval` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main("request-approval", request_approval::config_from_env(), |config| async {
        request_approval::AppState::new(config).await.map(request_approval::router)
    })
    .await
}
