//! Serves the `list-eligibility` function on `$PORT`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    common::runner::run("list-eligibility", list_eligibility::router()).await
}
