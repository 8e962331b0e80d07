//! Serves the `approve` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main::<approve::AppState>().await
}
