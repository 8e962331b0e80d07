//! Serves the `chat` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main("chat", chat::config_from_env(), |config| async {
        chat::AppState::new(config).await.map(chat::router)
    })
    .await
}
