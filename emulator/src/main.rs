//! `emulator [--config FILE] [--port N]`: serves the emulated Google APIs until Ctrl-C.

use anyhow::Context as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::runner::init_logging();
    let mut config: Option<String> = None;
    let mut port: u16 = std::env::var("EMULATOR_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8081);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = args.next(),
            "--port" => port = args.next().and_then(|p| p.parse().ok()).context("--port takes a number")?,
            "--help" | "-h" => {
                println!("usage: emulator [--config organization.yaml] [--port 8081]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument '{other}' (try --help)"),
        }
    }
    let yaml = match &config {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => emulator::DEFAULT_WORLD.to_string(),
    };
    let world = emulator::World::new(emulator::WorldFile::parse(&yaml)?)?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let emulator = emulator::Emulator::start_on(listener, world, true).await?;
    println!("emulator listening on {}", emulator.url());
    for (name, value) in emulator.environment() {
        println!("  {name}={value}");
    }
    // An empty line ends the list, for scripts that read it.
    println!();
    tokio::signal::ctrl_c().await?;
    Ok(())
}
