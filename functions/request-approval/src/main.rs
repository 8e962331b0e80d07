//! Serves the `request-approval` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main::<request_approval::AppState>().await
}
