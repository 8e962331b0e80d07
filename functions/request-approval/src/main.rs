//! Serves the `request-approval` function on `$PORT`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    common::runner::run("request-approval", request_approval::router()).await
}
