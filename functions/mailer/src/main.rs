//! Serves the `mailer` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main("mailer", mailer::config_from_env(), |config| async {
        mailer::AppState::new(config).await.map(mailer::router)
    })
    .await
}
