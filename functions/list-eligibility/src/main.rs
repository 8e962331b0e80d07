//! Serves the `list-eligibility` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main::<list_eligibility::AppState>().await
}
