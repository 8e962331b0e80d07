//! Serves the `approve` function on `$PORT`.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    common::runner::run("approve", approve::router()).await
}
