//! Serves the `list-eligibility` function on `$PORT`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::runner::main("list-eligibility", list_eligibility::config_from_env(), |config| async {
        list_eligibility::AppState::new(config).await.map(list_eligibility::router)
    })
    .await
}
