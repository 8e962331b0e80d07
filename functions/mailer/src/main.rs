//! Serves the `mailer` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main::<mailer::AppState>().await
}
