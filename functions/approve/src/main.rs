//! Serves the `approve` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main("approve", approve::config_from_env(), |config| async {
        approve::AppState::new(config).await.map(approve::router)
    })
    .await
}
