//! Serves the `mailer` function on `$PORT`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    common::runner::run("mailer", mailer::router()).await
}
