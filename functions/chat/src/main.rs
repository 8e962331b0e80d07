//! Serves the `chat` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main::<chat::AppState>().await
}
